"""Routes that look into the vCenters: their VMs and containers, and the Snapshot Hunter."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI

from appliance import api
from appliance.alerts import covered
from appliance.server.responses import ERRORS
from appliance.server.state import ApplianceState


def add_routes(app: FastAPI, state: ApplianceState) -> None:
    reg = state.registry
    v = api.PREFIX

    @app.post(f"{v}/hunter", response_model=list[api.HuntReport], responses=ERRORS)
    def hunter(body: api.HuntRequest) -> list[api.HuntReport]:
        """Snapshot Hunter on one vCenter or all: leftover vmkeep snapshots first (a running
        session's are left alone); with ``dry_run`` (the default) nothing is changed."""
        return [api.HuntReport(vcenter=name, lines=lines)
                for name, lines in reg.vcenters.hunt(vcenter=body.vcenter, dry_run=body.dry_run,
                                                     include_foreign=body.include_foreign,
                                                     running=state.sessions.running_ids,
                                                     busy=state.sessions.busy_vms)]

    @app.get(f"{v}/inventory", response_model=list[api.InventoryVm], responses=ERRORS)
    def inventory(vcenter: str | None = None) -> list[api.InventoryVm]:
        """Every VM of one vCenter or all, with its state, the jobs that protect it, its
        newest restore point, its last result with the reasons, and its RPO status."""
        vms = reg.vcenters.inventory(vcenter)
        rows = reg.jobs.all()
        last = []
        for row in rows:
            summary = state.sessions.last_session(row.name)
            if summary is not None and summary.state != "running":
                last.append(state.sessions.session(summary.id))
        return covered(vms, [r.spec for r in rows if r.enabled],
                       {r.name: r.created for r in rows}, last, datetime.now(UTC))

    @app.get(f"{v}/inventory/containers", response_model=list[api.InventoryContainer],
             responses=ERRORS)
    def containers(vcenter: str | None = None) -> list[api.InventoryContainer]:
        """Every datacenter, folder, cluster, host and resource pool of one vCenter or all,
        by inventory path, with the VMs directly in each: what a job's ``containers`` name."""
        return reg.vcenters.containers(vcenter)
