"""Snapshots, CBT and the disk transports against the real simulator (vcsim).

Guest data is written into the VM's current flat file through the datastore's local folder;
snapshots freeze it, CBT reports the written 64 KiB areas, and both transports read the
snapshot's frozen flat file.
"""

from __future__ import annotations

import os
import random
import signal
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from appliance.source import Extent
from appliance.vsphere.cbt import (
    ALL_ALLOCATED,
    CbtInvalid,
    CbtNotEnabled,
    SnapshotDisk,
    changed_areas,
    flat_file_of,
    snapshot_disks,
    split_datastore_path,
)
from appliance.vsphere.session import VSphereSession
from appliance.vsphere.snapshot import SnapshotRef, backup_snapshot, enable_cbt
from appliance.vsphere.transport import (
    DatastoreDiskSource,
    DatastoreEndpoint,
    DirectPathDiskSource,
    session_cookie_value,
)
from tests.helpers import in_ws
from tests.vcsim import Vcsim, start_vcsim

BLOCK = 64 * 1024


@dataclass
class Env:
    sim: Vcsim
    si: Any
    vm: Any
    dc: str
    datastores: dict[str, str]
    endpoint: DatastoreEndpoint
    session: VSphereSession  # the same connection, for the adapter's functions

    @property
    def moref(self) -> str:
        return str(self.vm._moId)


def _stop(proc: subprocess.Popen[str], sim: Vcsim) -> None:
    os.kill(sim.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _env(sim: Vcsim) -> Env:
    si = SmartConnect(host=sim.host, port=sim.port, user=sim.user,  # type: ignore[no-untyped-call]
                      pwd=sim.password, disableSslCertValidation=True)
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    vm = sorted(view.view, key=lambda v: v.name)[0]
    view.Destroy()
    dc = vm.parent
    while not isinstance(dc, vim.Datacenter):
        dc = dc.parent
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    endpoint = DatastoreEndpoint(sim.host, sim.port, session_cookie_value(si._stub.cookie), ctx)
    session = VSphereSession(si, host=sim.host, port=sim.port, user=sim.user,
                             password=sim.password, fingerprint=None, ssl_context=ctx)
    return Env(sim, si, vm, dc.name, {ds.name: ds.info.url for ds in vm.datastore}, endpoint,
               session)


@pytest.fixture
def env(vcsim_binary: Path) -> Iterator[Env]:
    proc, sim = start_vcsim(vcsim_binary)
    e = _env(sim)
    try:
        yield e
    finally:
        Disconnect(e.si)  # type: ignore[no-untyped-call]
        _stop(proc, sim)


@pytest.fixture
def paged_env(vcsim_binary: Path) -> Iterator[Env]:
    proc, sim = start_vcsim(vcsim_binary, env={"VCSIM_CBT_MAX_EXTENTS": "1"})
    e = _env(sim)
    try:
        yield e
    finally:
        Disconnect(e.si)  # type: ignore[no-untyped-call]
        _stop(proc, sim)


def live_disk(e: Env) -> Any:
    return next(d for d in e.vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk))


def local_flat(e: Env, ds_path: str) -> Path:
    ds, path = split_datastore_path(ds_path)
    return Path(e.datastores[ds]) / flat_file_of(path)


def write(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b" if path.exists() else "wb") as f:
        f.seek(offset)
        f.write(data)


def expected_disk(path: Path, size: int) -> bytes:
    data = path.read_bytes()
    return data[:size] + bytes(max(0, size - len(data)))


def sources(e: Env, disk: SnapshotDisk,
            allocated: list[Extent]) -> tuple[DatastoreDiskSource, DirectPathDiskSource]:
    ds, path = split_datastore_path(disk.file_name)
    https = DatastoreDiskSource(e.endpoint, e.dc, ds, flat_file_of(path), disk.capacity_bytes,
                                "disk0", allocated)
    direct = DirectPathDiskSource(local_flat(e, disk.file_name), disk.capacity_bytes, "disk0",
                                  allocated)
    return https, direct


def read_all(src: DatastoreDiskSource | DirectPathDiskSource, chunk: int = 200_000) -> bytes:
    return b"".join(src.read(o, chunk) for o in range(0, src.size, chunk))


def first_writes(live: Path) -> bytes:
    """Blocks 0, 1 (part), 3 and 5 (part): about 200 KiB of random data; the file ends in
    block 5, well short of the 1 MiB capacity."""
    rnd = random.Random(7)
    write(live, 0, rnd.randbytes(BLOCK))
    write(live, BLOCK + 1000, rnd.randbytes(5000))
    write(live, 3 * BLOCK, rnd.randbytes(BLOCK))
    write(live, 5 * BLOCK + 10, rnd.randbytes(300))
    return live.read_bytes()


FIRST_AREAS = [Extent(0, 2 * BLOCK), Extent(3 * BLOCK, BLOCK), Extent(5 * BLOCK, BLOCK)]


def second_writes(live: Path) -> None:
    """Change block 3, zero block 1, write block 9 (past the file's old end)."""
    write(live, 3 * BLOCK + 7, b"changed")
    write(live, BLOCK, bytes(BLOCK))
    write(live, 9 * BLOCK + 5, b"new data")


SECOND_CHANGES = [Extent(BLOCK, BLOCK), Extent(3 * BLOCK, BLOCK), Extent(9 * BLOCK, BLOCK)]


def snapshot_count(e: Env) -> int:
    def count(nodes: Any) -> int:
        return sum(1 + count(n.childSnapshotList) for n in nodes or [])
    return count(e.vm.snapshot.rootSnapshotList) if e.vm.snapshot else 0


def test_snapshot_cbt_and_both_transports(env: Env) -> None:
    e = env
    assert enable_cbt(e.session, e.moref) is True
    assert enable_cbt(e.session, e.moref) is False
    disk = live_disk(e)
    live = local_flat(e, disk.backing.fileName)
    content = first_writes(live)
    assert 150 * 1024 < len(content) < 1 << 20

    with backup_snapshot(e.session, e.moref) as s1:
        assert s1.name.startswith("vmkeep-")
        [d1] = snapshot_disks(e.session, s1)
        assert d1.key == disk.key and d1.capacity_bytes == 1 << 20
        assert d1.file_name != disk.backing.fileName and d1.change_id
        assert "snap" in d1.file_name and d1.backing_type.endswith("FlatVer2BackingInfo")
        allocated = changed_areas(e.session, e.moref, s1, d1.key, d1.capacity_bytes, ALL_ALLOCATED)
        assert allocated == FIRST_AREAS

        want = content + bytes(d1.capacity_bytes - len(content))
        https, direct = sources(e, d1, allocated)
        try:
            assert https.allocated_areas() == allocated
            assert read_all(https) == want
            assert read_all(direct) == want
            # Past the file's end: zeros (HTTP 416 or short body); past capacity: nothing.
            assert https.read(900_000, 4096) == bytes(4096)
            assert https.read(d1.capacity_bytes - 10, 100) == bytes(10)
            assert https.read(d1.capacity_bytes, 100) == b""

            # Point in time: writes after the snapshot are not in the snapshot's disk.
            second_writes(live)
            assert read_all(https) == want
            assert read_all(direct) == want
        finally:
            https.close()
            direct.close()

        with backup_snapshot(e.session, e.moref) as s2:
            [d2] = snapshot_disks(e.session, s2)
            assert d2.change_id and d2.change_id != d1.change_id
            assert d1.change_id is not None
            since = changed_areas(e.session, e.moref, s2, d2.key, d2.capacity_bytes, d1.change_id)
            assert since == SECOND_CHANGES
            assert changed_areas(e.session, e.moref, s2, d2.key, d2.capacity_bytes,
                                 d2.change_id) == []
            https2, _ = sources(e, d2, since)
            try:
                assert read_all(https2) == expected_disk(live, d2.capacity_bytes)
            finally:
                https2.close()
            assert snapshot_count(e) == 2
    assert snapshot_count(e) == 0


def test_paging_gives_the_same_union(paged_env: Env) -> None:
    e = paged_env
    enable_cbt(e.session, e.moref)
    disk = live_disk(e)
    live = local_flat(e, disk.backing.fileName)
    first_writes(live)
    with backup_snapshot(e.session, e.moref) as s1:
        [d1] = snapshot_disks(e.session, s1)
        assert changed_areas(e.session, e.moref, s1, d1.key, d1.capacity_bytes, "*") == FIRST_AREAS
        # The simulator really answers in pieces.
        reply = e.vm.QueryChangedDiskAreas(snapshot=e.vm.snapshot.currentSnapshot,
                                           deviceKey=d1.key, startOffset=0, changeId="*")
        assert reply.length < d1.capacity_bytes
        second_writes(live)
        with backup_snapshot(e.session, e.moref) as s2:
            [d2] = snapshot_disks(e.session, s2)
            assert d1.change_id is not None
            assert changed_areas(e.session, e.moref, s2, d2.key, d2.capacity_bytes,
                                 d1.change_id) == SECOND_CHANGES
    assert snapshot_count(e) == 0


def test_cbt_faults_are_typed(env: Env) -> None:
    e = env
    disk = live_disk(e)
    with pytest.raises(CbtNotEnabled):
        changed_areas(e.session, e.moref, None, disk.key, disk.capacityInKB * 1024, "*")
    enable_cbt(e.session, e.moref)
    with backup_snapshot(e.session, e.moref) as s1:
        [d1] = snapshot_disks(e.session, s1)
        unknown = "52 00 00 00 00 00 00 00-00 00 00 00 00 00 00 00/1"
        with pytest.raises(CbtInvalid) as info:
            changed_areas(e.session, e.moref, s1, d1.key, d1.capacity_bytes, unknown)
        assert "changeId" in str(info.value) and "\n" not in str(info.value)


def test_backup_snapshot_is_removed_when_the_body_raises(env: Env) -> None:
    e = env
    seen: list[SnapshotRef] = []
    with pytest.raises(RuntimeError, match="injected"), backup_snapshot(e.session, e.moref) as ref:
        seen.append(ref)
        assert snapshot_count(e) == 1
        raise RuntimeError("injected failure after the snapshot")
    assert seen and snapshot_count(e) == 0


def test_engine_backs_up_and_restores_through_the_datastore(env: Env, tmp_path: Path) -> None:
    from appliance.jobs.backup import BackupOptions, DiskInput, run_backup
    from appliance.jobs.restore import restore_disk
    from appliance.repository.repo import Repository
    from catalog.store import Catalog

    e = env
    enable_cbt(e.session, e.moref)
    live = local_flat(e, live_disk(e).backing.fileName)
    first_writes(live)
    repo = Repository.open_local(tmp_path / "repo", create=True)
    cat = Catalog.open(None)
    options = BackupOptions(block_size=256 << 10)
    points: list[tuple[str, bytes]] = []
    try:
        with backup_snapshot(e.session, e.moref) as s1:
            [d1] = snapshot_disks(e.session, s1)
            allocated = changed_areas(e.session, e.moref, s1, d1.key, d1.capacity_bytes, "*")
            src, _ = sources(e, d1, allocated)
            try:
                res = in_ws(repo, cat, run_backup,
                            "vm", [DiskInput(0, src, change_id=d1.change_id)],
                                 options, object_kind="vm")
            finally:
                src.close()
            points.append((res.point_id, expected_disk(local_flat(e, d1.file_name),
                                                       d1.capacity_bytes)))
        second_writes(live)
        with backup_snapshot(e.session, e.moref) as s2:
            [d2] = snapshot_disks(e.session, s2)
            assert d1.change_id is not None
            since = changed_areas(e.session, e.moref, s2, d2.key, d2.capacity_bytes, d1.change_id)
            src, _ = sources(e, d2, changed_areas(e.session, e.moref, s2, d2.key,
                                                  d2.capacity_bytes, "*"))
            try:
                res = in_ws(repo, cat, run_backup, "vm",
                                 [DiskInput(0, src, since, change_id=d2.change_id)],
                                 options, object_kind="vm")
            finally:
                src.close()
            assert res.bytes_read <= 3 * (256 << 10)
            points.append((res.point_id, expected_disk(local_flat(e, d2.file_name),
                                                       d2.capacity_bytes)))
        assert points[0][1] != points[1][1]
        for i, (point, want) in enumerate(points):
            out = tmp_path / f"restored{i}.img"
            in_ws(repo, cat, restore_disk, point, 0, out)
            assert out.read_bytes() == want
    finally:
        cat.close()


def test_unreachable_datastore_fails_after_retries_with_one_line_error() -> None:
    import socket

    from appliance.vsphere.transport import TransportError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = DatastoreDiskSource(DatastoreEndpoint("127.0.0.1", port, "x"), "DC0", "LocalDS_0",
                              "vm/disk-flat.vmdk", 1 << 20, "disk0", [], retries=3,
                              backoff=0.01)
    with pytest.raises(TransportError) as info:
        src.read(0, 4096)
    assert "after 3 attempts" in str(info.value) and "\n" not in str(info.value)
    src.close()
