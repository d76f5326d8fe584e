"""The route of the alerts: what needs an administrator now."""

from __future__ import annotations

from fastapi import FastAPI

from appliance import api
from appliance.server.responses import ERRORS
from appliance.server.state import ApplianceState


def add_routes(app: FastAPI, state: ApplianceState) -> None:
    v = api.PREFIX

    @app.get(f"{v}/alerts", response_model=list[api.Alert], responses=ERRORS)
    def alerts() -> list[api.Alert]:
        """What needs an administrator as of the last look (every ``alert_every_seconds``):
        VMs past their job's RPO, Snapshot Hunter findings, repositories short of space."""
        return state.alerts()
