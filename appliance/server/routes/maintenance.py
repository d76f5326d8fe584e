"""Routes of repository maintenance: move points, verify, prune."""

from __future__ import annotations

from fastapi import FastAPI

from appliance import api
from appliance.server.responses import ERRORS
from appliance.server.state import ApplianceState


def add_routes(app: FastAPI, state: ApplianceState) -> None:
    reg = state.registry
    v = api.PREFIX

    @app.post(f"{v}/move", response_model=api.MoveAnswer, responses=ERRORS)
    def move(body: api.MoveRequest) -> api.MoveAnswer:
        """Move every point of a job (or one VM) to another repository: copy, verify, switch
        the job, then remove at the source (unless immutable there)."""
        return reg.maintenance.move(body)

    @app.post(f"{v}/verify", response_model=api.VerifyAnswer, responses=ERRORS)
    def verify(body: api.VerifyRequest) -> api.VerifyAnswer:
        """Health check of a repository, or of one point."""
        return reg.maintenance.verify(body.repository, body.point)

    @app.post(f"{v}/prune", response_model=api.PruneAnswer, responses=ERRORS)
    def prune(body: api.PruneRequest) -> api.PruneAnswer:
        """Retention over a whole repository (plan; with ``dry_run`` nothing changes)."""
        return reg.maintenance.prune(body)
