"""Pure planning: which blocks a backup reads, block-map overlay arithmetic, and which stage
of the pipeline a session calls the bottleneck."""

from __future__ import annotations

from array import array

import pytest

from appliance.jobs.backup import DiskPlan, DiskShape, bottleneck, plan_backup
from appliance.jobs.backup_stats import (
    STAGE_CPU,
    STAGE_READ,
    STAGE_WRITE,
    BackupStats,
    StageTimes,
    total,
)
from appliance.jobs.blockmap import overlay
from appliance.repository.manifest import BlockMap
from appliance.source import Extent, blocks_touched
from catalog.models import DiskRow

MiB = 1 << 20
GiB = 1 << 30


def _row(size: int, bs: int, index: int = 0) -> DiskRow:
    return DiskRow("p0", index, "d", size, bs, None, None, 0, "{}")


@pytest.mark.parametrize(
    ("extents", "bs", "size", "expected"),
    [
        ([Extent(0, 1)], MiB, 4 * MiB, [0]),
        ([Extent(MiB - 1, 2)], MiB, 4 * MiB, [0, 1]),
        ([Extent(3 * MiB, MiB)], MiB, 4 * MiB, [3]),
        ([Extent(0, 0)], MiB, 4 * MiB, []),
        ([Extent(5 * MiB - 10, 10)], MiB, 5 * MiB - 10 + 10, [4]),
        ([Extent(0, 10 * MiB)], MiB, 3 * MiB + 5, [0, 1, 2, 3]),  # clipped to the disk
        ([Extent(2 * MiB, 1), Extent(0, 1), Extent(2 * MiB, 5)], MiB, 4 * MiB, [0, 2]),
    ],
)
def test_blocks_touched(extents: list[Extent], bs: int, size: int, expected: list[int]) -> None:
    assert blocks_touched(extents, bs, size) == expected


ALLOC = (Extent(0, 2 * MiB), Extent(6 * MiB, MiB))


@pytest.mark.parametrize(
    ("parent", "prev", "changed", "bs", "kind", "reads", "reason"),
    [
        (None, [], (Extent(0, 1),), MiB, "full", (0, 1, 6), "first backup"),
        ("p0", [_row(8 * MiB, MiB)], (Extent(MiB, 1),), MiB, "incremental", (1,), "changed"),
        ("p0", [_row(8 * MiB, MiB)], None, MiB, "full", (0, 1, 6), "no changed-areas list"),
        ("p0", [_row(4 * MiB, MiB)], (Extent(0, 1),), MiB, "full", (0, 1, 6), "size changed"),
        ("p0", [_row(8 * MiB, 4 * MiB)], (Extent(0, 1),), MiB, "full", (0, 1, 6),
         "block size changed"),
        ("p0", [_row(8 * MiB, MiB, index=1)], (Extent(0, 1),), MiB, "full", (0, 1, 6),
         "disk 0 is new"),
    ],
)
def test_plan_backup(parent: str | None, prev: list[DiskRow],
                     changed: tuple[Extent, ...] | None, bs: int, kind: str,
                     reads: tuple[int, ...], reason: str) -> None:
    plan = plan_backup("vm", [DiskShape(0, 8 * MiB, ALLOC, changed)], parent, prev, bs)
    assert plan.kind == kind
    assert plan.disks[0].read_blocks == reads
    assert reason in plan.reason


def _map(entries: dict[int, bytes]) -> BlockMap:
    keys = sorted(entries)
    return BlockMap(array("Q", keys), b"".join(entries[k] for k in keys))


A, B, C = b"a" * 32, b"b" * 32, b"c" * 32


@pytest.mark.parametrize(
    ("base", "updates", "replace_all", "result", "delta"),
    [
        ({}, [(0, A), (2, B)], True, {0: A, 2: B}, [(0, A), (2, B)]),
        ({0: A, 1: B}, [(1, C)], False, {0: A, 1: C}, [(1, C)]),
        ({0: A, 1: B}, [(1, None)], False, {0: A}, [(1, None)]),
        ({0: A, 1: B}, [(1, B)], False, {0: A, 1: B}, []),
        ({0: A, 1: B, 5: C}, [(1, B)], True, {1: B}, [(0, None), (5, None)]),
        ({3: A}, [(0, None), (7, C)], False, {3: A, 7: C}, [(7, C)]),
    ],
)
def test_overlay(base: dict[int, bytes], updates: list[tuple[int, bytes | None]],
                 replace_all: bool, result: dict[int, bytes],
                 delta: list[tuple[int, bytes | None]]) -> None:
    new, d_idx, d_ids = overlay(_map(base), updates, replace_all=replace_all)
    assert list(new.indices) == sorted(result)
    assert new.ids == b"".join(result[k] for k in sorted(result))
    assert list(zip(d_idx, d_ids, strict=True)) == delta


@pytest.mark.parametrize(
    ("read_wait", "read_s", "hash_s", "compress_wait", "write_wait", "expected"),
    [
        (2.0, 1.0, 0.1, 0.1, 0.1, STAGE_READ),  # waiting on reads that mostly read
        (2.0, 0.1, 1.0, 0.1, 0.1, STAGE_CPU),  # … that mostly hash
        (0.1, 1.0, 0.0, 1.5, 0.2, STAGE_CPU),  # waiting on compression
        (0.1, 1.0, 0.0, 0.1, 0.9, STAGE_WRITE),  # the pack writer pushes back
        (0.0, 0.0, 0.0, 0.0, 0.0, STAGE_READ),  # nothing measured: the source
        (1.0, 0.0, 0.0, 0.0, 0.5, STAGE_READ),  # zero blocks read instantly: still the source
    ],
)
def test_bottleneck(read_wait: float, read_s: float, hash_s: float, compress_wait: float,
                    write_wait: float, expected: str) -> None:
    assert bottleneck(read_wait, read_s, hash_s, compress_wait, write_wait) == expected


def test_a_runs_ratios_and_bottleneck_over_all_its_batches() -> None:
    # Two VMs: 10 GiB disks each; 4 GiB and 2 GiB read, 1.5 GiB new in all, 0.5 GiB stored.
    a = BackupStats(10 * GiB, 4 * GiB, GiB, GiB // 4, 30.0, StageTimes(20.0, 5.0, 1.0))
    b = BackupStats(10 * GiB, 2 * GiB, GiB // 2, GiB // 4, 10.0, StageTimes(2.0, 8.0, 4.0))
    s = total([a, b])
    assert (s.processed, s.read, s.new, s.transferred) == (20 * GiB, 6 * GiB, 3 * GiB // 2,
                                                           GiB // 2)
    assert s.dedup_ratio == pytest.approx(4.0)  # 6 GiB read / 1.5 GiB new
    assert s.compression_ratio == pytest.approx(3.0)  # 1.5 GiB new / 0.5 GiB stored
    assert s.seconds == 40.0
    shares = s.stages.shares()
    assert shares == pytest.approx({STAGE_READ: 0.55, STAGE_CPU: 0.325, STAGE_WRITE: 0.125})
    assert sum(shares.values()) == pytest.approx(1.0)
    assert s.stages.bottleneck() == STAGE_READ
    assert b.stages.bottleneck() == STAGE_CPU  # one VM's own run
    # Nothing new (every block known) or nothing stored: no ratio, no division by zero.
    none = BackupStats(GiB, GiB, 0, 0, 1.0)
    assert (none.dedup_ratio, none.compression_ratio) == (None, None)
    assert none.stages.shares() == {STAGE_READ: 0.0, STAGE_CPU: 0.0, STAGE_WRITE: 0.0}
    assert total([]) == BackupStats()


def test_a_disks_planned_bytes_count_its_short_last_block() -> None:
    plan = DiskPlan(0, 3 * MiB + 5, MiB, (0, 3), None, False, "")
    assert plan.bytes_to_read == MiB + 5
