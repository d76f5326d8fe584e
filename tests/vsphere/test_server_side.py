"""backup_vm as the server sees it: every SOAP call and datastore read goes through a counting
TLS proxy in front of vcsim (tests/vsphere/proxy.py), reached with vmkeep's own ``connect``
(the backups read through the vCenter: ``transport="vcenter"``).

- An incremental reads from the datastore only the blocks that changed plus the CBT sanity
  samples, counted at the server side, and both points restore byte-identical.
- A datastore that drops one read in five makes a backup slower, not wrong.
- With the simulator answering QueryChangedDiskAreas in many partial replies, the incremental
  still finds every changed area.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from appliance.jobs.vm_backup import VmBackupResult
from appliance.repository.repo import Repository
from appliance.vsphere import inventory
from appliance.vsphere.session import connect
from catalog.store import Catalog
from tests.helpers import MiB, make_image
from tests.vcsim import Vcsim, start_vcsim, with_host_endpoints
from tests.vsphere.proxy import CountingProxy, FailMode, ProxyStats, counting_proxy
from tests.vsphere.test_cbt_transport import _stop
from tests.vsphere.vmenv import BS, VM, Env, _add_disk, write

SAMPLES = 4  # backup_vm's default CBT sanity sample, per disk
SLACK = 64 << 10  # less than one block: a single block read too many fails the bound
MAX_EXTENTS = 2  # the paged simulator's extents per QueryChangedDiskAreas reply

Writes = list[tuple[int, int, bytes]]  # (disk index, offset, data)


def _resize_and_fill(e: Env, disk_mib: tuple[int, int], seed: int) -> None:
    """Disk 0 grown to disk_mib[0], a disk 1 of disk_mib[1] added; both filled with VM-like
    content (holes, zeros, text, random and repeated data)."""
    [d0] = e.disks()
    d0.capacityInKB = disk_mib[0] * 1024
    d0.capacityInBytes = disk_mib[0] * MiB
    WaitForTask(e.vm.ReconfigVM_Task(vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
        deviceChange=[vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
                          operation="edit", device=d0),
                      _add_disk(1, disk_mib[1] * 1024)])))
    sizes = [d.capacityInKB * 1024 for d in e.disks()]
    assert sizes == [disk_mib[0] * MiB, disk_mib[1] * MiB]
    for index, size in enumerate(sizes):
        make_image(e.live(index), size, seed=seed + index)


@contextmanager
def proxied_env(sim: Vcsim, tmp: Path, disk_mib: tuple[int, int],
                seed: int) -> Iterator[tuple[Env, CountingProxy]]:
    """An Env whose session (SOAP and datastore reads alike) goes through a counting proxy."""
    with counting_proxy(sim.host, sim.port, tmp / "proxy-cert") as proxy, \
            connect(proxy.host, proxy.port, sim.user, sim.password, fingerprint=None,
                    insecure=True) as session:
        info = inventory.find_vm(session, VM)
        vm = session.content.searchIndex.FindByUuid(None, info.instance_uuid, True, True)
        cat = Catalog.open(None)
        try:
            e = Env(session, Repository.open_local(tmp / "repo", create=True), cat, vm,
                    {ds.name: ds.info.url for ds in vm.datastore}, [], tmp)
            _resize_and_fill(e, disk_mib, seed)
            yield e, proxy
        finally:
            cat.close()


@pytest.fixture
def proxied(vcsim: Vcsim, tmp_path: Path) -> Iterator[tuple[Env, CountingProxy]]:
    with proxied_env(vcsim, tmp_path, (32, 32), seed=21) as pair:
        yield pair


@pytest.fixture
def small_proxied(vcsim: Vcsim, tmp_path: Path) -> Iterator[tuple[Env, CountingProxy]]:
    with proxied_env(vcsim, tmp_path, (16, 8), seed=41) as pair:
        yield pair


@pytest.fixture
def paged_proxied(vcsim_binary: Path, tmp_path: Path) -> Iterator[tuple[Env, CountingProxy]]:
    proc: subprocess.Popen[str]
    proc, sim = start_vcsim(vcsim_binary, env=with_host_endpoints(
        {"VCSIM_CBT_MAX_EXTENTS": str(MAX_EXTENTS)}))
    try:
        with proxied_env(sim, tmp_path, (16, 16), seed=31) as pair:
            yield pair
    finally:
        _stop(proc, sim)


def apply(e: Env, writes: Writes) -> dict[int, set[int]]:
    """Write into the VM's live disks; return the blocks touched, per disk."""
    touched: dict[int, set[int]] = {}
    for disk, offset, data in writes:
        write(e.live(disk), offset, data)
        touched.setdefault(disk, set()).update(
            range(offset // BS, (offset + len(data) - 1) // BS + 1))
    return touched


def assert_only_changes_read(stats: ProxyStats, r: VmBackupResult, changed_blocks: int
                             ) -> None:
    """The incremental fetched every changed block, plus at most the sampled ones, from the
    snapshot's frozen flat files, and reported what the server sent."""
    assert r.status == "success", r.warnings
    assert [d.read_kind for d in r.disks] == ["incremental", "incremental"]
    assert changed_blocks * BS <= stats.folder_bytes
    assert stats.folder_bytes <= (changed_blocks + SAMPLES * len(r.disks)) * BS + SLACK
    # The two frozen flat files, and each disk's descriptor once (it names the data file).
    flats = [p for p in stats.by_path if p.endswith("-flat.vmdk")]
    descriptors = {p: c for p, c in stats.by_path.items() if p not in flats}
    assert len(flats) == 2 and len(descriptors) == 2
    assert all("-snap" in p for p in stats.by_path)
    assert all(p.endswith(".vmdk") and c.requests == 1 for p, c in descriptors.items())
    assert sum(d.bytes_read for d in r.disks) == stats.folder_bytes


def test_incremental_reads_changed_blocks_and_samples_at_the_server(
        proxied: tuple[Env, CountingProxy]) -> None:
    e, proxy = proxied
    r1 = e.backup(transport="vcenter")
    assert r1.status == "success" and r1.point_id, e.logs
    assert [d.read_kind for d in r1.disks] == ["full", "full"]
    full = proxy.stats()
    want1 = [e.content(0), e.content(1)]
    disk_bytes = len(want1[0]) + len(want1[1])
    # The full read fetched the allocated areas only (the images have holes), each once.
    assert 0 < full.folder_bytes < disk_bytes
    assert sum(d.bytes_read for d in r1.disks) == full.folder_bytes

    rnd = random.Random(5)
    proxy.reset()
    touched = apply(e, [
        (0, 39 * BS - 3000, rnd.randbytes(6000)),  # across the boundary of blocks 38/39
        (0, 101 * BS + 5000, b"vmkeep changed this line\n" * 300),
        (1, 77 * BS + 100_000, rnd.randbytes(20_000)),
        (1, 77 * BS + 200_000, bytes(10_000) + rnd.randbytes(100)),
    ])
    changed = sum(len(b) for b in touched.values())
    assert changed == 4  # of 256 blocks: about 1.5 %
    r2 = e.backup(transport="vcenter")  # sample_blocks=4 by default
    s = proxy.stats()
    assert_only_changes_read(s, r2, changed)
    assert s.folder_bytes * 16 < disk_bytes
    assert r1.point_id and r2.point_id
    for i in (0, 1):
        assert e.restored(r1.point_id, i) == want1[i]
        assert e.restored(r2.point_id, i) == e.content(i)


@pytest.mark.parametrize("mode", ["close", "503"])
def test_dropped_datastore_reads_make_the_backup_slower_not_wrong(
        small_proxied: tuple[Env, CountingProxy], mode: FailMode) -> None:
    """Every 5th datastore read fails (connection reset without a reply, or HTTP 503); the
    transport retries up to 4 times with back-off, and the proxy never fails a retry of the
    same range again, so each read succeeds by its second attempt."""
    e, proxy = small_proxied
    proxy.set_failures(5, mode)
    want = [e.content(0), e.content(1)]
    r = e.backup(transport="vcenter")
    s = proxy.stats()
    assert r.status == "success" and r.point_id, e.logs
    assert [d.read_kind for d in r.disks] == ["full", "full"] and e.snapshots() == 0
    assert s.drops >= 5 and s.drops <= s.folder_gets // 5
    assert sum(d.bytes_read for d in r.disks) == s.folder_bytes
    for i in (0, 1):
        assert e.restored(r.point_id, i) == want[i]


def test_paged_cbt_replies_give_a_complete_incremental(
        paged_proxied: tuple[Env, CountingProxy]) -> None:
    e, proxy = paged_proxied
    r1 = e.backup(transport="vcenter")
    assert r1.status == "success" and r1.point_id, e.logs
    want1 = [e.content(0), e.content(1)]
    rnd = random.Random(9)
    # 12 separate changed areas on each disk, 6 times the simulator's extents per reply.
    per_disk = 12
    proxy.reset()
    touched = apply(e, [(disk, b * BS + 1000 + disk * 7, rnd.randbytes(3000))
                        for disk in (0, 1) for b in range(2, 2 + 5 * per_disk, 5)])
    assert all(len(blocks) == per_disk for blocks in touched.values())
    r2 = e.backup(transport="vcenter")
    s = proxy.stats()
    assert_only_changes_read(s, r2, 2 * per_disk)
    # Unpaged, the incremental asks 4 times (all allocated + changed since, per disk); paged,
    # each disk's changed-since query alone needs per_disk / MAX_EXTENTS replies.
    assert s.soap_calls.get("QueryChangedDiskAreas", 0) >= 2 * (1 + per_disk // MAX_EXTENTS)
    assert r1.point_id and r2.point_id
    for i in (0, 1):
        assert e.restored(r1.point_id, i) == want1[i]
        assert e.restored(r2.point_id, i) == e.content(i)

