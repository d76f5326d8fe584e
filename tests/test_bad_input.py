"""Bad input: every refusal is the documented exit code (appliance/errors.py) and exactly one
stderr line that names the bad value and says what to do, with no traceback, and it leaves the
repository exactly as it was (or, where there was none, still none).

Exit codes: 2 usage, 3 not found, 4 bad input, 5 repository format, 7 no space, 11 source.
None of them is ever 70 (an internal error: a bug), whatever the input.
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
import tempfile
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


def assert_not_internal(r: CliResult) -> None:
    """Bad input is never an internal error (exit 70, "please report this")."""
    assert r.code != 70 and "internal error" not in r.err, f"exit {r.code}: {r.err!r}"


def assert_refused(r: CliResult, code: int, needles: tuple[str, ...] = (),
                   hint: str | None = None) -> str:
    """Exit ``code``, one stderr line naming every needle (and matching ``hint``), nothing
    on stdout, no traceback. Returns the line."""
    assert_not_internal(r)
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


# -- numbers, names and paths on the command line (issue 11) -----------------------------------

R = "/srv/vmkeep-test/r1"  # never reached: the arguments are refused first
IMG = "/srv/vmkeep-test/disk.img"
VC = ["--host", "127.0.0.1", "--port", "1", "--user", "u", "--insecure"]

# (arguments, the option named, what it must say is allowed): each refused with exit 2 before
# anything is opened, created or asked of an appliance.
CLI_CASES: dict[str, tuple[list[str], str, str]] = {
    "keep-days-huge": (["image", "prune", "--repo", R, "--keep-days", "1000000000"],
                       "--keep-days", "at most 36500"),
    "keep-days-nan": (["image", "prune", "--repo", R, "--keep-days", "nan"], "--keep-days",
                      "finite"),
    "keep-days-inf": (["image", "prune", "--repo", R, "--keep-days", "inf"], "--keep-days",
                      "finite"),
    "keep-days-zero": (["image", "prune", "--repo", R, "--keep-days", "0"], "--keep-days",
                       "more than 0"),
    "keep-days-negative": (["image", "prune", "--repo", R, "--keep-days", "-3"], "--keep-days",
                           "more than 0"),
    "keep-last-zero": (["image", "prune", "--repo", R, "--keep-last", "0"], "--keep-last",
                       "give 1 to"),
    "keep-last-huge": (["image", "prune", "--repo", R, "--keep-last", "1" + "0" * 30],
                       "--keep-last", "give 1 to"),
    "compact-below-nan": (["image", "prune", "--repo", R, "--keep-last", "1",
                           "--compact-below", "nan"], "--compact-below", "finite"),
    "threads-zero": (["image", "backup", "--repo", R, "--name", "vm", "--threads", "0", IMG],
                     "--threads", "give 1 to 256"),
    "threads-negative": (["image", "backup", "--repo", R, "--name", "vm", "--threads", "-5",
                          IMG], "--threads", "give 1 to 256"),
    "threads-not-a-number": (["image", "backup", "--repo", R, "--name", "vm", "--threads",
                              "two", IMG], "--threads", "whole number"),
    "lock-wait-nan": (["image", "points", "--repo", R, "--lock-wait", "nan"], "--lock-wait",
                      "finite"),
    "lock-wait-inf": (["image", "points", "--repo", R, "--lock-wait", "inf"], "--lock-wait",
                      "finite"),
    "lock-wait-negative": (["image", "points", "--repo", R, "--lock-wait", "-1"],
                           "--lock-wait", "give 0 to"),
    "lock-wait-huge": (["image", "points", "--repo", R, "--lock-wait", "1e300"], "--lock-wait",
                       "give 0 to"),
    "name-empty": (["image", "backup", "--repo", R, "--name", "", IMG], "--name", "empty"),
    "name-blank": (["image", "backup", "--repo", R, "--name", "   ", IMG], "--name", "empty"),
    "name-newline": (["image", "backup", "--repo", R, "--name", "db01\nfake row", IMG],
                     "--name", "control characters"),
    "name-escape-code": (["image", "backup", "--repo", R, "--name", "\x1b[31mred", IMG],
                         "--name", "control characters"),
    "name-tab": (["image", "backup", "--repo", R, "--name", "a\tb", IMG], "--name",
                 "control characters"),
    "name-too-long": (["image", "backup", "--repo", R, "--name", "x" * 81, IMG], "--name",
                      "at most 80"),
    "name-slash": (["image", "backup", "--repo", R, "--name", "a/b", IMG], "--name", "slash"),
    "repo-is-etc": (["image", "backup", "--repo", "/etc", "--name", "vm", IMG], "--repo",
                    "system folder"),
    "repo-is-root": (["image", "points", "--repo", "/"], "--repo", "system folder"),
    "repo-is-usr-dotdot": (["image", "verify", "--repo", "/srv/../usr"], "--repo",
                           "system folder"),
    "restore-disk-negative": (["image", "restore", "--repo", R, "--disk", "-1", "P",
                               "/srv/vmkeep-test/out.img"], "--disk", "give 0 to"),
    "vsphere-threads-zero": (["vsphere", "backup", *VC, "--repo", R, "--threads", "0", "vm"],
                             "--threads", "give 1 to 256"),
    "vsphere-read-streams-negative": (["vsphere", "backup", *VC, "--repo", R,
                                       "--read-streams", "-1", "vm"], "--read-streams",
                                      "give 0 to"),
    "vsphere-vm-escape": (["vsphere", "backup", *VC, "--repo", R, "\x1b]0;pwned\x07"], "VM",
                          "control characters"),
    "vsphere-restore-name-empty": (["vsphere", "restore-vm", *VC, "--repo", R, "--name", "",
                                    "P"], "--name", "empty"),
    "vcenter-name-newline": (["vcenter", "add", "vc\n01", "--host", "h", "--user", "u"], "NAME",
                             "control characters"),
    "vcenter-host-escape": (["vcenter", "add", "vc01", "--host", "h\x1b[2J", "--user", "u"],
                            "--host", "control characters"),
    "repo-name-empty": (["repo", "add", "", "--path", "/srv/vmkeep-test/main"], "NAME",
                        "empty"),
    "repo-path-etc": (["repo", "add", "main", "--path", "/etc"], "--path", "system folder"),
    "repo-path-proc": (["repo", "add", "main", "--path", "/proc/"], "--path", "system folder"),
    "repo-path-newline": (["repo", "add", "main", "--path", "/srv/a\nb"], "--path",
                          "control characters"),
    "repo-harden-days": (["repo", "harden", "main", "--days", "0"], "--days", "give 7 to 9999"),
    "job-name-escape": (["job", "create", "\x1b[1mjob", "--vcenter", "vc", "--vm", "vm",
                         "--repo", "main"], "NAME", "control characters"),
    "job-parallel-zero": (["job", "create", "j", "--vcenter", "vc", "--vm", "vm", "--repo",
                           "main", "--parallel-vms", "0"], "--parallel-vms", "give 1 to 16"),
    "job-keep-days-nan": (["job", "create", "j", "--vcenter", "vc", "--vm", "vm", "--repo",
                           "main", "--keep-days", "nan"], "--keep-days", "finite"),
    "job-retries-negative": (["job", "create", "j", "--vcenter", "vc", "--vm", "vm", "--repo",
                              "main", "--retries", "-1"], "--retries", "give 0 to 100"),
    "job-rpo-inf": (["job", "create", "j", "--vcenter", "vc", "--vm", "vm", "--repo", "main",
                     "--rpo", "inf"], "--rpo", "finite"),
    "job-vm-newline": (["job", "create", "j", "--vcenter", "vc", "--vm", "db01\n", "--repo",
                        "main"], "--vm", "control characters"),
    "job-edit-keep-last-zero": (["job", "edit", "j", "--keep-last", "0"], "--keep-last",
                                "give 1 to"),
    "prune-keep-days-huge": (["prune", "--repo", "main", "--keep-days", "1e9"], "--keep-days",
                             "at most 36500"),
    "restore-vm-name-newline": (["restore", "vm", "P", "--name", "new\nvm"], "--name",
                                "control characters"),
    "restore-disk-to-etc": (["restore", "disk", "P", "--to", "/etc"], "--to", "system folder"),
    "restore-pg-data-dir-root": (["restore", "postgres", "P", "--data-dir", "/"], "--data-dir",
                                 "system folder"),
    "notify-free-space-nan": (["notify", "set", "--free-space-alert", "nan"],
                              "--free-space-alert", "finite"),
    "catalog-timeout-nan": (["catalog", "query", "SELECT 1", "--timeout", "nan"], "--timeout",
                            "finite"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_refuses_bad_numbers_names_and_paths(tmp_path: Path, case: str) -> None:
    """Exit 2, one stderr line naming the option and the value as Python writes it (a newline
    as \\n, an escape as \\x1b: nothing raw reaches the terminal) and what is allowed;
    nothing is created, no appliance is asked."""
    args, option, allowed = CLI_CASES[case]
    home = tmp_path / "home"
    r = run_cli(args, tmp_path / "cache", env={"VMKEEP_HOME": str(home)})
    bad = (args[args.index(option) + 1] if option.startswith("--")
           else next(a for a in args if not a.isprintable() or not a))
    line = assert_refused(r, 2, (option, repr(bad)), re.escape(allowed))
    assert "\x1b" not in line and line.isprintable(), line
    assert not home.exists() and not (tmp_path / "cache").exists()
    assert not Path(R).exists()


@pytest.mark.parametrize("option", ["--retry-wait"])
def test_a_period_too_long_is_a_usage_error(tmp_path: Path, option: str) -> None:
    """``99999999999999999999h`` once overflowed the date arithmetic (exit 70)."""
    r = run_cli(["job", "create", "j", "--vcenter", "vc", "--vm", "vm", "--repo", "main",
                 option, "99999999999999999999h"], tmp_path / "cache",
                env={"VMKEEP_HOME": str(tmp_path / "home")})
    assert_refused(r, 2, ("'99999999999999999999h'", "longer than a year"))


def test_no_cli_case_is_an_internal_error_even_when_well_formed(tmp_path: Path) -> None:
    """The values just inside the ranges are taken (exit codes other than 2 mean the command
    ran on to the missing repository; never 70)."""
    repo = tmp_path / "missing"
    for args in (["image", "prune", "--repo", str(repo), "--keep-days", "36500"],
                 ["image", "prune", "--repo", str(repo), "--keep-last", "10000"],
                 ["image", "points", "--repo", str(repo), "--lock-wait", "0"]):
        r = run_cli(args, tmp_path / "cache")
        assert_refused(r, 3, (str(repo), "does not exist"))


# -- no data folder -----------------------------------------------------------------------------


def _without_data_folder(tmp_path: Path) -> dict[str, str]:
    """An environment whose HOME is below a plain file: the per-user data folder
    (platformdirs: HOME/.local/share/vmkeep) cannot be made, even by root."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("VMKEEP_HOME", "VMKEEP_SOCKET", "VMKEEP_CACHE_DIR", "XDG_DATA_HOME")}
    env["HOME"] = str(blocker / "home")
    return env


def _run(args: list[str], env: dict[str, str]) -> CliResult:
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize("command", ["backup", "points", "verify"])
def test_no_folder_for_the_catalog_cache_is_a_usage_error(env: Env, tmp_path: Path,
                                                          command: str) -> None:
    e = _without_data_folder(tmp_path)
    new_repo = tmp_path / "new-repo"
    args = {"backup": ["image", "backup", "--repo", str(new_repo), "--name", "vm",
                       str(env.image)],
            "points": ["image", "points", "--repo", str(env.repo)],
            "verify": ["image", "verify", "--repo", str(env.repo)]}[command]
    before = tree_digest(env.repo)
    r = _run(args, e)
    assert_refused(r, 2, ("catalog cache", "VMKEEP_CACHE_DIR", "not a folder"))
    assert not new_repo.exists()
    assert tree_digest(env.repo) == before
    # The variable it names is the way out.
    e["VMKEEP_CACHE_DIR"] = str(tmp_path / "cache-here")
    r = _run(["image", "points", "--repo", str(env.repo)], e)
    assert r.code == 0, r.err


def test_a_cache_dir_that_cannot_be_made_is_a_usage_error(env: Env, tmp_path: Path) -> None:
    e = _without_data_folder(tmp_path)
    e["VMKEEP_CACHE_DIR"] = str(tmp_path / "not-a-folder" / "cache")
    r = _run(["image", "points", "--repo", str(env.repo)], e)
    assert_refused(r, 2, ("VMKEEP_CACHE_DIR", str(tmp_path / "not-a-folder" / "cache")))


@pytest.mark.parametrize("how", ["default", "VMKEEP_HOME", "--home"])
def test_no_home_for_the_appliance_is_a_usage_error(how: str) -> None:
    tmp_path = Path(tempfile.mkdtemp(prefix="vmkeep-nohome-", dir="/tmp"))  # short: sockets
    try:
        _no_home_case(tmp_path, how)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _no_home_case(tmp_path: Path, how: str) -> None:
    e = _without_data_folder(tmp_path)
    home = tmp_path / "not-a-folder" / "vmkeep"
    extra: list[str] = []
    if how == "VMKEEP_HOME":
        e["VMKEEP_HOME"] = str(home)
    elif how == "--home":
        extra = ["--home", str(home)]
    r = _run(["appliance", "start", *extra], e)
    line = assert_refused(r, 2, ("VMKEEP_HOME", "not a folder"))
    if how == "--home":
        assert "--home" in line


# -- names from a repository are shown escaped ------------------------------------------------

EVIL = "db01\nfake-row 20990101T000000Z\x1b[31mred\x1b]0;title\x07"


def test_a_name_with_a_newline_and_escape_codes_is_shown_escaped(tmp_path: Path) -> None:
    """A repository written by something else holds a point whose name has a newline and
    terminal escape codes (the CLI would refuse such a name; the library does not check):
    `image points` shows it on one row, escaped; the JSON keeps it as it is."""
    from appliance.jobs.backup import BackupOptions, DiskInput, run_backup
    from appliance.jobs.workspace import open_workspace
    from appliance.repository.repo import Repository
    from appliance.source import ImageFileSource
    from catalog.store import Catalog

    image = tmp_path / "disk.img"
    make_image(image, 2 * MiB, seed=5)
    repo = Repository.open_local(tmp_path / "repo", create=True)
    cat = Catalog.open(tmp_path / "writer.duckdb")
    try:
        with open_workspace(repo, cat.cursor, exclusive=False, operation="test") as ws:
            point = run_backup(ws, EVIL, [DiskInput(0, ImageFileSource(image))],
                               BackupOptions(block_size=256 << 10)).point_id
    finally:
        cat.close()
    cache = tmp_path / "cache"
    r = run_cli(["image", "points", "--repo", str(tmp_path / "repo")], cache)
    assert r.code == 0, r.err
    assert "\x1b" not in r.out and "\x07" not in r.out
    lines = r.out.splitlines()
    assert len(lines) == 2, lines  # the header and one row
    assert point in lines[1] and "db01\\nfake-row" in lines[1]
    assert "\\x1b[31mred\\x1b]0;title\\x07" in lines[1]
    r = run_cli(["image", "points", "--repo", str(tmp_path / "repo"), "--json"], cache)
    assert json.loads(r.out)[0]["vm"] == EVIL
    r = run_cli(["image", "prune", "--repo", str(tmp_path / "repo"), "--keep-last", "1",
                 "--dry-run"], cache)
    assert r.code == 0, r.err
    assert "\x1b" not in r.out and "\x1b" not in r.err
    assert any(point in line and "db01\\nfake-row" in line for line in r.out.splitlines())
