"""Repair instead of refuse (issue 10, failures 4, 5 and 9), offline:

* a repository whose creation was killed (``keys/`` and ``tmp/`` only, no ``config``) is
  completed or cleaned by the next backup (a real SIGKILL'd process, as in
  tests/test_crash_safety.py);
* a repository whose ``config`` was deleted says so and names ``vmkeep image repair-config``,
  which recreates it from the key file and the manifests: every point restores byte-identical;
* a junk file in ``locks/`` is named; older than a minute it no longer blocks readers;
* a damaged block-id key file is named as such: restores still work, backups say what to do.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from appliance.repository.backend import MemoryBackend
from appliance.repository.repo import Repository
from tests.helpers import MiB, change_image, make_image, run_cli, run_inproc, sha256_of

KILLED = -9
PASSWORD = "a repository password 4711"


def _image(tmp_path: Path, seed: int = 3) -> Path:
    img = tmp_path / f"disk{seed}.img"
    make_image(img, 6 * MiB, seed=seed)
    return img


def _backup(repo: Path, img: Path, cache: Path, env: dict[str, str] | None = None) -> str:
    if env:
        r = run_cli(["image", "backup", "--repo", str(repo), "--name", "vm1", str(img)], cache,
                    env=env)
    else:
        r = run_inproc(["image", "backup", "--repo", str(repo), "--name", "vm1", str(img)],
                       cache)
    assert r.code == 0, r.err
    return r.out.strip()


def _restores(repo: Path, point: str, want: str, cache: Path, tmp_path: Path,
              env: dict[str, str] | None = None) -> None:
    target = tmp_path / f"restored-{point}-{time.monotonic_ns()}.img"
    r = run_cli(["image", "restore", "--repo", str(repo), point, str(target)], cache, env=env)
    assert r.code == 0, r.err
    assert sha256_of(target) == want


# -- failure 4: a kill during repository creation ----------------------------------------------
@pytest.mark.parametrize(("crash_at", "encrypted"), [
    ("repo-init-keys-written", False),  # the key is in keys/, the config not yet written
    ("put-tmp-written:2", False),  # the config whole in tmp/, not renamed (issue 10's case)
    ("put-tmp-written:1", False),  # the key itself still in tmp/
    ("repo-init-keys-written", True),  # master key and block-id key written, no config
])
def test_a_killed_repository_creation_is_completed_by_the_next_backup(
        tmp_path: Path, cache: Path, crash_at: str, encrypted: bool) -> None:
    img = _image(tmp_path)
    repo = tmp_path / "repo"
    env = {"VMKEEP_ENCRYPTION_PASSWORD": PASSWORD} if encrypted else {}
    killed = run_cli(["image", "backup", "--repo", str(repo), "--name", "vm1", str(img)], cache,
                     env={**env, "VMKEEP_CRASH_AT": crash_at})
    assert killed.code == KILLED, killed.err
    assert not (repo / "config").exists()
    left = {p.relative_to(repo).parts[0] for p in repo.rglob("*") if p.is_file()}
    assert left and left <= {"keys", "tmp"}

    point = _backup(repo, img, cache, env={**env, "VMKEEP_CRASH_AT": ""})
    assert (repo / "config").exists()
    assert list((repo / "tmp").iterdir()) == []
    _restores(repo, point, sha256_of(img), cache, tmp_path, env=env)
    assert run_cli(["image", "verify", "--repo", str(repo)], cache, env=env).code == 0
    # Exactly the key files the config names are left (no orphan of the killed run).
    opened = Repository.open_local(repo, create=False,
                                   password=PASSWORD if encrypted else None)
    names = {f"keys/{opened.config.key_id}"} | (
        {f"keys/{opened.config.encryption_key}"} if encrypted else set())
    assert {f"keys/{p.name}" for p in (repo / "keys").iterdir()} == names


def test_open_local_with_create_completes_a_half_created_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    made = Repository.open_local(repo, create=True)
    (repo / "config").unlink()
    (repo / "tmp").mkdir(exist_ok=True)
    (repo / "tmp" / "config.0123456789ab.tmp").write_bytes(b"VMKCONF\0partial")
    again = Repository.open_local(repo, create=True)
    assert again.config.key_id == made.config.key_id  # the intact key is kept
    assert again.block_key() == made.block_key()
    assert list((repo / "tmp").iterdir()) == []
    # Without create, a half-created repository is not touched: the message says what it is.
    (repo / "config").unlink()
    with pytest.raises(Exception, match="creation was interrupted"):
        Repository.open_local(repo, create=False)


def test_open_backend_with_create_completes_a_half_created_repository() -> None:
    backend = MemoryBackend("half")
    made = Repository.init(backend)
    backend.delete("config")
    backend.put("tmp/config.0123456789ab.tmp", b"VMKCONF\0partial")
    again = Repository.open_backend(backend, create=True)
    assert again.config.key_id == made.config.key_id
    assert again.block_key() == made.block_key()
    assert backend.list("tmp") == []
    assert backend.list("keys") == [f"keys/{made.config.key_id}"]


# -- failure 5: a deleted config ---------------------------------------------------------------
def _two_points(tmp_path: Path, cache: Path, env: dict[str, str] | None = None
                ) -> tuple[Path, dict[str, str]]:
    img = _image(tmp_path)
    repo = tmp_path / "repo"
    points = {}
    for seed in (0, 1):
        if seed:
            change_image(img, seed, count=4, length=300 << 10)
        r = run_cli(["image", "backup", "--repo", str(repo), "--name", "vm1", str(img)], cache,
                    env=env)
        assert r.code == 0, r.err
        points[r.out.strip()] = sha256_of(img)
    return repo, points


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_deleted_config_is_named_and_repair_config_brings_every_point_back(
        tmp_path: Path, cache: Path, encrypted: bool) -> None:
    env = {"VMKEEP_ENCRYPTION_PASSWORD": PASSWORD} if encrypted else {}
    repo, points = _two_points(tmp_path, cache, env)
    before = Repository.open_local(repo, create=False,
                                   password=PASSWORD if encrypted else None).config
    (repo / "config").unlink()

    r = run_cli(["image", "points", "--repo", str(repo)], cache, env=env)
    assert r.code == 5
    assert "config file is missing" in r.err, r.err
    assert f"vmkeep image repair-config --repo {repo}" in r.err, r.err
    # A backup does not make a new repository over the old points either.
    r = run_cli(["image", "backup", "--repo", str(repo), "--name", "vm1",
                 str(tmp_path / "disk3.img")], cache, env=env)
    assert r.code == 5 and "repair-config" in r.err, r.err
    assert not (repo / "config").exists()

    r = run_cli(["image", "repair-config", "--repo", str(repo)], cache, env=env)
    assert r.code == 0, r.err
    assert "repository id" in r.out, r.out
    after = Repository.open_local(repo, create=False,
                                  password=PASSWORD if encrypted else None).config
    assert after.key_id == before.key_id
    assert after.encryption_key == before.encryption_key
    assert after.pack_size == before.pack_size
    fresh = tmp_path / "cache-after"
    r = run_cli(["image", "points", "--repo", str(repo)], fresh, env=env)
    assert r.code == 0 and all(p in r.out for p in points), r.err
    for point, want in points.items():
        _restores(repo, point, want, fresh, tmp_path, env=env)
    assert run_cli(["image", "verify", "--repo", str(repo)], fresh, env=env).code == 0
    # An intact config is never replaced.
    r = run_cli(["image", "repair-config", "--repo", str(repo)], fresh, env=env)
    assert r.code == 2 and "has a config" in r.err, r.err


def test_repair_config_keeps_a_given_repository_id(tmp_path: Path, cache: Path) -> None:
    repo, points = _two_points(tmp_path, cache)
    old_id = Repository.open_local(repo, create=False).id
    (repo / "config").unlink()
    r = run_cli(["image", "repair-config", "--repo", str(repo), "--repository-id", old_id],
                cache)
    assert r.code == 0, r.err
    assert Repository.open_local(repo, create=False).id == old_id
    for point, want in points.items():
        _restores(repo, point, want, cache, tmp_path)


def test_repair_config_refuses_an_empty_folder(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "empty").mkdir()
    r = run_cli(["image", "repair-config", "--repo", str(tmp_path / "empty")], cache)
    assert r.code == 5 and "no key file" in r.err, r.err


# -- failure 9: junk locks ---------------------------------------------------------------------
def _junk_lock(repo: Path, age: float) -> Path:
    junk = repo / "locks" / ("ab" * 16)
    junk.parent.mkdir(exist_ok=True)
    junk.write_bytes(b"not a lock at all")
    then = time.time() - age
    os.utime(junk, (then, then))
    return junk


def test_an_old_junk_lock_no_longer_blocks_readers(tmp_path: Path, cache: Path) -> None:
    repo, points = _two_points(tmp_path, cache)
    junk = _junk_lock(repo, 120)
    r = run_cli(["image", "points", "--repo", str(repo), "--lock-wait", "0.2"], cache)
    assert r.code == 0, r.err
    assert f"locks/{junk.name}" in r.err, r.err  # readers go past it, and say so
    for point, want in points.items():
        _restores(repo, point, want, cache, tmp_path)
    img = _image(tmp_path, seed=9)
    r = run_cli(["image", "backup", "--repo", str(repo), "--name", "vm2", str(img),
                 "--lock-wait", "0.2"], cache)
    assert r.code == 0, r.err
    # A prune (exclusive) still waits for it, and the message names the file.
    r = run_cli(["image", "prune", "--repo", str(repo), "--keep-last", "1", "--lock-wait",
                 "0.2"], cache)
    assert r.code == 6, r.err
    assert str(junk) in r.err or f"locks/{junk.name}" in r.err, r.err
    assert "pid 0 on ?" not in r.err


def test_a_young_junk_lock_counts_as_held_and_is_named(tmp_path: Path, cache: Path) -> None:
    repo, _points = _two_points(tmp_path, cache)
    junk = _junk_lock(repo, 0)
    r = run_cli(["image", "points", "--repo", str(repo), "--lock-wait", "0.2"], cache)
    assert r.code == 6, r.err
    assert f"locks/{junk.name}" in r.err, r.err
    assert "pid 0 on ?" not in r.err


# -- failure 9: a damaged key, offline ---------------------------------------------------------
@pytest.mark.parametrize("damage", ["flip", "delete"])
def test_a_damaged_key_is_named_restores_work_backups_say_what_to_do(
        tmp_path: Path, cache: Path, damage: str) -> None:
    repo, points = _two_points(tmp_path, cache)
    key = next((repo / "keys").iterdir())
    if damage == "flip":
        data = bytearray(key.read_bytes())
        data[30] ^= 0x20
        key.write_bytes(bytes(data))
    else:
        key.unlink()
    for point, want in points.items():
        _restores(repo, point, want, cache, tmp_path)
    img = _image(tmp_path, seed=9)
    r = run_cli(["image", "backup", "--repo", str(repo), "--name", "vm1", str(img)], cache)
    assert r.code == 9, r.err
    assert f"keys/{key.name}" in r.err, r.err
    assert "restores still work" in r.err and "backups need the key" in r.err, r.err
