"""Restores to a new VM through an NFC import (ImportVApp + HttpNfcLease) against the
simulator, which decodes the streamOptimized VMDKs it is sent into the disks' flat files and
counts the bytes it receives: the new VM is byte-identical, only allocated grains travel, a
dropped upload is sent again for that disk only, and a failure that persists aborts the lease
and leaves no VM. The simulator's lease is checked to be as strict as vCenter's."""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from pyVmomi import vim

from appliance.errors import VmkeepError
from appliance.jobs import vm_restore
from appliance.jobs.restore import prepare_disk, read_blocks
from appliance.jobs.vm_restore import restore_new_vm
from appliance.vsphere import inventory, nfc_import
from appliance.vsphere import restore_target as rt
from appliance.vsphere.nfc_import import NfcImportError
from appliance.vsphere.stream_vmdk import GRAIN, StreamVmdk
from tests.helpers import in_ws, session_first
from tests.vsphere.vmenv import Env

NEW = "nfc-restored"
SECTOR = 512


def counters(e: Env) -> dict[str, Any]:
    s = e.session
    with httpx.Client(verify=False) as c:
        data: dict[str, Any] = c.get(f"https://{s.host}:{s.port}/vmkeep/counters").json()
    return data


def flat_bytes(e: Env, disk: rt.TargetDisk) -> bytes:
    data = (Path(e.datastores[disk.datastore]) / disk.flat_path).read_bytes()
    return data[:disk.capacity_bytes] + bytes(max(0, disk.capacity_bytes - len(data)))


def backed_up(e: Env) -> tuple[str, list[bytes]]:
    r = e.backup()
    assert r.point_id and r.status == "success", e.logs
    return r.point_id, [e.content(0), e.content(1)]


def restore(e: Env, point: str, **kw: Any) -> Any:
    return in_ws(e.repo, e.cat, session_first(restore_new_vm, e.session), point, NEW,
                 log=e.log, **kw)


class _Puts:
    """Records each disk upload the import makes: (bus, unit, url, thumbprint)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, int, str, str]] = []
        real = nfc_import._put

        def spy(session: Any, target: Any, source: Any, *a: Any, **k: Any) -> int:
            self.calls.append((source.bus, source.unit, target.url, target.thumbprint))
            return real(session, target, source, *a, **k)

        monkeypatch.setattr(nfc_import, "_put", spy)
        monkeypatch.setattr(nfc_import, "BACKOFF", 0.01)


def test_a_new_vm_restore_goes_through_nfc_to_the_host_and_is_byte_identical(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    e = env
    point, want = backed_up(e)
    puts = _Puts(monkeypatch)
    before = counters(e)
    result = restore(e, point)
    target = rt.describe_vm(e.session, result.vm_moref)
    assert [flat_bytes(e, d) for d in target.disks] == want
    after = counters(e)
    assert after["nfc"]["uploads"] - before["nfc"]["uploads"] == 2
    assert after["nfc"]["attempts"] - before["nfc"]["attempts"] == 2
    assert after["vcenter"]["requests"] == before["vcenter"]["requests"]  # no /folder PUT
    vm = e.session.content.searchIndex.FindByUuid(
        None, inventory.find_vm(e.session, NEW).instance_uuid, True, True)
    host = after["hosts"][vm.runtime.host.name]  # the host the VM landed on serves its disks
    assert [(u.split("/")[2], t) for _, _, u, t in puts.calls] == \
        [(f"127.0.0.1:{host['port']}", host["thumbprint"].replace(":", "").lower())] * 2
    assert any("imported through an NFC lease" in m for _, m in e.logs)
    # the lease is over: its URLs are gone, as on vCenter
    with httpx.Client(verify=False) as c:
        assert c.put(puts.calls[0][2], content=b"x").status_code == 404


def test_only_the_points_allocated_blocks_travel(env: Env) -> None:
    e = env
    point, want = backed_up(e)
    disks = in_ws(e.repo, e.cat, lambda ws: [prepare_disk(ws, point, i) for i in (0, 1)])
    before = counters(e)["nfc"]["bytes_received"]
    restore(e, point)
    received = counters(e)["nfc"]["bytes_received"] - before
    bound = 0
    for d in disks:
        grains = sum(-(-min(d.block_size, d.size - loc.block_index * d.block_size) // GRAIN)
                     for loc in d.plan)  # every grain of a stored block, at most
        tables = -(-d.size // (512 * GRAIN))
        bound += (grains * GRAIN  # the grains' data (stored: deflate level 0) ...
                  + grains * SECTOR  # ... a 12-byte marker and zlib's < 40 bytes, padded
                  + SECTOR + 4 * SECTOR  # header, descriptor (under 2 KiB)
                  + tables * 5 * SECTOR  # GT marker + 512 × 4 bytes per 32 MiB table
                  + 2 * SECTOR  # GD marker + GD (a few entries)
                  + 3 * SECTOR)  # footer marker, footer, end-of-stream marker
    assert received <= bound
    assert received < sum(d.size for d in disks)  # and less than the disks: zeros stay home
    assert received > sum(len(zlib.compress(w, 1)) for w in want) // 2  # it did send


@pytest.mark.parametrize("vcsim", [{"VCSIM_NFC_FAIL_ONCE": "2"}], indirect=True)
def test_a_dropped_upload_is_sent_again_for_that_disk_only(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    e = env
    point, want = backed_up(e)
    puts = _Puts(monkeypatch)
    result = restore(e, point)
    target = rt.describe_vm(e.session, result.vm_moref)
    assert [flat_bytes(e, d) for d in target.disks] == want
    slots = [(b, u) for b, u, _, _ in puts.calls]
    assert len(slots) == 3 and slots[0] != slots[1] == slots[2]  # disk 0 once, disk 1 twice
    nfc = counters(e)["nfc"]
    assert (nfc["attempts"], nfc["uploads"]) == (3, 2)


@pytest.mark.parametrize("vcsim", [{"VCSIM_NFC_FAIL_FROM": "2"}], indirect=True)
def test_a_failure_that_persists_aborts_the_import_and_leaves_no_vm(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    e = env
    point, _ = backed_up(e)
    puts = _Puts(monkeypatch)
    with pytest.raises(NfcImportError, match=r"could not be sent in 4 attempts"):
        restore(e, point)
    assert len(puts.calls) == 1 + 4
    assert NEW not in [v.name for v in inventory.list_vms(e.session)]
    assert not any((Path(p) / NEW).exists() for p in e.datastores.values())
    assert any("deleting the half-restored VM" in m for _, m in e.logs)
    nfc = counters(e)["nfc"]
    assert (nfc["attempts"], nfc["uploads"]) == (5, 1)


def _import_one_disk(e: Env) -> tuple[Any, str, str]:
    """ImportVApp of a VM with one 1 MiB disk: (lease, vm moref, the disk's URL)."""
    s = e.session
    place = rt.resolve_placement(s)
    ctrl = vim.vm.device.VirtualLsiLogicController(key=-100, busNumber=0,  # type: ignore[no-untyped-call]
                                                   sharedBus="noSharing")
    disk = vim.vm.device.VirtualDisk(  # type: ignore[no-untyped-call]
        key=-101, controllerKey=-100, unitNumber=0, capacityInKB=1024,
        backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(  # type: ignore[no-untyped-call]
            fileName=f"[{place.datastore}]", diskMode="persistent", thinProvisioned=True))
    spec = vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
        name=NEW, guestId="otherGuest64", numCPUs=1, memoryMB=128,
        files=vim.vm.FileInfo(vmPathName=f"[{place.datastore}]"),  # type: ignore[no-untyped-call]
        deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="add", device=ctrl),  # type: ignore[no-untyped-call]
                      vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
                          operation="add", fileOperation="create", device=disk)])
    pool = vim.ResourcePool(place.pool_moref, s.si._stub)  # type: ignore[no-untyped-call]
    lease = pool.ImportVApp(spec=vim.vm.VmImportSpec(configSpec=spec),  # type: ignore[no-untyped-call]
                            folder=vim.Folder(place.folder_moref, s.si._stub),  # type: ignore[no-untyped-call]
                            host=None)
    assert lease.state == "ready"
    info = lease.info
    assert info is not None
    urls = [d for d in info.deviceUrl if d.disk]
    assert len(urls) == 1
    assert urls[0].importKey == f"/{NEW}/VirtualLsiLogicController0:0"
    assert urls[0].key.endswith("/VirtualLsiLogicController0:0")
    return lease, str(info.entity._moId), str(urls[0].url)


def _vmdk(capacity: int, blocks: list[tuple[int, bytes]]) -> Iterator[bytes]:
    return iter(StreamVmdk(capacity, blocks))


def test_the_simulators_lease_is_strict(env: Env) -> None:
    e = env
    lease, moref, url = _import_one_disk(e)
    folder = Path(e.datastores[rt.resolve_placement(e.session).datastore]) / NEW
    flats = {f: f.read_bytes() for f in folder.glob("*-flat.vmdk")}
    with httpx.Client(verify=False) as c:
        bad = c.post(url, content=b"KDMV" + bytes(1020))
        assert bad.status_code == 400 and "streamOptimized" in bad.text
        half = b"".join(_vmdk(1 << 20, [(0, b"\x01" * GRAIN)]))[:-SECTOR]  # no end marker
        bad = c.post(url, content=half)
        assert bad.status_code == 400 and "end-of-stream" in bad.text
        data = b"\x5a" * GRAIN
        whole = b"".join(_vmdk(1 << 20, [(3 * GRAIN, data)]))
        # a disk is POSTed with a length, as ovftool and govc send one
        assert c.put(url, content=whole).status_code == 405
        assert c.post(url, content=_vmdk(1 << 20, [(3 * GRAIN, data)])).status_code == 411
        assert {f: f.read_bytes() for f in folder.glob("*-flat.vmdk")} == flats  # untouched
        ok = c.post(url, content=whole)
        assert ok.status_code == 200, ok.text
        flat = next(folder.glob("*-flat.vmdk"))
        assert flat.stat().st_size == 1 << 20
        assert flat.read_bytes() == bytes(3 * GRAIN) + data + bytes((1 << 20) - 4 * GRAIN)
        lease.HttpNfcLeaseAbort()
        assert c.post(url, content=b"".join(_vmdk(1 << 20, []))).status_code == 404
    assert not nfc_import.vm_exists(e.session, moref)  # aborting deleted the VM
    assert not folder.exists()


@pytest.mark.parametrize("vcsim", [{"VCSIM_HOST_ENDPOINTS": "0"}], indirect=True)
def test_without_host_endpoints_the_lease_is_served_by_the_vcenter(env: Env) -> None:
    e = env
    lease, _, url = _import_one_disk(e)
    assert url.startswith("https://*/nfc/")
    s = e.session
    with httpx.Client(verify=False) as c:
        real = url.replace("*", f"{s.host}:{s.port}", 1)
        assert c.post(real, content=b"".join(_vmdk(1 << 20, []))).status_code == 200
    lease.HttpNfcLeaseComplete()
    assert counters(e)["nfc"]["uploads"] == 1


def test_a_restore_error_is_a_vmkeep_error() -> None:
    assert issubclass(NfcImportError, VmkeepError)


def test_device_urls_are_matched_by_controller_and_unit_or_by_order() -> None:
    """vCenter names a device "/<vm>/<controller type><bus>:<unit>"; a key "/<vm>/disk:<n>"
    (older simulators) names the n-th disk of the created VM."""
    dev = vim.vm.device
    ide = dev.VirtualDisk(key=-3, controllerKey=201, unitNumber=0)  # type: ignore[no-untyped-call]
    scsi = dev.VirtualDisk(key=-2, controllerKey=-1, unitNumber=1)  # type: ignore[no-untyped-call]
    spec = vim.vm.ConfigSpec(deviceChange=[  # type: ignore[no-untyped-call]
        dev.VirtualDeviceSpec(operation="add",  # type: ignore[no-untyped-call]
                              device=dev.ParaVirtualSCSIController(key=-1, busNumber=2)),  # type: ignore[no-untyped-call]
        dev.VirtualDeviceSpec(operation="add", device=scsi),  # type: ignore[no-untyped-call]
        dev.VirtualDeviceSpec(operation="add", device=ide)])  # type: ignore[no-untyped-call]

    class Url:
        def __init__(self, key: str, url: str, disk: bool = True) -> None:
            self.key = self.importKey = key
            self.url, self.disk, self.sslThumbprint = url, disk, "AA:BB"

    devices = [dev.VirtualIDEController(key=201, busNumber=1),  # type: ignore[no-untyped-call]
               dev.ParaVirtualSCSIController(key=1000, busNumber=2),  # type: ignore[no-untyped-call]
               dev.VirtualDisk(key=2000, controllerKey=1000, unitNumber=1),  # type: ignore[no-untyped-call]
               dev.VirtualDisk(key=3000, controllerKey=201, unitNumber=0)]  # type: ignore[no-untyped-call]

    class Info:
        def __init__(self, urls: list[Url]) -> None:
            self.deviceUrl = urls
            self.entity = SimpleNamespace(config=SimpleNamespace(
                hardware=SimpleNamespace(device=devices)))

    class Session:
        def call(self, fn: Any) -> Any:
            return fn()

    s: Any = Session()
    vcenter = Info([Url("/vm-9/VirtualIDEController1:0", "a"),
                    Url("/vm-9/ParaVirtualSCSIController2:1", "b"),
                    Url("/vm-9/nvram:0", "c", disk=False)])
    found = nfc_import._targets(s, vcenter, spec, "test")
    assert {k: v.url for k, v in found.items()} == {(1, 0): "a", (2, 1): "b"}
    assert found[(1, 0)].thumbprint == "aabb"
    older = Info([Url("/vm-9/disk:0", "x"), Url("/vm-9/disk:1", "y")])
    assert {k: v.url for k, v in nfc_import._targets(s, older, spec, "test").items()} == \
        {(2, 1): "x", (1, 0): "y"}
    with pytest.raises(NfcImportError, match="matches no disk"):
        nfc_import._targets(s, Info([Url("/vm-9/VirtualIDEController0:0", "z")]), spec, "t")


def test_the_lease_hears_of_the_progress_while_disks_are_sent(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    e = env
    point, want = backed_up(e)
    monkeypatch.setattr(nfc_import, "PROGRESS_EVERY", 0.02)
    def slow(ws: Any, disk: Any, **k: Any) -> Iterator[tuple[int, bytes]]:
        for block in read_blocks(ws, disk, **k):
            time.sleep(0.02)  # a slow repository: the lease must be kept alive meanwhile
            yield block

    monkeypatch.setattr(vm_restore, "read_blocks", slow)
    told: list[int] = []
    real_report = nfc_import._LeaseKeeper._report

    def spy(self: Any, percent: int) -> None:
        told.append(percent)
        real_report(self, percent)

    monkeypatch.setattr(nfc_import._LeaseKeeper, "_report", spy)
    result = restore(e, point)
    assert len(told) >= 3 and told == sorted(told) and told[0] >= 0 and told[-1] <= 99
    target = rt.describe_vm(e.session, result.vm_moref)
    assert [flat_bytes(e, d) for d in target.disks] == want
