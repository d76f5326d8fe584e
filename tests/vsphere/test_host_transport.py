"""How backup_vm reaches the disks (issue 13, §2): a Range answered with 200 fails clearly
with bounded memory, dcPath is the datacenter's inventory path, the data file comes from the
disk's descriptor, and the "host" transport reads from the ESXi host that runs the VM with
single-use service tickets, its certificate pinned by the thumbprint the vCenter reports."""

from __future__ import annotations

import tracemalloc

import pytest

from appliance.jobs.vm_restore import restore_disk_into_vm, restore_new_vm
from appliance.vsphere.cbt import flat_file_of, split_datastore_path
from appliance.vsphere.inventory import find_vm
from appliance.vsphere.transport import DatastoreDiskSource, DatastoreEndpoint, TransportError
from tests.helpers import in_ws, session_first
from tests.vsphere.test_vm_restore import flat_bytes
from tests.vsphere.vmenv import VM, Env

IGNORE_RANGE = {"VCSIM_FOLDER_IGNORE_RANGE": "1"}


@pytest.mark.parametrize("vcsim", [IGNORE_RANGE], indirect=True)
def test_a_range_answered_with_200_fails_the_backup_clearly(env: Env) -> None:
    e = env
    with pytest.raises(TransportError, match=r"HTTP 200 .*ignored Range") as err:
        e.backup(transport="https")
    assert "-flat.vmdk" in str(err.value) and "[LocalDS_0]" in str(err.value)
    assert e.snapshots() == 0


@pytest.mark.parametrize("vcsim", [IGNORE_RANGE], indirect=True)
def test_a_range_answered_with_200_is_not_read(env: Env) -> None:
    """Old adapters read the file from 0 up to the block for each block: memory and time
    grew with the offset. Now nothing of the body is read."""
    e = env
    disk = e.disks()[1]
    ds, path = split_datastore_path(disk.backing.fileName)
    s = e.session
    src = DatastoreDiskSource(DatastoreEndpoint(s.host, s.port, s.cookie, s.ssl_context),
                              "DC0", ds, flat_file_of(path), disk.capacityInKB * 1024,
                              "disk1", [])
    tracemalloc.start()
    try:
        with pytest.raises(TransportError, match="ignored Range"):
            src.read(7 << 20, 256 << 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        src.close()
    assert peak < 1 << 20, f"{peak} bytes held for a 256 KiB read"


STRICT_DCPATH_IN_FOLDER = ({"VCSIM_STRICT_DCPATH": "1"}, ("-folder", "1"))


@pytest.mark.parametrize("vcsim", [STRICT_DCPATH_IN_FOLDER], indirect=True)
def test_a_vm_whose_datacenter_sits_in_a_folder_backs_up(env: Env) -> None:
    """dcPath is the datacenter's inventory path ("F0/DC0"), not its name."""
    e = env
    assert find_vm(e.session, VM).datacenter_path == "F0/DC0"
    r = e.backup(transport="https")
    assert r.status == "success" and r.point_id, e.logs
    assert e.restored(r.point_id, 1) == e.content(1)


@pytest.mark.parametrize("vcsim", [STRICT_DCPATH_IN_FOLDER], indirect=True)
def test_restores_into_a_datacenter_in_a_folder_send_its_path(env: Env) -> None:
    e = env
    r = e.backup(transport="https")
    assert r.point_id, e.logs
    want = e.content(1)
    target = "DC0_H0_VM1"
    result = in_ws(e.repo, e.cat, session_first(restore_disk_into_vm, e.session),
                   r.point_id, 1, target, log=e.log)
    assert flat_bytes(e, result.target_disk) == want
    new = in_ws(e.repo, e.cat, session_first(restore_new_vm, e.session), r.point_id,
                "restored-in-F0", log=e.log)
    assert new.disks == (0, 1)
