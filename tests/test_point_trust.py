"""A point called good restores: the failures found by trying vmkeep from outside (issue 10).

Each test here failed before its fix. The race of failure 1 is forced in one process with a
hold point: one backup is held after its pack is durable but before the catalog records it,
while another worker brings its own catalog cursor up to date (as a second VM of a parallel
session does when it starts).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import duckdb
import pytest

from appliance import faults
from appliance.errors import IntegrityError
from appliance.jobs import backup as backup_module
from appliance.jobs import point_check
from appliance.jobs.backup import BackupOptions, DiskInput, run_backup
from appliance.jobs.restore import restore_disk
from appliance.jobs.sync import Delta, record_point
from appliance.jobs.workspace import Workspace, open_workspace
from appliance.repository.manifest import Manifest
from appliance.repository.repo import Repository
from appliance.source import ImageFileSource
from catalog.store import Catalog
from tests.helpers import MiB, change_image, make_image, run_inproc, sha256_of, write_areas

DEADLINE = 60.0


def _dup_rows(cat: Catalog, repo_id: str) -> tuple[int, int]:
    con = cat._con
    packs = con.execute("SELECT count(*) - count(DISTINCT pack_id) FROM packs WHERE repo_id = ?",
                        [repo_id]).fetchone()
    blocks = con.execute("SELECT count(*) - count(DISTINCT (pack_id, \"offset\")) FROM blocks "
                         "WHERE repo_id = ?", [repo_id]).fetchone()
    assert packs is not None and blocks is not None
    return int(packs[0]), int(blocks[0])


def test_a_sync_while_another_backup_writes_packs_leaves_its_point_restorable(
        tmp_path: Path) -> None:
    """Failure 1: VM B's start-of-backup sync ran between VM A's pack write and A's catalog
    record; the pack was indexed twice and A's point failed to restore."""
    image = tmp_path / "a.img"
    make_image(image, 8 * MiB, seed=3)
    repo = Repository.open_local(tmp_path / "repo", create=True)
    main = Catalog.open(tmp_path / "cat.duckdb")
    held, go_on = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    result: list[str] = []

    def hold(_pack: str) -> None:
        if threading.current_thread().name.startswith("vm-a") or not held.is_set():
            held.set()
            assert go_on.wait(DEADLINE), "the test never released the backup"

    def vm_a() -> None:
        try:
            source = ImageFileSource(image)
            with open_workspace(repo, main.cursor, exclusive=False, operation="backup a") as ws:
                r = run_backup(ws, "a", [DiskInput(0, source)],
                               BackupOptions(block_size=256 << 10))
            result.append(r.point_id)
            assert not r.warnings, r.warnings
            source.close()
        except BaseException as exc:
            errors.append(exc)
            held.set()

    with faults.hooked("backup-pack-written", hold):
        a = threading.Thread(target=vm_a, name="vm-a")
        a.start()
        assert held.wait(DEADLINE)
        try:
            # VM B starts while A's pack is durable, not yet recorded.
            with open_workspace(repo, main.cursor, exclusive=False, operation="backup b"):
                pass
        finally:
            go_on.set()
        a.join(DEADLINE)
    assert not errors, errors
    assert _dup_rows(main, repo.id) == (0, 0)
    with open_workspace(repo, main.cursor, exclusive=False, operation="restore") as ws:
        restore_disk(ws, result[0], 0, tmp_path / "out.img")
    assert sha256_of(tmp_path / "out.img") == sha256_of(image)
    main.close()


def test_a_sync_while_another_worker_records_its_point_leaves_that_point_alone(
        tmp_path: Path) -> None:
    """Failure 4 (a parallel session: one VM's point check found its block map empty): VM B's
    sync read the catalog's points while VM A recorded its point, saw it as a point a prune was
    removing, took it out of the catalog and recorded it again from its manifest; for that
    moment A's point had no block map, and A's point check, reading then, found it empty."""
    image = tmp_path / "a.img"
    make_image(image, 4 * MiB, seed=4)
    repo = Repository.open_local(tmp_path / "repo", create=True)
    main = Catalog.open(tmp_path / "cat.duckdb")
    held, go_on = threading.Event(), threading.Event()
    synced: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def hold(_repo: str) -> None:
        if threading.current_thread().name == "vm-b":
            held.set()
            assert go_on.wait(DEADLINE), "the test never released the sync"

    def vm_b() -> None:
        try:
            with open_workspace(repo, main.cursor, exclusive=False, operation="backup b") as ws:
                synced.append((ws.synced.points_added, ws.synced.points_removed))
        except BaseException as exc:
            errors.append(exc)
            held.set()

    with faults.hooked("sync-reading-points", hold):
        b = threading.Thread(target=vm_b, name="vm-b")
        b.start()
        assert held.wait(DEADLINE)
        try:  # VM A ends its backup while B's sync is reading the catalog's points
            source = ImageFileSource(image)
            with open_workspace(repo, main.cursor, exclusive=False, operation="backup a") as ws:
                point = run_backup(ws, "a", [DiskInput(0, source)],
                                   BackupOptions(block_size=256 << 10)).point_id
            source.close()
        finally:
            go_on.set()
        b.join(DEADLINE)
    assert not errors, errors
    # B had nothing to record: A's point was recorded by its writer, and never taken out.
    assert synced == [(0, 0)]
    with open_workspace(repo, main.cursor, exclusive=False, operation="restore") as ws:
        restore_disk(ws, point, 0, tmp_path / "out.img")
    assert sha256_of(tmp_path / "out.img") == sha256_of(image)
    main.close()


# -- the offline CLI -----------------------------------------------------------------------


def _backup(repo: Path, image: Path, cache: Path, *extra: str) -> str:
    r = run_inproc(["image", "backup", "--repo", str(repo), "--name", "vm", "--block-size",
                    "256K", str(image), *extra], cache)
    assert r.code == 0, r.err
    return r.out.strip()


def _restore(repo: Path, point: str, target: Path, cache: Path) -> int:
    return run_inproc(["image", "restore", "--repo", str(repo), point, str(target)], cache).code


@pytest.fixture
def three(tmp_path: Path, cache: Path) -> tuple[Path, Path, list[str], list[str]]:
    """A repository with three points of one image; (repo, image, points, their sha256)."""
    image, repo = tmp_path / "vm.img", tmp_path / "repo"
    make_image(image, 6 * MiB, seed=5)
    points, sums = [], []
    for n in range(3):
        if n:
            change_image(image, seed=10 + n, count=4, length=64 << 10)
        points.append(_backup(repo, image, cache))
        sums.append(sha256_of(image))
    return repo, image, points, sums


def test_a_manifest_named_other_than_its_point_never_costs_a_kept_point(
        three: tuple[Path, Path, list[str], list[str]], tmp_path: Path, cache: Path) -> None:
    """Failure 2: a copy of the newest manifest under another point's name was indexed as a
    second row of the newest point; prune "kept" it and deleted its manifest."""
    repo, _image, points, sums = three
    stray = "20200101T000000Z-0badc0de"
    shutil.copy(repo / "manifests" / points[2], repo / "manifests" / stray)
    assert run_inproc(["image", "rescan", "--repo", str(repo)], cache).code == 0
    for _ in range(2):
        listing = run_inproc(["image", "points", "--repo", str(repo)], cache)
        assert listing.code == 0
        assert listing.out.count(points[2]) == 1, listing.out
    verify = run_inproc(["image", "verify", "--repo", str(repo)], cache)
    assert verify.code == 1, verify.out
    assert f"manifests/{stray}" in verify.out and points[2] in verify.out, verify.out
    prune = run_inproc(["image", "prune", "--repo", str(repo), "--keep-last", "1"], cache)
    assert prune.code == 0, prune.err
    assert (repo / "manifests" / points[2]).exists()
    assert _restore(repo, points[2], tmp_path / "p3.img", cache) == 0
    assert sha256_of(tmp_path / "p3.img") == sums[2]


def _flip_a_block(repo: Path) -> None:
    """Flip one byte in the middle of the largest pack's first block (past its header)."""
    pack = max((repo / "packs").rglob("*.pack"), key=lambda p: p.stat().st_size)
    data = bytearray(pack.read_bytes())
    data[40 + 100] ^= 0xFF
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))


def test_a_backup_after_damage_is_found_stores_the_block_anew(
        three: tuple[Path, Path, list[str], list[str]], tmp_path: Path, cache: Path) -> None:
    """Failure 3: after a byte flip, every later backup deduplicated against the damaged block
    (exit 0) and its point failed its check on restore; rescan did not help."""
    repo, image, _points, _sums = three
    _flip_a_block(repo)
    assert run_inproc(["image", "verify", "--repo", str(repo)], cache).code == 1
    assert run_inproc(["image", "rescan", "--repo", str(repo)], cache).code == 0
    point = _backup(repo, image, cache)
    assert _restore(repo, point, tmp_path / "new.img", cache) == 0
    assert sha256_of(tmp_path / "new.img") == sha256_of(image)


def test_an_incremental_after_a_lost_pack_reads_what_the_pack_held(
        three: tuple[Path, Path, list[str], list[str]], tmp_path: Path, cache: Path) -> None:
    """Failure 3: after a pack was deleted, the next --changed incremental exited 0 and
    inherited the lost blocks ("block … is in no pack")."""
    repo, image, _points, _sums = three
    victim = max((repo / "packs").rglob("*.pack"), key=lambda p: p.stat().st_size)
    victim.unlink()
    areas = change_image(image, seed=99, count=2, length=8192)
    point = _backup(repo, image, cache, "--changed", str(write_areas(tmp_path / "c.json",
                                                                         areas)))
    assert _restore(repo, point, tmp_path / "new.img", cache) == 0
    assert sha256_of(tmp_path / "new.img") == sha256_of(image)


def test_verify_names_a_point_whose_manifest_is_gone(
        three: tuple[Path, Path, list[str], list[str]], cache: Path) -> None:
    """Failure 5: a deleted manifest made the point vanish from `points` while verify said ok,
    though the catalog knew the point."""
    repo, _image, points, _sums = three
    (repo / "manifests" / points[0]).unlink()
    verify = run_inproc(["image", "verify", "--repo", str(repo)], cache)
    assert verify.code == 1, verify.out
    assert f"manifests/{points[0]}" in verify.out and "missing" in verify.out, verify.out


# -- the catalog's view of a point against its manifest --------------------------------------


def _backup_in_ws(tmp_path: Path, cat: Catalog) -> tuple[Repository, Path, str, tuple[str, ...]]:
    image = tmp_path / "p.img"
    make_image(image, 4 * MiB, seed=8)
    repo = Repository.open_local(tmp_path / "repo", create=True)
    with open_workspace(repo, cat.cursor, exclusive=False, operation="test") as ws:
        r = run_backup(ws, "p", [DiskInput(0, ImageFileSource(image))],
                       BackupOptions(block_size=256 << 10))
    return repo, image, r.point_id, r.warnings


def test_a_point_recorded_wrong_is_repaired_from_its_manifest_with_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalog rows a backup writes for its point lose a block: the check before success
    finds it, records the point again from the manifest and says so; the point restores."""
    real = record_point

    def lossy(ws: Workspace, m: Manifest, size: int, base: str | None,
              deltas: dict[int, Delta] | None = None) -> bool:
        assert deltas is not None
        broken = {i: (b, idx[1:], ids[1:]) for i, (b, idx, ids) in deltas.items()}
        return real(ws, m, size, base, broken)

    monkeypatch.setattr(backup_module, "record_point", lossy)
    cat = Catalog.open(None)
    repo, image, point, warnings = _backup_in_ws(tmp_path, cat)
    assert len(warnings) == 1 and "repaired from the manifest" in warnings[0], warnings
    with open_workspace(repo, cat.cursor, exclusive=False, operation="restore") as ws:
        restore_disk(ws, point, 0, tmp_path / "out.img")
    assert sha256_of(tmp_path / "out.img") == sha256_of(image)


def test_a_point_that_cannot_be_vouched_for_fails_its_backup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(point_check, "point_problems",
                        lambda ws, m, availability=True: ["disk 0: a problem that stays"])
    with pytest.raises(IntegrityError, match=r"cannot be vouched for.*a rescan"):
        _backup_in_ws(tmp_path, Catalog.open(None))


def test_image_verify_names_a_point_whose_cached_view_disagrees(
        three: tuple[Path, Path, list[str], list[str]], cache: Path) -> None:
    repo, _image, points, _sums = three
    (cached,) = cache.glob("*.duckdb")
    con = duckdb.connect(str(cached))
    con.execute("DELETE FROM block_map WHERE point_id = ? AND block_index = "
                "(SELECT min(block_index) FROM block_map WHERE point_id = ?)",
                [points[0], points[0]])
    con.close()
    verify = run_inproc(["image", "verify", "--repo", str(repo)], cache)
    assert verify.code == 1, verify.out
    # The later points are stored as deltas on the first: all three disagree now.
    named = [ln for ln in verify.out.splitlines() if ln.startswith("DAMAGED")
             and "disagrees with its manifest" in ln]
    assert any(f"manifests/{points[0]}:" in ln for ln in named), verify.out
    assert all(f"`vmkeep image rescan --repo {repo}`" in ln for ln in named), verify.out
    assert run_inproc(["image", "rescan", "--repo", str(repo)], cache).code == 0
    assert run_inproc(["image", "verify", "--repo", str(repo)], cache).code == 0
