"""Routes of the jobs: create, list, edit, check, enable or disable, run and stop, delete."""

from __future__ import annotations

from fastapi import FastAPI

from appliance import api
from appliance.server.responses import ERRORS
from appliance.server.state import ApplianceState


def add_routes(app: FastAPI, state: ApplianceState) -> None:
    reg = state.registry
    mgr = state.sessions
    v = api.PREFIX

    def job_view(name: str) -> api.Job:
        row = reg.jobs.get(name)
        return api.Job(spec=row.spec,
                       enabled=row.enabled, created=row.created,
                       last_session=mgr.last_session(name), next_run=state.next_run(row))

    @app.get(f"{v}/jobs", response_model=list[api.Job], responses=ERRORS)
    def list_jobs() -> list[api.Job]:
        return [job_view(j.name) for j in reg.jobs.all()]

    @app.post(f"{v}/jobs", response_model=api.Job, status_code=201, responses=ERRORS)
    def create_job(body: api.JobCreate) -> api.Job:
        """Check the names and resolve the VMs to instance UUIDs (a login to the vCenter)."""
        return job_view(reg.jobs.add(body).name)

    @app.get(f"{v}/jobs/{{name}}", response_model=api.Job, responses=ERRORS)
    def get_job(name: str) -> api.Job:
        return job_view(name)

    @app.patch(f"{v}/jobs/{{name}}", response_model=api.Job, responses=ERRORS)
    def edit_job(name: str, body: api.JobEdit) -> api.Job:
        """Change what the body gives; VMs given are resolved again."""
        return job_view(reg.jobs.edit(name, body).name)

    @app.get(f"{v}/jobs/{{name}}/check", response_model=api.JobCheck, responses=ERRORS)
    def check_job(name: str) -> api.JobCheck:
        """What the next run will do with each VM and disk: read, refuse (the VM fails
        before its snapshot), skip with a warning, or leave out (reads the inventory only)."""
        return reg.jobs.check(name)

    @app.delete(f"{v}/jobs/{{name}}", response_model=api.Done, responses=ERRORS)
    def delete_job(name: str) -> api.Done:
        reg.jobs.remove(name)
        return api.Done(message=f"deleted job {name!r}; its restore points stay")

    @app.post(f"{v}/jobs/{{name}}/enable", response_model=api.Job, responses=ERRORS)
    def enable_job(name: str) -> api.Job:
        reg.jobs.set_enabled(name, True)
        return job_view(name)

    @app.post(f"{v}/jobs/{{name}}/disable", response_model=api.Job, responses=ERRORS)
    def disable_job(name: str) -> api.Job:
        reg.jobs.set_enabled(name, False)
        return job_view(name)

    @app.post(f"{v}/jobs/{{name}}/run", response_model=api.SessionSummary, status_code=202,
              responses=ERRORS)
    def run_job(name: str, body: api.JobRun) -> api.SessionSummary:
        """Start a session now; follow it with ``GET /v1/sessions/{id}``."""
        return mgr.run_job(name, full=body.full)

    @app.post(f"{v}/jobs/{{name}}/stop", response_model=api.Done, responses=ERRORS)
    def stop_job(name: str) -> api.Done:
        ids = mgr.stop_job(name)
        return api.Done(message=f"stopping session(s) {', '.join(ids)} of job {name!r}")
