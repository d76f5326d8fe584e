"""Values the catalog returns. Frozen; no DuckDB object ever leaves the catalog package."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PointRow:
    point_id: str
    repo_id: str
    object_name: str
    object_kind: str
    created: datetime  # UTC, tz-aware
    kind: str
    parent_id: str | None
    compression: str
    reason: str
    bytes_read: int
    bytes_stored: int
    manifest_bytes: int


@dataclass(frozen=True, slots=True)
class DiskRow:
    point_id: str
    disk_index: int
    label: str
    size: int
    block_size: int
    change_id: str | None
    base_point: str | None
    blocks: int
    meta_json: str


@dataclass(frozen=True, slots=True)
class BlockLocation:
    """Where one block of a disk lives; pack_id is None when no pack holds the block."""

    block_index: int
    block_id: bytes
    pack_id: str | None
    offset: int
    stored_len: int
    plain_len: int
    codec: int
    key_id: int


@dataclass(frozen=True, slots=True)
class PackUsage:
    pack_id: str
    size: int
    entries: int
    live_entries: int
    live_bytes: int
    stored_bytes: int


@dataclass(frozen=True, slots=True)
class NewBlock:
    """A block entry of a pack, as the catalog indexes it."""

    block_id: bytes
    kind: int
    codec: int
    key_id: int
    offset: int
    stored_len: int
    plain_len: int


@dataclass(frozen=True, slots=True)
class NewDisk:
    disk_index: int
    label: str
    size: int
    block_size: int
    change_id: str | None
    meta_json: str
    base_point: str | None  # None: rows below are the whole map
    blocks: int  # non-zero blocks in the whole (resolved) map
    delta_indices: list[int]
    delta_ids: list[bytes | None]  # None: the block became zero


@dataclass(frozen=True, slots=True)
class VCenterRow:
    """A vCenter or ESXi host the appliance knows (its password is in the secret store)."""

    name: str
    host: str
    port: int
    user: str
    fingerprint: str | None  # pinned SHA-256, lower-case hex; None with insecure
    insecure: bool
    added: datetime
    appliance_vm: str = ""  # hot-add: the appliance's own VM (name or BIOS UUID); "": by DMI


@dataclass(frozen=True, slots=True)
class RepositoryName:
    """A repository the appliance uses, by the name the admin gave it."""

    name: str
    location: str  # a folder, or sftp://USER@HOST[:PORT]/PATH
    repo_id: str
    added: datetime
    host_key_fingerprint: str | None = None  # SSH: the pinned host key
    reconnect_every: float | None = None  # SSH: seconds between reconnects (None: 15)
    reconnect_for: float | None = None  # SSH: give up after (None: 30 minutes)
    immutable_days: int | None = None  # hardened: files locked this long after their epoch
    epoch_days: int | None = None  # hardened: the epoch's length


@dataclass(frozen=True, slots=True)
class JobRow:
    name: str
    spec_json: str  # the job's definition; its shape belongs to the appliance
    enabled: bool
    created: datetime


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: str
    job: str
    kind: str  # "backup", …
    state: str  # "running", "ended", "stopped", "interrupted"
    result: str | None  # "success", "warning", "failed"; None while running
    started: datetime
    ended: datetime | None
    detail_json: str


@dataclass(frozen=True, slots=True)
class TaskRow:
    session_id: str
    task: str  # e.g. the VM's name
    state: str
    result: str | None
    bytes_done: int
    bytes_total: int
    stage: str | None
    point_id: str | None
    updated: datetime
    vm: str | None = None  # the VM a disk's task belongs to
    disk: int | None = None  # None: a VM's task


@dataclass(frozen=True, slots=True)
class LogRow:
    session_id: str
    seq: int
    time: datetime
    level: str
    message: str
