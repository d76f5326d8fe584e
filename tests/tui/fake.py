"""A fake appliance client for the TUI tests and the benchmark.

It has the same methods, with the same signatures, as ``appliance.client.ApplianceClient``
(test_fake.py compares them) and starts from replies recorded from a real appliance
(recorded.json, see record.py), so what it answers has the real shapes. It records every
call in ``calls``; a backup it runs advances one step per look at the session.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from appliance import api
from appliance.alerts import session_alerts
from appliance.client import _error_of as error_of
from appliance.errors import (
    ApplianceNotRunningError,
    BadInputError,
    NotFoundError,
    RemoteError,
    VmkeepError,
)
from appliance.jobs.schedule import next_run
from appliance.service.jobs import schedule_of
from tests.tui.record import load

M = TypeVar("M", bound=BaseModel)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _models(model: type[M], items: list[Any]) -> list[M]:
    return [model.model_validate(x) for x in items]


def _scheduled(job: api.Job) -> api.Job:
    """The job with its next run as the appliance gives it: the schedule's first start after
    NOW (the fake's clock), none when disabled."""
    due = next_run(schedule_of(job.spec.schedule), NOW) if job.enabled else None
    return job.model_copy(update={"next_run": due})


def _stats(tasks: list[api.Task]) -> api.SessionStats:
    """A finished fake backup's summary: 4 s a VM, a fifth of what was read new, stored
    compressed to a third; mostly waiting on the source."""
    vms = [t for t in tasks if t.disk is None]
    read = sum(t.bytes_total for t in vms)
    shares = {"source read": 0.72, "hashing/compression": 0.18, "repository write": 0.10}
    return api.SessionStats(
        duration_seconds=4.0 * len(vms) + 1, rate=read / (4.0 * len(vms) + 1),
        processed=2 * read, read=read, new=read // 5, transferred=read // 15,
        dedup_ratio=5.0, compression_ratio=3.0, bottleneck="source read",
        stages=[api.StageShare(stage=k, seconds=10 * v, share=v) for k, v in shares.items()],
        vms=[api.VmStats(vm=t.name, duration_seconds=4.0, processed=2 * t.bytes_total,
                         read=t.bytes_total, transferred=t.bytes_total // 15,
                         bottleneck="source read") for t in vms])


class FakeClient:
    """An appliance in memory, started from the recorded replies."""

    def __init__(self, socket_path: str | os.PathLike[str] = "/fake/appliance.sock", *,
                 timeout: float = 30.0) -> None:
        self.socket_path = Path(socket_path)
        self.recorded = load()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.down = False  # True: no appliance answers
        self.delay = 0.0  # seconds every call takes
        self.steps = 5  # looks at a running session until its backup ends
        self.advancing = True  # False: running sessions stay where they are
        self.no_events = False  # True: as an appliance without the event stream
        self.scramble = False  # True: every recorded error's message is random text
        self.lock = threading.Lock()
        self._vcenters = _models(api.VCenter, self.recorded["vcenters"])
        self._repositories = [r.model_copy(update={"location": f"/srv/vmkeep/{r.name}"})
                              for r in _models(api.Repository, self.recorded["repositories"])]
        self._jobs: dict[str, api.Job] = {j.spec.name: j for j in
                                          _models(api.Job, self.recorded["jobs"])}
        last = api.Session.model_validate(self.recorded["session"])
        self._sessions: dict[str, api.Session] = {}
        for s in _models(api.SessionSummary, self.recorded["sessions"]):
            self._sessions[s.id] = last.model_copy(update=s.model_dump())
        # The job of each point, as the appliance names it (the recorded points predate it):
        # the session's that made it, else the job of its VM into its repository.
        made_by = {t.point_id: s.job for s in self._sessions.values() for t in s.tasks
                   if t.point_id}
        backs = {(v.name, j.spec.repository): j.spec.name for j in self._jobs.values()
                 for v in j.spec.vms}
        self._points = [p.model_copy(update={"job": made_by.get(
                            p.id, backs.get((p.vm, p.repository)))})
                        for p in _models(api.Point, self.recorded["points"])]
        self._inventory = _models(api.InventoryVm, self.recorded["inventory"])
        self._progress: dict[str, int] = {}
        self._outcomes: dict[str, str] = {}  # a restore session's message once it ends
        self._alerts: list[api.Alert] = []  # add_recorded_alerts() brings the recorded ones
        self._counter = 0

    # -- what the tests set up --------------------------------------------------------------

    @classmethod
    def big(cls, vms: int = 200, points: int = 2000) -> FakeClient:
        """Many VMs (one job each ten) and many points, for the benchmark."""
        fake = cls()
        proto_vm, proto_point = fake._inventory[0], fake._points[-1]
        fake._inventory = [proto_vm.model_copy(update={
            "name": f"vm{i:03d}", "instance_uuid": f"uuid-{i:03d}", "host": f"host{i % 8}",
            "jobs": [f"job{i // 10:02d}"]}) for i in range(vms)]
        job = next(iter(fake._jobs.values()))
        fake._jobs = {}
        for j in range(max(1, vms // 10)):
            name = f"job{j:02d}"
            fake._jobs[name] = job.model_copy(update={"spec": job.spec.model_copy(update={
                "name": name, "vms": [api.JobVm(name=f"vm{i:03d}", instance_uuid=f"uuid-{i:03d}")
                                      for i in range(j * 10, min(vms, j * 10 + 10))]})})
        fake._points = [proto_point.model_copy(update={
            "id": f"20261101T000000Z-{n:08x}", "vm": f"vm{n % vms:03d}",
            "created": NOW - timedelta(hours=points - n),
            "kind": "full" if n < vms else "incremental"}) for n in range(points)]
        return fake

    @classmethod
    def empty(cls, *, vcenters: bool = False) -> FakeClient:
        """A fresh appliance: no repository, job, session or point; no vCenter (``vcenters``:
        the recorded ones, holding no VM)."""
        fake = cls()
        if not vcenters:
            fake._vcenters = []
        fake._repositories, fake._jobs, fake._sessions = [], {}, {}
        fake._points, fake._inventory = [], []
        return fake

    def _call(self, method: str, /, **args: Any) -> None:
        with self.lock:
            self.calls.append((method, args))
        if self.delay:
            time.sleep(self.delay)
        if self.down:
            raise ApplianceNotRunningError(
                f"no appliance answers on {self.socket_path} (connection refused); start it "
                "with `vmkeep appliance start` (and check VMKEEP_HOME / VMKEEP_SOCKET)")

    def _recorded_error(self, key: str, *, exit_code: int) -> VmkeepError:
        """A recorded refusal as the real client raises it: its ``ErrorBody`` through the
        client's own error mapping (``scramble``: with a random message)."""
        err = self.recorded["errors"][key]
        message = secrets.token_urlsafe(24) if self.scramble else err["message"]
        body = {"code": err["code"], "message": message, "exit_code": exit_code,
                "detail": err["detail"]}
        return error_of(httpx.Response(400, json=body))

    def called(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [args for n, args in self.calls if n == name]

    def start_backup(self, job: str, *, full: bool = False) -> api.SessionSummary:
        """A running session of ``job`` whose VMs advance each time it is looked at."""
        spec = self._jobs[job].spec
        self._counter += 1
        sid = f"20261201T12{self._counter:04d}Z-fake{self._counter:02d}"
        tasks = []
        for vm in spec.vms:
            tasks.append(api.Task(name=vm.name, state="running", result=None, bytes_done=0,
                                  bytes_total=160 << 20, rate=0.0, eta_seconds=None,
                                  stage="snapshot", point_id=None))
            tasks.append(api.Task(name=f"{vm.name} · disk 0", vm=vm.name, disk=0,
                                  state="running", result=None, bytes_done=0,
                                  bytes_total=160 << 20, rate=0.0, eta_seconds=None,
                                  stage="source read", point_id=None))
        log = [api.LogLine(time=NOW, level="info",
                           message=f"job '{job}': {len(tasks)} VM(s) to repository "
                                   f"'{spec.repository}'")]
        self._sessions[sid] = api.Session(id=sid, job=job, kind="backup",
                                          state="running", result=None, started=NOW,
                                          ended=None, tasks=tasks, log=log)
        self._progress[sid] = 0
        return self._summary(self._sessions[sid])

    def start_restore(self, vm: str, job: str, message: str) -> api.SessionSummary:
        """A running restore session of ``vm``'s disk 0 (as the appliance names it: ``job``)
        that advances as a backup does and ends with ``message`` as its outcome."""
        self._counter += 1
        sid = f"20261201T12{self._counter:04d}Z-fake{self._counter:02d}"
        size = 160 << 20
        tasks = [api.Task(name=vm, vm=vm, state="running", result=None, bytes_done=0,
                          bytes_total=size, rate=0.0, eta_seconds=None, stage="writing",
                          point_id=None),
                 api.Task(name=f"{vm} · disk 0", vm=vm, disk=0, state="running", result=None,
                          bytes_done=0, bytes_total=size, rate=0.0, eta_seconds=None,
                          stage="writing", point_id=None)]
        log = [api.LogLine(time=NOW, level="info", message=f"{job}: 1 disk, 160.0 MiB")]
        self._sessions[sid] = api.Session(id=sid, job=job, kind="restore", state="running",
                                          result=None, started=NOW, ended=None, tasks=tasks,
                                          log=log)
        self._progress[sid] = 0
        self._outcomes[sid] = message
        return self._summary(self._sessions[sid])

    def _summary(self, s: api.Session) -> api.SessionSummary:
        return api.SessionSummary(id=s.id, job=s.job, kind=s.kind, state=s.state,
                                  result=s.result, started=s.started, ended=s.ended)

    def add_recorded_alerts(self) -> None:
        """The alerts the real appliance had (a repository short of space)."""
        self._alerts = _models(api.Alert, self.recorded["alerts"])

    def running_backup(self, job: str = "nightly", *, steps: int = 5, at: int = 2) -> str:
        """A session of ``job`` frozen at step ``at`` of ``steps`` (for pictures)."""
        sid = self.start_backup(job).id
        self.steps = steps
        for _ in range(at):
            self._advance(sid)
        self.advancing = False
        return sid

    def _advance(self, sid: str) -> None:
        s = self._sessions[sid]
        if s.state != "running":
            return
        step = self._progress[sid] = self._progress[sid] + 1
        done = step >= self.steps
        tasks, log = [], list(s.log)
        for t in s.tasks:
            nbytes = t.bytes_total * min(step, self.steps) // self.steps
            point = None
            if t.disk is not None:
                tasks.append(t.model_copy(update={
                    "bytes_done": nbytes, "rate": 40 << 20,
                    "stage": None if done else "source read",
                    "eta_seconds": None if done else float(self.steps - step),
                    "state": "ended" if done else "running",
                    "result": "success" if done else None}))
                continue
            if done and s.kind != "restore":
                point = f"20261201T1201{len(self._points):02d}Z-{step:08x}"
                self._points.append(self._points[-1].model_copy(update={
                    "id": point, "vm": t.name, "created": NOW, "kind": "full",
                    "bytes_read": t.bytes_total, "job": s.job}))
                log.append(api.LogLine(time=NOW, level="info",
                                       message=f"{t.name}: point {point}, status success"))
            tasks.append(t.model_copy(update={
                "bytes_done": nbytes, "rate": 40 << 20, "stage": None if done else "reading",
                "eta_seconds": None if done else float(self.steps - step),
                "state": "ended" if done else "running",
                "result": "success" if done else None, "point_id": point}))
        if step == 2 and s.kind != "restore":
            log.append(api.LogLine(time=NOW, level="warning",
                                   message="CBT is off on a disk: reading it all"))
        if done:
            log.append(api.LogLine(time=NOW, level="info", message="session ended: success"))
        restore = s.kind == "restore"
        outcome = api.SessionOutcome(message=self._outcomes[sid]) if restore and done else None
        self._sessions[sid] = s.model_copy(update={
            "tasks": tasks, "log": log, "state": "ended" if done else "running",
            "result": "success" if done else None, "ended": NOW if done else None,
            "stats": _stats(tasks) if done and not restore else None, "outcome": outcome})
        if done and not restore:
            j = self._jobs[s.job]
            self._jobs[s.job] = j.model_copy(update={
                "last_session": self._summary(self._sessions[sid])})

    # -- ApplianceClient's interface -------------------------------------------------------

    def close(self) -> None:
        self._call("close")

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def handshake(self) -> api.Handshake:
        self._call("handshake")
        return api.Handshake.model_validate(self.recorded["handshake"])

    def shutdown(self) -> api.Accepted:
        self._call("shutdown")
        return api.Accepted(message="the appliance stops")

    def vcenters(self) -> list[api.VCenter]:
        self._call("vcenters")
        return list(self._vcenters)

    def add_vcenter(self, spec: api.VCenterAdd) -> api.VCenter:
        self._call("add_vcenter", spec=spec)
        if spec.fingerprint is None and not spec.insecure:
            raise self._recorded_error("add_vcenter_unpinned", exit_code=12)
        vc = api.VCenter(name=spec.name, host=spec.host, port=spec.port, user=spec.user,
                         fingerprint=spec.fingerprint, insecure=spec.insecure, added=NOW)
        self._vcenters.append(vc)
        return vc

    def edit_vcenter(self, name: str, spec: api.VCenterEdit) -> api.VCenter:
        self._call("edit_vcenter", name=name, spec=spec)
        return self._vcenter(name)

    def _vcenter(self, name: str) -> api.VCenter:
        for v in self._vcenters:
            if v.name == name:
                return v
        raise NotFoundError(f"no vCenter named {name!r}")

    def test_vcenter(self, name: str) -> api.VCenterTest:
        self._call("test_vcenter", name=name)
        self._vcenter(name)
        return api.VCenterTest.model_validate({**self.recorded["test_vcenter"], "name": name})

    def check_vcenter(self, name: str) -> api.VCenterCheck:
        """The fake's account holds every privilege."""
        self._call("check_vcenter", name=name)
        self._vcenter(name)
        return api.VCenterCheck(name=name, user="backup@vsphere.local", entity="group-d1",
                                ok=True, purposes=[
                                    api.VCenterPurposeCheck(purpose=p, ok=True, required=[],
                                                            missing=[])
                                    for p in ("backup", "restore", "hunter")])

    def remove_vcenter(self, name: str) -> api.Done:
        self._call("remove_vcenter", name=name)
        self._vcenters = [v for v in self._vcenters if v.name != name]
        return api.Done(message=f"vCenter {name} removed")

    def jobs(self) -> list[api.Job]:
        self._call("jobs")
        return [_scheduled(j) for j in self._jobs.values()]

    def job(self, name: str) -> api.Job:
        self._call("job", name=name)
        if name not in self._jobs:
            raise NotFoundError(f"no job named {name!r}")
        return _scheduled(self._jobs[name])

    def check_job(self, name: str) -> api.JobCheck:
        """Every disk of the job's VMs readable (the fake's datastores are all VMFS)."""
        self._call("check_job", name=name)
        by_uuid = {vm.instance_uuid: vm for vm in self._inventory}
        vms = []
        for v in self.job(name).spec.vms:
            inv = by_uuid.get(v.instance_uuid)
            disks = [api.DiskCheck(index=d.index, file_name=d.file_name,
                                   datastore=d.file_name[1:].partition("]")[0],
                                   datastore_type="VMFS", status="readable", reason="")
                     for d in (inv.disks if inv else [])]
            vms.append(api.VmCheck(name=v.name, instance_uuid=v.instance_uuid, status="ok",
                                   reason="", disks=disks))
        return api.JobCheck(job=name, result="ok", vms=vms)

    def create_job(self, spec: api.JobCreate) -> api.Job:
        self._call("create_job", spec=spec)
        if spec.name in self._jobs:
            raise RemoteError(f"a job named {spec.name!r} exists already", code="usage",
                              exit_code=2)
        by_name = {vm.name: vm for vm in self._inventory}
        missing = [v for v in spec.vms if v not in by_name]
        if missing:
            raise NotFoundError(f"no VM named {missing[0]!r} in vCenter {spec.vcenter!r}")
        fields = spec.model_dump(exclude={"vms"})
        job = api.Job(spec=api.JobSpec(**fields, vms=[
            api.JobVm(name=v, instance_uuid=by_name[v].instance_uuid) for v in spec.vms]),
            enabled=True, created=NOW, last_session=None)
        self._jobs[spec.name] = job
        return job

    def edit_job(self, name: str, changes: api.JobEdit) -> api.Job:
        self._call("edit_job", name=name, changes=changes)
        job = self.job(name)
        update = changes.model_dump(exclude_unset=True)
        if "vms" in update:
            by_name = {vm.name: vm for vm in self._inventory}
            update["vms"] = [api.JobVm(name=v, instance_uuid=by_name[v].instance_uuid)
                             for v in update["vms"]]
        if "schedule" in update:
            update["schedule"] = changes.schedule
        if "guest" in update:  # kept as the appliance keeps it: its login apart
            update["guest"] = None if changes.guest is None else api.GuestSpec(
                **changes.guest.model_dump(exclude={"key", "password"}))
        job = self._jobs[name] = job.model_copy(update={
            "spec": job.spec.model_copy(update=update)})
        return job

    def delete_job(self, name: str) -> api.Done:
        self._call("delete_job", name=name)
        self.job(name)
        del self._jobs[name]
        return api.Done(message=f"job {name} deleted")

    def set_job_enabled(self, name: str, enabled: bool) -> api.Job:
        self._call("set_job_enabled", name=name, enabled=enabled)
        job = self._jobs[name] = self.job(name).model_copy(update={"enabled": enabled})
        return job

    def run_job(self, name: str, *, full: bool = False) -> api.SessionSummary:
        self._call("run_job", name=name, full=full)
        self.job(name)
        return self.start_backup(name, full=full)

    def stop_job(self, name: str) -> api.Done:
        self._call("stop_job", name=name)
        for sid, s in self._sessions.items():
            if s.job == name and s.state == "running":
                self._sessions[sid] = s.model_copy(update={"state": "stopped",
                                                           "result": "failed", "ended": NOW})
        return api.Done(message=f"job {name} stops")

    def sessions(self, kind: api.SessionKind | None = None) -> list[api.SessionSummary]:
        self._call("sessions", kind=kind)
        return [self._summary(s) for s in self._sessions.values()
                if kind is None or s.kind == kind]

    def session(self, session_id: str, *, wait: float = 0.0) -> api.Session:
        self._call("session", session_id=session_id, wait=wait)
        if session_id not in self._sessions:
            raise NotFoundError(f"no session {session_id!r}")
        with self.lock:
            if self.advancing:
                self._advance(session_id)
            return self._sessions[session_id]

    def points(self, vm: str | None = None) -> list[api.Point]:
        self._call("points", vm=vm)
        return [p for p in self._points if vm is None or p.vm == vm]

    def config_backup(self, repository: str, password: str) -> api.ConfigBackupDone:
        self._call("config_backup", repository=repository)
        return api.ConfigBackupDone(path=f"/{repository}/appliance-config/latest")

    def config_restore(self, path: str, password: str | None) -> api.ConfigRestored:
        self._call("config_restore", path=path)
        return api.ConfigRestored(vcenters=0, repositories=0, jobs=0, secrets=0)

    def notifications(self) -> api.Notifications:
        self._call("notifications")
        return api.Notifications.model_validate(self.recorded["notifications"])

    def set_notifications(self, value: api.Notifications) -> api.Notifications:
        self._call("set_notifications", value=value)
        return value

    def hunter(self, *, vcenter: str | None = None, dry_run: bool = True,
               include_foreign: bool = False) -> list[api.HuntReport]:
        self._call("hunter", vcenter=vcenter, dry_run=dry_run)
        return _models(api.HuntReport, self.recorded["hunter"])

    def inventory(self, vcenter: str | None = None) -> list[api.InventoryVm]:
        self._call("inventory", vcenter=vcenter)
        return [v for v in self._inventory if vcenter is None or v.vcenter == vcenter]

    def alerts(self) -> list[api.Alert]:
        """As the appliance: its jobs' last sessions' (appliance.alerts.session_alerts, the
        appliance's own rule) and those set up."""
        self._call("alerts")
        last = [self._sessions.get(j.last_session.id)
                or api.Session(**j.last_session.model_dump(), tasks=[], log=[])
                for j in self._jobs.values() if j.last_session is not None]
        return [a.wire(NOW) for a in session_alerts(last)] + list(self._alerts)

    def containers(self, vcenter: str | None = None) -> list[api.InventoryContainer]:
        self._call("containers", vcenter=vcenter)
        return [c for c in _models(api.InventoryContainer, self.recorded["containers"])
                if vcenter is None or c.vcenter == vcenter]

    def events(self, session_id: str) -> Iterator[api.SessionEvent]:
        self._call("events", session_id=session_id)
        if self.no_events:
            raise RemoteError("no route /v1/sessions/{id}/events", code="not_found",
                              exit_code=NotFoundError.exit_code)
        seen = 0
        while True:
            s = self.session(session_id, wait=1.0)
            for line in s.log[seen:]:
                yield api.SessionEvent(event="log", line=line)
            seen = len(s.log)
            yield api.SessionEvent(event="tasks", tasks=s.tasks)
            if s.state != "running":
                yield api.SessionEvent(event="end", summary=self._summary(s))
                return

    def config_schedule(self) -> api.ConfigScheduleView:
        self._call("config_schedule")
        return api.ConfigScheduleView(repository=None, schedule=api.ScheduleSpec(),
                                      last_backup=None, last_result=None, last_message=None)

    def set_config_schedule(self, value: api.ConfigSchedule) -> api.ConfigScheduleView:
        self._call("set_config_schedule", value=value)
        return api.ConfigScheduleView(repository=value.repository, schedule=value.schedule,
                                      last_backup=None, last_result=None, last_message=None)

    def verify(self, repository: str, point: str | None = None) -> api.VerifyAnswer:
        self._call("verify", repository=repository, point=point)
        return api.VerifyAnswer.model_validate(self.recorded["verify"])

    def prune(self, request: api.PruneRequest) -> api.PruneAnswer:
        self._call("prune", request=request)
        return api.PruneAnswer(lines=[], removed=[])

    def move(self, request: api.MoveRequest) -> api.MoveAnswer:
        self._call("move", request=request)
        return api.MoveAnswer(moved=0, lines=[])

    def restore_vm(self, request: api.VmRestore) -> api.SessionSummary:
        self._call("restore_vm", request=request)
        if request.name is None and not request.confirm:
            raise self._recorded_error("restore_vm_original", exit_code=2)
        vm = next(p.vm for p in self._points if p.id == request.point)
        return self.start_restore(vm, f"restore {vm}", f"restored point {request.point} to VM "
                                  f"{request.name or vm!r}: 1 disk(s), 160.0 MiB written")

    def plan_restore_vm(self, request: api.VmRestore) -> api.VmRestorePlan:
        """The original VM's plan is the recorded refusal's; a new VM's placement is where the
        point's VM runs in the recorded inventory (each name given replaces its own)."""
        self._call("plan_restore_vm", request=request)
        point = next(p for p in self._points if p.id == request.point)
        if not request.name:
            detail = self.recorded["errors"]["restore_vm_original"]["detail"]
            return api.VmRestorePlan(mode="original", target=point.vm,
                                     lines=list(detail["plan"]), placement=None)
        vm = next(v for v in self._inventory if v.name == point.vm)
        names = {"datacenter": vm.datacenter, "host": vm.host, "resource_pool": "Resources",
                 "datastore": vm.disks[0].file_name[1:].split("]")[0] if vm.disks else "",
                 "folder": "vm"}
        given = {k: getattr(request, k) for k in names if getattr(request, k)}
        placement = api.VmPlacement(**{**names, **given},
                                    as_original=[k.replace("_", " ") for k in names
                                                 if k not in given],
                                    networks={"VM Network": request.networks.get(
                                        "VM Network", "VM Network")})
        return api.VmRestorePlan(
            mode="new", target=request.name, placement=placement,
            lines=[f"restore point {point.id} of VM {point.vm!r} to a new VM "
                   f"{request.name!r}:",
                   f"  placed on host {placement.host!r}, resource pool "
                   f"{placement.resource_pool!r}, datastore {placement.datastore!r}, folder "
                   f"{placement.folder!r} in datacenter {placement.datacenter!r}"])

    def restore_disk(self, point: str, disk: int, to: str) -> api.SessionSummary:
        self._call("restore_disk", point=point, disk=disk, to=to)
        vm = next(p.vm for p in self._points if p.id == point)
        return self.start_restore(vm, f"restore {vm} disk {disk}",
                                  f"restored disk {disk} of {point} to {to} (160.0 MiB)")

    def restore_postgres(self, request: api.PostgresRestore) -> api.SessionSummary:
        self._call("restore_postgres", point=request.point, data_dir=request.data_dir)
        vm = next(p.vm for p in self._points if p.id == request.point)
        return self.start_restore(vm, f"restore {vm} postgres",
                                  f"{request.data_dir} prepared from {request.point}")

    def query(self, sql: str, *, max_rows: int = 1000, timeout: float = 10.0
              ) -> api.QueryAnswer:
        self._call("query", sql=sql)
        first = sql.split(None, 1)[0].upper() if sql.split() else ""
        if first not in ("SELECT", "WITH"):
            err = self.recorded["errors"]["query_write"]
            raise RemoteError(err["message"].replace("DELETE", first), code=err["code"],
                              exit_code=BadInputError.exit_code)
        answer = self.recorded["queries"].get(sql)
        if answer is not None:
            return api.QueryAnswer.model_validate(answer)
        return api.QueryAnswer(columns=["answer"], rows=[[42]], truncated=False, seconds=0.001)

    def repositories(self) -> list[api.Repository]:
        self._call("repositories")
        return list(self._repositories)

    def add_repository(self, name: str, path: str, *, ssh_key: str | None = None,
                       ssh_password: str | None = None,
                       host_key_fingerprint: str | None = None,
                       encryption_password: str | None = None,
                       reconnect_every: float | None = None,
                       reconnect_for: float | None = None) -> api.Repository:
        self._call("add_repository", name=name, path=path)
        if any(r.name == name for r in self._repositories):
            raise RemoteError(f"a repository named {name!r} exists already", code="usage",
                              exit_code=2)
        repo = self._repositories[0].model_copy(update={"name": name, "location": path,
                                                        "points": 0, "stored_bytes": 0})
        self._repositories.append(repo)
        return repo

    def edit_repository(self, name: str, changes: api.RepositoryEdit) -> api.Repository:
        self._call("edit_repository", name=name, changes=changes)
        return self.rescan_repository(name)

    def rescan_repository(self, name: str) -> api.Repository:
        self._call("rescan_repository", name=name)
        for r in self._repositories:
            if r.name == name:
                return r
        raise NotFoundError(f"no repository named {name!r}")

    def repair_repository_key(self, name: str) -> api.Done:
        self._call("repair_repository_key", name=name)
        if not any(r.name == name for r in self._repositories):
            raise NotFoundError(f"no repository named {name!r}")
        return api.Done(message=f"the block-id key of repository {name} is intact")

    def harden_repository(self, name: str, days: int | None,
                          epoch_days: int | None = None) -> api.Repository:
        self._call("harden_repository", name=name, days=days, epoch_days=epoch_days)
        return self.rescan_repository(name)

    def audit_repository(self, name: str) -> api.AuditAnswer:
        self._call("audit_repository", name=name)
        return api.AuditAnswer(ok=True, lines=[])

    def remove_repository(self, name: str) -> api.Done:
        self._call("remove_repository", name=name)
        self._repositories = [r for r in self._repositories if r.name != name]
        return api.Done(message=f"repository {name} removed")


__all__ = ["NOW", "FakeClient", "VmkeepError"]
