"""``job check``: what a backup job's next run will do with each VM and disk — read it,
refuse it (the VM fails before its snapshot), skip it with a warning, or leave it out as the
job says — found by reading the inventory only (no snapshot, nothing written)."""

from __future__ import annotations

from appliance import api
from appliance.errors import VmkeepError
from appliance.jobs.schedule import excluded_disks
from appliance.vsphere.disk_access import DiskVerdict, disk_verdicts
from appliance.vsphere.inventory import VmInfo, find_vm, vms_in_container
from appliance.vsphere.session import VSphereSession

_WORST: dict[api.VmCheckStatus, int] = {"ok": 0, "warning": 1, "refused": 2}


def _disk(v: DiskVerdict) -> api.DiskCheck:
    return api.DiskCheck(index=v.index, file_name=v.file_name, datastore=v.datastore,
                         datastore_type=v.datastore_type, status=v.status, reason=v.reason)


def vm_check(info: VmInfo, exclude: frozenset[int], *, hotadd: bool = False) -> api.VmCheck:
    """One VM's verdict: refused when a disk is refused or no disk is left to read, a
    warning when a disk is skipped, else ok. Through ``hotadd``, encrypted disks are read."""
    verdicts = disk_verdicts(info, exclude, hotadd=hotadd)
    refused = [v for v in verdicts if v.status == "refused"]
    skipped = [v for v in verdicts if v.status == "skipped"]
    status: api.VmCheckStatus = "ok"
    reason = ""
    if refused:
        status = "refused"
        reason = ("fails before its snapshot: disk(s) "
                  f"{', '.join(str(v.index) for v in refused)} cannot be read by file")
    elif not any(v.status == "readable" for v in verdicts):
        status, reason = "refused", "fails: no disk of the VM is left to read"
    elif skipped:
        status = "warning"
        reason = (f"backs up with a warning: disk(s) {', '.join(str(v.index) for v in skipped)} "
                  "skipped")
    return api.VmCheck(name=info.name, instance_uuid=info.instance_uuid, status=status,
                       reason=reason, disks=[_disk(v) for v in verdicts])


def check_disks(spec: api.JobSpec, session: VSphereSession) -> api.JobCheck:
    """Each of the job's VMs (those it names, then those its containers hold now) with its
    disks' verdicts; a VM or container that cannot be found is refused."""
    checks: list[api.VmCheck] = []
    seen: set[str] = set()

    def add(info: VmInfo) -> None:
        if info.instance_uuid in seen:
            return
        seen.add(info.instance_uuid)
        checks.append(vm_check(info, excluded_disks(spec.exclude_disks, info.name),
                               hotadd=spec.transport == "hotadd"))

    for vm in spec.vms:
        try:
            add(find_vm(session, vm.instance_uuid))
        except VmkeepError as exc:
            checks.append(api.VmCheck(name=vm.name, instance_uuid=vm.instance_uuid,
                                      status="refused", reason=str(exc), disks=[]))
    for path in spec.containers:
        try:
            found = vms_in_container(session, path)
        except VmkeepError as exc:
            checks.append(api.VmCheck(name=path, instance_uuid="", status="refused",
                                      reason=f"container {path}: {exc}", disks=[]))
            continue
        for info in found:
            add(info)
    result: api.VmCheckStatus = max((c.status for c in checks), key=_WORST.__getitem__,
                                    default="ok")
    return api.JobCheck(job=spec.name, result=result, vms=checks)
