"""What the offline ``vmkeep vsphere`` commands print with ``--json`` (besides ``vms``, whose
list is ``vsphere_cmd.vm_listing``): one small object per command, made of the engine's
results (docs/CLI.md lists their fields)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.jobs.vm_backup import VmBackupResult
    from appliance.jobs.vm_restore import DiskIntoVmResult, VmRestoreResult
    from appliance.vsphere.hunter import Finding, HuntPlan, HuntResult

JsonObject = dict[str, object]


def fingerprint(host: str, port: int, value: str) -> JsonObject:
    return {"host": host, "port": port, "fingerprint": value}


def backup(result: VmBackupResult) -> JsonObject:
    """The VM's result; ``point_id`` is null when no point was made (status failed)."""
    b = result.backup
    return {"point_id": result.point_id, "vm": result.vm_name,
            "instance_uuid": result.instance_uuid, "status": result.status,
            "kind": b.kind if b else None, "bytes_read": b.bytes_read if b else 0,
            "bytes_stored": b.bytes_stored if b else 0, "seconds": b.seconds if b else 0.0,
            "warnings": list(result.warnings),
            "disks": [{"index": d.index, "label": d.label, "read": d.read_kind,
                       "bytes_read": d.bytes_read, "reason": d.reason or d.skipped_reason,
                       "warnings": list(d.warnings)} for d in result.disks]}


def restore_plan(lines: list[str]) -> JsonObject:
    return {"dry_run": True, "plan": lines}


def restore_vm(result: VmRestoreResult) -> JsonObject:
    return {"point_id": result.point_id, "vm": result.vm_name, "vm_moref": result.vm_moref,
            "disks": list(result.disks), "bytes_written": result.bytes_written,
            "seconds": result.seconds, "cbt_reset": result.cbt_reset,
            "warnings": list(result.warnings)}


def restore_disk(result: DiskIntoVmResult) -> JsonObject:
    t = result.target_disk
    return {"point_id": result.point_id, "disk": result.disk_index, "vm": result.vm_name,
            "target_disk": {"index": t.index, "file_name": t.file_name,
                            "capacity_bytes": t.capacity_bytes},
            "bytes_written": result.bytes_written, "seconds": result.seconds}


def _finding(f: Finding) -> JsonObject:
    return {"kind": str(f.kind), "vm": f.vm_name, "vm_moref": f.vm_moref, "what": f.what,
            "action": str(f.action), "snapshot": f.snapshot_name, "file": f.file_name,
            "in_use_by": f.in_use_by or None}


def hunt(plan: HuntPlan, result: HuntResult | None, *, dry_run: bool) -> JsonObject:
    """The findings and, unless a dry run (or nothing was found), each outcome."""
    return {"dry_run": dry_run, "vms_checked": plan.vms_checked,
            "findings": [_finding(f) for f in plan.findings],
            "left_alone": [_finding(f) for f in plan.left_alone],
            "outcomes": [] if result is None else [
                {"status": str(o.status), "detail": o.detail, "finding": _finding(o.finding)}
                for o in result.outcomes],
            "ok": True if result is None else result.ok}
