"""Concurrency: real processes sharing one repository (docs/FORMAT.md §6, locks).

Two setups: two appliances with their own catalog caches (separate ``VMKEEP_CACHE_DIR``), where
only the repository's lock files serialise them, and one machine with a shared cache, where the
catalog (a DuckDB file one process opens at a time) makes the second process wait first.

To hold a process at a known point while it owns its lock, it writes to a pseudo-terminal
whose output is stopped (XOFF, as Ctrl-S does): a backup's first progress line comes after its
first batch of blocks (packs written, no manifest yet), a prune's first line after it planned
under its exclusive lock. Waiting processes are recognised by their main thread sleeping in the
kernel (``/proc/PID/wchan``); nothing here sleeps for a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import random
import re
import secrets
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest

from appliance.errors import LockedError
from appliance.repository import lock as locks
from appliance.repository import objfile
from appliance.repository.backend import LocalBackend
from appliance.repository.repo import Repository
from tests.helpers import (
    REPO_ROOT,
    MiB,
    poll,
    run_cli,
    run_inproc,
    sha256_of,
    tree_digest,
    write_areas,
)

EXIT_LOCKED = 6
BS = 256 << 10
BLOCKS = 32  # 8 MiB of random data: 8 packs of 4 blocks in a repository with 1 MiB packs
PACK_SIZE = 1 * MiB
DEADLINE = 30.0
HOST = socket.gethostname()

T = TypeVar("T")


# -- waiting without fixed sleeps --------------------------------------------------------------
wait_for = poll


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_until_waiting(proc: subprocess.Popen[str], what: str) -> None:
    """Until the process's main thread sleeps in a timed wait (the lock or catalog retry loop;
    nothing else in vmkeep sleeps). Fails if the process ends first."""
    wchan = Path(f"/proc/{proc.pid}/wchan")
    last: list[int] = []

    def probe() -> bool | None:
        if proc.poll() is not None:
            _out, err = proc.communicate()
            pytest.fail(f"{what} ended ({proc.returncode}) instead of waiting: {err.strip()}")
        try:
            where = wchan.read_text()
        except OSError:
            where = ""
        if where not in ("", "0"):
            return True if "nanosleep" in where else None
        # No kernel symbol names: sleeping and using no CPU for a while.
        ticks = _cpu_ticks(proc.pid)
        last.append(ticks)
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return True if state == "S" and len(last) > 40 and last[-40] == ticks else None

    wait_for(what, probe)


# -- a terminal with its output stopped ---------------------------------------------------------
class StoppedTerminal:
    """A pseudo-terminal whose output is stopped (XOFF): a process writing to it blocks in that
    write until ``resume()``. Pass ``slave`` to the process, then call ``detach()``."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        attrs: list[Any] = termios.tcgetattr(self.slave)
        attrs[0] |= termios.IXON
        attrs[3] &= ~termios.ECHO
        attrs[6][termios.VSTOP] = b"\x13"
        attrs[6][termios.VSTART] = b"\x11"
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        self._out = bytearray()
        self._reader: threading.Thread | None = None
        self._slave_open = True
        os.write(self.master, b"\x13")
        probe = os.open(os.ttyname(self.slave), os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
        try:
            wait_for("the terminal to stop its output", lambda: self._blocks(probe))
        finally:
            os.close(probe)

    @staticmethod
    def _blocks(fd: int) -> bool | None:
        try:
            os.write(fd, b"\0")
        except BlockingIOError:
            return True
        return None

    def detach(self) -> None:
        if self._slave_open:
            os.close(self.slave)
            self._slave_open = False

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            if not chunk:
                return
            self._out += chunk

    def resume(self) -> None:
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        os.write(self.master, b"\x11")

    def output(self) -> str:
        """What the process wrote (call after it ended)."""
        if self._reader is not None:
            self._reader.join(timeout=DEADLINE)
        return self._out.replace(b"\0", b"").decode(errors="replace").replace("\r\n", "\n")

    def close(self) -> None:
        self.detach()
        with contextlib.suppress(OSError):
            os.close(self.master)


# -- images, repositories and the CLI ----------------------------------------------------------
@dataclass(frozen=True)
class Image:
    path: Path
    sha: str
    rewritten: tuple[int, ...]  # blocks that differ from the previous image


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Image]:
    """v1: 32 random blocks; v2, v3, v4 each rewrite one block of every group of 4."""
    root = tmp_path_factory.mktemp("concurrency-images")
    out: list[Image] = []
    data = bytearray(random.Random(1).randbytes(BLOCKS * BS))
    changes = [tuple(range(BLOCKS)), *(tuple(range(k, BLOCKS, 4)) for k in range(3))]
    for n, blocks in enumerate(changes, start=1):
        if n > 1:
            rng = random.Random(100 + n)
            for b in blocks:
                data[b * BS : (b + 1) * BS] = rng.randbytes(BS)
        path = root / f"v{n}.img"
        path.write_bytes(data)
        out.append(Image(path, sha256_of(path), blocks))
    return out



@dataclass
class Setup:
    root: Path
    images: list[Image]
    points: dict[str, Image]  # point id → its image, oldest first

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    def cache(self, name: str) -> Path:
        path = self.root / f"cache-{name}"
        path.mkdir(mode=0o700, exist_ok=True)  # as vmkeep makes it: no warning to print
        return path

    def backup_args(self, n: int, *, lock_wait: float, name: str = "vm1",
                    incremental: bool = True) -> list[str]:
        """A backup of image v``n``; --changed lists its rewritten blocks (from v``n-1``)."""
        image = self.images[n - 1]
        args = ["image", "backup", "--repo", str(self.repo), "--name", name, "--block-size",
                "256K", "--lock-wait", str(lock_wait)]
        if incremental and n > 1:
            areas = [{"offset": b * BS, "length": BS} for b in image.rewritten]
            args += ["--changed", str(write_areas(self.root / f"areas-{n}.json", areas))]
        return [*args, str(image.path)]

    def backup(self, n: int) -> str:
        result = run_inproc(self.backup_args(n, lock_wait=0), self.cache("a"))
        assert result.code == 0, result.err
        point = result.out.split()[0]
        self.points[point] = self.images[n - 1]
        return point

    def check(self, cache: Path) -> None:
        """The listing holds exactly the expected points; each verifies and restores."""
        listing = run_inproc(["image", "points", "--repo", str(self.repo), "--json"], cache)
        assert listing.code == 0, listing.err
        assert [p["id"] for p in json.loads(listing.out)] == list(self.points)
        whole = run_inproc(["image", "verify", "--repo", str(self.repo)], cache)
        assert whole.code == 0, whole.out + whole.err
        for point, image in self.points.items():
            verify = run_inproc(["image", "verify", "--repo", str(self.repo), point], cache)
            assert verify.code == 0, verify.out + verify.err
            target = self.root / f"restored-{point}.img"
            restore = run_inproc(["image", "restore", "--repo", str(self.repo), point,
                                  str(target)], cache)
            assert restore.code == 0, restore.err
            assert sha256_of(target) == image.sha, f"{point} restored different bytes"
            target.unlink()


@pytest.fixture
def setup(tmp_path: Path, images: list[Image]) -> Setup:
    s = Setup(tmp_path, images, {})
    Repository.init(LocalBackend(s.repo), pack_size=PACK_SIZE)
    return s


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start the CLI in a subprocess; whatever is still running at the end is killed."""
    started: list[subprocess.Popen[str]] = []

    def start(args: list[str], cache: Path, *, stdout: int | IO[Any] = subprocess.PIPE,
              stderr: int | IO[Any] = subprocess.PIPE) -> subprocess.Popen[str]:
        env = {**os.environ, "VMKEEP_CACHE_DIR": str(cache)}
        env.pop("VMKEEP_CRASH_AT", None)
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", *args], env=env,
                                cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=stderr, text=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.fixture
def terminal() -> Iterator[StoppedTerminal]:
    term = StoppedTerminal()
    yield term
    term.close()


def lock_of(repo: Path, operation: str) -> locks.LockInfo | None:
    for _name, info in locks.read_locks(LocalBackend(repo)):
        if info is not None and info.operation == operation:
            return info
    return None


def finish(proc: subprocess.Popen[str], what: str) -> tuple[str, str]:
    """Wait for the process; it must succeed. Returns its stdout and stderr (those piped)."""
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"{what} failed with {proc.returncode}: {(err or '').strip()}"
    return out or "", err or ""


def deduplicated(summary: str) -> int:
    """The number of deduplicated blocks a backup reports."""
    found = re.search(r"(\d+) deduplicated", summary)
    assert found is not None, summary
    return int(found[1])


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line message, got {lines}"
    assert lines[0].startswith("vmkeep: error: "), lines[0]
    return lines[0]


def repo_files(repo: Path) -> dict[str, str]:
    """tree_digest without the lock protocol's own traffic (locks/ and tmp/)."""
    return {k: v for k, v in tree_digest(repo).items() if not k.startswith(("locks/", "tmp/"))}


CACHES = pytest.mark.parametrize("caches", ["separate", "shared"])


# -- a prune while a backup runs ---------------------------------------------------------------
@CACHES
def test_prune_waits_for_a_running_backup(setup: Setup, caches: str, terminal: StoppedTerminal,
                                          spawn: Callable[..., subprocess.Popen[str]]) -> None:
    """A backup deduplicating against old blocks holds its shared lock; a prune that would
    delete and compact those very blocks waits, then plans with the backup's point."""
    old = [setup.backup(1), setup.backup(2)]
    backup_cache = setup.cache("a")
    prune_cache = backup_cache if caches == "shared" else setup.cache("b")
    # A full read: every unchanged block is found in the old points' packs.
    backup = spawn(setup.backup_args(3, lock_wait=60, incremental=False), backup_cache,
                   stderr=terminal.slave)
    terminal.detach()
    holder = wait_for("the backup's lock", lambda: lock_of(setup.repo, "backup"))
    assert holder.pid == backup.pid and not holder.exclusive

    prune_args = ["image", "prune", "--repo", str(setup.repo), "--keep-last", "1"]
    refused = run_cli([*prune_args, "--lock-wait", "0"], prune_cache)
    assert refused.code == EXIT_LOCKED, refused.err
    line = one_line(refused.err)
    if caches == "separate":
        assert f"shared lock of backup (pid {backup.pid} on {HOST}" in line

    prune = spawn([*prune_args, "--lock-wait", "60"], prune_cache)
    wait_until_waiting(prune, "the prune")
    assert backup.poll() is None
    assert sorted(p.name for p in (setup.repo / "manifests").iterdir()) == sorted(old)
    terminal.resume()
    new = finish(backup, "the backup")[0].split()[0]
    assert deduplicated(terminal.output()) == 24  # only v3's 8 rewritten blocks were new
    pruned = finish(prune, "the prune")[0]
    # The prune planned after the backup ended: it knew the new point, and kept only it.
    assert f"keep {new} " in pruned and all(f"remove {p} " in pruned for p in old), pruned
    compacted = re.search(r"(\d+) compacted into (\d+)", pruned)
    assert compacted is not None and int(compacted[1]) > 0, pruned
    setup.points = {new: setup.images[2]}
    setup.check(backup_cache)
    if caches == "separate":
        setup.check(prune_cache)


# -- a backup while an exclusive lock is held --------------------------------------------------
def test_backup_waits_for_an_exclusive_lock_then_proceeds(
        setup: Setup, spawn: Callable[..., subprocess.Popen[str]]) -> None:
    setup.backup(1)
    cache = setup.cache("b")
    held = locks.acquire(LocalBackend(setup.repo), exclusive=True, operation="test")
    try:
        before = tree_digest(setup.repo)
        refused = run_cli(setup.backup_args(2, lock_wait=0), cache)
        assert refused.code == EXIT_LOCKED and refused.out == ""
        line = one_line(refused.err)
        assert f"exclusive lock of test (pid {os.getpid()} on {HOST}" in line
        assert tree_digest(setup.repo) == before

        waiting = spawn(setup.backup_args(2, lock_wait=60), cache)
        wait_until_waiting(waiting, "the backup")
        assert repo_files(setup.repo) == {k: v for k, v in before.items()
                                          if not k.startswith(("locks/", "tmp/"))}
    finally:
        held.release()
    point = finish(waiting, "the waiting backup")[0].split()[0]
    setup.points[point] = setup.images[1]
    setup.check(cache)
    assert sorted((setup.repo / "locks").iterdir()) == []


@CACHES
def test_backup_is_refused_while_a_prune_runs(setup: Setup, caches: str,
                                              terminal: StoppedTerminal,
                                              spawn: Callable[..., subprocess.Popen[str]]
                                              ) -> None:
    """A prune holds its exclusive lock (held after planning): a backup that will not wait
    fails with exit 6 and changes nothing; one that waits proceeds after the prune."""
    old = [setup.backup(1), setup.backup(2), setup.backup(3)]
    prune_cache = setup.cache("a")
    backup_cache = prune_cache if caches == "shared" else setup.cache("b")
    prune = spawn(["image", "prune", "--repo", str(setup.repo), "--keep-last", "1",
                   "--lock-wait", "0"], prune_cache, stdout=terminal.slave)
    terminal.detach()
    holder = wait_for("the prune's lock", lambda: lock_of(setup.repo, "prune"))
    assert holder.pid == prune.pid and holder.exclusive
    before = tree_digest(setup.repo)

    refused = run_cli(setup.backup_args(4, lock_wait=0), backup_cache)
    assert refused.code == EXIT_LOCKED and refused.out == ""
    line = one_line(refused.err)
    if caches == "separate":
        assert f"exclusive lock of prune (pid {prune.pid} on {HOST}" in line
    else:
        assert "in use by another vmkeep process" in line
    assert tree_digest(setup.repo) == before

    waiting = None
    if caches == "shared":
        # It waits for the catalog, which the prune holds until it has released its lock.
        waiting = spawn(setup.backup_args(4, lock_wait=60, incremental=False), backup_cache)
        wait_until_waiting(waiting, "the backup")
    terminal.resume()
    finish(prune, "the prune")
    assert all(f"remove {p} " in terminal.output() for p in old[:2])
    if waiting is None:
        # With separate caches a waiting backup polls the lock while the prune sweeps tmp/,
        # which can fail it: see test_a_lock_request_survives_a_concurrent_tmp_sweep.
        result = run_cli(setup.backup_args(4, lock_wait=0, incremental=False), backup_cache)
        assert result.code == 0, result.err
        new, summary = result.out.split()[0], result.err
    else:
        out, summary = finish(waiting, "the waiting backup")
        new = out.split()[0]
    # It deduplicated against the packs the prune left (compacted ones included).
    assert deduplicated(summary) == 24
    setup.points = {old[2]: setup.images[2], new: setup.images[3]}
    setup.check(backup_cache)


def test_busy_catalog_message_names_the_lock_holder(setup: Setup, terminal: StoppedTerminal,
                                                    spawn: Callable[..., subprocess.Popen[str]]
                                                    ) -> None:
    setup.backup(1)
    cache = setup.cache("a")
    backup = spawn(setup.backup_args(2, lock_wait=0), cache, stderr=terminal.slave)
    terminal.detach()
    wait_for("the backup's lock", lambda: lock_of(setup.repo, "backup"))
    refused = run_cli(["image", "prune", "--repo", str(setup.repo), "--keep-last", "1",
                       "--lock-wait", "0"], cache)
    terminal.resume()
    finish(backup, "the backup")
    assert refused.code == EXIT_LOCKED
    assert f"pid {backup.pid}" in one_line(refused.err)


# -- shared locks coexist ----------------------------------------------------------------------
def test_two_backups_run_side_by_side(setup: Setup, terminal: StoppedTerminal,
                                      spawn: Callable[..., subprocess.Popen[str]]) -> None:
    """Two appliances back up to one repository at once. The second one's cleanup must not
    take the first one's new packs (no manifest names them yet) for crash leftovers."""
    first = spawn(setup.backup_args(1, lock_wait=0, name="vm1"), setup.cache("a"),
                  stderr=terminal.slave)
    terminal.detach()
    wait_for("the first backup's lock", lambda: lock_of(setup.repo, "backup"))
    packs = setup.repo / "packs"
    wait_for("the first backup's packs",
             lambda: True if packs.is_dir() and any(packs.rglob("*.pack")) else None)
    manifests = setup.repo / "manifests"
    assert not manifests.is_dir() or not any(manifests.iterdir())
    # Signs of an earlier crash, so that the second backup wants to clean up.
    (setup.repo / "tmp" / "crashed.pack.0123456789ab.tmp").write_bytes(b"partial")
    pid, start = _dead_pid()
    _write_lock(setup.repo, pid=pid, pid_start=start, exclusive=False, operation="backup")

    second = run_cli(setup.backup_args(3, lock_wait=0, name="vm2", incremental=False),
                     setup.cache("b"))
    assert second.code == 0, second.err
    terminal.resume()
    first_point = finish(first, "the first backup")[0].split()[0]
    # The first backup's point was made after the second one's: it is listed last.
    setup.points = {second.out.split()[0]: setup.images[2], first_point: setup.images[0]}
    setup.check(setup.cache("a"))
    setup.check(setup.cache("b"))
    # With nobody else at work, the next backup sweeps the crash leftovers.
    assert any((setup.repo / "tmp").iterdir())
    ok = run_inproc(setup.backup_args(3, lock_wait=0, name="vm2"), setup.cache("b"))
    assert ok.code == 0, ok.err
    assert sorted((setup.repo / "tmp").iterdir()) == []
    assert sorted((setup.repo / "locks").iterdir()) == []


# -- stale locks ---------------------------------------------------------------------------------
def _proc_start(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def _write_lock(repo: Path, **fields: Any) -> str:
    now = time.time()
    doc = {"id": secrets.token_hex(16), "host": HOST, "pid": os.getpid(),
           "pid_start": _proc_start(os.getpid()), "exclusive": True, "operation": "prune",
           "created": now, "refreshed": now, **fields}
    name = f"locks/{doc['id']}"
    LocalBackend(repo).put(name, objfile.encode_json(objfile.MAGIC_LOCK, doc))
    return name


def _dead_pid() -> tuple[int, int]:
    """The pid (and start time) of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    start = _proc_start(proc.pid)
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=DEADLINE)
    return proc.pid, start


def test_stale_lock_of_a_dead_process_is_removed(setup: Setup) -> None:
    """A crashed prune's exclusive lock (its pid is gone) neither blocks a backup nor stays."""
    setup.backup(1)
    pid, start = _dead_pid()
    name = _write_lock(setup.repo, pid=pid, pid_start=start)
    result = run_cli(setup.backup_args(2, lock_wait=0), setup.cache("b"))
    assert result.code == 0, result.err
    assert not (setup.repo / name).exists()
    assert sorted((setup.repo / "locks").iterdir()) == []
    setup.points[result.out.split()[0]] = setup.images[1]
    setup.check(setup.cache("b"))


STALE = 31 * 60.0


@pytest.mark.parametrize(("fields", "stale"), [
    ({"pid": "dead"}, True),
    ({"pid_start": "other"}, True),  # this pid, but another process that had it before
    ({"host": "elsewhere", "refreshed": "old"}, True),
    ({"host": "elsewhere"}, False),
    ({}, False),  # this very process
    ({"exclusive": False}, None),  # a live shared lock: no conflict with a shared request
], ids=["dead-pid", "reused-pid", "other-host-not-refreshed", "other-host-fresh", "alive",
        "alive-shared"])
def test_which_locks_are_stale(tmp_path: Path, fields: dict[str, Any], stale: bool | None
                               ) -> None:
    repo = tmp_path / "repo"
    Repository.init(LocalBackend(repo), pack_size=PACK_SIZE)
    resolved: dict[str, Any] = dict(fields)
    if fields.get("pid") == "dead":
        resolved["pid"], resolved["pid_start"] = _dead_pid()
    if fields.get("pid_start") == "other":
        resolved["pid_start"] = _proc_start(os.getpid()) + 1
    if fields.get("refreshed") == "old":
        resolved["refreshed"] = resolved["created"] = time.time() - STALE
    name = _write_lock(repo, **resolved)
    backend = LocalBackend(repo)
    if stale is None:
        locks.acquire(backend, exclusive=False, operation="backup").release()
        assert (repo / name).exists()
        return
    if stale:
        locks.acquire(backend, exclusive=False, operation="backup").release()
        assert not (repo / name).exists()
    else:
        with pytest.raises(LockedError, match="exclusive lock of prune"):
            locks.acquire(backend, exclusive=False, operation="backup")
        assert (repo / name).exists()
    assert sorted(p.name for p in (repo / "locks").iterdir()) == ([] if stale else [
        name.split("/")[1]])


def test_damaged_lock_counts_as_held_until_it_is_old(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    Repository.init(LocalBackend(repo), pack_size=PACK_SIZE)
    backend = LocalBackend(repo)
    backend.put("locks/" + "cd" * 16, b"VMKLOCK\0 not a lock")
    with pytest.raises(LockedError, match=f"locks/{'cd' * 16} cannot be read"):
        locks.acquire(backend, exclusive=False, operation="backup")
    old = time.time() - STALE
    os.utime(repo / "locks" / ("cd" * 16), (old, old))
    locks.acquire(backend, exclusive=False, operation="backup").release()
    assert sorted((repo / "locks").iterdir()) == []


# -- the lock protocol against the tmp/ sweep ---------------------------------------------------
def test_a_lock_request_survives_a_concurrent_tmp_sweep(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic replay of a race seen with real processes: a backup waits for a prune;
    the prune ends with ``sweep_tmp()`` exactly while the backup's lock file is in tmp/."""
    repo = Repository.init(LocalBackend(tmp_path / "repo"), pack_size=PACK_SIZE)
    prune = locks.acquire(repo.backend, exclusive=True, operation="prune")
    real_fsync = os.fsync
    armed = [True]

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if armed[0] and any((tmp_path / "repo" / "tmp").iterdir()):
            armed[0] = False  # the prune's last steps, between the write and the rename:
            repo.sweep_tmp()
            prune.release()

    monkeypatch.setattr(os, "fsync", fsync)
    held = locks.acquire(repo.backend, exclusive=False, operation="backup", wait=DEADLINE)
    held.release()

