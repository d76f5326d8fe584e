"""Jobs: checked (``check_job``: what can be checked without the catalog or vCenter), their
VMs resolved to instance UUIDs, kept as ``api.JobSpec`` in the catalog; guest logins in the
secret store. A stored job is read as one ``JobDefinition``
(``appliance.service.job_definition``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from appliance import api
from appliance.errors import ConflictError, NotFoundError, UsageError
from appliance.jobs.backup import block_size_named
from appliance.jobs.retention import check_retention
from appliance.jobs.schedule import (
    Schedule,
    active_full_due,
    excluded_disks,
    parse_days,
    parse_period,
    parse_time,
    parse_window,
)
from appliance.repository import codec
from appliance.service.job_check import check_disks
from appliance.service.job_definition import JobDefinition, parse_job, row_of
from appliance.service.repositories import RepositoryService
from appliance.service.state import State, check_name
from appliance.service.vcenters import VCenterService
from appliance.ssh import SshAuth, SshTarget, SshUnreachableError, normalize_fingerprint
from appliance.vsphere.disk_reader import check_transport, parse_datastore_paths
from appliance.vsphere.inventory import find_vm, vms_in_container
from catalog.models import JobRow

MAX_PARALLEL_VMS = 16



def schedule_of(spec: api.ScheduleSpec) -> Schedule:
    """The wire form of a schedule as the pure ``Schedule`` (UsageError when it is wrong)."""
    weekday = None
    if spec.weekday is not None:
        day = parse_days(spec.weekday)
        if len(day) != 1:
            raise UsageError(f"{spec.weekday!r} is not one weekday (mon … sun)")
        weekday = day[0]
    return Schedule(
        kind=spec.kind, at=parse_time(spec.at) if spec.at else None,
        days=parse_days(spec.days or ""), day_of_month=spec.day_of_month, nth=spec.nth,
        weekday=weekday, every=parse_period(spec.every) if spec.every else None,
        after=spec.after, tz=spec.tz, window=tuple(parse_window(w) for w in spec.window))


def guest_target(guest: api.GuestSpec) -> SshTarget:
    """The guest's SSH address from ``HOST[:PORT]``."""
    host, sep, port = guest.host.rpartition(":")
    if not sep or "]" in port:
        host, port = guest.host, "22"
    host = host.strip("[]")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535 or not guest.user:
        raise UsageError(f"guest {guest.host!r}: give --guest-host HOST[:PORT] and "
                         "--guest-user USER")
    return SshTarget(host, int(port), guest.user)


def check_job(name: str, spec: api.JobCreate) -> None:
    """What of a new job can be checked on its own (UsageError): its kind's fields, limits,
    retention, schedule, disks, active full. What one field alone can check is the wire
    model's (``api.JobCreate``: types, lengths, fail | warn); what is left here stays a usage
    error (400, exit 2) with the CLI's option names, as clients and tests expect."""
    block_size_named(spec.block_size)
    codec.compression_named(spec.compression)
    if spec.copy_of and (spec.vms or spec.containers):
        raise UsageError("a backup copy job copies other jobs' points: give --copy-of JOB "
                         "without --vm or --container")
    if spec.logs is not None:
        if spec.guest is None:
            raise UsageError("a log backup job collects from a guest: give --guest-host, "
                             "--guest-user and its login")
        if spec.vms or spec.containers or spec.copy_of:
            raise UsageError("a log backup job names its VM with --logs-of VM only")
        if not spec.logs.folder.startswith("/"):
            raise UsageError(f"--log-folder {spec.logs.folder!r} must be an absolute "
                             "path in the guest")
    elif not spec.vms and not spec.containers and not spec.copy_of:
        raise UsageError("a job needs at least one VM or container: give --vm NAME or "
                         "--container INVENTORY_PATH (or --copy-of JOB for a copy job)")
    if not 1 <= spec.parallel_vms <= MAX_PARALLEL_VMS:
        raise UsageError(f"--parallel-vms must be 1 … {MAX_PARALLEL_VMS}, not "
                         f"{spec.parallel_vms}")
    check_retention(spec.keep_last, spec.keep_days)
    schedule_of(spec.schedule)  # a bad schedule fails before anything is stored
    excluded_disks(spec.exclude_disks, "")
    active_full_due(spec.active_full, spec.schedule.tz, datetime.now(UTC), None)
    if spec.schedule.kind == "after" and spec.schedule.after == name:
        raise UsageError(f"job {name!r} cannot run after itself")
    if spec.rpo_hours is not None and spec.rpo_hours <= 0:
        raise UsageError(f"--rpo must be more than 0 hours, not {spec.rpo_hours:g}")
    if not 0 <= spec.retries <= 100 or spec.retry_wait_seconds < 0:
        raise UsageError("retries must be 0 … 100 and the wait between them not negative")
    check_transport(spec.transport, parse_datastore_paths(
        [f"{k}={v}" for k, v in spec.datastore_paths.items()]))


def _check_guest(guest: api.GuestCreate, *, has_login: bool) -> api.GuestSpec:
    """The guest processing a job keeps (its secret apart), checked; ``has_login``: the job
    being replaced has a guest login stored already."""
    guest_target(guest)  # fail | warn fields: the wire model's (api.FailOrWarn)
    if not 1 <= guest.script_timeout_seconds <= 86400:
        raise UsageError("a script's time limit must be 1 s to 1 day")
    if not guest.key and guest.password is None and not has_login:
        raise UsageError("the guest login needs --guest-key FILE or --guest-password-file "
                         "FILE")
    return api.GuestSpec(
        host=guest.host, user=guest.user,
        host_key_fingerprint=normalize_fingerprint(guest.host_key_fingerprint),
        pre_freeze=guest.pre_freeze, post_thaw=guest.post_thaw,
        script_timeout_seconds=guest.script_timeout_seconds,
        on_script_failure=guest.on_script_failure, unreachable=guest.unreachable,
        postgres=guest.postgres)


class JobService:
    def __init__(self, state: State, vcenters: VCenterService,
                 repositories: RepositoryService) -> None:
        self._state = state
        self._vcenters = vcenters
        self._repositories = repositories

    def add(self, spec: api.JobCreate, *, replacing: JobDefinition | None = None
            ) -> JobDefinition:
        """Check the job's names, resolve its VMs to instance UUIDs, keep it (enabled; or, when
        ``replacing`` an existing job, with that one's state and creation time)."""
        name = check_name("job", spec.name)
        check_job(name, spec)
        secrets = self._state.secrets
        guest = None if spec.guest is None else _check_guest(
            spec.guest, has_login=replacing is not None and any(
                n.startswith(f"job/{name}/guest-") for n in secrets.names()))
        with self._state.catalog() as cat:
            if replacing is None and cat.job(name) is not None:
                raise ConflictError(f"a job named {name!r} exists already; choose another "
                                    "name")
        self._repositories.get(spec.repository)
        containers = ["/" + c.strip().strip("/") for c in spec.containers]
        if spec.copy_of or spec.logs is not None:
            vms = []
            for source in spec.copy_of or []:
                if source == name:
                    raise UsageError(f"job {name!r} cannot copy itself")
                src = self.spec(source)
                if src.copy_of:
                    raise UsageError(f"job {source!r} is a copy job itself; copy the backup "
                                     "job it copies")
                if src.repository == spec.repository:
                    raise UsageError(f"job {source!r} writes to repository "
                                     f"{spec.repository!r} already; copy to another one")
        else:
            if not spec.vcenter:
                raise UsageError("a backup job needs the vCenter its VMs are on: --vcenter NAME")
            with self._vcenters.session(spec.vcenter) as session:
                vms = [find_vm(session, v) for v in spec.vms]
                for path in containers:
                    vms_in_container(session, path)  # a wrong path fails now, not at 2 a.m.
        stored = api.JobSpec(
            name=name, vcenter=spec.vcenter, repository=spec.repository,
            vms=[api.JobVm(name=v.name, instance_uuid=v.instance_uuid) for v in vms],
            containers=list(dict.fromkeys(containers)), parallel_vms=spec.parallel_vms,
            block_size=spec.block_size, compression=spec.compression,
            enable_cbt=spec.enable_cbt, quiesce=spec.quiesce, sample_blocks=spec.sample_blocks,
            keep_last=spec.keep_last, keep_days=spec.keep_days, schedule=spec.schedule,
            retries=spec.retries, retry_wait_seconds=spec.retry_wait_seconds,
            notify_to=spec.notify_to, exclude_disks=spec.exclude_disks,
            active_full=spec.active_full, rpo_hours=spec.rpo_hours,
            copy_of=list(dict.fromkeys(spec.copy_of)), guest=guest,
            quiesce_fallback=spec.quiesce_fallback, logs=spec.logs,
            transport=spec.transport, datastore_paths=dict(spec.datastore_paths))
        job = JobDefinition(name, stored, replacing.enabled if replacing else True,
                            replacing.created if replacing else datetime.now(UTC))
        with self._state.catalog() as cat:
            cat.put_job(row_of(job))
        if spec.guest is None and replacing is not None:
            secrets.delete(f"job/{name}/guest-")  # guest processing ended: its login too
        if spec.guest is not None and (spec.guest.key or spec.guest.password is not None):
            secrets.delete(f"job/{name}/")
            for kind, value in (("guest-key", spec.guest.key),
                                ("guest-password", spec.guest.password)):
                if value:
                    secrets.put(f"job/{name}/{kind}", value)
        return job

    def guest_login(self, job: str, guest: api.GuestSpec, reported_ip: str = ""
                    ) -> tuple[SshTarget, SshAuth, str]:
        """(SshTarget, SshAuth, pinned fingerprint) of a job's guest; ``--guest-host tools``
        takes the address VMware Tools report (``reported_ip``)."""
        secrets = self._state.secrets
        auth = SshAuth(key_data=secrets.find(f"job/{job}/guest-key"),
                       password=secrets.find(f"job/{job}/guest-password"))
        target = guest_target(guest)
        if target.host == "tools":
            if not reported_ip:
                raise SshUnreachableError("VMware Tools report no IP address for the VM (are "
                                          "they running?); set --guest-host HOST by hand")
            target = SshTarget(reported_ip, target.port, target.user)
        return target, auth, guest.host_key_fingerprint

    def vm_names(self, name: str) -> set[str]:
        """The VMs a backup job names, and those its sessions backed up (its containers')."""
        spec = self.spec(name)
        with self._state.catalog() as cat:
            seen = cat.job_task_vms(name)
        return {v.name for v in spec.vms} | seen

    def edit(self, name: str, changes: api.JobEdit) -> JobDefinition:
        """Change what is given; the rest stays. VMs given again are resolved again."""
        job = self.get(name)
        old = job.spec
        merged = old.model_dump(exclude={"vms"})
        merged["vms"] = [v.instance_uuid for v in old.vms]
        merged.update(changes.model_dump(exclude_unset=True))
        return self.add(api.JobCreate.model_validate(merged), replacing=job)

    def check(self, name: str) -> api.JobCheck:
        """What job ``name``'s next run will do with each VM and disk (``job_check``): the
        inventory is read, nothing is changed."""
        spec = self.spec(name)
        if spec.copy_of or spec.logs is not None:
            kind = "backup copy" if spec.copy_of else "log backup"
            raise UsageError(f"job {name!r} is a {kind} job: it reads no VM disks, so there "
                             "is nothing to check in vSphere")
        with self._vcenters.session(spec.vcenter) as session:
            return check_disks(spec, session)

    def all(self) -> list[JobDefinition]:
        """Every stored job, by name."""
        with self._state.catalog() as cat:
            return [parse_job(row) for row in cat.jobs()]

    def get(self, name: str) -> JobDefinition:
        """Job ``name`` (NotFoundError when there is none)."""
        return parse_job(self._row(name))

    def spec(self, name: str) -> api.JobSpec:
        """Job ``name``'s stored definition (NotFoundError when there is none)."""
        return self.get(name).spec

    def _row(self, name: str) -> JobRow:
        with self._state.catalog() as cat:
            row = cat.job(name)
        if row is None:
            raise NotFoundError(f"no job named {name!r}; `vmkeep job list` shows them")
        return row

    def set_enabled(self, name: str, enabled: bool) -> JobDefinition:
        row = self._row(name)  # its definition kept as it is stored
        new = JobRow(row.name, row.spec_json, enabled, row.created)
        with self._state.catalog() as cat:
            cat.put_job(new)
        return parse_job(new)

    def switch_repository(self, job: JobDefinition, repository: str) -> JobDefinition:
        """Keep ``job`` writing to ``repository`` from now on (its points moved there)."""
        moved = replace(job, spec=job.spec.model_copy(update={"repository": repository}))
        with self._state.catalog() as cat:
            cat.put_job(row_of(moved))
        return moved

    def remove(self, name: str) -> None:
        self._row(name)
        with self._state.catalog() as cat:
            cat.remove_job(name)
        self._state.secrets.delete(f"job/{name}/")
