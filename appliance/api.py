"""The appliance's local API: its version, paths and wire models, shared by the server and
every client (the CLI and the TUI). Pydantic lives here, at the edge; the engine inside uses
frozen dataclasses.

The API is HTTP/JSON on a Unix socket (mode 0600, peer uid checked), versioned by path prefix
(``/v1``). A client starts with ``GET /v1/handshake`` and refuses to go on when the appliance
does not speak its version. Errors are JSON ``{"code", "message", "exit_code", "detail"?}``
with an HTTP status; the code names an ``appliance.errors`` class so a client raises the same
error the server did, and ``detail`` (typed) is what a client acts on, never the message.
See docs/API.md.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from appliance import errors, inputs

API_VERSION = 1
SUPPORTED_API_VERSIONS = (1,)
PREFIX = f"/v{API_VERSION}"
APPLIANCE_VERSION = "0.1.0"

# How a client shows wire text that came from elsewhere (a VM's name, a vCenter's message) on
# a terminal: escaped, so a newline or an escape code cannot split a row or reach the
# terminal. The rule lives with the input rules (``appliance.inputs``, which the CLI's parsers
# use without loading pydantic, and which this module imports); it is offered here for the
# clients that import only ``client``, ``api`` and ``errors`` (the TUI).
shown: Callable[[object], str] = inputs.shown


class Wire(BaseModel):
    """Base of every wire model: unknown fields are refused, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Request(Wire):
    """Base of what clients send: no type coercion (``0`` is not ``false``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _checked(check: Callable[[str], str | None]) -> Callable[[str], str]:
    """A pydantic after-validator from a check of ``appliance.inputs`` (the CLI's too)."""

    def validate(value: str) -> str:
        problem = check(value)
        if problem is not None:
            raise ValueError(f"{value!r} {problem}")
        return value

    return validate


# Reusable field types: what an administrator may send (appliance.inputs has the rules, which
# the CLI uses too). The schema shows the length limits and, as a pattern, that control
# characters are refused; the validators check it, with a message that says why.
_ONE_LINE = Field(json_schema_extra={"pattern": inputs.ONE_LINE_PATTERN})
# A name vmkeep keeps (a vCenter, repository or job): 1-80 printable characters, no slashes.
Name = Annotated[str, Field(min_length=1, max_length=inputs.NAME_MAX), _ONE_LINE,
                 AfterValidator(_checked(inputs.name_problem))]
# One line of other text: a VM name or UUID, an inventory path, a host, a user, a point id.
Text = Annotated[str, Field(max_length=inputs.TEXT_MAX), _ONE_LINE,
                 AfterValidator(_checked(inputs.text_problem))]
# A new VM's name: the same, slashes allowed.
VmName = Annotated[str, Field(min_length=1, max_length=inputs.NAME_MAX), _ONE_LINE,
                   AfterValidator(_checked(inputs.vm_name_problem))]
# An absolute local path on the appliance's machine, not a system folder (inputs.SYSTEM_FOLDERS).
LocalPath = Annotated[str, Field(min_length=1, max_length=inputs.PATH_MAX), _ONE_LINE,
                      AfterValidator(_checked(inputs.path_problem))]


def _repository_path(value: str) -> str:
    if value.startswith("sftp://"):
        problem = inputs.text_problem(value, limit=inputs.PATH_MAX)
    else:
        problem = inputs.path_problem(value)
    if problem is not None:
        raise ValueError(f"{value!r} {problem}")
    return value


# A repository's place: an absolute local folder (not a system folder) or sftp://USER@HOST/PATH.
RepositoryPath = Annotated[str, Field(min_length=1, max_length=inputs.PATH_MAX), _ONE_LINE,
                           AfterValidator(_repository_path)]
# Numbers: finite (no NaN or infinity) and at most a sensible bound, so no date arithmetic
# overflows; lower bounds and what a zero means are the registry's checks (400 usage).
Days = Annotated[float, Field(le=inputs.DAYS_MAX, allow_inf_nan=False)]
Seconds = Annotated[float, Field(le=inputs.SECONDS_MAX, allow_inf_nan=False)]
Hours = Annotated[float, Field(le=inputs.DAYS_MAX * 24, allow_inf_nan=False)]
Count = Annotated[int, Field(le=inputs.COUNT_MAX)]


# Wire enums: the values each field takes. Pydantic checks them both ways and the OpenAPI
# document lists them as enums (so the API fuzzer sends only these).
EventKind = Literal["log", "tasks", "end"]
PointKind = Literal["full", "incremental"]
AlertKind = Literal["rpo", "orphans", "space", "repository", "config", "session", "vm"]
AlertSeverity = Literal["warning", "error"]
#: A VM against its jobs' RPO: within it, past it (an ``rpo`` alert says so), or no job with
#: an RPO protects it.
RpoStatus = Literal["ok", "breached", "none"]
RepositoryKind = Literal["local", "sftp"]
ConfigResult = Literal["success", "failed"]
FailOrWarn = Literal["fail", "warn"]
#: Where a backup reads disks: the ESXi host that runs the VM, through the vCenter, or
#: datastores mounted on the appliance (each named in ``datastore_paths``), or attached to
#: the appliance's own VM (hot-add).
DiskTransport = Literal["host", "vcenter", "direct", "hotadd"]
#: Where a restore over a VM writes its disks: on its host, through the vCenter, or attached
#: to the appliance's own VM (hot-add; over the original VM only).
RestoreTransport = Literal["host", "vcenter", "hotadd"]
SessionKind = Literal["backup", "copy", "logs", "restore"]
SessionState = Literal["running", "ended", "stopped", "interrupted"]
Result = Literal["success", "warning", "failed"]
TaskState = Literal["waiting", "running", "ended", "stopped"]
LogLevel = Literal["info", "warning", "error"]
ScheduleKind = Literal["none", "daily", "monthly", "periodic", "after"]
PowerState = Literal["poweredOn", "poweredOff", "suspended"]
DiskCheckStatus = Literal["readable", "refused", "skipped", "excluded"]
VmCheckStatus = Literal["ok", "warning", "refused"]
PrivilegePurpose = Literal["backup", "restore", "hunter"]
ContainerKind = Literal["Datacenter", "Folder", "ClusterComputeResource", "ComputeResource",
                        "HostSystem", "ResourcePool"]


def _member(alias: object, value: str, what: str) -> str:
    """``value`` when it is one of the Literal ``alias``'s values (a value read back from the
    catalog or from vSphere), else ValueError naming ``what``."""
    allowed = get_args(alias)
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is none of {', '.join(map(str, allowed))}")
    return value


def as_session_kind(value: str) -> SessionKind:
    return cast("SessionKind", _member(SessionKind, value, "session kind"))


def as_session_state(value: str) -> SessionState:
    return cast("SessionState", _member(SessionState, value, "session state"))


def as_result(value: str | None) -> Result | None:
    return None if value is None else cast("Result", _member(Result, value, "result"))


def as_task_state(value: str) -> TaskState:
    return cast("TaskState", _member(TaskState, value, "task state"))


def as_log_level(value: str) -> LogLevel:
    return cast("LogLevel", _member(LogLevel, value, "log level"))


def as_schedule_kind(value: str) -> ScheduleKind:
    return cast("ScheduleKind", _member(ScheduleKind, value, "schedule kind"))


def as_power_state(value: str) -> PowerState:
    return cast("PowerState", _member(PowerState, value, "power state"))


def as_container_kind(value: str) -> ContainerKind:
    return cast("ContainerKind", _member(ContainerKind, value, "container kind"))


class Handshake(Wire):
    api_version: int
    supported_api_versions: list[int]
    appliance_version: str
    pid: int
    home: str
    started: datetime


class PinDetail(Wire):
    """The server presented this identity and none was pinned: check it, then send it in
    ``field`` to pin it."""

    kind: Literal["pin"] = "pin"
    fingerprint: str  # vCenter: AB:CD:… (SHA-256 of the certificate); SSH host: SHA256:…
    what: Literal["vcenter", "ssh_host"]
    field: str  # the request field that pins it: "fingerprint" or "host_key_fingerprint"


class ConfirmDetail(Wire):
    """The request would do what cannot be undone: show ``plan``, then send ``field`` true."""

    kind: Literal["confirm"] = "confirm"
    plan: list[str]  # one line per thing done, e.g. "disk 0: overwrite [ds] vm/disk1.vmdk"
    field: str  # the request field that confirms it, e.g. "confirm"


ErrorDetail = Annotated[PinDetail | ConfirmDetail, Field(discriminator="kind")]


class ErrorBody(Wire):
    code: str  # the error class's code, e.g. "not_found"
    message: str  # what was wrong and what to do; for people, never parsed
    exit_code: int  # what the CLI exits with for it
    detail: ErrorDetail | None = None  # what a client acts on: the fingerprint to pin, …

    @classmethod
    def of(cls, error: errors.VmkeepError) -> ErrorBody:
        """The wire form of ``error``, its detail included."""
        d = error.detail
        detail: PinDetail | ConfirmDetail | None = None
        if isinstance(d, errors.PinDetail):
            detail = PinDetail(fingerprint=d.fingerprint, what=d.what, field=d.field)
        elif isinstance(d, errors.ConfirmDetail):
            detail = ConfirmDetail(plan=list(d.plan), field=d.field)
        return cls(code=error.code, message=str(error), exit_code=error.exit_code,
                   detail=detail)

    def error_detail(self) -> errors.ErrorDetail | None:
        """``detail`` as the value ``VmkeepError.detail`` holds (what clients read)."""
        d = self.detail
        if isinstance(d, PinDetail):
            return errors.PinDetail(fingerprint=d.fingerprint, what=d.what, field=d.field)
        if isinstance(d, ConfirmDetail):
            return errors.ConfirmDetail(plan=tuple(d.plan), field=d.field)
        return None


class Accepted(Wire):
    """A request the appliance took on and carries out in the background."""

    message: str


class VCenterAdd(Request):
    name: Name
    host: Text
    port: int = 443
    user: Text
    password: str  # kept in the secret store; never sent back
    fingerprint: Text | None = None  # SHA-256 hex, colons optional
    insecure: bool = False
    appliance_vm: Text = ""  # hot-add: the appliance's own VM (name or BIOS UUID); "": DMI


class VCenterEdit(Request):
    host: Text | None = None
    port: int | None = None
    user: Text | None = None
    password: str | None = None
    fingerprint: Text | None = None  # re-pin a renewed certificate
    insecure: bool | None = None
    appliance_vm: Text | None = None  # "" forgets it (found by its BIOS UUID again)


class VCenter(Wire):
    name: str
    host: str
    port: int
    user: str
    fingerprint: str | None  # pinned, lower-case hex; None when insecure
    insecure: bool
    added: datetime
    appliance_vm: str = ""  # hot-add: the appliance's own VM as named; "": by its BIOS UUID


class VCenterTest(Wire):
    name: str
    ok: bool
    vms: int
    message: str


class VCenterPurposeCheck(Wire):
    """One purpose's privileges (``GET /v1/vcenters/{name}/check``): docs/VSPHERE.md."""

    purpose: PrivilegePurpose
    ok: bool  # nothing missing
    required: list[str]  # privilege ids, as the vSphere API names them
    missing: list[str]  # those of them the account lacks on the root folder


class VCenterCheck(Wire):
    name: str
    user: str  # the account, as vCenter names it
    entity: str  # where the privileges were checked: the root folder's moref id
    ok: bool  # no purpose lacks a privilege
    purposes: list[VCenterPurposeCheck]


class RepositoryAdd(Request):
    name: Name
    path: RepositoryPath  # absolute, or sftp://USER@HOST[:PORT]/PATH; a missing folder is created
    ssh_key: str | None = None  # SSH: a private key's text (OpenSSH or PEM)
    ssh_password: str | None = None  # SSH: the password, or the key's passphrase
    host_key_fingerprint: Text | None = None  # SSH: SHA256:… as ssh-keygen -l prints it
    encryption_password: str | None = None  # opens an encrypted one; makes a new one so
    reconnect_every_seconds: Seconds | None = None  # SSH: between reconnects (default 15)
    reconnect_for_seconds: Seconds | None = None  # SSH: give up after (default 1800)


class RepositoryEdit(Request):
    """``PATCH /v1/repositories/{name}``: an SSH repository's login or pinned host key."""

    ssh_key: str | None = None
    ssh_password: str | None = None
    host_key_fingerprint: Text | None = None


class Repository(Wire):
    name: str
    location: str
    repo_id: str
    added: datetime
    points: int
    stored_bytes: int
    bytes_read: int = 0  # what its points read from their disks
    dedup_ratio: float | None = None  # bytes_read / stored_bytes
    free_bytes: int | None = None  # of its file system; None: not reachable now
    total_bytes: int | None = None
    kind: RepositoryKind = "local"
    host_key_fingerprint: str | None = None  # sftp: the pinned host key
    encrypted: bool = False
    reconnect_every_seconds: float | None = None  # SSH: None is the default, 15
    reconnect_for_seconds: float | None = None  # SSH: None is the default, 1800
    immutable_days: int | None = None  # hardened: files locked this long after their epoch
    epoch_days: int | None = None
    immutable_until: datetime | None = None  # hardened: the latest lock in the ledger


class RepositoryHarden(Request):
    """``POST /v1/repositories/{name}/harden``: ``days`` None turns hardening off (locks
    already set stay until they expire)."""

    days: Count | None = None
    epoch_days: Count | None = None


class AuditAnswer(Wire):
    ok: bool
    lines: list[str]  # one per disagreement between the ledger and the host


class Done(Wire):
    message: str


class QueryRequest(Request):
    sql: Annotated[str, Field(min_length=1)]
    max_rows: int = 1000
    timeout: float = 10.0  # seconds


class QueryAnswer(Wire):
    columns: list[str]
    rows: list[list[Any]]  # JSON values; numbers beyond JSON, dates and bytes as text
    truncated: bool
    seconds: float


class JobVm(Wire):
    name: str
    instance_uuid: str  # resolved when the job is created: renames keep the VM in the job


class ScheduleSpec(Request):
    """When a job runs (see appliance.jobs.schedule). ``kind``: none | daily | monthly |
    periodic | after."""

    kind: ScheduleKind = "none"
    at: str | None = None  # "HH:MM" (daily, monthly)
    days: str | None = None  # daily: "weekdays", "every" or "mon,wed,fri"
    day_of_month: int | None = None  # monthly: 1 … 31, -1 = last day
    nth: int | None = None  # monthly: 1 … 4, -1 = last
    weekday: Text | None = None  # monthly with nth: "mon" … "sun"
    every: Text | None = None  # periodic: "90s", "30m", "2h"
    after: Name | None = None  # chained: the job this one runs after
    tz: Text = "UTC"
    window: list[Text] = []  # permitted hours, "HH:MM-HH:MM" each; none: always


class GuestSpec(Wire):
    """Guest processing over SSH, as a job keeps it (its key or password: in the secret
    store). Scripts are kept as their text."""

    host: str  # HOST[:PORT]
    user: str
    host_key_fingerprint: str  # SHA256:… as ssh-keygen -l prints it
    pre_freeze: str | None = None
    post_thaw: str | None = None
    script_timeout_seconds: float = 600.0
    on_script_failure: FailOrWarn = "fail"  # a failing pre-freeze script fails the VM
    unreachable: FailOrWarn = "fail"  # what a VM does when the guest cannot be reached
    postgres: str | None = None  # HOST:PORT:USER[:DB] for psql in the guest: a base backup


class LogBackupSpec(Wire):
    """A log backup job's source: files a database writes into a guest folder (PostgreSQL's
    archive_command target, or what ``command`` leaves there), collected every run."""

    vm: str  # whose logs: the points are of the object "<vm>:logs"
    folder: str  # absolute, in the guest
    pattern: str = "*"  # fnmatch pattern of the file names
    command: str | None = None  # run in the guest first (e.g. sqlcmd … BACKUP LOG …)
    settle_seconds: float = 10.0  # files changed more recently wait for the next run


class GuestCreate(GuestSpec):
    """``guest`` of a job to create: the same, with the login's secret."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    host: Text
    user: Text
    host_key_fingerprint: Text
    script_timeout_seconds: Seconds = 600.0
    postgres: Text | None = None
    key: str | None = None  # a private key's text
    password: str | None = None  # or a password (with key: the key's passphrase)


class JobCreate(Request):
    name: Name
    vcenter: Text
    vms: list[Text] = []  # names or instance UUIDs
    containers: list[Text] = []  # inventory paths (folder, host, cluster, pool): each run
    repository: Name
    block_size: Text = "1M"
    compression: Text = "zstd-fast"
    enable_cbt: bool = False  # consent to turn Changed Block Tracking on
    quiesce: bool = False
    sample_blocks: Count = 4
    keep_last: Count | None = None  # retention: restore points per VM
    keep_days: Days | None = None
    schedule: ScheduleSpec = ScheduleSpec()
    retries: Count = 3  # failed VMs only
    retry_wait_seconds: Seconds = 600.0
    notify_to: list[Text] = []  # e-mail addresses besides the global ones
    exclude_disks: list[Text] = []  # "N" (every VM's disk N) or "VM:N"
    active_full: Text | None = None  # "sat" (weekly) or "1" … "31" (monthly): read everything
    rpo_hours: Hours | None = None  # alert when a VM has no good point for longer
    parallel_vms: Count = 2  # VMs backed up at once
    copy_of: list[Name] = []  # a backup copy job: copies these jobs' points to repository
    guest: GuestCreate | None = None  # scripts around the snapshot, over SSH
    quiesce_fallback: FailOrWarn = "warn"  # quiesce without VMware Tools running: fail | warn
    logs: LogBackupSpec | None = None  # a log backup job (needs guest)
    transport: DiskTransport = "host"  # where disks are read from
    datastore_paths: dict[Text, Text] = {}  # transport "direct": datastore -> local folder


class JobEdit(Request):
    """What ``PATCH /v1/jobs/{name}`` may change: every field of ``JobCreate`` but ``name``
    and ``vcenter``; fields left out stay. ``guest`` given replaces the job's guest
    processing (without ``key`` and ``password`` the stored login stays); ``null`` ends it
    and forgets the login."""

    vms: list[Text] | None = None
    containers: list[Text] | None = None
    copy_of: list[Name] | None = None
    guest: GuestCreate | None = None
    logs: LogBackupSpec | None = None
    repository: Name | None = None
    block_size: Text | None = None
    compression: Text | None = None
    enable_cbt: bool | None = None
    quiesce: bool | None = None
    sample_blocks: Count | None = None
    keep_last: Count | None = None
    keep_days: Days | None = None
    schedule: ScheduleSpec | None = None
    retries: Count | None = None
    retry_wait_seconds: Seconds | None = None
    notify_to: list[Text] | None = None
    exclude_disks: list[Text] | None = None
    active_full: Text | None = None
    rpo_hours: Hours | None = None
    parallel_vms: Count | None = None
    quiesce_fallback: FailOrWarn | None = None
    transport: DiskTransport | None = None
    datastore_paths: dict[Text, Text] | None = None


class JobSpec(Wire):
    """A job as stored: what (VMs by instance UUID, and inventory containers whose VMs are
    looked up at each run), where, how."""

    name: str
    vcenter: str
    vms: list[JobVm]
    containers: list[str] = []
    repository: str
    block_size: str
    compression: str
    enable_cbt: bool
    quiesce: bool
    sample_blocks: int
    keep_last: int | None
    keep_days: float | None
    schedule: ScheduleSpec = ScheduleSpec()
    retries: int = 3
    retry_wait_seconds: float = 600.0
    notify_to: list[str] = []
    exclude_disks: list[str] = []
    active_full: str | None = None
    rpo_hours: float | None = None
    parallel_vms: int = 2
    copy_of: list[str] = []  # a backup copy job: the jobs whose points it copies
    guest: GuestSpec | None = None
    quiesce_fallback: FailOrWarn = "warn"
    logs: LogBackupSpec | None = None
    transport: DiskTransport = "host"  # jobs stored before it existed read from the host
    datastore_paths: dict[str, str] = {}

    @property
    def kind(self) -> SessionKind:
        return "copy" if self.copy_of else "logs" if self.logs else "backup"


class SessionSummary(Wire):
    id: str
    job: str
    kind: SessionKind
    state: SessionState
    result: Result | None  # None while running
    started: datetime
    ended: datetime | None


class Job(Wire):
    spec: JobSpec
    enabled: bool
    created: datetime
    last_session: SessionSummary | None
    # When the scheduler starts it next (UTC): the scheduler's own due time, moved on past
    # those it would skip outside the backup window. None: disabled, manual (schedule kind
    # none) or chained (after: it starts when its parent's session ends).
    next_run: datetime | None = None


def next_run_text(job: Job) -> str:
    """A job's next run in its schedule's time zone, with the zone ("2026-12-02 02:00 CET"),
    or why it has none: "disabled", "manual", "after JOB" (the CLI and the TUI show this)."""
    s = job.spec.schedule
    if job.next_run is not None:
        try:
            tz = ZoneInfo(s.tz)
        except (ZoneInfoNotFoundError, ValueError):
            tz = ZoneInfo("UTC")
        at = job.next_run if job.next_run.tzinfo else job.next_run.replace(tzinfo=UTC)
        return at.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
    if not job.enabled:
        return "disabled"
    if s.kind == "after":
        return f"after {s.after}"
    return "manual" if s.kind == "none" else "none (outside the window)"


class JobRun(Request):
    full: bool = False  # active full: read every allocated area, whatever CBT says


class DiskCheck(Wire):
    """What the job's next run will do with one disk (``GET /v1/jobs/{name}/check``)."""

    index: int
    file_name: str
    datastore: str
    datastore_type: str  # its summary.type: VMFS, NFS, NFS41, vsan, VVOL, …
    status: DiskCheckStatus  # refused: the VM fails before its snapshot
    reason: str  # "" when readable


class VmCheck(Wire):
    name: str
    instance_uuid: str  # "" when the VM is not found
    status: VmCheckStatus  # ok: every disk read; warning: some skipped; refused: it fails
    reason: str  # why a VM is refused or warned about ("" when ok)
    disks: list[DiskCheck]


class JobCheck(Wire):
    job: str
    result: VmCheckStatus  # the worst of its VMs'
    vms: list[VmCheck]


class Task(Wire):
    """One VM's work in a session, or one of its disks' (``disk`` set)."""

    name: str  # the VM's name, or "VM · disk N"
    vm: str | None = None
    disk: int | None = None  # None: the VM's task
    state: TaskState
    result: Result | None
    bytes_done: int
    bytes_total: int
    rate: float  # bytes per second so far
    eta_seconds: float | None
    stage: str | None  # snapshot | reading (VM); the bottleneck: source read |
    #                    hashing/compression | repository write (disk); writing (a restore's)
    point_id: str | None


class LogLine(Wire):
    time: datetime
    level: LogLevel
    message: str


class StageShare(Wire):
    """One stage of the backup pipeline: the seconds it was waited on and its share of all the
    waiting (0..1; the shares add up to 1)."""

    stage: str  # source read | hashing/compression | repository write
    seconds: float
    share: float


class VmStats(Wire):
    """One VM of a finished backup session (bytes as in ``SessionStats``)."""

    vm: str
    duration_seconds: float  # its snapshot, reads and cleanup
    processed: int
    read: int
    transferred: int
    bottleneck: str | None  # None: nothing was read


class SessionStats(Wire):
    """A finished backup session's statistics (Veeam's terms): processed (the disks'
    capacity), read (from the source), new (the new unique blocks' bytes before compression),
    transferred (written to the repository); dedup ratio = read / new, compression ratio =
    new / transferred (None: nothing new, nothing stored); the bottleneck over the whole run."""

    duration_seconds: float
    rate: float  # bytes read per second of the session
    processed: int
    read: int
    new: int
    transferred: int
    dedup_ratio: float | None
    compression_ratio: float | None
    bottleneck: str | None  # None: nothing was read
    stages: list[StageShare]
    vms: list[VmStats]


class SessionOutcome(Wire):
    """How a restore session ended: what was restored (``message``, as the request's answer
    said before restores were sessions), or why it failed (``error``: the code, message and
    exit code the request would have answered with, so a client that follows the session
    ends as it did)."""

    message: str
    error: ErrorBody | None = None  # None: restored


class Session(Wire):
    id: str
    job: str  # a job's name; a restore's: "restore VM" or "restore VM disk N" (docs/API.md)
    kind: SessionKind
    state: SessionState
    result: Result | None
    started: datetime
    ended: datetime | None
    tasks: list[Task]
    log: list[LogLine]
    stats: SessionStats | None = None  # a finished backup session's
    outcome: SessionOutcome | None = None  # a finished restore session's


def vm_reasons(session: Session, vm: str) -> list[str]:
    """The warnings and errors ``session`` logged for ``vm`` (its lines start "VM: "), in
    order, without the VM's name (pure; the alerts and the TUI's VM view say these)."""
    return [x.message[len(vm) + 2:] for x in session.log
            if x.level in ("warning", "error") and x.message.startswith(f"{vm}: ")]


class SessionEvent(Wire):
    """One event of ``GET /v1/sessions/{id}/events`` (Server-Sent Events; the SSE event name
    is ``event``): ``log`` (one line; a client gets the lines so far first), ``tasks`` (every
    task, whenever one changed), ``end`` (the session's summary, after its last line)."""

    event: EventKind
    line: LogLine | None = None
    tasks: list[Task] | None = None
    summary: SessionSummary | None = None


class PointDisk(Wire):
    index: int
    label: str
    size: int
    block_size: int
    change_id: str | None


class Reading(BaseModel):
    """A record read from a restore point's manifest, which another vmkeep version may have
    written: fields it does not know are left out (FORMAT.md: readers ignore them)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class ScriptRecord(Reading):
    """A pre-freeze or post-thaw script's run, as kept with the point."""

    name: str  # pre-freeze | post-thaw
    exit_code: int
    timed_out: bool
    started: str  # ISO 8601, as recorded
    ended: str
    stdout: str
    stderr: str


class PostgresRecord(Reading):
    """PostgreSQL's base backup around the snapshot: where it started and ended, the backup
    label and tablespace map to restore with, or why it could not start."""

    target: str | None = None  # HOST:PORT:USER[:DB]
    start_lsn: str | None = None
    stop_lsn: str | None = None
    backup_label: str | None = None
    tablespace_map: str | None = None
    error: str | None = None


class GuestProcessing(Reading):
    """What guest processing did for a point's backup."""

    quiesced: bool | None = None  # the snapshot was quiesced (VMware Tools)
    guest: str | None = None  # USER@HOST it logged in to, or "unreachable: why"
    scripts: list[ScriptRecord] = []
    postgres: PostgresRecord | None = None


class Point(Wire):
    id: str
    vm: str
    created: datetime
    kind: PointKind
    bytes_read: int
    bytes_stored: int
    repository: str
    parent: str | None
    reason: str
    disks: list[PointDisk]
    guest_processing: GuestProcessing | None = None
    job: str | None = None  # the job whose session made it (None: not made by a session here)


class DiskRestore(Request):
    point: Text
    disk: Annotated[int, Field(ge=0, le=inputs.COUNT_MAX)] = 0
    to: LocalPath  # absolute path of a new file on the appliance's machine


class PostgresRestore(Request):
    """``POST /v1/restore/postgres``: see ``vmkeep restore postgres``."""

    point: Text
    data_dir: LocalPath  # absolute, on the appliance's machine
    until: Annotated[datetime, Field(strict=False)] | None = None  # ISO 8601 with its zone


class HuntRequest(Request):
    vcenter: Name | None = None  # None: every vCenter
    dry_run: bool = True
    include_foreign: bool = False


class HuntReport(Wire):
    vcenter: str
    lines: list[str]  # findings in order (vmkeep's leftover snapshots first), then outcomes


class Notifications(Request):
    """Where the appliance reports sessions that end (global; a job may add recipients)."""

    on: list[Result] = ["failed", "warning"]  # results that are reported
    smtp_host: Text | None = None
    smtp_port: int = 25
    smtp_starttls: bool = False
    mail_from: Text = "vmkeep@localhost"
    mail_to: list[Text] = []
    webhook_url: Text | None = None  # gets an HTTP POST of JSON
    alert_every_seconds: Seconds = 300.0  # how often alerts are looked for
    # alert when a repository has less free space (percent)
    free_space_alert_percent: Annotated[float, Field(allow_inf_nan=False)] = 10.0


class Alert(Wire):
    """A condition that needs an administrator: kind rpo | orphans | space | repository |
    config | session (a job's last session failed or warned) | vm (a VM failed or warned in
    its job's last session: the message names the VM, the job and the reason)."""

    kind: AlertKind
    key: str  # what it is about; the same alert keeps its key while it lasts
    message: str
    since: datetime
    severity: AlertSeverity = "warning"  # error: a job's session or a VM failed


class ConfigBackup(Request):
    repository: Name
    password: Annotated[str, Field(min_length=8)]


class ConfigSchedule(Request):
    """``PUT /v1/settings/config-backup``: back the configuration up into ``repository`` on
    ``schedule`` (kind none: never). The password is kept in the secret store; leave it out
    to keep the one stored."""

    repository: Name | None = None
    schedule: ScheduleSpec = ScheduleSpec()
    password: Annotated[str, Field(min_length=8)] | None = None


class ConfigScheduleView(Wire):
    repository: str | None
    schedule: ScheduleSpec
    last_backup: datetime | None  # the newest scheduled one, when it ran
    last_result: ConfigResult | None
    last_message: str | None  # its file, or why it failed
    # Sealed with a password the appliance generated (the default backup), which only its
    # secret store keeps: an alert says so until the administrator sets one of their own.
    password_generated: bool = False
    password_version: int = 0  # counts the passwords set (the one sealing backups now)
    last_password_version: int | None = None  # the one that sealed the last backup
    # Whether the last backup opens with the current password (None: none yet). Its time is
    # when the scheduler looked, which can be before a change it saw: this, not the time, says.
    last_sealed_with_current: bool | None = None
    # The configuration changed since the last successful backup (one runs within seconds).
    changed_since_backup: bool = False


class ConfigBackupDone(Wire):
    path: str


class ConfigRestore(Request):
    path: Annotated[str, Field(min_length=1, max_length=inputs.PATH_MAX), _ONE_LINE,
                    AfterValidator(_checked(inputs.read_path_problem))]  # a file, or a folder
    password: str | None = None  # None: the one this appliance keeps for its backups


class ConfigRestored(Wire):
    vcenters: int
    repositories: int
    jobs: int
    secrets: int
    path: str = ""  # the backup file restored
    skipped_newer: int = 0  # newer backups beside it that did not open with the password


class InventoryDisk(Wire):
    index: int
    capacity_bytes: int
    file_name: str
    backing_type: str


class InventoryVm(Wire):
    vcenter: str
    datacenter: str
    host: str
    name: str
    instance_uuid: str
    power_state: PowerState
    cbt_enabled: bool
    snapshots: list[str]
    consolidation_needed: bool
    disks: list[InventoryDisk]
    jobs: list[str]  # jobs that protect it
    last_point: str | None  # its newest restore point
    last_point_time: datetime | None = None  # when that point was taken
    # Its result in the newest ended session of the jobs that protect it, and why (the
    # warnings and errors that session logged for it; "" on success). None: none backed it up.
    last_result: Result | None = None
    last_reason: str = ""
    last_job: str | None = None  # the job of that session
    rpo_status: RpoStatus = "none"


class InventoryContainer(Wire):
    """What a job may name with ``containers``: its VMs are looked up at each run."""

    vcenter: str
    kind: ContainerKind
    path: str  # the inventory path, e.g. /DC0/host/DC0_C0
    vms: list[str]  # the VMs directly in it


class MoveRequest(Request):
    """``POST /v1/move``: every point of a job (or of one VM) to another repository: copied,
    verified, the job switched over, then removed at the source (unless immutable there)."""

    to: Name
    job: Name | None = None
    vm: Text | None = None
    source: Name | None = None  # with vm: the repository it moves from (default: its only one)


class MoveAnswer(Wire):
    moved: int
    lines: list[str]


class VerifyRequest(Request):
    repository: Name
    point: Text | None = None


class DamagedPoint(Wire):
    """A restore point that verify found damaged: whose it is and why."""

    point: str
    vm: str  # the point's object name (a VM's name for VM points)
    jobs: list[str]  # the jobs that back that VM up now
    causes: list[str]  # "<file>: <problem>" of each damaged file the point needs


class VerifyAnswer(Wire):
    ok: bool
    damage: list[str]  # "<file>: <problem>; affects <points>"
    summary: str
    points: list[DamagedPoint] = []  # each damaged point, with its VM, jobs and causes
    next_step: str = ""  # what to do about it ("" when nothing is damaged)


class PruneRequest(Request):
    repository: Name
    keep_last: Count | None = None
    keep_days: Days | None = None
    dry_run: bool = False


class PruneAnswer(Wire):
    lines: list[str]  # each point's fate with the reason, then what was freed
    removed: list[str]


class VmRestore(Request):
    point: Text
    name: VmName | None = None  # a new VM with this name; None: over the original
    confirm: bool = False  # over the original: required
    # A new VM's placement; each left out: where the original VM was, as far as it exists.
    datacenter: Text | None = None
    host: Text | None = None
    resource_pool: Text | None = None
    datastore: Text | None = None
    folder: Text | None = None
    # A new VM's network map: an original network's name -> the network at the placement its
    # NICs go on instead; a network not named: its own, as far as it exists there.
    networks: dict[Text, Text] = Field(default_factory=dict)
    keep_macs: bool = False
    power_on: bool = False
    transport: RestoreTransport = "host"  # over the original: where the disks are written


class VmPlacement(Wire):
    """Where a new VM goes, by name."""

    datacenter: str
    host: str
    resource_pool: str
    datastore: str
    folder: str
    as_original: list[str]  # which of these were the original VM's ("host", "datastore", …)
    networks: dict[str, str] = Field(default_factory=dict)  # original network -> its NICs' here


class VmRestorePlan(Wire):
    """What ``POST /v1/restore/vm`` with the same body would do (nothing is changed)."""

    mode: Literal["new", "original"]
    target: str  # the new VM's name, or the original VM's
    lines: list[str]  # the plan, one line per thing done (as `restore-vm --dry-run`)
    placement: VmPlacement | None  # a new VM: where it goes
