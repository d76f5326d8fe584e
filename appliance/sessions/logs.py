"""A log backup session: one collection of a guest's log files (appliance.jobs.log_backup),
after the job's command, with PostgreSQL's archiving checked; one task."""

from __future__ import annotations

import shlex
import time

from appliance import api
from appliance.errors import VmkeepError
from appliance.guest.postgres import archiving_trouble
from appliance.guest.scripts import Guest
from appliance.jobs.log_backup import collect_logs
from appliance.sessions.core import SessionRun


def run_logs(run: SessionRun, spec: api.JobSpec) -> None:
    """Collect the new log files of ``spec.logs`` from the guest into the repository."""
    reg = run.registry
    assert spec.logs is not None and spec.guest is not None
    logs = spec.logs
    task = run.task(f"{logs.vm} logs", logs.vm)
    task.state, task.stage, task.started = "running", "collecting", time.monotonic()
    run.notify()

    def log(level: str, message: str) -> None:
        run.log(api.as_log_level(level), f"{logs.vm}: {message}")

    info = reg.repositories.get(spec.repository)
    try:
        with Guest(*reg.jobs.guest_login(spec.name, spec.guest)) as guest, \
                reg.repositories.open(info) as repo:
            if logs.command:
                status, out, err = guest.exec(logs.command, timeout=3600)
                for line in (out + err).splitlines():
                    run.log("info", line)
                if status != 0:
                    raise VmkeepError(f"the log backup command exited {status}; nothing "
                                      "was collected")
            if spec.guest.postgres:
                trouble = archiving_trouble(guest, spec.guest.postgres)
                if trouble:
                    log("warning", trouble)
                    task.result = "warning"
            with reg.workspace(repo, info.name, exclusive=False,
                               operation=f"logs {logs.vm}") as ws:
                got = collect_logs(guest, logs.folder, logs.pattern, ws, logs.vm,
                                   settle_seconds=logs.settle_seconds, log=log)
        if not got.stored:
            log("info", f"no new log files in {shlex.quote(logs.folder)}")
        task.result, task.point_id = task.result or "success", got.point_id
    except VmkeepError as exc:
        task.result = "failed"
        log("error", f"{exc}; nothing was removed from the guest that is not stored")
    task.state, task.stage = "ended", None
    run.save(force=True)
