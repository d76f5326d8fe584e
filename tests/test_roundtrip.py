"""Full + incremental backups of a generated image restore byte-identical, and the
incremental reads only the changed areas (counted outside the engine)."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import zstandard

from appliance.jobs.backup import BackupOptions, DiskInput, run_backup
from appliance.jobs.restore import restore_disk
from appliance.repository.repo import Repository
from appliance.source import Extent, ImageFileSource, blocks_touched
from catalog.store import Catalog
from tests.helpers import (
    MiB,
    change_image,
    in_ws,
    make_image,
    run_cli,
    sha256_of,
    synced,
    write_areas,
)


class CountingSource:
    """Wraps a source and counts every byte the engine asks it for."""

    def __init__(self, inner: ImageFileSource) -> None:
        self.inner = inner
        self.bytes_read = 0
        self.ranges: list[tuple[int, int]] = []
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
            self.ranges.append((offset, length))
        return data

    def close(self) -> None:
        self.inner.close()


def _repo_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_incremental_reads_only_changed_areas_and_both_points_restore(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    make_image(image, 24 * MiB, seed=7)
    v1 = tmp_path / "v1.img"
    shutil.copyfile(image, v1)
    repo = Repository.open_local(tmp_path / "repo", create=True)
    cat = Catalog.open(tmp_path / "cat.duckdb")
    bs = 256 << 10
    opts = BackupOptions(block_size=bs)

    src = CountingSource(ImageFileSource(image))
    full = in_ws(repo, cat, run_backup, "vm1", [DiskInput(0, src)], opts)
    src.close()
    assert full.kind == "full"
    allocated = ImageFileSource(v1).allocated_areas()
    assert src.bytes_read <= sum(e.length for e in allocated) + bs * len(allocated)

    areas = change_image(image, seed=8, count=4, length=12288)
    size_before = _repo_bytes(tmp_path / "repo")
    src = CountingSource(ImageFileSource(image))
    changed = [Extent(a["offset"], a["length"]) for a in areas]
    incr = in_ws(repo, cat, run_backup, "vm1", [DiskInput(0, src, changed)], opts)
    src.close()
    assert incr.kind == "incremental"

    # Read only the blocks the changed areas touch: counted by the wrapper, not the engine.
    touched = blocks_touched(changed, bs, image.stat().st_size)
    assert src.bytes_read == len(touched) * bs
    assert {off // bs for off, _ in src.ranges} == set(touched)

    # The repository grew by at most the compressed changed blocks plus metadata.
    cctx = zstandard.ZstdCompressor(level=1)
    with image.open("rb") as f:
        compressed = 0
        for b in touched:
            f.seek(b * bs)
            compressed += len(cctx.compress(f.read(bs)))
    growth = _repo_bytes(tmp_path / "repo") - size_before
    metadata = incr.manifest_bytes + 40 + 48 + 72 * len(touched)
    assert growth <= compressed + metadata, (growth, compressed, metadata)

    # The catalog added rows for the changed blocks only.
    assert cat.map_rows(incr.point_id) <= len(touched)

    for point, expected in ((full.point_id, sha256_of(v1)), (incr.point_id, sha256_of(image))):
        out = tmp_path / f"{point}.img"
        in_ws(repo, cat, restore_disk, point, 0, out)
        assert sha256_of(out) == expected
        assert out.stat().st_blocks * 512 < out.stat().st_size  # sparse where zero
    cat.close()


def test_cli_round_trip_full_then_incremental(tmp_path: Path, cache: Path) -> None:
    image = tmp_path / "disk.img"
    make_image(image, 16 * MiB, seed=3)
    repo = tmp_path / "repo"
    r1 = run_cli(["image", "backup", "--repo", str(repo), "--name", "web01", str(image)], cache)
    assert r1.code == 0, r1.err
    p1 = r1.out.strip()
    sha1 = sha256_of(image)
    areas = write_areas(tmp_path / "areas.json", change_image(image, seed=4))
    r2 = run_cli(["image", "backup", "--repo", str(repo), "--name", "web01", "--changed",
                  str(areas), str(image)], cache)
    assert r2.code == 0, r2.err
    p2 = r2.out.strip()

    listing = json.loads(run_cli(["image", "points", "--repo", str(repo), "--json"], cache).out)
    assert [p["id"] for p in listing] == [p1, p2]
    assert [p["kind"] for p in listing] == ["full", "incremental"]
    assert all(p["vm"] == "web01" and p["created"].endswith("Z") for p in listing)
    assert listing[1]["bytes_read"] < listing[0]["bytes_read"]
    assert listing[1]["bytes_stored"] < listing[0]["bytes_stored"]

    for point, sha in ((p1, sha1), (p2, sha256_of(image))):
        out = tmp_path / f"{point}.img"
        r = run_cli(["image", "restore", "--repo", str(repo), point, str(out)], cache)
        assert r.code == 0, r.err
        assert sha256_of(out) == sha
    assert run_cli(["image", "verify", "--repo", str(repo)], cache).code == 0


def test_backup_without_change_list_reads_all_but_stores_only_changes(tmp_path: Path) -> None:
    """The fallback when no change list is trustworthy: full read, dedup, reason recorded."""
    image = tmp_path / "disk.img"
    make_image(image, 12 * MiB, seed=11)
    repo = Repository.open_local(tmp_path / "repo", create=True)
    cat = Catalog.open(None)
    first = in_ws(repo, cat, run_backup,
                  "vm", [DiskInput(0, ImageFileSource(image))], BackupOptions())
    change_image(image, seed=12, count=2)
    second = in_ws(repo, cat, run_backup, "vm",
                        [DiskInput(0, ImageFileSource(image), None,
                                   changed_reason="CBT was reset")], BackupOptions())
    assert second.kind == "full"
    assert "CBT was reset" in second.reason and "deduplication" in second.reason
    assert second.bytes_read == first.bytes_read
    assert second.blocks_new <= 2
    assert cat.map_rows(second.point_id) <= 2
    out = tmp_path / "out.img"
    in_ws(repo, cat, restore_disk, second.point_id, 0, out)
    assert sha256_of(out) == sha256_of(image)


def test_block_size_change_forces_full_read(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    make_image(image, 8 * MiB, seed=5)
    repo = Repository.open_local(tmp_path / "repo", create=True)
    cat = Catalog.open(None)
    in_ws(repo, cat, run_backup, "vm", [DiskInput(0, ImageFileSource(image))],
               BackupOptions(block_size=1 << 20))
    res = in_ws(repo, cat, run_backup,
                "vm", [DiskInput(0, ImageFileSource(image), [Extent(0, 4096)])],
                     BackupOptions(block_size=256 << 10))
    assert res.kind == "full" and "block size changed" in res.reason
    out = tmp_path / "out.img"
    in_ws(repo, cat, restore_disk, res.point_id, 0, out)
    assert sha256_of(out) == sha256_of(image)


def test_a_second_catalog_syncs_points_written_by_another(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    make_image(image, 6 * MiB, seed=9)
    repo = Repository.open_local(tmp_path / "repo", create=True)
    a, b = Catalog.open(None), Catalog.open(None)
    res = in_ws(repo, a, run_backup, "vm", [DiskInput(0, ImageFileSource(image))], BackupOptions())
    synced(repo, b)
    assert [p.point_id for p in b.points(repo.id)] == [res.point_id]
    assert a.canonical_dump(repo.id) == b.canonical_dump(repo.id)
