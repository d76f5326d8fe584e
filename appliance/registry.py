"""What the appliance knows about, by area (``appliance.service``): vCenters, repositories,
hardening, jobs, restores, maintenance, configuration backup and the catalog console, over one
shared ``State`` (the home, the secret store, the catalog connection: one at a time, a lock
serialises every use). ``Registry`` composes them: the API's routes, the sessions, the
scheduler and the notifier reach each area through it (``registry.jobs.add(…)``).
"""

from __future__ import annotations

from appliance.home import Home
from appliance.service.config import ConfigService
from appliance.service.hardening import HardeningService
from appliance.service.jobs import JobService
from appliance.service.maintenance import MaintenanceService
from appliance.service.query import QueryService
from appliance.service.repositories import RepositoryService
from appliance.service.restores import RestoreService
from appliance.service.state import State
from appliance.service.vcenters import VCenterService


class Registry(State):
    """The appliance's state and its area services (the composition root)."""

    def __init__(self, home: Home) -> None:
        super().__init__(home)
        self.queries = QueryService(self)
        self.vcenters = VCenterService(self)
        self.repositories = RepositoryService(self)
        self.hardening = HardeningService(self, self.repositories)
        self.jobs = JobService(self, self.vcenters, self.repositories)
        self.restores = RestoreService(self, self.vcenters, self.repositories)
        self.maintenance = MaintenanceService(self, self.repositories, self.hardening,
                                              self.jobs, self.restores)
        self.config = ConfigService(self, self.repositories)

    def close(self) -> None:
        """Stop the administrators' queries, then close the catalog."""
        self.queries.stop()
        super().close()
