"""Guest processing over SSH, agentless: pre-freeze and post-thaw scripts (``scripts``), the
listing, fetching and removal of a guest's log files for log backup jobs (``scripts``), and
PostgreSQL's backup mode held across a snapshot (``postgres``). Knows nothing of vSphere, the
repository or the catalog."""
