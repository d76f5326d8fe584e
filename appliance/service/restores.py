"""Restore points and restores: a disk to a file, an entire VM to vCenter, and a PostgreSQL
data folder made ready for point-in-time recovery from a log backup job's WAL files.

Each restore comes in two steps, so that it can run as a session (sessions/restore.py):
``check_disk`` / ``check_vm`` / ``check_postgres`` refuse what can be refused at once (bad
input, an existing target, a point that does not restore, an overwrite not confirmed) and
answer what will be restored; ``restore_disk`` / ``restore_vm`` / ``restore_postgres`` then
do it, reporting each disk's progress, and answer what was done."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from appliance import api
from appliance.errors import ConfirmDetail, NotFoundError, UsageError
from appliance.faults import hold_point
from appliance.jobs import vm_restore
from appliance.jobs.log_backup import logs_object
from appliance.jobs.restore import check_target, restore_disk
from appliance.jobs.workspace import Workspace
from appliance.progress import human_bytes
from appliance.service.job_definition import parse_job
from appliance.service.repositories import RepositoryService
from appliance.service.state import State
from appliance.service.vcenters import VCenterService
from appliance.vsphere import restore_target as rt
from appliance.vsphere.disk_access import write_refusal
from appliance.vsphere.session import VSphereSession
from catalog.models import DiskRow, PointRow

LogFn = Callable[[str, str], None]  # (level, message)
DiskProgressFn = vm_restore.DiskProgressFn  # (disk index, bytes of it done, its size)


@dataclass(frozen=True, slots=True)
class CheckedDisk:
    """A disk restore that passed ``check_disk``: disk ``disk`` (``size`` bytes) of point
    ``point_id`` of VM ``vm`` in repository ``repository``, to the new file ``target``."""

    point_id: str
    vm: str
    repository: str
    disk: int
    size: int
    target: Path


@dataclass(frozen=True, slots=True)
class CheckedVm:
    """A VM restore that passed ``check_vm``: the request, the point's VM, the VM written
    (the new one's name or the original's), the point's disks (index, size) and the plan's
    lines (over the original: what was confirmed)."""

    request: api.VmRestore
    vm: str
    target: str
    disks: tuple[tuple[int, int], ...]
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CheckedPostgres:
    """A PostgreSQL restore that passed ``check_postgres``: point ``point_id`` of VM ``vm``
    in repository ``repository`` (its base backup's label and tablespace map), into the data
    folder ``folder``, replayed up to ``until`` (None: everything stored)."""

    point_id: str
    vm: str
    repository: str
    folder: Path
    label: str
    tablespace_map: str
    until: datetime | None


class RestoreService:
    def __init__(self, state: State, vcenters: VCenterService,
                 repositories: RepositoryService) -> None:
        self._state = state
        self._vcenters = vcenters
        self._repositories = repositories

    def points(self, vm: str | None = None) -> list[tuple[str, PointRow, list[DiskRow]]]:
        """(repository name, point, its disks) of every repository, oldest first."""
        with self._state.catalog() as cat:
            names = {r.repo_id: r.name for r in cat.repository_names()}
            out = [(names[p.repo_id], p, cat.disks(p.point_id))
                   for p in cat.points(None, vm) if p.repo_id in names]
        return sorted(out, key=lambda t: (t[1].created, t[1].point_id))

    def guest_processing(self) -> dict[str, dict[str, object]]:
        """Per point: the guest processing its backup recorded (quiesced, scripts)."""
        with self._state.catalog() as cat:
            return cat.guest_processing()

    def point_jobs(self) -> dict[str, str]:
        """Per point: the job whose session made it."""
        with self._state.catalog() as cat:
            return cat.point_jobs()

    def _point(self, point_id: str, hint: str) -> tuple[PointRow, str]:
        """The point and the name of its repository (NotFoundError, ``hint`` its end)."""
        with self._state.catalog() as cat:
            row = cat.point(point_id)
            names = {r.repo_id: r.name for r in cat.repository_names()}
        if row is None or row.repo_id not in names:
            raise NotFoundError(f"no restore point {point_id!r}{hint}; `vmkeep points list` "
                                "shows them")
        return row, names[row.repo_id]

    def check_disk(self, point_id: str, disk: int, target: str) -> CheckedDisk:
        """Refuse what ``restore_disk`` would refuse before it reads anything: a relative or
        existing target, a missing folder, an unknown point or disk."""
        path = Path(target)
        if not path.is_absolute():
            raise UsageError(f"restore target {target!r} is relative; give an absolute path")
        row, name = self._point(point_id, " in the appliance's repositories")
        with self._state.catalog() as cat:
            disks = {d.disk_index: d for d in cat.disks(point_id)}
        if disk not in disks:
            raise NotFoundError(f"restore point {point_id} has no disk {disk}; it has disks "
                                f"{', '.join(str(i) for i in sorted(disks))}")
        check_target(path)
        return CheckedDisk(point_id, row.object_name, name, disk, disks[disk].size, path)

    def restore_disk(self, c: CheckedDisk, progress: Callable[[int, int], None]) -> str:
        """Write the checked disk to its file (``progress``: bytes done, size); what was
        done."""
        with self._repositories.open_named(c.repository) as repo, self._state.workspace(
                repo, c.repository, exclusive=False, operation="restore",
                read_only_ok=True) as ws:
            r = restore_disk(ws, c.point_id, c.disk, c.target, progress=progress)
        return (f"restored disk {c.disk} of {c.point_id} to {c.target} "
                f"({human_bytes(r.size)}) in {r.seconds:.1f}s")

    @contextlib.contextmanager
    def _vm_workspace(self, req: api.VmRestore
                      ) -> Iterator[tuple[VSphereSession, Workspace, str]]:
        """The vCenter session (of the job that backs the VM up), the point's workspace and
        the vCenter's name, for a VM restore or its plan."""
        row, name = self._point(req.point, " in the appliance's repositories")
        with self._state.catalog() as cat:
            jobs = [parse_job(j).spec for j in cat.jobs()]
        vcenter = next((j.vcenter for j in jobs if any(v.name == row.object_name
                                                         for v in j.vms)), None)
        if vcenter is None:
            vcs = self._vcenters.all()
            if len(vcs) != 1:
                raise UsageError(f"no job names VM {row.object_name!r}, so which vCenter to "
                                 "restore to is unknown; keep exactly one vCenter, or restore "
                                 "with `vmkeep vsphere restore-vm`")
            vcenter = vcs[0].name
        if req.name and req.transport == "hotadd":
            raise UsageError("--transport hotadd writes over the original VM only; a new "
                             "VM's disks are imported through the host")
        with self._repositories.open_named(name) as repo, \
                self._vcenters.session(vcenter) as session, \
                self._state.workspace(repo, name, exclusive=False, operation="restore",
                                      read_only_ok=True) as ws:
            yield session, ws, vcenter

    @staticmethod
    def _placement(session: VSphereSession, ws: Workspace, req: api.VmRestore
                   ) -> rt.Placement:
        return vm_restore.new_vm_placement(
            session, ws, req.point, datacenter=req.datacenter, host=req.host,
            resource_pool=req.resource_pool, datastore=req.datastore, folder=req.folder)

    def vm_plan(self, req: api.VmRestore) -> api.VmRestorePlan:
        """What ``vm(req)`` would do (reads only): the plan's lines and, for a new VM, where
        it goes (each name not given: the original VM's, as far as it exists)."""
        with self._vm_workspace(req) as (session, ws, _vcenter):
            if not req.name:
                plan = vm_restore.plan_restore_original(session, ws, req.point,
                                                          transport=req.transport)
                return api.VmRestorePlan(mode="original", target=plan.target_name,
                                         lines=plan.describe(), placement=None)
            placement = self._placement(session, ws, req)
            plan = vm_restore.plan_restore_new(
                ws, req.point, req.name, keep_macs=req.keep_macs, placement=placement,
                networks=vm_restore.new_vm_networks(session, placement).mapped(req.networks))
            where = api.VmPlacement(
                datacenter=placement.datacenter, host=placement.host,
                resource_pool=placement.pool, datastore=placement.datastore,
                folder=placement.folder, as_original=list(placement.as_original),
                networks=plan.settings.networks() if plan.settings is not None else {})
            return api.VmRestorePlan(mode="new", target=req.name, lines=plan.describe(),
                                     placement=where)

    def check_vm(self, req: api.VmRestore) -> CheckedVm:
        """Plan the VM restore (reads only) and refuse what it would refuse: an unknown
        point or one not of a VM, no vCenter, a placement that does not resolve, a network
        map to a network not there, an original VM that cannot be overwritten, an overwrite
        not confirmed (with the plan to confirm as the error's detail)."""
        with self._vm_workspace(req) as (session, ws, _vcenter):
            if req.name:
                placement = self._placement(session, ws, req)
                plan = vm_restore.plan_restore_new(
                    ws, req.point, req.name, keep_macs=req.keep_macs, placement=placement,
                    networks=vm_restore.new_vm_networks(session, placement).mapped(
                        req.networks))
                why = write_refusal(placement.datastore, placement.datastore_type)
                if why:
                    raise vm_restore.VmRestoreError(
                        f"cannot restore VM {req.name!r} there, nothing was created: {why}; "
                        "choose a VMFS or NFS datastore (--datastore)")
            else:
                plan = vm_restore.plan_restore_original(session, ws, req.point,
                                                          transport=req.transport)
                if not req.confirm:
                    raise UsageError("restoring over the original VM overwrites its disks: "
                                     + " / ".join(plan.describe())
                                     + " — confirm it (set `confirm`)",
                                     detail=ConfirmDetail(tuple(plan.describe()), "confirm"))
        return CheckedVm(req, plan.source_vm, plan.target_name,
                         tuple((d.index, d.size) for d in plan.disks), tuple(plan.describe()))

    def restore_vm(self, c: CheckedVm, log: LogFn, disk_progress: DiskProgressFn) -> str:
        """Restore the checked VM (see appliance.jobs.vm_restore): each name of a new VM not
        given is where the original VM was; over the original, only as confirmed (a VM that
        changed since is refused). What was done."""
        req = c.request
        with self._vm_workspace(req) as (session, ws, vcenter):
            if req.name:
                r = vm_restore.restore_new_vm(
                    session, ws, req.point, req.name, datacenter=req.datacenter,
                    host=req.host, resource_pool=req.resource_pool, datastore=req.datastore,
                    folder=req.folder, keep_macs=req.keep_macs, network_map=req.networks,
                    power_on=req.power_on, log=log, disk_progress=disk_progress)
            else:
                plan = vm_restore.plan_restore_original(session, ws, req.point,
                                                          transport=req.transport)
                if tuple(plan.describe()) != c.lines:
                    raise vm_restore.VmRestoreError(
                        f"VM {plan.target_name!r} changed since the restore was confirmed; "
                        "nothing was written: plan and confirm it again")
                r = vm_restore.restore_original_vm(
                    session, ws, plan, confirm=True, power_on=req.power_on,
                    transport=req.transport, log=log, disk_progress=disk_progress,
                    appliance_vm=self._vcenters.get(vcenter).appliance_vm)
        return (f"restored point {r.point_id} to VM {r.vm_name!r} ({r.vm_moref}): "
                f"{len(r.disks)} disk(s), {human_bytes(r.bytes_written)} written in "
                f"{r.seconds:.1f}s")

    def postgres(self, point_id: str, data_dir: str, until: datetime | None) -> str:
        """``check_postgres`` then ``restore_postgres``, here and now."""
        return self.restore_postgres(self.check_postgres(point_id, data_dir, until),
                                     lambda _done, _total: None)

    def check_postgres(self, point_id: str, data_dir: str, until: datetime | None
                       ) -> CheckedPostgres:
        """Refuse at once a folder that is not PostgreSQL's data folder, an unknown point, a
        point without a PostgreSQL base backup."""
        folder = Path(data_dir)
        if not folder.is_absolute() or not (folder / "PG_VERSION").is_file():
            raise UsageError(f"{data_dir} is not a PostgreSQL data folder (no PG_VERSION): take "
                             "the data folder out of the restored disk first")
        row, name = self._point(point_id, "")
        with self._state.catalog() as cat:
            pg = (cat.guest_processing().get(point_id) or {}).get("postgres") or {}
        label = pg.get("backup_label")
        if not label:
            raise UsageError(f"point {point_id} holds no PostgreSQL base backup (its job had no "
                             "--postgres, or pg_backup_stop failed); it can only be started "
                             "with crash recovery")
        return CheckedPostgres(point_id, row.object_name, name, folder, str(label),
                               str(pg.get("tablespace_map") or ""), until)

    def restore_postgres(self, c: CheckedPostgres, progress: Callable[[int, int], None]
                         ) -> str:
        """Make the checked data folder (PostgreSQL's, taken out of the point's restored
        disk) ready for point-in-time recovery: its backup label, every WAL file the VM's log
        backup job stored (in ``vmkeep-wal/``; ``progress``: their bytes written, of all),
        recovery.signal and the settings. What was done."""
        folder, point_id = c.folder, c.point_id
        (folder / "backup_label").write_text(c.label)
        for stale in ("postmaster.pid", "postmaster.opts"):  # as pg_basebackup leaves out
            (folder / stale).unlink(missing_ok=True)
        if c.tablespace_map:
            (folder / "tablespace_map").write_text(c.tablespace_map)
        wal = folder / "vmkeep-wal"
        wal.mkdir(exist_ok=True)
        count = done = 0
        with self._repositories.open_named(c.repository) as repo, self._state.workspace(
                repo, c.repository, exclusive=False, operation="restore postgres") as ws:
            hold_point("restore-postgres-locked", point_id)
            todo: dict[str, tuple[str, DiskRow]] = {}  # by file name: the first point's
            for p in ws.cat.points(repo.id, logs_object(c.vm)):
                for d in ws.cat.disks(p.point_id):
                    if d.label not in todo and not (wal / d.label).exists():
                        todo[d.label] = (p.point_id, d)
            total = sum(d.size for _p, d in todo.values())
            progress(0, total)
            for p_id, d in todo.values():
                restore_disk(ws, p_id, d.disk_index, wal / d.label)
                count += 1
                done += d.size
                progress(done, total)
        (folder / "recovery.signal").write_text("")
        settings = [f"restore_command = 'cp \"{wal}/%f\" \"%p\"'",
                    "recovery_target_action = 'promote'"]
        if c.until is not None:
            settings.append(f"recovery_target_time = '{c.until.isoformat()}'")
        with (folder / "postgresql.auto.conf").open("a") as f:
            f.write("\n# vmkeep restore postgres\n" + "\n".join(settings) + "\n")
        return (f"{folder}: backup_label of point {point_id}, {count} WAL file(s) "
                f"({human_bytes(done)}) in {wal}, recovery.signal and "
                + ", ".join(s.split(" =")[0] for s in settings)
                + "; start PostgreSQL on it (as the data folder's owner) to replay")
