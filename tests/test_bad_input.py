"""Bad input: every refusal is the documented exit code (appliance/errors.py) and exactly one
stderr line that names the bad value and says what to do, with no traceback, and it leaves the
repository exactly as it was (or, where there was none, still none).

Exit codes: 2 usage, 3 not found, 4 bad input, 5 repository format, 7 no space, 11 source.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import xxhash

from tests.helpers import (
    REPO_ROOT,
    CliResult,
    MiB,
    make_image,
    run_cli,
    sha256_of,
    skip_unless_ci,
    tree_digest,
)

IMAGE_SIZE = 4 * MiB


@dataclass(frozen=True)
class Pristine:
    repo: Path
    cache: Path
    image: Path
    point: str


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    root = tmp_path_factory.mktemp("bad-input")
    repo, cache, image = root / "repo", root / "cache", root / "disk.img"
    cache.mkdir()
    make_image(image, IMAGE_SIZE, seed=21)
    r = run_cli(["image", "backup", "--repo", str(repo), "--name", "vm", str(image)], cache)
    assert r.code == 0, r.err
    return Pristine(repo, cache, image, r.out.splitlines()[0])


@dataclass(frozen=True)
class Env:
    repo: Path
    cache: Path
    image: Path
    point: str
    tmp: Path

    def cli(self, *args: str, timeout: float = 120) -> CliResult:
        return run_cli(["image", *args], self.cache, timeout=timeout)


@pytest.fixture
def env(pristine: Pristine, tmp_path: Path) -> Env:
    repo, cache = tmp_path / "repo", tmp_path / "cache"
    shutil.copytree(pristine.repo, repo)
    shutil.copytree(pristine.cache, cache)
    return Env(repo, cache, pristine.image, pristine.point, tmp_path)


def assert_refused(r: CliResult, code: int, needles: tuple[str, ...] = (),
                   hint: str | None = None) -> str:
    """Exit ``code``, one stderr line naming every needle (and matching ``hint``), nothing
    on stdout, no traceback. Returns the line."""
    assert "Traceback" not in r.err and "Traceback" not in r.out, r.err
    lines = r.err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {r.err!r}"
    line = lines[0]
    assert line.startswith("vmkeep: error: "), line
    assert r.code == code, f"exit {r.code}, expected {code}: {line}"
    for n in needles:
        assert n in line, f"{n!r} not named in {line!r}"
    if hint is not None:
        assert re.search(hint, line), f"no advice matching {hint!r} in {line!r}"
    assert r.out == "", r.out
    return line


# -- backup inputs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """A refused backup: its arguments after ``--name vm``, and what the refusal must say."""

    args: list[str]
    code: int
    needles: tuple[str, ...]
    hint: str | None


def areas_file(tmp: Path, content: str | bytes) -> Path:
    p = tmp / "areas.json"
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return p


def changed(tmp: Path, image: Path, content: str | bytes, code: int = 4,
            needles: tuple[str, ...] = (), hint: str | None = None) -> Bad:
    p = areas_file(tmp, content)
    return Bad(["--changed", str(p), str(image)], code, (str(p), *needles), hint)


JSON_HINT = r"JSON list|each entry must be|must hold a JSON list"

BACKUP_CASES: dict[str, Callable[[Path, Path], Bad]] = {
    "image-missing": lambda t, i: Bad([str(t / "nope.img")], 3, (str(t / "nope.img"),),
                                      r"name an existing file"),
    "image-is-a-folder": lambda t, i: Bad([str(t)], 4, (str(t),), r"name an image file"),
    "changed-missing": lambda t, i: Bad(["--changed", str(t / "nope.json"), str(i)], 3,
                                        (str(t / "nope.json"),), r"name an existing"),
    "changed-not-json": lambda t, i: changed(t, i, '[{"offset": 0, "length": 1}', hint=JSON_HINT),
    "changed-not-utf8": lambda t, i: changed(t, i, b"\xff\xfe[]", hint=JSON_HINT),
    "changed-empty-file": lambda t, i: changed(t, i, "", hint=JSON_HINT),
    "changed-not-a-list": lambda t, i: changed(t, i, '{"offset": 0, "length": 1}',
                                               hint=JSON_HINT),
    "changed-missing-key": lambda t, i: changed(t, i, '[{"offset": 0}]', needles=("entry 0",),
                                                hint=JSON_HINT),
    "changed-extra-key": lambda t, i: changed(
        t, i, '[{"offset": 0, "length": 1}, {"offset": 0, "length": 1, "size": 2}]',
        needles=("entry 1",), hint=JSON_HINT),
    "changed-strings": lambda t, i: changed(t, i, '[{"offset": "0", "length": "4096"}]',
                                            needles=('"0"',), hint=JSON_HINT),
    "changed-bool": lambda t, i: changed(t, i, '[{"offset": 0, "length": true}]',
                                         needles=("true",), hint=JSON_HINT),
    "changed-float": lambda t, i: changed(t, i, '[{"offset": 0.5, "length": 4096}]',
                                          needles=("0.5",), hint=JSON_HINT),
    "changed-entry-not-object": lambda t, i: changed(t, i, "[[0, 4096]]", needles=("entry 0",),
                                                     hint=JSON_HINT),
    "changed-beyond-disk": lambda t, i: changed(
        t, i, json.dumps([{"offset": IMAGE_SIZE - 4096, "length": 8192}]),
        needles=(str(IMAGE_SIZE + 4096), str(IMAGE_SIZE)), hint=r"give the areas of this disk"),
    "changed-starts-beyond-disk": lambda t, i: changed(
        t, i, json.dumps([{"offset": IMAGE_SIZE + MiB, "length": 0}]),
        needles=(str(IMAGE_SIZE),), hint=r"give the areas of this disk"),
    "changed-negative-offset": lambda t, i: changed(
        t, i, json.dumps([{"offset": -4096, "length": 4096}]), needles=("entry 0", "negative")),
    "changed-negative-length": lambda t, i: changed(
        t, i, json.dumps([{"offset": 0, "length": -1}]), needles=("entry 0", "negative")),
    "unknown-compression": lambda t, i: Bad(["--compression", "xz", str(i)], 2, ("'xz'",),
                                            r"choose one of"),
    "unknown-block-size": lambda t, i: Bad(["--block-size", "3M", str(i)], 2, ("'3M'",),
                                           r"choose one of"),
    "block-size-not-a-size": lambda t, i: Bad(["--block-size", "big", str(i)], 2, ("'big'",),
                                              r"choose one of"),
}



@pytest.mark.parametrize("case", [
    pytest.param(name) for name in BACKUP_CASES])
def test_backup_refuses_bad_input(env: Env, case: str) -> None:
    inputs = env.tmp / "inputs"
    inputs.mkdir()
    bad = BACKUP_CASES[case](inputs, env.image)
    before = tree_digest(env.repo)
    r = env.cli("backup", "--repo", str(env.repo), "--name", "vm", *bad.args)
    assert_refused(r, bad.code, bad.needles, bad.hint)
    assert tree_digest(env.repo) == before
    # Inputs are checked before a repository is created.
    missing = env.tmp / "new-repo"
    r = env.cli("backup", "--repo", str(missing), "--name", "vm", *bad.args)
    assert_refused(r, bad.code, bad.needles, bad.hint)
    assert not missing.exists()


def test_negative_area_names_the_value_and_what_to_do(env: Env) -> None:
    bad = changed(env.tmp, env.image, json.dumps([{"offset": -4096, "length": 4096}]),
                  needles=("-4096",), hint=r"must|give|name")
    r = env.cli("backup", "--repo", str(env.repo), "--name", "vm", *bad.args)
    assert_refused(r, bad.code, bad.needles, bad.hint)


def _write_only_path() -> Path | None:
    """A path open(O_RDONLY) refuses with EACCES even for root: a write-only sysfs attribute."""
    for cand in ["/sys/bus/pci/rescan", *sorted(glob.glob("/sys/bus/*/drivers_probe"))]:
        try:
            fd = os.open(cand, os.O_RDONLY)
        except PermissionError:
            return Path(cand)
        except OSError:
            continue
        os.close(fd)
    return None


def test_backup_refuses_unreadable_image(env: Env) -> None:
    """Permission denied on the image: exit 11 (source). As a normal user a chmod-000 file is
    used; root reads those regardless, so as root a write-only sysfs attribute (which the
    kernel refuses to open for reading, with EACCES, even to root) stands in for it."""
    if os.geteuid() != 0:
        path = env.tmp / "secret.img"
        shutil.copyfile(env.image, path)
        path.chmod(0)
    else:
        found = _write_only_path()
        if found is None:
            skip_unless_ci("running as root (chmod 000 does not stop root's reads) and no "
                        "write-only sysfs attribute is available to stand in")
        path = found
    before = tree_digest(env.repo)
    r = env.cli("backup", "--repo", str(env.repo), "--name", "vm", str(path))
    assert_refused(r, 11, (str(path), "permission denied"), r"run as a user who can read it")
    assert tree_digest(env.repo) == before


def test_backup_refuses_a_fifo_instead_of_hanging(env: Env) -> None:
    fifo = env.tmp / "disk.fifo"
    os.mkfifo(fifo)
    before = tree_digest(env.repo)
    try:
        r = env.cli("backup", "--repo", str(env.repo), "--name", "vm", str(fifo), timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`vmkeep image backup … {fifo}` still runs after 5 s")
    assert_refused(r, 4, (str(fifo),))
    assert tree_digest(env.repo) == before


# -- restore and verify inputs ----------------------------------------------------------------

POINTS_HINT = r"vmkeep image points --repo"


@pytest.mark.parametrize("point", ["20200101T000000Z-deadbeef", "nonsense", "../config",
                                   "manifests/x"])
def test_unknown_point(env: Env, point: str) -> None:
    before = tree_digest(env.repo)
    target = env.tmp / "out.img"
    r = env.cli("restore", "--repo", str(env.repo), point, str(target))
    assert_refused(r, 3, (point,), POINTS_HINT)
    assert not target.exists()
    r = env.cli("verify", "--repo", str(env.repo), point)
    assert_refused(r, 3, (point,), POINTS_HINT)
    assert tree_digest(env.repo) == before


def test_unknown_disk(env: Env) -> None:
    before = tree_digest(env.repo)
    target = env.tmp / "out.img"
    r = env.cli("restore", "--repo", str(env.repo), "--disk", "7", env.point, str(target))
    assert_refused(r, 3, ("disk 7", env.point), r"it has disks 0")
    assert not target.exists()
    assert tree_digest(env.repo) == before


def test_restore_target_exists(env: Env) -> None:
    target = env.tmp / "already.img"
    target.write_bytes(b"keep me")
    before = tree_digest(env.repo)
    r = env.cli("restore", "--repo", str(env.repo), env.point, str(target))
    assert_refused(r, 2, (str(target),), r"remove it or name a new file")
    assert target.read_bytes() == b"keep me"
    assert tree_digest(env.repo) == before


# -- repositories -----------------------------------------------------------------------------

OBJ_HEADER = struct.Struct("<8sHBBIQ")


def set_object_version(path: Path, version: int) -> None:
    """Rewrite an object file's version with a correct xxh3-128 check (FORMAT.md §3)."""
    data = path.read_bytes()
    magic, _old, codec, res, key_id, n = OBJ_HEADER.unpack_from(data)
    body = OBJ_HEADER.pack(magic, version, codec, res, key_id, n) + data[24 : 24 + n]
    path.write_bytes(body + xxhash.xxh3_128_digest(body))


def commands(env: Env, repo: Path) -> dict[str, list[str]]:
    return {
        "backup": ["backup", "--repo", str(repo), "--name", "vm", str(env.image)],
        "restore": ["restore", "--repo", str(repo), env.point, str(env.tmp / "out.img")],
        "verify": ["verify", "--repo", str(repo)],
        "verify-point": ["verify", "--repo", str(repo), env.point],
        "points": ["points", "--repo", str(repo)],
        "prune": ["prune", "--repo", str(repo), "--keep-last", "1"],
    }


COMMANDS = ["backup", "restore", "verify", "verify-point", "points", "prune"]


@pytest.mark.parametrize("command", COMMANDS)
def test_repository_of_another_format_version(env: Env, command: str) -> None:
    set_object_version(env.repo / "config", 2)
    before = tree_digest(env.repo)
    r = env.cli(*commands(env, env.repo)[command])
    assert_refused(r, 5, (f"{env.repo}/config", "version 2", "version 1"))
    assert tree_digest(env.repo) == before
    assert not (env.tmp / "out.img").exists()


def test_another_format_version_says_what_to_do(env: Env) -> None:
    set_object_version(env.repo / "config", 2)
    r = env.cli("verify", "--repo", str(env.repo))
    assert_refused(r, 5, ("uses format version 2; this vmkeep reads version 1",),
                   r"(newer|upgrade|update).*vmkeep|vmkeep .*reads version 2")


@pytest.mark.parametrize("command", COMMANDS)
def test_folder_that_is_not_a_repository(env: Env, command: str) -> None:
    folder = env.tmp / "documents"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a repository\n")
    before = tree_digest(folder)
    r = env.cli(*commands(env, folder)[command])
    assert_refused(r, 5, (str(folder), "not a vmkeep repository"), r"name an? .*folder")
    assert tree_digest(folder) == before
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("command", COMMANDS)
def test_repository_path_is_a_file(env: Env, command: str) -> None:
    path = env.tmp / "repo.txt"
    path.write_text("a file\n")
    r = env.cli(*commands(env, path)[command])
    assert_refused(r, 5, (str(path), "is not a folder"), r"name a repository folder")
    assert path.read_text() == "a file\n"


@pytest.mark.parametrize("command", ["restore", "verify", "points"])
def test_missing_repository(env: Env, command: str) -> None:
    missing = env.tmp / "no-such-repo"
    r = env.cli(*commands(env, missing)[command])
    assert_refused(r, 3, (str(missing), "does not exist"))
    assert not missing.exists()


# -- a full disk ------------------------------------------------------------------------------


def random_image(path: Path, size: int, seed: int) -> None:
    path.write_bytes(random.Random(seed).randbytes(size))


def _enospc_case(tmp: Path, cache: Path, fs: Path, big_size: int) -> None:
    repo = fs / "repo"
    small, big = tmp / "small.img", tmp / "big.img"
    random_image(small, 2 * MiB, seed=31)
    random_image(big, big_size, seed=32)
    r = run_cli(["image", "backup", "--repo", str(repo), "--name", "small", str(small)], cache)
    assert r.code == 0, r.err
    point = r.out.splitlines()[0]
    before = tree_digest(repo)
    r = run_cli(["image", "backup", "--repo", str(repo), "--name", "big", str(big)], cache)
    assert_refused(r, 7, (str(repo),), r"free space")
    assert tree_digest(repo) == before
    assert list((repo / "locks").iterdir()) == []
    assert list((repo / "tmp").iterdir()) == []
    # The earlier point still verifies and restores.
    r = run_cli(["image", "verify", "--repo", str(repo)], cache)
    assert r.code == 0 and r.out.startswith("ok: checked 1 points"), r
    target = tmp / "restored.img"
    r = run_cli(["image", "restore", "--repo", str(repo), point, str(target)], cache)
    assert r.code == 0, r.err
    assert sha256_of(target) == sha256_of(small)
    assert tree_digest(repo) == before


def test_full_disk_during_backup(tmp_path: Path, tmpfs: Callable[[str], Path]) -> None:
    """The first (only) pack does not fit."""
    cache = tmp_path / "cache"
    cache.mkdir()
    _enospc_case(tmp_path, cache, tmpfs("6m"), 12 * MiB)


def test_full_disk_after_a_pack_was_written(tmp_path: Path,
                                            tmpfs: Callable[[str], Path]) -> None:
    """A first 16 MiB pack fits, the second does not: the orphan pack must be swept."""
    cache = tmp_path / "cache"
    cache.mkdir()
    _enospc_case(tmp_path, cache, tmpfs("24m"), 30 * MiB)


def _restore_to_full_disk(env: Env, fs: Path) -> tuple[CliResult, Path]:
    image = env.tmp / "big.img"
    random_image(image, 12 * MiB, seed=33)
    r = env.cli("backup", "--repo", str(env.repo), "--name", "big", str(image))
    assert r.code == 0, r.err
    point = r.out.splitlines()[0]
    before = tree_digest(env.repo)
    target = fs / "restored.img"
    r = env.cli("restore", "--repo", str(env.repo), point, str(target))
    assert tree_digest(env.repo) == before
    assert list(fs.iterdir()) == [], "a failed restore left files on the full disk"
    return r, target


def test_restore_to_a_full_disk_fails_cleanly(env: Env,
                                              tmpfs: Callable[[str], Path]) -> None:
    r, target = _restore_to_full_disk(env, tmpfs("6m"))
    assert r.code in (7, 8), r
    line = assert_refused(r, r.code, (str(target),))
    assert os.strerror(errno.ENOSPC) in line or "no space" in line.lower()


def test_restore_to_a_full_disk_is_no_space(env: Env, tmpfs: Callable[[str], Path]) -> None:
    r, target = _restore_to_full_disk(env, tmpfs("6m"))
    assert_refused(r, 7, (str(target),), r"free space|another folder|elsewhere")


def test_a_reader_that_goes_away_is_not_an_internal_error(env: Env) -> None:
    """`vmkeep image points --json | head -c0`: the pipe closes before vmkeep writes."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "image", "points", "--repo", str(env.repo),
         "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT,
        env={**os.environ, "VMKEEP_CACHE_DIR": str(env.cache)})
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "internal error" not in err and "Traceback" not in err
