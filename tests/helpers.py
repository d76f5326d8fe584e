"""Shared test helpers: deterministic images, running the real CLI, hashing files."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

from appliance import cli
from appliance.jobs.workspace import SyncResult, open_workspace
from appliance.repository.repo import Repository
from catalog.store import Catalog

T = TypeVar("T")

MiB = 1 << 20
REPO_ROOT = Path(__file__).resolve().parent.parent


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def make_image(path: Path, size: int = 24 * MiB, seed: int = 1) -> None:
    """A VM-like sparse image: holes, zeros, log-like text, random data, duplicate regions."""
    rng = random.Random(seed)
    with path.open("wb") as f:
        f.truncate(size)
        pos = 0
        while pos < size:
            kind = rng.randrange(5)
            length = min(rng.choice([64 << 10, 256 << 10, MiB, 2 * MiB]), size - pos)
            if kind == 0:
                pass  # hole
            elif kind == 1:
                line = f"{seed} INFO service heartbeat ok pid={rng.randrange(1 << 16)}\n".encode()
                f.seek(pos)
                f.write((line * (length // len(line) + 1))[:length])
            elif kind == 2:
                f.seek(pos)
                f.write(rng.randbytes(length))
            elif kind == 3:
                f.seek(pos)
                f.write(bytes(length))  # allocated zeros
            else:
                f.seek(pos)
                f.write((rng.randbytes(4096) * (length // 4096 + 1))[:length])
            pos += length
        # A duplicated 1 MiB region.
        if size >= 4 * MiB:
            f.seek(0)
            f.write(b"")
            dup = rng.randbytes(MiB)
            for at in (MiB, size - 2 * MiB):
                f.seek(at)
                f.write(dup)


def change_image(path: Path, seed: int, count: int = 3, length: int = 8192) -> list[dict[str, int]]:
    """Overwrite ``count`` scattered areas; return the changed-areas list."""
    rng = random.Random(seed)
    size = path.stat().st_size
    areas = []
    with path.open("r+b") as f:
        for _ in range(count):
            off = rng.randrange(0, size - length) // 4096 * 4096
            f.seek(off)
            f.write(rng.randbytes(length))
            areas.append({"offset": off, "length": length})
    return areas


def write_areas(path: Path, areas: list[dict[str, int]]) -> Path:
    path.write_text(json.dumps(areas))
    return path


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


def run_cli(args: list[str], cache: Path, env: dict[str, str] | None = None,
            timeout: float = 120, stdin: str = "") -> CliResult:
    """Run the real `vmkeep` CLI in a subprocess with its catalog cache in ``cache``."""
    full_env = {**os.environ, "VMKEEP_CACHE_DIR": str(cache), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=full_env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                          input=stdin)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def run_inproc(args: list[str], cache: Path) -> CliResult:
    """The CLI's ``main()`` in this process, with its catalog cache in ``cache``."""
    out, err = io.StringIO(), io.StringIO()
    old = os.environ.get("VMKEEP_CACHE_DIR")
    os.environ["VMKEEP_CACHE_DIR"] = str(cache)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(args)
    finally:
        if old is None:
            del os.environ["VMKEEP_CACHE_DIR"]
        else:
            os.environ["VMKEEP_CACHE_DIR"] = old
    return CliResult(code, out.getvalue(), err.getvalue())


def tree_digest(root: Path) -> dict[str, str]:
    """name → sha256 of every file below ``root`` (to show a repository is unchanged)."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = sha256_of(p)
    return out


# -- the engine in a workspace (appliance.jobs.workspace), for tests that call it directly --
def in_ws(repo: Repository, cat: Catalog, fn: Callable[..., T], *args: Any,
          exclusive: bool = False, **kwargs: Any) -> T:
    """``fn(ws, *args, **kwargs)`` in a workspace of ``repo`` (its lock taken, a cursor of
    ``cat`` brought up to date under it)."""
    with open_workspace(repo, cat.cursor, exclusive=exclusive, operation="test") as ws:
        return fn(ws, *args, **kwargs)


def synced(repo: Repository, cat: Catalog) -> SyncResult:
    """Bring ``cat``'s index of ``repo`` up to date (in a shared workspace)."""
    with open_workspace(repo, cat.cursor, exclusive=False, operation="test") as ws:
        return ws.synced


def rescanned(repo: Repository, cat: Catalog) -> SyncResult:
    """Rebuild ``cat``'s index of ``repo`` from the repository alone."""
    with open_workspace(repo, cat.cursor, exclusive=False, operation="test",
                        rescan=True) as ws:
        return ws.synced


def poll(what: str | Callable[[], str], probe: Callable[[], T | None], timeout: float = 30.0,
         every: float = 0.005) -> T:
    """Call ``probe`` every ``every`` seconds until it returns something true (not None, False,
    0 or empty) and return that; fail the test at the deadline, naming ``what`` was awaited
    (a callable: asked then, to show the state last seen). The one way tests wait for
    something (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for "
                        f"{what() if callable(what) else what}")
        time.sleep(every)


def in_ci() -> bool:
    """Running in CI (``CI`` set, as .ci/run and every CI service do)?"""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def skip_unless_ci(reason: str) -> NoReturn:
    """Skip a test whose environment is missing here, but fail it in CI: there the fixture
    must provide what the test needs (root, a tmpfs, openssh-server), so a skip would hide
    a case CI claims to run."""
    import pytest

    if in_ci():
        pytest.fail(f"CI must run this test, but: {reason}", pytrace=False)
    pytest.skip(reason)


def fill_up(folder: Path) -> Path:
    """Fill the file system under ``folder`` to the last byte with a file there."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for step in (1 << 20, 4096, 512, 1):
            chunk = b"\0" * step
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, chunk)
    finally:
        os.close(fd)
    return filler


def remount_ro(where: Path) -> None:
    """Make a mounted file system read-only (root)."""
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True)


def session_first(fn: Callable[..., T], session: object) -> Callable[..., T]:
    """For ``in_ws``: the VM jobs take the vSphere session first, then the workspace."""
    return lambda ws, *args, **kwargs: fn(session, ws, *args, **kwargs)
