"""Back up one vSphere VM: snapshot, Changed Block Tracking with sanity sampling, read the
snapshot's frozen flat disks, always remove the snapshot. The VM's relocation is disabled
while it is backed up (``vsphere.relocation``).

Disks are numbered 0, 1, … in (controller bus, unit) order of the snapshot's configuration.
A disk that cannot be read correctly through a flat-file transport (a delta/sesparse base, an
RDM, an independent disk) is skipped with a warning; the others are still backed up. A disk
whose file holds no plain bytes to read (encrypted, or a vSAN/vVols object: the rule is
``vsphere.disk_access``) fails the VM before its snapshot unless the job excludes it.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace

from appliance.errors import VmkeepError
from appliance.faults import hold_point
from appliance.jobs.backup import (
    BackupOptions,
    BackupResult,
    DedupFilter,
    DiskInput,
    DiskProgressFn,
    run_backup,
)
from appliance.jobs.workspace import Workspace
from appliance.progress import human_bytes
from appliance.repository import codec
from appliance.source import Extent, Source, blocks_touched
from appliance.vsphere.cbt import (
    ALL_ALLOCATED,
    CbtError,
    CbtInvalid,
    CbtNotEnabled,
    SnapshotDisk,
    changed_areas,
    snapshot_disks,
)
from appliance.vsphere.descriptor import DescriptorError
from appliance.vsphere.disk_access import disk_verdicts, refusal_message
from appliance.vsphere.disk_reader import (
    DEFAULT_TRANSPORT,
    LOCAL_TRANSPORTS,
    DiskSource,
    Transport,
    attached_for_reading,
    open_disk,
    resolve_access,
)
from appliance.vsphere.host_transport import HostDiskSource
from appliance.vsphere.hotadd import HotaddError
from appliance.vsphere.inventory import DiskInfo, VmInfo, find_vm, find_vm_moref
from appliance.vsphere.relocation import relocation_disabled
from appliance.vsphere.session import VSphereSession
from appliance.vsphere.snapshot import backup_snapshot, enable_cbt
from appliance.vsphere.transport import TransportError
from appliance.vsphere.vm_config import read_vm_config
from catalog.models import DiskRow
from catalog.store import Catalog

LogFn = Callable[[str, str], None]  # (level: "info" | "warning" | "error", message)

OBJECT_KIND = "vm"
INDEPENDENT_MODES = ("independent_persistent", "independent_nonpersistent")
HTTPS_READ_STREAMS = 4  # parallel reads over HTTPS when BackupOptions.read_streams is 0


class VmBackupError(VmkeepError):
    """The VM could not be backed up."""

    code = "vm_backup"


class VmRefusedError(VmBackupError):
    """The VM cannot be backed up as it is (a disk vmkeep cannot read by file): nothing was
    changed on it, and trying again does not help until the VM or the job changes."""


@dataclass(frozen=True, slots=True)
class DiskOutcome:
    index: int
    key: int
    label: str
    read_kind: str  # "full" | "incremental" | "skipped"
    bytes_read: int = 0
    warnings: tuple[str, ...] = ()
    skipped_reason: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class VmBackupResult:
    vm_name: str
    instance_uuid: str
    point_id: str | None
    status: str  # "success" | "warning" | "failed"
    disks: tuple[DiskOutcome, ...]
    warnings: tuple[str, ...] = ()
    backup: BackupResult | None = None


class _CountingSource:
    """A Source that counts the bytes it returned."""

    def __init__(self, inner: DiskSource) -> None:
        self.inner = inner
        self.bytes_read = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self.inner.size

    @property
    def label(self) -> str:
        return self.inner.label

    def allocated_areas(self) -> Sequence[Extent]:
        return self.inner.allocated_areas()

    def read(self, offset: int, length: int) -> bytes:
        data = self.inner.read(offset, length)
        with self._lock:
            self.bytes_read += len(data)
        return data

    def close(self) -> None:
        self.inner.close()


def refusal(info: DiskInfo | None, snap: SnapshotDisk) -> str:
    """Why this disk cannot be read from its snapshot's flat file ("" when it can)."""
    name = f"disk {info.index if info else '?'} ({snap.file_name or 'no file'}, key {snap.key})"
    mode = info.disk_mode if info else None
    btype = info.backing_type if info else snap.backing_type
    if mode in INDEPENDENT_MODES:
        return (f"{name} is in {mode} mode: snapshots do not freeze independent disks; "
                "back it up with an in-guest agent or make it dependent (persistent)")
    if "RawDisk" in btype or "RawDisk" in snap.backing_type:
        return (f"{name} is a raw device mapping: it needs a SAN transport reading the LUN "
                "(or an in-guest agent)")
    if info is not None and info.parent_file_name:
        return (f"{name}: its snapshot base is a delta of {info.parent_file_name} (the VM has "
                "snapshots of its own): it needs a VDDK/NBD transport that reads the whole "
                "chain; consolidate or remove the VM's snapshots to back it up by file")
    if btype != "FlatVer2" or not snap.backing_type.endswith("FlatVer2BackingInfo"):
        return (f"{name} has a {btype} backing (not a flat VMDK): it needs a VDDK/NBD "
                "transport")
    if not snap.file_name:
        return f"{name} has no backing file"
    return ""


def _sample(source: Source, key: bytes, prev_map: dict[int, bytes], candidates: list[int],
            count: int, block_size: int, rnd: random.Random) -> tuple[int, list[int]]:
    """Re-read ``count`` of ``candidates``; return (bytes read, blocks that differ)."""
    picked = sorted(rnd.sample(candidates, min(count, len(candidates))))
    read = 0
    bad: list[int] = []
    for b in picked:
        offset = b * block_size
        data = source.read(offset, min(block_size, source.size - offset))
        read += len(data)
        if codec.block_id(key, data) != prev_map[b]:
            bad.append(b)
    return read, bad


def _previous_map(cat: Catalog, point_id: str, disk_index: int) -> dict[int, bytes]:
    idx, ids = cat.resolved_map(point_id, disk_index)
    return {int(b): ids[i * 32:(i + 1) * 32] for i, b in enumerate(idx)}


def _vm_moref(session: VSphereSession, info: VmInfo) -> str:
    moref = find_vm_moref(session, info.instance_uuid)
    if moref is None:
        raise VmBackupError(f"VM {info.name!r} ({info.instance_uuid}) disappeared from "
                            f"{session.host}:{session.port} before the backup started")
    return moref


def backup_vm(session: VSphereSession, ws: Workspace, vm_name_or_uuid: str,
              options: BackupOptions, *, enable_cbt_consent: bool,
              transport: Transport = DEFAULT_TRANSPORT,
              datastore_paths: Mapping[str, str] | None = None, sample_blocks: int = 4,
              quiesce: bool = False, force_full: bool = False,
              exclude: frozenset[int] = frozenset(), log: LogFn,
              progress: Callable[[int, int], None] | None = None,
              disk_progress: DiskProgressFn | None = None,
              dedup: DedupFilter | None = None,
              quiesce_fallback: str = "fail",
              extra_config: dict[str, object] | None = None,
              before_snapshot: Callable[[], None] | None = None,
              before_read: Callable[[], None] | None = None,
              seed: int | str | None = None,
              snapshot_name: str | None = None, appliance_vm: str = "") -> VmBackupResult:
    """Back up one VM as a restore point of object kind "vm" (object name: the VM's name,
    object uuid: its instanceUuid). ``quiesce`` asks VMware Tools for a quiesced snapshot;
    ``force_full`` reads every allocated area whatever CBT says (an active full); disks whose
    numbers are in ``exclude`` are left out (not a warning: the job said so). ``transport``
    says where the disks are read from (:mod:`appliance.vsphere.disk_reader`; ``direct``
    needs ``datastore_paths``, each datastore's local folder; ``hotadd`` the appliance's own
    VM, ``appliance_vm`` if the vCenter's setting names it).
    ``before_snapshot`` runs once the VM is known to be readable, before anything is changed
    on it (guest processing's pre-freeze); ``before_read`` runs after the snapshot is taken
    and before any disk is read. ``snapshot_name`` names the snapshot (an appliance
    session's carries the appliance and session ids); by default it is an offline backup's,
    which no appliance removes.
    A disk that is encrypted or not a file (``disk_access.disk_verdicts``) and not in
    ``exclude`` fails the VM before anything is changed on it (VmRefusedError naming each).
    Errors propagate after the snapshot is removed."""
    repo, cat = ws.repo, ws.cat
    info = find_vm(session, vm_name_or_uuid)
    refused = refusal_message(info, disk_verdicts(info, exclude, hotadd=transport == "hotadd"))
    if refused:
        raise VmRefusedError(refused)
    if before_snapshot is not None:
        before_snapshot()
    vm = _vm_moref(session, info)
    warnings: list[str] = []

    def warn(msg: str) -> None:
        warnings.append(msg)
        log("warning", msg)

    if quiesce and info.tools_running_status != "guestToolsRunning":
        why = (f"VMware Tools are not running in VM {info.name!r} "
               f"({info.tools_running_status or 'no status'}), so the snapshot cannot be "
               "quiesced")
        if quiesce_fallback != "warn":
            raise VmBackupError(f"{why}; start the tools in the guest, or let the job fall "
                                "back to a crash-consistent snapshot (--quiesce-fallback warn)")
        warn(f"{why}: taking a crash-consistent snapshot instead (the job allows it)")
        quiesce = False
    if extra_config is not None:
        extra_config["quiesced"] = quiesce

    if info.cbt_enabled:
        cbt_on = True
    elif enable_cbt_consent:
        enable_cbt(session, vm)
        cbt_on = True
        log("info", f"enabled Changed Block Tracking on VM {info.name!r}; this backup reads "
                    "every allocated area (no earlier changeId), deduplicated")
    else:
        cbt_on = False
        warn(f"Changed Block Tracking is off on VM {info.name!r} and enabling it was not "
             "allowed: every disk gets a full read (deduplicated: only changed blocks are "
             "stored)")

    by_key = {d.key: d for d in info.disks}
    prev_row = cat.latest_point(repo.id, info.name)
    prev_point = prev_row.point_id if prev_row else None
    prev_disks: dict[int, DiskRow] = (
        {d.disk_index: d for d in cat.disks(prev_point)} if prev_point else {})
    key = repo.block_key()
    bs = options.block_size
    if transport not in LOCAL_TRANSPORTS and not options.read_streams:
        options = replace(options, read_streams=max(options.threads, HTTPS_READ_STREAMS))
    rnd = random.Random(seed if seed is not None else f"{info.instance_uuid}/{prev_point}")
    try:
        access = resolve_access(session, vm, info.datacenter_path, transport, datastore_paths,
                                encrypted=info.encrypted or any(d.encrypted for d in info.disks
                                                                if d.index not in exclude),
                                appliance_vm=appliance_vm)
    except HotaddError as exc:  # the appliance's VM: not found, or cannot take its disks
        raise VmRefusedError(f"VM {info.name!r}: {exc}") from None
    if transport == "direct":  # every datastore the VM's disks are on, before the snapshot
        for disk in info.disks:
            if disk.index in exclude:
                continue
            try:
                access.local_root(disk.datastore_name)
            except TransportError as exc:
                raise VmBackupError(f"disk {disk.index}: {exc}") from None
    log("info", f"VM {info.name!r}: {access.described}")

    outcomes: dict[int, DiskOutcome] = {}
    def say(level: str, msg: str) -> None:  # the snapshot's removal and consolidation
        warn(msg) if level == "warning" else log(level, msg)

    with relocation_disabled(session, vm, info.name, log, warn), \
            backup_snapshot(session, vm, snapshot_name, quiesce=quiesce, say=say) as ref, \
            ExitStack() as reading:
        log("info", f"snapshot {ref.name} of VM {info.name!r} taken"
                    + (" (quiesced)" if quiesce else ""))
        sdisks = snapshot_disks(session, ref)
        config: dict[str, object] = {**read_vm_config(session, ref, info).to_record()}
        if extra_config is not None:
            config["guest_processing"] = extra_config  # filled in further by before_read
        hold_point("vm-snapshot-taken", info.name)
        if before_read is not None:
            before_read()
        access = reading.enter_context(attached_for_reading(session, access, [
            sd.file_name for i, sd in enumerate(sdisks)
            if i not in exclude and not refusal(by_key.get(sd.key), sd)], log))
        inputs: list[DiskInput] = []
        counters: dict[int, _CountingSource] = {}
        extra_read: dict[int, int] = {}
        disk_warnings: dict[int, list[str]] = {}
        kinds: dict[int, str] = {}
        reasons: dict[int, str] = {}
        try:
            for index, sd in enumerate(sdisks):
                dinfo = by_key.get(sd.key)
                label = f"disk {index} ({sd.file_name})"
                if index in exclude:
                    why = f"disk {index} ({sd.file_name}) is excluded by the job"
                    log("info", f"skipping {why}")
                    outcomes[index] = DiskOutcome(index, sd.key, label, "skipped",
                                                  skipped_reason=why)
                    continue
                why = refusal(dinfo, sd)
                if why:
                    warn(f"skipping {why}")
                    outcomes[index] = DiskOutcome(index, sd.key, label, "skipped",
                                                  skipped_reason=why)
                    continue
                dw: list[str] = []
                disk_warnings[index] = dw
                cap = sd.capacity_bytes
                try:
                    allocated = (changed_areas(session, vm, ref, sd.key, cap, ALL_ALLOCATED)
                                 if cbt_on else [Extent(0, cap)])
                except CbtError as exc:
                    allocated = [Extent(0, cap)]
                    msg = f"disk {index}: allocated areas unknown ({exc}); reading all of it"
                    dw.append(msg)
                    warn(msg)
                prev = prev_disks.get(index)
                changed: list[Extent] | None = None
                reason = ""
                if force_full:
                    reason = "active full requested: every allocated area is read"
                elif not cbt_on:
                    reason = "Changed Block Tracking is off"
                elif prev is None:
                    reason = (f"first backup of {info.name!r}" if prev_point is None
                              else f"disk {index} is new since point {prev_point}")
                elif not prev.change_id:
                    reason = f"point {prev_point} has no changeId for disk {index}"
                elif prev.size != cap:
                    reason = (f"disk {index} size changed from {prev.size} to {cap} bytes")
                elif prev.block_size != bs:
                    reason = f"block size changed from {prev.block_size} to {bs}"
                else:
                    try:
                        changed = changed_areas(session, vm, ref, sd.key, cap, prev.change_id)
                    except CbtInvalid as exc:
                        reason = f"CBT changeId invalid: {exc}"
                    except CbtNotEnabled as exc:
                        reason = f"CBT not enabled: {exc}"
                    except CbtError as exc:
                        reason = f"CBT query failed: {exc}"
                    if reason:
                        msg = f"disk {index}: {reason}; full read with deduplication"
                        dw.append(msg)
                        warn(msg)
                try:
                    inner = open_disk(session, access, sd.file_name, cap, f"disk{index}",
                                      allocated, what=label, block_size=bs)
                except DescriptorError as exc:
                    warn(f"skipping {exc}")
                    del disk_warnings[index]
                    outcomes[index] = DiskOutcome(index, sd.key, label, "skipped",
                                                  skipped_reason=str(exc))
                    continue
                src = _CountingSource(inner)
                counters[index] = src
                if changed is not None and prev is not None and prev_point and sample_blocks > 0:
                    prev_map = _previous_map(cat, prev_point, index)
                    touched = set(blocks_touched(changed, bs, cap))
                    candidates = [b for b in prev_map if b not in touched]
                    got, bad = _sample(src.inner, key, prev_map, candidates, sample_blocks,
                                       bs, rnd)
                    extra_read[index] = got
                    if bad:
                        reason = (f"CBT sanity check failed: {len(bad)} of "
                                  f"{min(sample_blocks, len(candidates))} sampled blocks CBT "
                                  f"called unchanged differ from point {prev_point} "
                                  f"(first: block {bad[0]})")
                        msg = f"disk {index}: {reason}; full read with deduplication"
                        dw.append(msg)
                        warn(msg)
                        changed = None
                    else:
                        log("info", f"disk {index}: CBT sanity check passed "
                                    f"({min(sample_blocks, len(candidates))} blocks)")
                if isinstance(inner, HostDiskSource):  # streams over what will be read
                    inner.expect(changed if changed is not None else allocated)
                if changed is None and not dw and reason:
                    log("info", f"disk {index}: {reason}; full read of allocated areas")
                kinds[index] = "incremental" if changed is not None else "full"
                reasons[index] = reason or f"{len(changed or [])} changed areas"
                inputs.append(DiskInput(
                    index, src, changed, change_id=sd.change_id, changed_reason=reason,
                    meta={"key": sd.key, "file_name": sd.file_name, "bus": sd.bus,
                          "unit": sd.unit, "capacity_bytes": cap,
                          "label": dinfo.label if dinfo else ""}))
            result: BackupResult | None = None
            if inputs:
                result = run_backup(ws, info.name, inputs, options,
                                    object_kind=OBJECT_KIND, config=config,
                                    object_uuid=info.instance_uuid, progress=progress,
                                    disk_progress=disk_progress, dedup=dedup)
        finally:
            for index, c in counters.items():
                retried = c.inner.retried
                if retried:
                    log("info", f"disk {index}: {retried} read(s) failed once and were tried "
                                "again (the datastore dropped the connection or answered "
                                "with an error); check the network if this recurs")
                if isinstance(c.inner, HostDiskSource):
                    log("info", f"disk {index}: read from host {c.inner.host_name} in "
                                f"{c.inner.streams} stream(s), {c.inner.tickets} service "
                                "ticket(s)")
                c.close()
        for d in inputs:
            read = sdisks[d.index]
            outcomes[d.index] = DiskOutcome(
                d.index, read.key, f"disk {d.index} ({read.file_name})",
                kinds[d.index], counters[d.index].bytes_read + extra_read.get(d.index, 0),
                tuple(disk_warnings.get(d.index, ())), reason=reasons[d.index])
    ordered = tuple(outcomes[i] for i in sorted(outcomes))
    if result is None:
        msg = (f"no disk of VM {info.name!r} could be backed up: see the reason given for "
               "each disk above")
        log("error", msg)
        return VmBackupResult(info.name, info.instance_uuid, None, "failed", ordered,
                              (*warnings, msg))
    for w in result.warnings:
        warn(w)
    status = "warning" if warnings else "success"
    log("info", f"VM {info.name!r}: point {result.point_id} ({result.kind}), "
                f"{human_bytes(result.bytes_read)} read, {human_bytes(result.bytes_stored)} "
                f"stored, status {status}")
    return VmBackupResult(info.name, info.instance_uuid, result.point_id, status, ordered,
                          tuple(warnings), result)

