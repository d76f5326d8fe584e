"""Crash safety (docs/FORMAT.md §6): SIGKILL at every step of the write ordering.

The real CLI runs in a subprocess with ``VMKEEP_CRASH_AT=name:N`` and kills itself at the N-th
pass of ``crash_point(name)`` (appliance/faults.py); each case checks it really died of
SIGKILL. The state the kill left is then checked along two paths (on two copies):

* the next backup, a fresh process straight after the kill, succeeds; afterwards ``tmp/`` and
  ``locks/`` are empty, every pack holds a block some manifest names, the whole repository
  verifies and every point restores (after a killed prune, a second prune also completes);
* readers first: ``vmkeep image points --json`` lists exactly the points whose manifest is in
  place (a point is complete exactly when its manifest exists), each passes ``vmkeep image
  verify --repo R POINT`` and restores byte-identical to its image; a backup after them
  (they removed the dead process's lock) still sweeps every leftover.

Kill points come from scenarios (full, incremental and default-pack-size backups, the cleanup
of crash leftovers, a catalog resync from an empty cache, prune with compaction); a test
checks that the planned N of each point is exactly how often an uncrashed run passes it. A
seeded RNG picks the default set: one N for every (scenario, point) pair plus a few more; the
others are marked slow (``make test-all``). Apart from the killed command and the next backup,
the CLI runs in this process through ``appliance.cli.main`` (the same code, without 0.3 s of
start-up per call).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from appliance.jobs import backup as backup_job
from appliance.jobs import prune as prune_job
from appliance.jobs import workspace as workspace_job
from appliance.repository.backend import LocalBackend
from appliance.repository.repo import DEFAULT_PACK_SIZE, Repository
from tests.helpers import CliResult, MiB, run_cli, run_inproc, sha256_of, write_areas

if os.environ.get("VMKEEP_CRASH_AT"):
    # The in-process CLI calls below would kill the test runner itself.
    raise RuntimeError("unset VMKEEP_CRASH_AT before running the tests")

SEED = 2026
EXTRA_DEFAULT_KILLS = 2  # random (scenario, point, N) cases beyond one per (scenario, point)
NAME = "vm1"
KILLED = -9  # subprocess return code of a process that died of SIGKILL
SMALL_PACKS = 1 * MiB  # repositories made here: 4 incompressible 256 KiB blocks per pack


# -- images ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Version:
    """An image: its predecessor with ``blocks`` rewritten with random bytes from ``seed``."""

    parent: str | None
    seed: int
    blocks: tuple[int, ...]
    block_size: int
    size: int

    @property
    def block_size_arg(self) -> str:
        return {256 << 10: "256K", 1 << 20: "1M"}[self.block_size]


SMALL_BS = 256 << 10
SMALL_SIZE = 36 * SMALL_BS  # 32 data blocks, then a 1 MiB hole
BIG_BS = 1 << 20
BIG_SIZE = 50 * MiB  # 48 MiB of random data (3 packs of the default 16 MiB), then a hole


def _small(parent: str | None, seed: int, blocks: range | list[int]) -> Version:
    return Version(parent, seed, tuple(blocks), SMALL_BS, SMALL_SIZE)


VERSIONS: dict[str, Version] = {
    # v1: 32 random blocks = 8 packs. Each later version rewrites one block of every pack-sized
    # group of 4 (v5 two), so a prune keeping only v4 finds v2's packs dead and v1's half live.
    "v1": _small(None, 1, range(32)),
    "v2": _small("v1", 2, range(0, 32, 4)),
    "v3": _small("v2", 3, range(0, 32, 4)),
    "v4": _small("v3", 4, range(1, 32, 4)),
    "v5": _small("v4", 5, sorted([*range(2, 32, 4), *range(3, 32, 4)])),
    "v6": _small("v5", 6, range(0, 32, 4)),
    "b1": Version(None, 7, tuple(range(48)), BIG_BS, BIG_SIZE),
    "b2": Version("b1", 8, (5, 20, 40), BIG_BS, BIG_SIZE),
}


def _write_version(path: Path, name: str) -> None:
    chain: list[Version] = []
    v: str | None = name
    while v is not None:
        chain.append(VERSIONS[v])
        v = VERSIONS[v].parent
    with path.open("wb") as f:
        f.truncate(chain[0].size)  # sparse: blocks never written stay holes
        for ver in reversed(chain):
            rng = random.Random(ver.seed)
            for b in ver.blocks:
                f.seek(b * ver.block_size)
                f.write(rng.randbytes(ver.block_size))


@dataclass(frozen=True)
class Image:
    path: Path
    sha: str
    version: Version


def changed_areas(old: Image, new: Image) -> list[dict[str, int]]:
    """The blocks that differ between two images, as a --changed list."""
    bs = new.version.block_size
    areas: list[dict[str, int]] = []
    with old.path.open("rb") as a, new.path.open("rb") as b:
        offset = 0
        while True:
            x, y = a.read(bs), b.read(bs)
            if not x and not y:
                return areas
            if x != y:
                areas.append({"offset": offset, "length": max(len(x), len(y))})
            offset += bs


# -- running the CLI ---------------------------------------------------------------------------

def ok(result: CliResult, what: str) -> CliResult:
    assert result.code == 0, f"{what} failed with {result.code}: {result.err.strip()}"
    return result


# -- repository states -------------------------------------------------------------------------
@dataclass
class State:
    """A repository with its catalog cache, and the image version of each of its points."""

    root: Path
    points: dict[str, str] = field(default_factory=dict)  # point id → version, oldest first

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def clone(self, dest: Path) -> State:
        shutil.copytree(self.root, dest)
        return State(dest, dict(self.points))


@dataclass
class World:
    images: dict[str, Image]
    states: dict[str, State]
    work: Path

    def backup_args(self, state: State, version: str, parent: str | None,
                    areas_file: Path) -> list[str]:
        """A backup of ``version``, incremental (--changed) when the newest point is ``parent``."""
        image = self.images[version]
        args = ["image", "backup", "--repo", str(state.repo), "--name", NAME,
                "--block-size", image.version.block_size_arg]
        if parent is not None:
            areas = changed_areas(self.images[parent], image)
            args += ["--changed", str(write_areas(areas_file, areas))]
        return [*args, str(image.path)]

    def backup(self, state: State, version: str) -> str:
        newest = list(state.points.values())[-1] if state.points else None
        args = self.backup_args(state, version, newest, self.work / "areas.json")
        point = ok(run_inproc(args, state.cache), f"backup of {version}").out.split()[0]
        state.points[point] = version
        return point


def _empty_state(root: Path, pack_size: int) -> State:
    state = State(root)
    Repository.init(LocalBackend(state.repo), pack_size=pack_size)
    state.cache.mkdir()
    return state


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("crash-world")
    images: dict[str, Image] = {}
    for name, version in VERSIONS.items():
        path = root / f"{name}.img"
        _write_version(path, name)
        images[name] = Image(path, sha256_of(path), version)
    w = World(images, {}, root)
    w.states["empty"] = _empty_state(root / "empty", SMALL_PACKS)
    w.states["empty-default"] = _empty_state(root / "empty-default", DEFAULT_PACK_SIZE)
    three = w.states["empty"].clone(root / "three")
    for v in ("v1", "v2", "v3"):
        w.backup(three, v)
    w.states["three"] = three
    four = three.clone(root / "four")
    w.backup(four, "v4")
    w.states["four"] = four
    # Leftovers of a crash: v5's 4 packs are durable and indexed, its manifest never written.
    orphans = four.clone(root / "orphans")
    args = w.backup_args(orphans, "v5", "v4", root / "areas.json")
    killed = run_cli(args, orphans.cache, env={"VMKEEP_CRASH_AT": "backup-before-manifest"})
    assert killed.code == KILLED, killed.err
    w.states["orphans"] = orphans
    return w


# -- scenarios and kill points -----------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    base: str  # the state the killed command runs on
    command: str  # "backup" or "prune"
    version: str  # the image a backup reads
    next_version: str  # the image the next backup reads
    kills: tuple[tuple[str, int], ...]  # (crash point, N): every pass the command makes
    fresh_cache: bool = False  # the command runs with an empty catalog cache
    xfail: str | None = None


def _passes(point: str, count: int) -> list[tuple[str, int]]:
    return [(point, n) for n in range(1, count + 1)]


def _backup_kills(packs: int) -> tuple[tuple[str, int], ...]:
    return (*_passes("backup-pack-written", packs), *_passes("backup-pack-indexed", packs),
            ("backup-before-manifest", 1), ("backup-manifest-written", 1),
            ("backup-point-recorded", 1))


SCENARIOS: dict[str, Scenario] = {
    # A first (full) backup: 8 packs.
    "full": Scenario("empty", "backup", "v1", "v2", _backup_kills(8)),
    # An incremental backup (--changed) on top of three points: 2 packs.
    "incremental": Scenario("three", "backup", "v4", "v5", _backup_kills(2)),
    # The repository's default pack size (16 MiB), default 1 MiB blocks, 48 MiB: 3 packs.
    "big": Scenario("empty-default", "backup", "b1", "b2", _backup_kills(3)),
    # Prune --keep-last 1 of four points: 3 manifests deleted, v1's 8 half-live packs
    # compacted into 4 new ones, v2's 2 dead packs deleted: 10 packs deleted in all.
    "prune": Scenario("four", "prune", "", "v5", (
        ("prune-points-marked", 1), *_passes("prune-manifest-deleted", 3),
        ("prune-points-forgotten", 1),
        *_passes("compact-pack-written", 4), *_passes("compact-pack-indexed", 4),
        *_passes("prune-pack-deleted", 10))),
    # A backup whose cleanup sweeps the 4 orphan packs a crashed backup left.
    "sweep": Scenario("orphans", "backup", "v5", "v6", tuple(_passes("sweep-pack-deleted", 4))),
    # A backup with an empty catalog cache (another appliance): its sync records 4 points.
    "sync": Scenario("four", "backup", "v5", "v6", tuple(_passes("sync-point-recorded", 4)),
                     fresh_cache=True),
    # A kill between a file's tmp write and its rename: the lock, 8 packs, the manifest (no
    # cleanup lock: a repository without leftovers is not swept).
    "put-tmp": Scenario("empty", "backup", "v1", "v2", tuple(_passes("put-tmp-written", 10))),
}


@dataclass(frozen=True)
class Case:
    scenario: str
    point: str
    n: int

    @property
    def id(self) -> str:
        return f"{self.scenario}-{self.point}:{self.n}"


def select_cases(seed: int = SEED) -> tuple[list[Case], list[Case]]:
    """(default, slow): one seeded N per (scenario, point) and a few more; slow: the rest."""
    rng = random.Random(seed)
    groups: dict[tuple[str, str], list[Case]] = {}
    for name, sc in SCENARIOS.items():
        for point, n in sc.kills:
            groups.setdefault((name, point), []).append(Case(name, point, n))
    default = [rng.choice(members) for members in groups.values()]
    rest = [c for members in groups.values() for c in members
            if c not in default and SCENARIOS[c.scenario].xfail is None]
    default += rng.sample(rest, EXTRA_DEFAULT_KILLS)
    slow = [c for members in groups.values() for c in members if c not in default]
    return default, slow


DEFAULT_CASES, SLOW_CASES = select_cases()


def _params() -> list[Any]:
    out = []
    for case in (*DEFAULT_CASES, *SLOW_CASES):
        marks: list[pytest.MarkDecorator] = []
        if case in SLOW_CASES:
            marks.append(pytest.mark.slow)
        reason = SCENARIOS[case.scenario].xfail
        if reason:
            marks.append(pytest.mark.xfail(reason=reason, strict=True))
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


# -- checks ------------------------------------------------------------------------------------
def manifest_ids(repo: Path) -> set[str]:
    return set(Repository.open_local(repo, create=False).point_ids())


def unreferenced_packs(repo_path: Path) -> list[str]:
    """Packs none of whose blocks any manifest names, from the repository's files alone."""
    repo = Repository.open_local(repo_path, create=False)
    named: set[bytes] = set()
    for point in repo.point_ids():
        for disk in repo.read_manifest(point).disks:
            named.update(disk.blocks.id_at(i) for i in range(len(disk.blocks)))
    return [p for p in repo.pack_ids()
            if not any(e.block_id in named for e in repo.read_pack_index(p)[1])]


def listed_points(state: State) -> list[str]:
    out = ok(run_inproc(["image", "points", "--repo", str(state.repo), "--json"], state.cache),
             "points --json").out
    return [str(p["id"]) for p in json.loads(out)]


def check_point(world: World, state: State, point: str, *, verify: bool = True) -> None:
    """``verify POINT`` passes and ``restore POINT`` gives back the point's image."""
    repo = str(state.repo)
    if verify:
        result = ok(run_inproc(["image", "verify", "--repo", repo, point], state.cache),
                    f"verify {point}")
        assert result.out.startswith("ok:"), result.out
    target = state.root / f"restored-{point}.img"
    ok(run_inproc(["image", "restore", "--repo", repo, point, str(target)], state.cache),
       f"restore {point}")
    assert sha256_of(target) == world.images[state.points[point]].sha, (
        f"{point} ({state.points[point]}) restored different bytes")
    target.unlink()


def check_next_backup(world: World, state: State, version: str) -> str:
    """The next backup (a new process) succeeds and cleans every leftover of the crash; then
    the whole repository verifies and every point restores."""
    newest = list(state.points.values())[-1] if state.points else None
    args = world.backup_args(state, version, newest, state.root / "next-areas.json")
    result = ok(run_cli(args, state.cache), "the next backup")
    point = result.out.split()[0]
    state.points[point] = version
    assert sorted(p.name for p in (state.repo / "tmp").iterdir()) == []
    assert sorted(p.name for p in (state.repo / "locks").iterdir()) == []
    assert unreferenced_packs(state.repo) == []
    whole = ok(run_inproc(["image", "verify", "--repo", str(state.repo)], state.cache),
               "verify of the whole repository")
    assert whole.out.splitlines()[-1].startswith("ok:"), whole.out
    assert listed_points(state) == list(state.points)
    assert manifest_ids(state.repo) == set(state.points)
    check_point(world, state, point, verify=False)
    return point


def expected_after_kill(sc: Scenario, case: Case, before: dict[str, str],
                        manifests: set[str]) -> dict[str, str]:
    """Check which points the kill left complete (manifest in place); return them, oldest
    first, with their image versions."""
    if sc.command == "prune":
        keep = list(before)[-1]  # --keep-last 1
        assert keep in manifests and manifests <= set(before), (sorted(before), manifests)
        removed = len(before) - len(manifests)
        planned = len(before) - 1
        assert removed == (case.n if case.point == "prune-manifest-deleted" else
                           0 if case.point == "prune-points-marked" else planned)
        return {p: v for p, v in before.items() if p in manifests}
    assert set(before) <= manifests, f"a kill lost points: {sorted(set(before) - manifests)}"
    new = manifests - set(before)
    complete = case.point in ("backup-manifest-written", "backup-point-recorded")
    assert len(new) == (1 if complete else 0), (
        f"after {case.id}: expected {'one new point' if complete else 'no new point'}, "
        f"got {sorted(new)}")
    return {**before, **{p: sc.version for p in new}}


def run_command_args(world: World, sc: Scenario, state: State) -> list[str]:
    if sc.command == "prune":
        return ["image", "prune", "--repo", str(state.repo), "--keep-last", "1"]
    newest = list(state.points.values())[-1] if state.points else None
    return world.backup_args(state, sc.version, newest, state.root / "areas.json")


def prepare(world: World, sc: Scenario, dest: Path) -> State:
    state = world.states[sc.base].clone(dest)
    if sc.fresh_cache:
        shutil.rmtree(state.cache)
        state.cache.mkdir()
    return state


# -- the tests ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", _params())
def test_sigkill_leaves_a_recoverable_repository(world: World, case: Case, tmp_path: Path
                                                 ) -> None:
    sc = SCENARIOS[case.scenario]
    state = prepare(world, sc, tmp_path / "case")
    before = dict(state.points)
    spec = f"{case.point}:{case.n}"
    killed = run_cli(run_command_args(world, sc, state), state.cache,
                     env={"VMKEEP_CRASH_AT": spec})
    assert killed.code == KILLED, (
        f"{spec} was never reached: the command ended with {killed.code} ({killed.err.strip()})")

    state.points = expected_after_kill(sc, case, before, manifest_ids(state.repo))
    left = state.clone(tmp_path / "left")  # the state the kill left, for the listing below

    # The next backup, straight after the kill, succeeds and cleans up.
    check_next_backup(world, state, sc.next_version)
    if sc.command == "prune":
        # The next prune finishes what the killed one left (dead or duplicated blocks).
        ok(run_inproc(["image", "prune", "--repo", str(state.repo), "--keep-last", "1"],
                      state.cache), "the next prune")
        assert unreferenced_packs(state.repo) == []
        for point in listed_points(state):
            check_point(world, state, point)

    # Right after the kill, only complete points are listed, and each verifies and restores.
    assert listed_points(left) == list(left.points)
    for point in left.points:
        check_point(world, left, point)
    # Those readers removed the dead process's lock; a backup after them still cleans up.
    newest = list(left.points.values())[-1] if left.points else None
    ok(run_inproc(world.backup_args(left, sc.next_version, newest, left.root / "areas.json"),
                  left.cache), "a backup after the readers")
    assert sorted(p.name for p in (left.repo / "tmp").iterdir()) == []
    assert sorted(p.name for p in (left.repo / "locks").iterdir()) == []
    assert unreferenced_packs(left.repo) == []


def _count_passes(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count crash-point passes (and backend puts, as "put-tmp-written") in this process."""
    seen: Counter[str] = Counter()

    def count(name: str) -> None:
        seen[name] += 1

    for module in (backup_job, prune_job, workspace_job):
        monkeypatch.setattr(module, "crash_point", count)
    real_put = LocalBackend.put

    def put(self: LocalBackend, name: str, data: bytes) -> None:
        seen["put-tmp-written"] += 1
        real_put(self, name, data)

    monkeypatch.setattr(LocalBackend, "put", put)
    return seen


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenarios_pass_each_kill_point_as_often_as_planned(
        world: World, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The planned N of every kill point is exactly what an uncrashed run passes, so the cases
    above cover every pass (an N too large would show as a process that was not killed)."""
    sc = SCENARIOS[name]
    state = prepare(world, sc, tmp_path / "case")
    seen = _count_passes(monkeypatch)
    ok(run_inproc(run_command_args(world, sc, state), state.cache), f"{name} command")
    planned: dict[str, int] = {}
    for point, n in sc.kills:
        planned[point] = max(planned.get(point, 0), n)
    assert {p: seen[p] for p in planned} == planned


def test_default_set_covers_every_step() -> None:
    real = [c for c in DEFAULT_CASES if SCENARIOS[c.scenario].xfail is None]
    assert len(set(real)) >= 20
    every_point = {p for sc in SCENARIOS.values() if sc.xfail is None for p, _n in sc.kills}
    assert {c.point for c in real} == every_point
    assert {(c.scenario, c.point) for c in real} == {
        (name, p) for name, sc in SCENARIOS.items() if sc.xfail is None for p, _n in sc.kills}


# -- kills inside LocalBackend.put, simulated --------------------------------------------------
def _tmp_name(target: str) -> str:
    """The name LocalBackend.put gives a file while writing it."""
    return f"{target.rsplit('/', 1)[-1]}.{os.urandom(6).hex()}.tmp"


@contextlib.contextmanager
def _kept_cache(state: State) -> Iterator[None]:
    """Run something in-process, then put the catalog cache back as it was before."""
    saved = state.root / "cache-before"
    shutil.copytree(state.cache, saved)
    try:
        yield
    finally:
        shutil.rmtree(state.cache)
        saved.rename(state.cache)


def test_partial_files_in_tmp_are_never_read_and_are_swept(world: World, tmp_path: Path
                                                           ) -> None:
    """A kill while a file is being written leaves a partial file in tmp/ (until the proposed
    ``put-tmp-written`` crash point exists, simulated here): readers ignore it, the next
    backup removes it."""
    state = world.states["three"].clone(tmp_path / "case")
    repo = state.repo
    tmp = repo / "tmp"
    tmp.mkdir(exist_ok=True)
    pack = next(p for p in sorted((repo / "packs").rglob("*.pack")))
    data = pack.read_bytes()
    (tmp / _tmp_name(pack.name)).write_bytes(data[: len(data) // 2])
    manifest = next(p for p in sorted((repo / "manifests").iterdir()))
    fake_point = "20300101T000000Z-0badc0de"
    (tmp / _tmp_name(fake_point)).write_bytes(manifest.read_bytes()[:50])
    (tmp / _tmp_name("locks/" + "ab" * 16)).write_bytes(b"VMKLOCK\0")

    listed = listed_points(state)
    assert listed == list(state.points)
    for point in listed:
        check_point(world, state, point)
    check_next_backup(world, state, "v4")


def test_complete_manifest_left_in_tmp_is_not_a_point(world: World, tmp_path: Path) -> None:
    """A kill after a manifest's tmp write but before its rename: its packs are durable, the
    manifest is whole in tmp/, yet the point does not exist; the next backup sweeps both."""
    state = world.states["three"].clone(tmp_path / "case")
    before = dict(state.points)
    with _kept_cache(state):  # the killed process never recorded the point in the catalog
        point = world.backup(state, "v4")
    state.points = before
    manifest = state.repo / "manifests" / point
    (state.repo / "tmp").mkdir(exist_ok=True)
    manifest.rename(state.repo / "tmp" / _tmp_name(point))
    assert unreferenced_packs(state.repo) != []

    assert listed_points(state) == list(before)
    for p in before:
        check_point(world, state, p)
    check_next_backup(world, state, "v4")


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in (*DEFAULT_CASES, *SLOW_CASES)]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z-]+-[a-z-]+:\d+", i) for i in ids)
