"""Reading needs no writes, and the offline catalog cache repairs itself (issue 10, failures 6
and 7): a damaged cache is set aside and rebuilt, a full cache file system is exit 7 naming
the path, and `points`, `verify`, `restore` (and a prune that frees space) work on a full or
read-only repository."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.errors import LockedError, NoSpaceError, StorageIOError
from appliance.repository import lock as locks
from appliance.repository.backend import MemoryBackend
from catalog.store import Catalog
from tests.helpers import (
    REPO_ROOT,
    MiB,
    fill_up,
    make_image,
    poll,
    remount_ro,
    run_cli,
    run_inproc,
    sha256_of,
    skip_unless_ci,
    tree_digest,
)

DUCKDB_BLOCK = 256 << 10
DUCKDB_HEADERS = 3 * 4096


def backup(repo: Path, cache: Path, image: Path, name: str = "vm") -> str:
    r = run_cli(["image", "backup", "--repo", str(repo), "--name", name, str(image)], cache)
    assert r.code == 0, r.err
    return r.out.splitlines()[0]


# -- failure 6: a damaged cache ---------------------------------------------------------------


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x55
    path.write_bytes(bytes(data))


def test_a_flipped_byte_anywhere_in_the_cache_is_set_aside_and_rebuilt(tmp_path: Path,
                                                                        cache: Path) -> None:
    """One byte flipped in the file header, in each database header and in every 256 KiB
    block of the cache: every command still works (before: exit 70 "Corrupt database file",
    at open for the headers, on the first query reading the block for the others — some
    blocks only `points` reads, others only `verify`)."""
    image = tmp_path / "d.img"
    make_image(image, 3 * MiB, seed=61)
    repo = tmp_path / "repo"
    point = backup(repo, cache, image)
    (db,) = cache.glob("*.duckdb")
    pristine = db.read_bytes()
    offsets = [100, 4096 + 100, 8192 + 100]
    offsets += range(DUCKDB_HEADERS + DUCKDB_BLOCK // 2, len(pristine), DUCKDB_BLOCK)
    for offset in offsets:
        for leftover in cache.iterdir():
            leftover.unlink()
        db.write_bytes(pristine)
        flip(db, offset)
        for command in ("points", "verify"):
            r = run_cli(["image", command, "--repo", str(repo)], cache)
            assert r.code == 0, f"byte {offset} flipped, `image {command}`: {r.err}"
            assert ("point" not in command) or point in r.out
        assert (cache / f"{db.name}.broken").exists(), f"byte {offset}: not set aside"
    # And a restore from a rebuilt cache is the image.
    db.write_bytes(pristine)
    flip(db, DUCKDB_HEADERS + DUCKDB_BLOCK // 2)
    target = tmp_path / "out.img"
    r = run_cli(["image", "restore", "--repo", str(repo), point, str(target)], cache)
    assert r.code == 0, r.err
    assert sha256_of(target) == sha256_of(image)


def test_a_damaged_cache_is_named_when_set_aside(tmp_path: Path, cache: Path) -> None:
    image = tmp_path / "d.img"
    make_image(image, 2 * MiB, seed=62)
    repo = tmp_path / "repo"
    backup(repo, cache, image)
    (db,) = cache.glob("*.duckdb")
    flip(db, 100)
    r = run_cli(["image", "points", "--repo", str(repo)], cache)
    assert r.code == 0, r.err
    assert f"{db}.broken" in r.err and "rebuil" in r.err, r.err


def test_damage_met_after_the_check_sets_the_cache_aside_too(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Catalog.check reads every table's data, not its indexes (DuckDB loads an index block
    when a lookup needs it): damage met later in a command sets the cache aside as well, and
    the message says to run the command again (the second line of defence, shown here with
    the check turned off)."""
    image = tmp_path / "d.img"
    make_image(image, 3 * MiB, seed=69)
    repo = tmp_path / "repo"
    point = backup(repo, cache, image)
    (db,) = cache.glob("*.duckdb")
    pristine = db.read_bytes()
    monkeypatch.setattr(Catalog, "check", lambda self: None)
    failed = 0
    for offset in range(DUCKDB_HEADERS + DUCKDB_BLOCK // 2, len(pristine), DUCKDB_BLOCK):
        for leftover in cache.iterdir():
            leftover.unlink()
        db.write_bytes(pristine)
        flip(db, offset)
        r = run_inproc(["image", "points", "--repo", str(repo)], cache)
        if r.code == 0:
            continue
        failed += 1
        assert r.code == 8, r.err
        assert "internal error" not in r.err and f"{db}.broken" in r.err, r.err
        assert "run the command again" in r.err, r.err
        assert (cache / f"{db.name}.broken").exists()
        r = run_inproc(["image", "points", "--repo", str(repo)], cache)
        assert r.code == 0 and point in r.out, r.err
    assert failed, "no block of the cache was met by `points`: nothing was shown"


# -- failure 7: a full cache file system ------------------------------------------------------


def test_full_cache_file_system_is_exit_7_naming_the_path(
        tmp_path: Path, cache: Path, tmpfs: Callable[[str], Path]) -> None:
    image = tmp_path / "d.img"
    make_image(image, 2 * MiB, seed=63)
    repo = tmp_path / "repo"
    backup(repo, cache, image)
    # A new cache on a full file system: DuckDB cannot create it.
    full = tmpfs("8m")
    fill_up(full)
    r = run_cli(["image", "points", "--repo", str(repo)], full)
    assert r.code == 7, r.err
    assert "Traceback" not in r.err and "internal error" not in r.err, r.err
    assert str(full) in r.err and "space" in r.err, r.err
    assert not list(full.glob("*.broken")), "a cache that could not be written is not damaged"
    # An existing cache that must record a new point: the commit fails (before: exit 70,
    # TransactionException).
    other = tmpfs("8m")
    for f in cache.iterdir():
        shutil.copy(f, other / f.name)
    make_image(image, 2 * MiB, seed=64)
    backup(repo, cache, image)
    fill_up(other)
    r = run_cli(["image", "points", "--repo", str(repo)], other)
    assert r.code == 7, r.err
    assert "Traceback" not in r.err and "internal error" not in r.err, r.err
    assert str(other) in r.err and "space" in r.err, r.err
    assert not list(other.glob("*.broken"))


# -- failure 7: a full or read-only repository ------------------------------------------------


def read_only_note(err: str, repo: Path) -> None:
    notes = [line for line in err.splitlines() if "read-only here" in line]
    assert len(notes) == 1, err
    assert str(repo) in notes[0] and "without a lock" in notes[0], notes[0]


def reads_work(tmp_path: Path, cache: Path, repo: Path, point: str, image: Path,
               reason: str) -> None:
    before = tree_digest(repo)
    r = run_cli(["image", "points", "--repo", str(repo)], cache)
    assert r.code == 0, r.err
    assert point in r.out
    read_only_note(r.err, repo)
    assert reason in r.err, r.err
    r = run_cli(["image", "verify", "--repo", str(repo)], cache)
    assert r.code == 0, r.err
    assert r.out.startswith("ok: checked 1 points"), r.out
    read_only_note(r.err, repo)
    target = tmp_path / "restored.img"
    r = run_cli(["image", "restore", "--repo", str(repo), point, str(target)], cache)
    assert r.code == 0, r.err
    read_only_note(r.err, repo)
    assert sha256_of(target) == sha256_of(image)
    r = run_cli(["image", "prune", "--repo", str(repo), "--keep-last", "1", "--dry-run"], cache)
    assert r.code == 0, r.err
    assert f"keep {point}" in r.out, r.out
    assert tree_digest(repo) == before


def test_reads_work_on_a_full_repository(tmp_path: Path, cache: Path,
                                         tmpfs: Callable[[str], Path]) -> None:
    fs = tmpfs("8m")
    repo = fs / "repo"
    image = tmp_path / "d.img"
    make_image(image, 2 * MiB, seed=65)
    point = backup(repo, cache, image)
    fill_up(fs)
    reads_work(tmp_path, cache, repo, point, image, "no space")


def test_reads_work_on_a_read_only_mount(tmp_path: Path, cache: Path,
                                         tmpfs: Callable[[str], Path]) -> None:
    fs = tmpfs("8m")
    repo = fs / "repo"
    image = tmp_path / "d.img"
    make_image(image, 2 * MiB, seed=66)
    point = backup(repo, cache, image)
    remount_ro(fs)
    reads_work(tmp_path, cache, repo, point, image, "Read-only file system")


def test_prune_frees_space_on_a_full_repository(tmp_path: Path, cache: Path,
                                                tmpfs: Callable[[str], Path]) -> None:
    """Deletes need no space; the lock does: prune still frees space on a full repository
    (docs/DECISIONS.md: an empty lock file, which needs no data block, stands in for the
    lock until the deletes made room; packs with nothing live are deleted before sparse ones
    are compacted, which writes), and the point it keeps restores."""
    fs = tmpfs("16m")
    repo = fs / "repo"
    rng = random.Random(67)  # random bytes: nothing shared by chance, nothing compresses
    gone, old, new = tmp_path / "gone.img", tmp_path / "old.img", tmp_path / "new.img"
    gone.write_bytes(rng.randbytes(4 * MiB))
    old.write_bytes(rng.randbytes(4 * MiB))
    new.write_bytes(old.read_bytes()[:MiB] + rng.randbytes(3 * MiB))
    backup(repo, cache, gone)  # its pack: nothing live after the prune, deleted
    backup(repo, cache, old)  # its pack: one block in four live, compacted (written anew)
    keep = backup(repo, cache, new)
    fill_up(fs)
    free_before = shutil.disk_usage(fs).free
    r = run_cli(["image", "prune", "--repo", str(repo), "--keep-last", "1"], cache)
    assert r.code == 0, r.err
    assert "1 packs deleted, 1 packs compacted" in r.out, r.out
    assert shutil.disk_usage(fs).free >= free_before + 6 * MiB
    assert os.listdir(repo / "locks") == []
    target = tmp_path / "out.img"
    r = run_cli(["image", "restore", "--repo", str(repo), keep, str(target)], cache)
    assert r.code == 0, r.err
    assert sha256_of(target) == sha256_of(new)


# -- the read-only lock mode ------------------------------------------------------------------


class Unwritable(MemoryBackend):
    """A memory backend that refuses every write (as a full or read-only storage does)."""

    def __init__(self, error: Exception) -> None:
        super().__init__("unwritable")
        self.error = error
        self.writable = True

    def put(self, name: str, data: bytes) -> None:
        if not self.writable:
            raise self.error
        super().put(name, data)

    def delete(self, name: str) -> None:
        if not self.writable:
            raise self.error
        super().delete(name)


@pytest.mark.parametrize("error", [
    NoSpaceError("no space left while writing locks/x"),
    StorageIOError("/mnt/repo/locks/x: Read-only file system"),
])
def test_a_shared_lock_that_cannot_be_written_falls_back_to_read_only(error: Exception) -> None:
    b = Unwritable(error)
    b.writable = False
    with pytest.raises(type(error)):
        locks.acquire(b, exclusive=False, operation="list")
    held = locks.acquire(b, exclusive=False, operation="list", read_only_ok=True)
    assert held.read_only
    assert held.note is not None and "read-only here" in held.note
    assert "unwritable" in held.note and "without a lock" in held.note
    held.release()
    assert b.list("locks") == []


def test_the_read_only_mode_still_respects_an_exclusive_lock() -> None:
    b = Unwritable(NoSpaceError("no space"))
    prune = locks.acquire(b, exclusive=True, operation="prune")
    b.writable = False
    with pytest.raises(LockedError):
        locks.acquire(b, exclusive=False, operation="restore", read_only_ok=True)
    b.writable = True
    prune.release()
    b.writable = False
    held = locks.acquire(b, exclusive=False, operation="restore", read_only_ok=True)
    assert held.read_only


def test_a_normal_lock_is_not_read_only() -> None:
    b = MemoryBackend()
    held = locks.acquire(b, exclusive=False, operation="list", read_only_ok=True)
    assert not held.read_only and held.note is None
    assert len(b.list("locks")) == 1
    held.release()
    assert b.list("locks") == []


class NoRoom(MemoryBackend):
    """A memory backend that is full: only empty files still fit (they need no data block)."""

    def __init__(self) -> None:
        super().__init__("full")
        self.full = True

    def put(self, name: str, data: bytes) -> None:
        if self.full and data:
            raise NoSpaceError(f"no space left while writing {name}")
        super().put(name, data)


def test_an_exclusive_lock_on_a_full_repository_is_an_empty_file_until_there_is_room(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locks, "RETRY_FULL_EVERY", 0.02)
    b = NoRoom()
    with pytest.raises(NoSpaceError):
        locks.acquire(b, exclusive=False, operation="backup")
    prune = locks.acquire(b, exclusive=True, operation="prune")
    assert prune.empty and not prune.read_only
    assert b.get(prune.name) == b""
    # Readers take the empty file for what it is: a held exclusive lock.
    with pytest.raises(LockedError):
        locks.acquire(b, exclusive=False, operation="restore", read_only_ok=True)
    b.full = False  # the prune's deletes made room: the whole lock file is written
    poll("the empty lock file to be written in full", lambda: not prune.empty, 10, every=0.01)
    assert [info for _name, info in locks.read_locks(b)] == [prune.info]
    prune.release()
    assert b.list("locks") == []


# -- CI runs what it claims -------------------------------------------------------------------


def test_a_missing_environment_fails_in_ci_and_skips_elsewhere(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run this test"):
        skip_unless_ci("cannot mount a tmpfs")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        skip_unless_ci("cannot mount a tmpfs")


def test_ci_says_it_is_ci() -> None:
    run = (REPO_ROOT / ".ci" / "run").read_text()
    assert 'export CI="${CI:-true}"' in run
