"""The catalog: schema versioning, bulk writes, delta block maps, bounded dedup lookups."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from catalog.migrations import SCHEMA_VERSION
from catalog.models import NewBlock, NewDisk, PointRow, SessionRow, TaskRow
from catalog.store import Catalog, CatalogBusy, CatalogVersionError

REPO = "r" * 32


def _point(pid: str, parent: str | None, day: int) -> PointRow:
    return PointRow(pid, REPO, "vm", "image", datetime(2026, 1, day, tzinfo=UTC),
                    "full" if parent is None else "incremental", parent, "zstd-fast", "", 0, 0, 0)


def _ids(n: int, salt: int) -> list[bytes]:
    return [salt.to_bytes(2, "big") + i.to_bytes(30, "big") for i in range(n)]


def test_new_catalog_has_current_schema(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "c.duckdb") as cat:
        assert cat.schema_version == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    Catalog.open(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_version VALUES (999)")
    con.close()
    with pytest.raises(CatalogVersionError, match="999"):
        Catalog.open(path)


def test_a_busy_catalog_is_reported_not_crashed(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "c.duckdb"
    Catalog.open(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb,sys; c=duckdb.connect(sys.argv[1]); "
         "print('open', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(CatalogBusy, match="in use"):
            Catalog.open(path, wait=0.2)
    finally:
        holder.kill()
        holder.wait()


def test_incremental_adds_rows_in_proportion_to_changes_and_resolves() -> None:
    cat = Catalog.open(None)
    n = 4096
    ids = _ids(n, 1)
    cat.add_pack(REPO, "a" * 32, 1, [NewBlock(i, 1, 0, 0, 40, 1, 1) for i in ids])
    cat.add_point(REPO, _point("p1", None, 1), {}, [
        NewDisk(0, "d", n << 20, 1 << 20, None, "{}", None, n, list(range(n)), list(ids))])
    changed = _ids(3, 2)
    cat.add_point(REPO, _point("p2", "p1", 2), {}, [
        NewDisk(0, "d", n << 20, 1 << 20, None, "{}", "p1", n - 1, [5, 6, 7],
                [changed[0], changed[1], None])])
    assert cat.map_rows("p2") == 3
    idx, got = cat.resolved_map("p2", 0)
    expected = {i: ids[i] for i in range(n)} | {5: changed[0], 6: changed[1]}
    del expected[7]
    assert list(idx) == sorted(expected)
    assert got == b"".join(expected[i] for i in sorted(expected))

    # Removing the base point keeps p2's map identical (its rows absorb p1's).
    cat.remove_point("p1")
    idx2, got2 = cat.resolved_map("p2", 0)
    assert (list(idx2), got2) == (list(idx), got)
    assert cat.disks("p2")[0].base_point is None


def test_dedup_lookup_is_batched_and_exact() -> None:
    cat = Catalog.open(None)
    ids = [os.urandom(32) for _ in range(20000)]
    cat.add_pack(REPO, "b" * 32, 1, [NewBlock(i, 1, 0, 0, 40, 1, 1) for i in ids])
    probe = ids[::1000] + [os.urandom(32) for _ in range(5)]
    assert cat.existing_block_ids(REPO, probe) == set(ids[::1000])
    assert cat.existing_block_ids("other", probe) == set()


@pytest.mark.slow
def test_index_of_ten_million_blocks_stays_small(tmp_path: Path) -> None:
    """10 million blocks: a process that opens the catalog and runs dedup lookups stays well
    under 256 MiB (DuckDB scans the table under its memory limit; no id set in Python), and the
    file costs about the ids themselves (32 bytes each) plus little."""
    import subprocess
    import sys

    path = tmp_path / "big.duckdb"
    cat = Catalog.open(path)
    batch = 1_000_000
    for k in range(10):
        rows = [os.urandom(32) for _ in range(batch)]
        cat.add_pack(REPO, f"{k:032x}", 1, [NewBlock(i, 1, 1, 0, 40, 1, 1)
                                            for i in rows])
    cat.close()
    db_bytes_per_block = path.stat().st_size / (10 * batch)
    assert db_bytes_per_block < 40, db_bytes_per_block
    probe = (
        "import os, sys\n"
        "from catalog.store import Catalog\n"
        "cat = Catalog.open(__import__('pathlib').Path(sys.argv[1]))\n"
        f"assert cat.block_count({REPO!r}) == {10 * batch}\n"
        "for _ in range(8):\n"
        f"    probe = [os.urandom(32) for _ in range(256)]\n"
        f"    assert cat.existing_block_ids({REPO!r}, probe) == set()\n"
        # VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec.
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(int(hwm.split()[1]) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True,
                         text=True, check=True).stdout
    assert int(out) < 200, f"peak RSS {out.strip()} MiB"


def test_a_point_names_the_job_whose_session_made_it() -> None:
    """point_jobs: each point's job from the session tasks that recorded it; a point two
    sessions name keeps the older session's job; a task without a point names none."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with Catalog.open(None) as cat:
        for sid, job, day in (("s1", "nightly", 1), ("s2", "weekly", 2)):
            started = at.replace(day=day)
            cat.put_session(SessionRow(sid, job, "backup", "ended", "success", started,
                                       started, "{}"))
        cat.put_tasks([TaskRow("s1", "vm", "ended", "success", 1, 1, None, "p1", at),
                       TaskRow("s1", "vm · disk 0", "ended", "success", 1, 1, None, "p1", at,
                               "vm", 0),
                       TaskRow("s2", "vm", "ended", "success", 1, 1, None, "p2", at),
                       TaskRow("s2", "other", "ended", "success", 1, 1, None, "p1", at),
                       TaskRow("s2", "idle", "ended", "failed", 0, 1, None, None, at)])
        assert cat.point_jobs() == {"p1": "nightly", "p2": "weekly"}
