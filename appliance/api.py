"""The appliance's local API: its version, paths and wire models, shared by the server and
every client (the CLI and the TUI). Pydantic lives here, at the edge; the engine inside uses
frozen dataclasses.

The API is HTTP/JSON on a Unix socket (mode 0600, peer uid checked), versioned by path prefix
(``/v1``). A client starts with ``GET /v1/handshake`` and refuses to go on when the appliance
does not speak its version. Errors are JSON ``{"code", "message"}`` with an HTTP status; the
code names an ``appliance.errors`` class so a client raises the same error the server did.
See docs/API.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

API_VERSION = 1
SUPPORTED_API_VERSIONS = (1,)
PREFIX = f"/v{API_VERSION}"
APPLIANCE_VERSION = "0.1.0"


class Wire(BaseModel):
    """Base of every wire model: unknown fields are refused, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Request(Wire):
    """Base of what clients send: no type coercion (``0`` is not ``false``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


Name = Annotated[str, Field(min_length=1, max_length=80)]


class Handshake(Wire):
    api_version: int
    supported_api_versions: list[int]
    appliance_version: str
    pid: int
    home: str
    started: datetime


class ErrorBody(Wire):
    code: str  # the error class's code, e.g. "not_found"
    message: str  # what was wrong and what to do
    exit_code: int  # what the CLI exits with for it


class Accepted(Wire):
    """A request the appliance took on and carries out in the background."""

    message: str


class VCenterAdd(Request):
    name: Name
    host: str
    port: int = 443
    user: str
    password: str  # kept in the secret store; never sent back
    fingerprint: str | None = None  # SHA-256 hex, colons optional
    insecure: bool = False


class VCenterEdit(Request):
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = None
    fingerprint: str | None = None  # re-pin a renewed certificate
    insecure: bool | None = None


class VCenter(Wire):
    name: str
    host: str
    port: int
    user: str
    fingerprint: str | None  # pinned, lower-case hex; None when insecure
    insecure: bool
    added: datetime


class VCenterTest(Wire):
    name: str
    ok: bool
    vms: int
    message: str


class RepositoryAdd(Request):
    name: Name
    path: str  # absolute, or sftp://USER@HOST[:PORT]/PATH; a missing folder is created
    ssh_key: str | None = None  # SSH: a private key's text (OpenSSH or PEM)
    ssh_password: str | None = None  # SSH: the password, or the key's passphrase
    host_key_fingerprint: str | None = None  # SSH: SHA256:… as ssh-keygen -l prints it
    encryption_password: str | None = None  # opens an encrypted one; makes a new one so
    reconnect_every_seconds: float | None = None  # SSH: between reconnects (default 15)
    reconnect_for_seconds: float | None = None  # SSH: give up after (default 1800)


class RepositoryEdit(Request):
    """``PATCH /v1/repositories/{name}``: an SSH repository's login or pinned host key."""

    ssh_key: str | None = None
    ssh_password: str | None = None
    host_key_fingerprint: str | None = None


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
    kind: str = "local"  # local | sftp
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

    days: int | None = None
    epoch_days: int | None = None


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

    kind: str = "none"
    at: str | None = None  # "HH:MM" (daily, monthly)
    days: str | None = None  # daily: "weekdays", "every" or "mon,wed,fri"
    day_of_month: int | None = None  # monthly: 1 … 31, -1 = last day
    nth: int | None = None  # monthly: 1 … 4, -1 = last
    weekday: str | None = None  # monthly with nth: "mon" … "sun"
    every: str | None = None  # periodic: "90s", "30m", "2h"
    after: str | None = None  # chained: the job this one runs after
    tz: str = "UTC"
    window: list[str] = []  # permitted hours, "HH:MM-HH:MM" each; none: always


class GuestSpec(Wire):
    """Guest processing over SSH, as a job keeps it (its key or password: in the secret
    store). Scripts are kept as their text."""

    host: str  # HOST[:PORT]
    user: str
    host_key_fingerprint: str  # SHA256:… as ssh-keygen -l prints it
    pre_freeze: str | None = None
    post_thaw: str | None = None
    script_timeout_seconds: float = 600.0
    on_script_failure: str = "fail"  # fail | warn: a failing pre-freeze script fails the VM
    unreachable: str = "fail"  # fail | warn: what a VM does when the guest cannot be reached
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

    key: str | None = None  # a private key's text
    password: str | None = None  # or a password (with key: the key's passphrase)


class JobCreate(Request):
    name: Name
    vcenter: str
    vms: list[str] = []  # names or instance UUIDs
    containers: list[str] = []  # inventory paths (folder, host, cluster, pool): each run
    repository: str
    block_size: str = "1M"
    compression: str = "zstd-fast"
    enable_cbt: bool = False  # consent to turn Changed Block Tracking on
    quiesce: bool = False
    sample_blocks: int = 4
    keep_last: int | None = None  # retention: restore points per VM
    keep_days: float | None = None
    schedule: ScheduleSpec = ScheduleSpec()
    retries: int = 3  # failed VMs only
    retry_wait_seconds: float = 600.0
    notify_to: list[str] = []  # e-mail addresses besides the global ones
    exclude_disks: list[str] = []  # "N" (every VM's disk N) or "VM:N"
    active_full: str | None = None  # "sat" (weekly) or "1" … "31" (monthly): read everything
    rpo_hours: float | None = None  # alert when a VM has no good point for longer
    parallel_vms: int = 2  # VMs backed up at once
    copy_of: list[str] = []  # a backup copy job: copies these jobs' points to repository
    guest: GuestCreate | None = None  # scripts around the snapshot, over SSH
    quiesce_fallback: str = "warn"  # quiesce without VMware Tools running: fail | warn
    logs: LogBackupSpec | None = None  # a log backup job (needs guest)


class JobEdit(Request):
    """What ``PATCH /v1/jobs/{name}`` may change; fields left out stay."""

    vms: list[str] | None = None
    containers: list[str] | None = None
    repository: Name | None = None
    block_size: str | None = None
    compression: str | None = None
    enable_cbt: bool | None = None
    quiesce: bool | None = None
    sample_blocks: int | None = None
    keep_last: int | None = None
    keep_days: float | None = None
    schedule: ScheduleSpec | None = None
    retries: int | None = None
    retry_wait_seconds: float | None = None
    notify_to: list[str] | None = None
    exclude_disks: list[str] | None = None
    active_full: str | None = None
    rpo_hours: float | None = None
    parallel_vms: int | None = None


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
    quiesce_fallback: str = "warn"
    logs: LogBackupSpec | None = None

    @property
    def kind(self) -> str:
        return "copy" if self.copy_of else "logs" if self.logs else "backup"


class SessionSummary(Wire):
    id: str
    job: str
    kind: str
    state: str  # running | ended | stopped | interrupted
    result: str | None  # success | warning | failed (None while running)
    started: datetime
    ended: datetime | None


class Job(Wire):
    spec: JobSpec
    enabled: bool
    created: datetime
    last_session: SessionSummary | None


class JobRun(Request):
    full: bool = False  # active full: read every allocated area, whatever CBT says


class Task(Wire):
    """One VM's work in a session, or one of its disks' (``disk`` set)."""

    name: str  # the VM's name, or "VM · disk N"
    vm: str | None = None
    disk: int | None = None  # None: the VM's task
    state: str  # waiting | running | ended | stopped
    result: str | None
    bytes_done: int
    bytes_total: int
    rate: float  # bytes per second so far
    eta_seconds: float | None
    stage: str | None  # snapshot | reading (VM); the bottleneck: source read |
    #                    hashing/compression | repository write (disk)
    point_id: str | None


class LogLine(Wire):
    time: datetime
    level: str  # info | warning | error
    message: str


class Session(Wire):
    id: str
    job: str
    kind: str
    state: str
    result: str | None
    started: datetime
    ended: datetime | None
    tasks: list[Task]
    log: list[LogLine]


class SessionEvent(Wire):
    """One event of ``GET /v1/sessions/{id}/events`` (Server-Sent Events; the SSE event name
    is ``event``): ``log`` (one line; a client gets the lines so far first), ``tasks`` (every
    task, whenever one changed), ``end`` (the session's summary, after its last line)."""

    event: str  # log | tasks | end
    line: LogLine | None = None
    tasks: list[Task] | None = None
    summary: SessionSummary | None = None


class PointDisk(Wire):
    index: int
    label: str
    size: int
    block_size: int
    change_id: str | None


class Point(Wire):
    id: str
    vm: str
    created: datetime
    kind: str
    bytes_read: int
    bytes_stored: int
    repository: str
    parent: str | None
    reason: str
    disks: list[PointDisk]
    guest_processing: dict[str, Any] | None = None  # quiesced, scripts with their output


class DiskRestore(Request):
    point: str
    disk: int = 0
    to: str  # absolute path of a new file on the appliance's machine


class PostgresRestore(Request):
    """``POST /v1/restore/postgres``: see ``vmkeep restore postgres``."""

    point: str
    data_dir: str  # absolute, on the appliance's machine
    until: Annotated[datetime, Field(strict=False)] | None = None  # ISO 8601 with its zone


class HuntRequest(Request):
    vcenter: str | None = None  # None: every vCenter
    dry_run: bool = True
    include_foreign: bool = False


class HuntReport(Wire):
    vcenter: str
    lines: list[str]  # findings in order (vmkeep's leftover snapshots first), then outcomes


class Notifications(Request):
    """Where the appliance reports sessions that end (global; a job may add recipients)."""

    on: list[str] = ["failed", "warning"]  # results that are reported: failed, warning, success
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_starttls: bool = False
    mail_from: str = "vmkeep@localhost"
    mail_to: list[str] = []
    webhook_url: str | None = None  # gets an HTTP POST of JSON
    alert_every_seconds: float = 300.0  # how often alerts are looked for
    free_space_alert_percent: float = 10.0  # alert when a repository has less free


class Alert(Wire):
    """A condition that needs an administrator: kind rpo | orphans | space | repository |
    config."""

    kind: str
    key: str  # what it is about; the same alert keeps its key while it lasts
    message: str
    since: datetime


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
    last_result: str | None  # success | failed
    last_message: str | None  # its file, or why it failed
    # Sealed with a password the appliance generated (the default backup), which only its
    # secret store keeps: an alert says so until the administrator sets one of their own.
    password_generated: bool = False


class ConfigBackupDone(Wire):
    path: str


class ConfigRestore(Request):
    path: Annotated[str, Field(min_length=1)]  # a backup file, or a repository folder
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
    power_state: str
    cbt_enabled: bool
    snapshots: list[str]
    consolidation_needed: bool
    disks: list[InventoryDisk]
    jobs: list[str]  # jobs that protect it
    last_point: str | None  # its newest restore point


class InventoryContainer(Wire):
    """What a job may name with ``containers``: its VMs are looked up at each run."""

    vcenter: str
    kind: str  # Datacenter | Folder | ClusterComputeResource | ComputeResource |
    #            HostSystem | ResourcePool
    path: str  # the inventory path, e.g. /DC0/host/DC0_C0
    vms: list[str]  # the VMs directly in it


class MoveRequest(Request):
    """``POST /v1/move``: every point of a job (or of one VM) to another repository: copied,
    verified, the job switched over, then removed at the source (unless immutable there)."""

    to: Name
    job: Name | None = None
    vm: str | None = None
    source: Name | None = None  # with vm: the repository it moves from (default: its only one)


class MoveAnswer(Wire):
    moved: int
    lines: list[str]


class VerifyRequest(Request):
    repository: Name
    point: str | None = None


class VerifyAnswer(Wire):
    ok: bool
    damage: list[str]  # "<file>: <problem>; affects <points>"
    summary: str


class PruneRequest(Request):
    repository: Name
    keep_last: int | None = None
    keep_days: float | None = None
    dry_run: bool = False


class PruneAnswer(Wire):
    lines: list[str]  # each point's fate with the reason, then what was freed
    removed: list[str]


class VmRestore(Request):
    point: str
    name: str | None = None  # a new VM with this name; None: over the original
    confirm: bool = False  # over the original: required
    datastore: str | None = None
    host: str | None = None
    power_on: bool = False
