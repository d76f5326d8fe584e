"""Shared by the private-by-default tests: what ``nobody`` can open, the modes of a tree,
the usual umask and an open folder under /tmp (pytest's own temporary root is 0700, which
would hide a file made 0644)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import skip_unless_ci

# Run as nobody: for each path, list it (a folder) or open it (anything else); the errno's
# name, or "ok" when it could.
PROBE = """
import errno, json, os, sys
out = {}
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        out[path] = "ok"
    except OSError as exc:
        out[path] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
print(json.dumps(out))
"""


def need_root() -> None:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        skip_unless_ci("needs root and setpriv to act as another user (nobody)")


def as_nobody(paths: list[Path]) -> dict[str, str]:
    """What ``nobody`` gets trying to list or open each path (see PROBE)."""
    proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           "/usr/bin/python3", "-c", PROBE, *map(str, paths)],
                          capture_output=True, text=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr
    got: dict[str, str] = json.loads(proc.stdout)
    return got


def every_path(root: Path) -> list[Path]:
    """``root`` and everything under it (as root sees it)."""
    out = [root]
    for dirpath, dirs, files in os.walk(root):
        out += [Path(dirpath) / n for n in [*dirs, *files]]
    return out


def shared_modes(paths: list[Path]) -> dict[str, str]:
    """The paths that have group or other access, with their modes."""
    return {str(p): f"{stat.S_IMODE(p.lstat().st_mode):04o}" for p in paths
            if stat.S_IMODE(p.lstat().st_mode) & 0o077}


def assert_private(root: Path) -> list[Path]:
    """Every path under ``root``: no group or other bit, and nobody can list or open it."""
    paths = every_path(root)
    assert len(paths) > 1, f"{root} holds nothing to check"
    assert shared_modes(paths) == {}
    for p in paths:
        want = 0o700 if p.is_dir() else 0o600
        assert stat.S_IMODE(p.lstat().st_mode) == want, f"{p}: {p.lstat().st_mode:o}"
    got = as_nobody(paths)
    assert {p: e for p, e in got.items() if e != "EACCES"} == {}
    return paths


@pytest.fixture
def umask022() -> Iterator[None]:
    """The usual umask, for this process and the ones it starts."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def open_dir(umask022: None) -> Iterator[Path]:
    """A 0755 folder under /tmp: what is made in it is as open as its own mode makes it."""
    d = Path(tempfile.mkdtemp(prefix="vmkeep-private-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        subprocess.run(["chattr", "-R", "-i", str(d)], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)
