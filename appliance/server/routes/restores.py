"""Routes of what is restored from a point: a VM, a disk, a PostgreSQL data folder, each as a
restore session."""

from __future__ import annotations

from fastapi import FastAPI

from appliance import api
from appliance.server.responses import ERRORS
from appliance.server.state import ApplianceState
from appliance.sessions import restore as restore_session


def add_routes(app: FastAPI, state: ApplianceState) -> None:
    reg = state.registry
    v = api.PREFIX

    @app.post(f"{v}/restore/vm", response_model=api.SessionSummary, status_code=202,
              responses=ERRORS)
    def restore_vm(body: api.VmRestore) -> api.SessionSummary:
        """An entire VM: to a new VM (``name``) or over the original (``confirm``). Checked
        at once (its errors are this request's), then restored by a restore session; follow
        it with ``GET /v1/sessions/{id}``."""
        return restore_session.start_vm(state.sessions.start, reg.restores.check_vm(body))

    @app.post(f"{v}/restore/vm/plan", response_model=api.VmRestorePlan, responses=ERRORS)
    def plan_restore_vm(body: api.VmRestore) -> api.VmRestorePlan:
        """What ``POST /restore/vm`` with this body would do, changing nothing: the plan's
        lines and, for a new VM, where it goes (each name not given: the original VM's)."""
        return reg.restores.vm_plan(body)

    @app.post(f"{v}/restore/disk", response_model=api.SessionSummary, status_code=202,
              responses=ERRORS)
    def restore_disk(body: api.DiskRestore) -> api.SessionSummary:
        """Write a disk of a point to a new raw image file on the appliance's machine: checked
        at once, then written by a restore session."""
        return restore_session.start_disk(
            state.sessions.start, reg.restores.check_disk(body.point, body.disk, body.to))

    @app.post(f"{v}/restore/postgres", response_model=api.SessionSummary, status_code=202,
              responses=ERRORS)
    def restore_postgres(body: api.PostgresRestore) -> api.SessionSummary:
        """Prepare a restored PostgreSQL data folder for point-in-time recovery: the backup
        label kept with the point, the WAL of the VM's log backup job, the settings. Checked
        at once, then done by a restore session."""
        return restore_session.start_postgres(
            state.sessions.start,
            reg.restores.check_postgres(body.point, body.data_dir, body.until))
