"""Retention: the pure policy (table-driven), then prune and compact on a real repository."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.errors import UsageError
from appliance.jobs.backup import BackupOptions, DiskInput, run_backup
from appliance.jobs.prune import PrunePlan, PruneResult, choose_packs, execute_prune, plan_prune
from appliance.jobs.restore import restore_disk
from appliance.jobs.retention import PointAge, RetentionPolicy, apply_policy
from appliance.jobs.verify import verify_repository
from appliance.jobs.workspace import Workspace
from appliance.repository.repo import Repository
from appliance.source import Extent, ImageFileSource
from catalog.models import PackUsage
from catalog.store import Catalog
from tests.helpers import (
    MiB,
    change_image,
    in_ws,
    make_image,
    run_cli,
    sha256_of,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _points(spec: str) -> list[PointAge]:
    """'a:0,a:1,b:5' → points named a/b created that many days before NOW."""
    out = []
    for i, item in enumerate(spec.split(",")):
        name, days = item.split(":")
        out.append(PointAge(f"p{i}", name, NOW - timedelta(days=float(days))))
    return out


@pytest.mark.parametrize(
    ("spec", "keep_last", "keep_days", "kept"),
    [
        ("a:5,a:4,a:3,a:2,a:1", 2, None, {"p3", "p4"}),
        ("a:5,a:4,a:3,a:2,a:1", None, 2.5, {"p3", "p4"}),
        ("a:5,a:4,a:3,a:2,a:1", 1, 3.5, {"p2", "p3", "p4"}),  # union of both rules
        ("a:50,a:40", None, 7, {"p1"}),  # never fewer than one: the newest stays
        ("a:3,b:2,a:1,b:0", 1, None, {"p2", "p3"}),  # per name
        ("a:1", 5, None, {"p0"}),
        ("a:10,a:10,a:1", 2, None, {"p1", "p2"}),  # equal times: id breaks the tie
    ],
)
def test_policy_table(spec: str, keep_last: int | None, keep_days: float | None,
                      kept: set[str]) -> None:
    decisions = apply_policy(_points(spec), RetentionPolicy(keep_last, keep_days), NOW)
    assert {d.point_id for d in decisions if d.keep} == kept
    assert all(d.reasons for d in decisions if d.keep)
    assert all(not d.reasons for d in decisions if not d.keep)
    assert [d.created for d in decisions] == sorted(d.created for d in decisions)


def test_policy_reasons_name_the_rule() -> None:
    decisions = apply_policy(_points("a:9,a:1,a:0"), RetentionPolicy(1, 2), NOW)
    by_id = {d.point_id: d for d in decisions}
    assert by_id["p2"].reasons == ("newest point", "within the last 1", "younger than 2 days")
    assert by_id["p1"].reasons == ("younger than 2 days",)


@pytest.mark.parametrize(("keep_last", "keep_days"), [(None, None), (0, None), (None, -1)])
def test_policy_rejects_bad_settings(keep_last: int | None, keep_days: float | None) -> None:
    with pytest.raises(UsageError):
        RetentionPolicy(keep_last, keep_days)


@pytest.mark.parametrize(
    ("live", "stored", "entries", "expect"),
    [(0, 100, 3, "delete"), (80, 100, 3, "keep"), (74, 100, 3, "compact"), (1, 100, 1, "compact")],
)
def test_choose_packs(live: int, stored: int, entries: int, expect: str) -> None:
    u = PackUsage("p" * 32, stored + 100, entries, 1 if live else 0, live, stored)
    delete, compact = choose_packs([u], 0.75)
    got = "delete" if delete else "compact" if compact else "keep"
    assert got == expect


def test_prune_and_compact_free_space_and_kept_points_still_restore(tmp_path: Path) -> None:
    """Blocks shared by kept and pruned points survive; blocks only pruned points used go."""
    repo = Repository.open_local(tmp_path / "repo", create=True)
    cat = Catalog.open(None)
    image = tmp_path / "d.img"
    make_image(image, 16 * MiB, seed=21)
    bs = 256 << 10
    shas: dict[str, str] = {}
    first = in_ws(repo, cat, run_backup, "vm", [DiskInput(0, ImageFileSource(image))],
                       BackupOptions(block_size=bs))
    shas[first.point_id] = sha256_of(image)
    for step in range(4):
        # Large changes so that old packs end up mostly dead after pruning.
        areas = change_image(image, seed=100 + step, count=6, length=512 << 10)
        res = in_ws(repo, cat, run_backup, "vm",
                         [DiskInput(0, ImageFileSource(image),
                                    [Extent(a["offset"], a["length"]) for a in areas])],
                         BackupOptions(block_size=bs))
        shas[res.point_id] = sha256_of(image)
    size_before = sum(p.stat().st_size for p in (tmp_path / "repo" / "packs").rglob("*.pack"))

    def prune(ws: Workspace) -> tuple[PrunePlan, PruneResult]:
        plan = plan_prune(ws, RetentionPolicy(keep_last=2), datetime.now(UTC),
                          compact_below=0.9)
        return plan, execute_prune(ws, plan)

    plan, result = in_ws(repo, cat, prune, exclusive=True)
    assert len(plan.remove_points) == 3
    assert plan.bytes_freed > 0
    assert result.packs_compacted >= 1 and result.packs_written >= 1
    size_after = sum(p.stat().st_size for p in (tmp_path / "repo" / "packs").rglob("*.pack"))
    assert size_after < size_before
    assert result.bytes_freed == size_before - size_after
    # The estimate in the plan is close to what was freed.
    assert abs(plan.bytes_freed - result.bytes_freed) <= 4096 * (result.packs_compacted + 1)

    assert {p.point_id for p in cat.points(repo.id)} == set(plan.keep_points)
    assert in_ws(repo, cat, verify_repository).ok
    for point in plan.keep_points:
        out = tmp_path / f"{point}.img"
        in_ws(repo, cat, restore_disk, point, 0, out)
        assert sha256_of(out) == shas[point]
    # The kept oldest point shares most blocks with the pruned full backup: still whole.
    assert len(cat.points(repo.id)) == 2


def test_cli_prune_dry_run_changes_nothing(tmp_path: Path, cache: Path) -> None:
    image = tmp_path / "d.img"
    make_image(image, 6 * MiB, seed=2)
    repo = tmp_path / "repo"
    for step in range(3):
        change_image(image, seed=step)
        assert run_cli(["image", "backup", "--repo", str(repo), "--name", "x", str(image)],
                       cache).code == 0
    before = sorted(p.name for p in repo.rglob("*") if p.is_file())
    r = run_cli(["image", "prune", "--repo", str(repo), "--keep-last", "1", "--dry-run"], cache)
    assert r.code == 0, r.err
    assert r.out.count("remove ") == 2 and r.out.count("keep ") == 1
    assert "would free" in r.out
    assert sorted(p.name for p in repo.rglob("*") if p.is_file()) == before
    r = run_cli(["image", "prune", "--repo", str(repo), "--keep-last", "1"], cache)
    assert r.code == 0, r.err
    assert len(list((repo / "manifests").iterdir())) == 1
