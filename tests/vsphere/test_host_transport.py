"""How backup_vm reaches the disks (issue 13, §2): a Range answered with 200 fails clearly
with bounded memory, dcPath is the datacenter's inventory path, the data file comes from the
disk's descriptor, and the "host" transport reads from the ESXi host that runs the VM with
single-use service tickets, its certificate pinned by the thumbprint the vCenter reports."""

from __future__ import annotations

import re
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyVmomi import vim

from appliance.errors import UsageError
from appliance.jobs.vm_backup import VmBackupError
from appliance.jobs.vm_restore import restore_disk_into_vm, restore_new_vm
from appliance.vsphere import disk_reader, host_transport
from appliance.vsphere.cbt import flat_file_of, split_datastore_path
from appliance.vsphere.descriptor import DescriptorError, DiskExtent, data_file_of, parse_extents
from appliance.vsphere.host_endpoint import HostEndpoint, host_of_vm
from appliance.vsphere.inventory import find_vm
from appliance.vsphere.session import VSphereSession
from appliance.vsphere.transport import DatastoreDiskSource, DatastoreEndpoint, TransportError
from tests.helpers import in_ws, session_first
from tests.vsphere.test_vm_restore import flat_bytes
from tests.vsphere.vmenv import VM, Env, warnings_of, write

IGNORE_RANGE = {"VCSIM_FOLDER_IGNORE_RANGE": "1"}


@pytest.mark.parametrize("vcsim", [IGNORE_RANGE], indirect=True)
def test_a_range_answered_with_200_fails_the_backup_clearly(env: Env) -> None:
    e = env
    with pytest.raises(TransportError, match=r"HTTP 200 .*ignored Range") as err:
        e.backup(transport="vcenter")
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
    r = e.backup(transport="vcenter")
    assert r.status == "success" and r.point_id, e.logs
    assert e.restored(r.point_id, 1) == e.content(1)


@pytest.mark.parametrize("vcsim", [STRICT_DCPATH_IN_FOLDER], indirect=True)
def test_restores_into_a_datacenter_in_a_folder_send_its_path(env: Env) -> None:
    e = env
    r = e.backup(transport="vcenter")
    assert r.point_id, e.logs
    want = e.content(1)
    target = "DC0_H0_VM1"
    result = in_ws(e.repo, e.cat, session_first(restore_disk_into_vm, e.session),
                   r.point_id, 1, target, log=e.log)
    assert flat_bytes(e, result.target_disk) == want
    new = in_ws(e.repo, e.cat, session_first(restore_new_vm, e.session), r.point_id,
                "restored-in-F0", log=e.log)
    assert new.disks == (0, 1)


# --- the data file comes from the disk's descriptor -----------------------------------------

DESCRIPTOR = """# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=fffffffe
parentCID=ffffffff
createType="vmfs"

# Extent description
{extents}

# The Disk Data Base
ddb.adapterType = "lsilogic"
"""


def _snapshot_disk_path(e: Env, index: int) -> tuple[Path, str]:
    """(local descriptor path, datastore-relative path) of disk ``index`` of the current
    snapshot."""
    snap = e.vm.snapshot.currentSnapshot
    disks = [d for d in snap.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
    disks.sort(key=lambda d: (d.controllerKey, d.unitNumber))
    ds, rel = split_datastore_path(disks[index].backing.fileName)  # type: ignore[union-attr]
    return Path(e.datastores[ds]) / rel, rel


def test_parse_extents() -> None:
    text = DESCRIPTOR.format(extents='RW 16384 VMFS "a b-flat.vmdk"\nRDONLY 8 FLAT "x.img" 5')
    assert parse_extents(text) == (DiskExtent("RW", 16384, "VMFS", "a b-flat.vmdk", 0),
                                   DiskExtent("RDONLY", 8, "FLAT", "x.img", 5))
    one = DESCRIPTOR.format(extents='RW 16384 VMFS "renamed.vmdk"').encode()
    assert data_file_of("vm/disk.vmdk", one, what="disk 0") == "vm/renamed.vmdk"
    assert data_file_of("vm/disk.vmdk", b"", what="disk 0") == "vm/disk-flat.vmdk"  # vcsim
    for extents, why in (('RW 8 VMFSSPARSE "d-delta.vmdk"', "VMFSSPARSE"),
                         ('RW 8 SESPARSE "d-sesparse.vmdk"', "SESPARSE"),
                         ('RW 8 VMFSRDM "d-rdm.vmdk"', "VMFSRDM"),
                         ('RW 8 FLAT "d.img" 512', "offset 512"),
                         ('RW 8 VMFS "/vmfs/volumes/x/d-flat.vmdk"', "not a file next"),
                         ("", "0 extents"),
                         ('RW 8 VMFS "a-flat.vmdk"\nRW 8 VMFS "b-flat.vmdk"', "2 extents")):
        with pytest.raises(DescriptorError, match=why):
            data_file_of("vm/disk.vmdk", DESCRIPTOR.format(extents=extents).encode(),
                         what="disk 0")
    with pytest.raises(DescriptorError, match="sparse"):
        data_file_of("vm/disk.vmdk", b"KDMV\x01\x00\x00\x00", what="disk 0")


def test_the_data_file_is_the_one_the_descriptor_names(env: Env) -> None:
    """A disk whose extent is not "<name>-flat.vmdk" (renamed, migrated) is read from the file
    its descriptor names; appending "-flat" would read nothing (404)."""
    e = env
    want = e.content(1)

    def rename_extent() -> None:
        descriptor, _ = _snapshot_disk_path(e, 1)
        flat = descriptor.with_name(descriptor.name.removesuffix(".vmdk") + "-flat.vmdk")
        flat.rename(descriptor.with_name("moved-extent.vmdk"))
        descriptor.write_text(DESCRIPTOR.format(extents='RW 16384 VMFS "moved-extent.vmdk"'))

    r = e.backup(transport="vcenter", before_read=rename_extent)
    assert r.status == "success" and r.point_id, e.logs
    assert e.restored(r.point_id, 1) == want


def test_a_descriptor_with_two_extents_is_refused_clearly(env: Env) -> None:
    e = env

    def two_extents() -> None:
        descriptor, _ = _snapshot_disk_path(e, 1)
        descriptor.write_text(DESCRIPTOR.format(
            extents='RW 8192 VMFS "part1-flat.vmdk"\nRW 8192 VMFS "part2-flat.vmdk"'))

    r = e.backup(transport="vcenter", before_read=two_extents)
    assert r.status == "warning" and r.point_id
    assert [d.read_kind for d in r.disks] == ["full", "skipped"]
    why = r.disks[1].skipped_reason
    assert "disk 1" in why and "2 extents" in why and "part2-flat.vmdk" in why, why
    assert any("2 extents" in w for w in warnings_of(e))
    assert e.snapshots() == 0


# --- the host transport -----------------------------------------------------------------------

HOST_ONLY = {"VCSIM_FOLDER_AUTH": "1", "VCSIM_VC_FOLDER_REFUSE": "1"}
# … and, as on vSphere, the running VM's own disk files locked (its snapshot's are read)
HOST_ONLY_LOCKED = {**HOST_ONLY, "VCSIM_FOLDER_LOCK_RUNNING": "1"}


def counters(e: Env) -> dict[str, Any]:
    s = e.session
    with httpx.Client(verify=False) as c:
        data: dict[str, Any] = c.get(f"https://{s.host}:{s.port}/vmkeep/counters").json()
    return data


def tickets_logged(e: Env) -> int:
    """Service tickets the backups said they used (one line per disk)."""
    found = [re.search(r"from host DC0_H0 in (\d+) stream\(s\), (\d+) service ticket", m)
             for _lvl, m in e.logs]
    return sum(int(m.group(2)) for m in found if m)


@pytest.mark.parametrize("vcsim", [HOST_ONLY_LOCKED], indirect=True)
def test_backups_read_from_the_host_with_single_use_tickets(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The vCenter's /folder refuses everything: the default transport reads from the host
    that runs the VM, a few streams per disk, one ticket each, each used once."""
    monkeypatch.setattr(host_transport, "STREAM_BYTES", 2 << 20)  # several streams per disk
    e = env
    r1 = e.backup()
    assert r1.status == "success" and r1.point_id, e.logs
    want1 = [e.content(0), e.content(1)]
    c = counters(e)
    host = c["hosts"]["DC0_H0"]
    assert c["vcenter"] == {"requests": 0, "served": 0}
    assert host["served"] == host["requests"] == tickets_logged(e) > 0
    assert any("reading disks from host DC0_H0" in m for _lvl, m in e.logs)
    # disk 1 (8 MiB, 6 MiB allocated in 3 runs of 2 MiB streams at most): a few streams,
    # far fewer than its 24 blocks of 256 KiB
    streams = [int(m.group(1)) for _lvl, msg in e.logs
               if (m := re.search(r"disk 1: read from host DC0_H0 in (\d+) stream", msg))]
    assert streams and 2 <= streams[0] <= 8, e.logs

    write(e.live(1), 2 * (1 << 18) + 100, b"x" * 1000)
    write(e.live(1), 7 << 20, b"y" * 50_000)
    r2 = e.backup()
    assert r2.status == "success" and r2.point_id, e.logs
    assert [d.read_kind for d in r2.disks] == ["incremental", "incremental"]
    c = counters(e)
    host = c["hosts"]["DC0_H0"]
    assert c["vcenter"] == {"requests": 0, "served": 0}
    assert host["served"] == host["requests"] == tickets_logged(e)
    assert r1.point_id and r2.point_id
    for i in (0, 1):
        assert e.restored(r1.point_id, i) == want1[i]
        assert e.restored(r2.point_id, i) == e.content(i)


@pytest.mark.parametrize("vcsim", [HOST_ONLY], indirect=True)
def test_a_host_certificate_other_than_the_reported_one_is_refused(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong_pin(session: VSphereSession, vm: str) -> HostEndpoint:
        return replace(host_of_vm(session, vm), thumbprint="ab" * 20)

    monkeypatch.setattr(disk_reader, "host_of_vm", wrong_pin)
    e = env
    with pytest.raises(TransportError, match=r"host DC0_H0 \(127.0.0.1:\d+\) presented a "
                       r"certificate with SHA-1 [0-9A-F:]+, but the vCenter reports AB:AB:"):
        e.backup()
    assert counters(e)["hosts"]["DC0_H0"]["requests"] == 0  # no ticket was sent
    assert e.snapshots() == 0


@pytest.mark.parametrize("vcsim", [{"VCSIM_FOLDER_AUTH": "1"}], indirect=True)
def test_the_vcenter_transport_reads_through_the_vcenter(env: Env) -> None:
    e = env
    r = e.backup(transport="vcenter")
    assert r.status == "success" and r.point_id, e.logs
    c = counters(e)
    assert c["vcenter"]["served"] > 0 and c["vcenter"]["served"] == c["vcenter"]["requests"]
    assert all(h["requests"] == 0 for h in c["hosts"].values())
    slow = [m for _lvl, m in e.logs if "through the vCenter" in m]
    assert len(slow) == 1 and "slower" in slow[0]
    assert e.restored(r.point_id, 1) == e.content(1)


@pytest.mark.parametrize("vcsim", [{"VCSIM_FOLDER_AUTH": "1", **IGNORE_RANGE}], indirect=True)
def test_a_host_answering_range_with_200_fails_the_backup_clearly(env: Env) -> None:
    e = env
    with pytest.raises(TransportError, match=r"on host DC0_H0: .*HTTP 200 .*ignored Range"):
        e.backup()
    assert e.snapshots() == 0


def test_the_direct_transport_needs_explicit_datastore_paths(env: Env) -> None:
    e = env
    with pytest.raises(UsageError, match="--datastore-path"):
        e.backup(transport="direct")
    assert e.snapshots() == 0
    with pytest.raises(VmBackupError, match="disk 0: datastore 'LocalDS_0' has no local folder"):
        e.backup(transport="direct", datastore_paths={"OtherDS": str(e.tmp)})
    assert e.snapshots() == 0
    r = e.backup(transport="direct", datastore_paths=e.datastores)
    assert r.status == "success" and r.point_id, e.logs
    assert e.restored(r.point_id, 1) == e.content(1)
