"""Sessions: every run of a job is a session with one task per VM and one per disk, live
progress (bytes, rate, ETA, stage; a disk's stage is the pipeline's bottleneck), log lines with
levels, and a result. Sessions persist in the catalog; a session still marked running when the
appliance starts was cut short by a crash and is shown as interrupted (the appliance removes
its leftover snapshot, named with the appliance's and the session's ids, at start or before
the VM's next backup: appliance/leftovers.py; its partial files are the next run's cleanup's).

A session runs in its own thread with its own catalog connection. The package is one module
per job kind over a common core:

- ``core``: a running session's live record and its bookkeeping (log, followers, saving);
- ``manager``: ``SessionManager``, which starts, stops, ends and reads sessions, and runs
  each through its kind's runner (a table by kind);
- ``backup`` (with ``vm``, one VM's backup), ``copy`` (backup copy jobs), ``logs`` (log
  backup jobs), ``restore`` (a VM or disk restore, started by the restore routes), and
  ``retention``, which backup and copy sessions apply after their work.
"""

from __future__ import annotations

from appliance.sessions.manager import SessionManager

__all__ = ["SessionManager"]
