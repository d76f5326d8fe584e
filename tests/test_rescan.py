"""`rescan` rebuilds the catalog's index from the repository alone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from appliance.jobs.backup import BackupOptions, DiskInput, run_backup
from appliance.jobs.prune import PrunePlan, execute_prune, plan_prune
from appliance.jobs.restore import restore_disk
from appliance.jobs.retention import RetentionPolicy
from appliance.jobs.workspace import Workspace
from appliance.repository.repo import Repository
from appliance.source import Extent, ImageFileSource
from catalog.store import Catalog
from tests.helpers import MiB, change_image, in_ws, make_image, rescanned, run_cli, sha256_of


def test_rescan_with_catalog_deleted_rebuilds_identical_dump(tmp_path: Path) -> None:
    repo = Repository.open_local(tmp_path / "repo", create=True)
    cat_path = tmp_path / "cat.duckdb"
    cat = Catalog.open(cat_path)
    expected: dict[str, str] = {}
    for name, seed in (("alpha", 1), ("beta", 2)):
        image = tmp_path / f"{name}.img"
        make_image(image, 8 * MiB, seed=seed)
        res = in_ws(repo, cat, run_backup, name, [DiskInput(0, ImageFileSource(image))],
                         BackupOptions(block_size=512 << 10))
        expected[res.point_id] = sha256_of(image)
        for step in range(3):
            areas = change_image(image, seed=seed * 10 + step, count=2)
            changed = [Extent(a["offset"], a["length"]) for a in areas]
            res = in_ws(repo, cat, run_backup,
                        name, [DiskInput(0, ImageFileSource(image), changed)],
                             BackupOptions(block_size=512 << 10))
            expected[res.point_id] = sha256_of(image)
    # Prune a middle point so the catalog has rebased deltas that a rescan lays out anew.
    def prune(ws: Workspace) -> PrunePlan:
        plan = plan_prune(ws, RetentionPolicy(keep_last=3), datetime.now(UTC))
        execute_prune(ws, plan)
        return plan

    plan = in_ws(repo, cat, prune, exclusive=True)
    for gone in plan.remove_points:
        expected.pop(gone)
    before = cat.canonical_dump(repo.id)
    cat.close()
    cat_path.unlink()

    fresh = Catalog.open(cat_path)
    result = rescanned(repo, fresh)
    assert result.points_added == len(expected)
    assert not result.damaged
    assert fresh.canonical_dump(repo.id) == before
    for point, sha in expected.items():
        out = tmp_path / f"{point}.img"
        in_ws(repo, fresh, restore_disk, point, 0, out)
        assert sha256_of(out) == sha
    fresh.close()


def test_cli_rescan_after_cache_loss(tmp_path: Path, cache: Path) -> None:
    image = tmp_path / "d.img"
    make_image(image, 6 * MiB, seed=4)
    repo = tmp_path / "repo"
    point = run_cli(["image", "backup", "--repo", str(repo), "--name", "x", str(image)],
                    cache).out.strip()
    listing = run_cli(["image", "points", "--repo", str(repo), "--json"], cache).out
    for f in cache.iterdir():
        f.unlink()
    r = run_cli(["image", "rescan", "--repo", str(repo)], cache)
    assert r.code == 0 and "1 restore points" in r.out
    assert run_cli(["image", "points", "--repo", str(repo), "--json"], cache).out == listing
    out = tmp_path / "out.img"
    assert run_cli(["image", "restore", "--repo", str(repo), point, str(out)], cache).code == 0
    assert sha256_of(out) == sha256_of(image)
