"""A restore session: a VM or a disk of a restore point restored in the background, after the
request was checked at once (``service/restores.py``: what it refuses is the request's error,
as before restores were sessions).

The session is named for what it restores (its ``job``): ``restore VM`` for an entire VM,
``restore VM disk N`` for a disk to a file, ``restore VM postgres`` for a PostgreSQL data
folder. Its tasks: the VM (the sum of its disks) and one per disk (``VM · disk N``), each
with its bytes done and total, rate and ETA (PostgreSQL's: one task, ``VM · WAL``, the WAL
files' bytes); its log says what is restored where, with human sizes; its outcome
(``api.SessionOutcome``) says what was restored, or the error with its code and exit code,
so ``vmkeep restore`` exits as it did.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from appliance import api
from appliance.errors import InternalError, VmkeepError
from appliance.faults import hold_point
from appliance.progress import human_bytes
from appliance.service.restores import CheckedDisk, CheckedPostgres, CheckedVm
from appliance.sessions.core import LiveTask, SessionRun

logger = logging.getLogger(__name__)

Start = Callable[[str, api.SessionKind, list[LiveTask], Callable[[SessionRun], None]],
                 api.SessionSummary]


def disk_task(vm: str, disk: int) -> str:
    """The name of a disk's task (as a backup session names it)."""
    return f"{vm} · disk {disk}"


def _tasks(vm: str, disks: tuple[tuple[int, int], ...]) -> list[LiveTask]:
    """The VM's task (the sum of its disks) and one per disk, waiting, their sizes known."""
    return [LiveTask(vm, vm, bytes_total=sum(size for _i, size in disks)),
            *(LiveTask(disk_task(vm, i), vm, i, bytes_total=size) for i, size in disks)]


def start_vm(start: Start, checked: CheckedVm) -> api.SessionSummary:
    """Start the session that restores the checked VM."""
    def work(run: SessionRun) -> None:
        for line in checked.lines:
            run.log("info", line)

        def log(level: str, message: str) -> None:
            run.log(api.as_log_level(level), message)

        what = f"VM {checked.target!r}" + (" (a new VM)" if checked.request.name else "")
        _restore(run, checked.vm,
                 lambda report: run.registry.restores.restore_vm(checked, log, report),
                 what=what)

    return start(f"restore {checked.vm}", "restore", _tasks(checked.vm, checked.disks), work)


def start_disk(start: Start, checked: CheckedDisk) -> api.SessionSummary:
    """Start the session that restores the checked disk to its file."""
    def work(run: SessionRun) -> None:
        c = checked
        run.log("info", f"restore disk {c.disk} ({human_bytes(c.size)}) of point "
                        f"{c.point_id} of VM {c.vm!r} from repository {c.repository!r} to "
                        f"{c.target}")
        _restore(run, c.vm, lambda report: run.registry.restores.restore_disk(
            c, lambda done, total: report(c.disk, done, total)), what=str(c.target))

    return start(f"restore {checked.vm} disk {checked.disk}", "restore",
                 _tasks(checked.vm, ((checked.disk, checked.size),)), work)


def start_postgres(start: Start, checked: CheckedPostgres) -> api.SessionSummary:
    """Start the session that makes the checked data folder ready for recovery."""
    name = f"{checked.vm} · WAL"

    def work(run: SessionRun) -> None:
        c = checked
        run.log("info", f"prepare PostgreSQL data folder {c.folder} for point-in-time "
                        f"recovery from point {c.point_id} of VM {c.vm!r}"
                        + (f" up to {c.until.isoformat()}" if c.until else "")
                        + f": the WAL of its log backup job from repository {c.repository!r}")
        _restore(run, name, lambda report: run.registry.restores.restore_postgres(
            c, lambda done, total: report(-1, done, total)), what=str(c.folder))

    return start(f"restore {checked.vm} postgres", "restore",
                 [LiveTask(name, checked.vm)], work)


def _restore(run: SessionRun, vm: str,
             restore: Callable[[Callable[[int, int, int], None]], str], *, what: str) -> None:
    """Run ``restore`` (given the disks' progress callback; it answers what was done) and
    end the tasks and the session's outcome by how it went. Task ``vm`` is the sum of the
    disks' tasks; without any, the progress (disk -1) is its own."""
    live = run.live
    tasks = [t for t in live.tasks.values() if t.disk is not None]
    vm_task = live.tasks[vm]
    now = time.monotonic()
    with live.lock:
        for t in (vm_task, *tasks):
            t.state, t.stage, t.started = "running", "writing", now
    run.save(force=True)
    run.notify()

    def report(disk: int, done: int, total: int) -> None:
        task = vm_task if not tasks else live.tasks.get(disk_task(vm, disk))
        if task is None:
            return
        with live.lock:
            task.bytes_done, task.bytes_total = done, total
            if tasks:
                vm_task.bytes_done = sum(t.bytes_done for t in tasks)
                vm_task.bytes_total = sum(t.bytes_total for t in tasks)
            if done >= total and task.state == "running" and task.disk is not None:
                task.state, task.stage, task.result = "ended", None, "success"
                task.finished = time.monotonic()
                finished = True
            else:
                finished = False
        if finished:
            run.log("info", f"disk {disk}: {human_bytes(total)} restored")
        run.notify()
        run.save()
        if 0 < done < total:
            hold_point("restore-progress", task.name)  # tests look at it mid-run here

    try:
        message = restore(report)
    except Exception as exc:  # a bug is the session's failure too, said as such
        if not isinstance(exc, VmkeepError):  # the traceback, for the bug report
            logger.exception("the restore of %s failed unexpectedly", what)
        error = exc if isinstance(exc, VmkeepError) else InternalError(
            f"the restore of {what} failed unexpectedly: {type(exc).__name__}: {exc}")
        run.log("error", f"the restore of {what} failed: {error}")
        _end(run, "failed")
        live.outcome = api.SessionOutcome(message=str(error), error=api.ErrorBody.of(error))
        return
    _end(run, "success")
    run.log("info", message)
    live.outcome = api.SessionOutcome(message=message)


def _end(run: SessionRun, result: api.Result) -> None:
    """Every task that has not ended ends with ``result`` (a disk already written keeps its
    success when a later one fails); the VM's ends with ``result``."""
    live = run.live
    with live.lock:
        for t in live.tasks.values():
            if t.disk is None or t.result is None:
                t.state, t.stage, t.result = "ended", None, result
                t.finished = time.monotonic()
            if t.disk is not None and result == "success":
                t.bytes_done = t.bytes_total
        vm = next((t for t in live.tasks.values() if t.disk is None), None)
        disks = [t for t in live.tasks.values() if t.disk is not None]
        if vm is not None and disks:
            vm.bytes_done = sum(t.bytes_done for t in disks)
        elif vm is not None and result == "success":
            vm.bytes_done = vm.bytes_total
