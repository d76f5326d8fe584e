"""Health check: read every referenced block, check every file, name every damaged point.

``verify_repository`` works from the repository's files (the truth): it reads each pack whole,
checks its framing and every block (decompress, xxh3-128 check, keyed BLAKE3 identity), then
reads every manifest and looks each referenced block up among the good ones. Each damaged file
is reported once, with every restore point that needs something from it. Then the catalog is
held against the manifests: every point whose catalog view disagrees with its manifest, every
manifest whose file name is not its point id, and every point the catalog knew whose manifest
has vanished is named. Damaged block copies are recorded in the catalog (deduplication never
references them again).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from appliance.errors import IntegrityError, RepositoryFormatError
from appliance.jobs.point_check import point_problems
from appliance.jobs.reader import BlockReader
from appliance.jobs.workspace import Workspace
from appliance.repository import codec
from appliance.repository.backend import Backend, ObjectNotFound
from appliance.repository.manifest import manifest_name, point_id_of
from appliance.repository.pack import (
    ENTRY,
    FOOTER,
    PackEntry,
    pack_name,
    parse_footer,
    parse_index,
    parse_pack,
)
from appliance.repository.repo import CONFIG, Repository
from catalog.models import BlockLocation


@dataclass(frozen=True, slots=True)
class Damage:
    file: str
    problem: str
    points: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    points_checked: int
    packs_checked: int
    blocks_checked: int
    bytes_checked: int
    damage: tuple[Damage, ...]

    @property
    def ok(self) -> bool:
        return not self.damage

    @property
    def damaged_points(self) -> list[str]:
        return sorted({p for d in self.damage for p in d.points})


@dataclass(slots=True)
class _Findings:
    problems: dict[str, list[str]] = field(default_factory=dict)
    points: dict[str, set[str]] = field(default_factory=dict)

    def add(self, file: str, problem: str, point: str | None = None) -> None:
        probs = self.problems.setdefault(file, [])
        if problem not in probs:
            probs.append(problem)
        pts = self.points.setdefault(file, set())
        if point is not None:
            pts.add(point)

    def affects(self, file: str, point: str) -> None:
        self.points.setdefault(file, set()).add(point)

    def report(self, points: int, packs: int, blocks: int, nbytes: int) -> VerifyReport:
        damage = []
        for file in sorted(self.problems):
            probs = self.problems[file]
            text = probs[0] + (f" (and {len(probs) - 1} more problems)" if len(probs) > 1 else "")
            damage.append(Damage(file, text, tuple(sorted(self.points.get(file, ())))))
        return VerifyReport(points, packs, blocks, nbytes, tuple(damage))


def _check_entry(repo: Repository, data: bytes, entry: PackEntry, key: bytes | None,
                 what: str) -> str | None:
    stored = data[entry.offset : entry.offset + entry.stored_len]
    try:
        plain = repo.open_block(entry, stored, what)
    except (IntegrityError, RepositoryFormatError) as exc:
        return str(exc)
    if key is not None and codec.block_id(key, plain) != entry.block_id:
        return f"{what}: block {entry.block_id.hex()[:16]} does not match its identity"
    return None


def _salvage_ids(data: bytes) -> list[bytes]:
    """Block ids from a pack whose header is damaged but whose footer and index are intact."""
    try:
        index_offset, count, index_check = parse_footer(data[-FOOTER.size :], len(data), "")
        index = data[index_offset : index_offset + count * ENTRY.size]
        return [e.block_id for e in parse_index(index, count, index_check, index_offset, "")]
    except (IntegrityError, RepositoryFormatError):
        return []


def damaged_config_report(backend: Backend, problem: str) -> VerifyReport:
    """The config is unreadable: the whole repository is unusable; name every point."""
    points = sorted(p for p in (point_id_of(n) for n in backend.list("manifests")) if p)
    return VerifyReport(0, 0, 0, 0, (Damage(CONFIG, problem, tuple(points)),))


def _vanished(ws: Workspace, found: _Findings) -> None:
    for pid, name, created in ws.cat.vanished(ws.repo.id):
        found.add(manifest_name(pid), f"the manifest is missing: the catalog knew point {pid} "
                  f"of {name}, created {created:%Y-%m-%d %H:%M} UTC, and no prune of this "
                  f"catalog removed it (if another vmkeep did, {ws.rescan_hint} forgets it)",
                  pid)


def verify_repository(ws: Workspace, *, threads: int = 2,
                      progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    repo, cat = ws.repo, ws.cat
    found = _Findings()
    key: bytes | None
    try:
        key = repo.block_key()
    except (IntegrityError, RepositoryFormatError, ObjectNotFound) as exc:
        key = None
        found.add(f"keys/{repo.config.key_id}",
                  f"{exc}: new backups cannot deduplicate until it is repaired "
                  "(restore points do not depend on it)")
    bad_blocks: dict[bytes, str] = {}
    unreadable: list[str] = []  # damaged packs whose block ids nobody can tell
    good = cat.id_set()
    pack_ids = repo.pack_ids()
    blocks = nbytes = 0
    try:
        with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="verify") as pool:
            for n, pid in enumerate(pack_ids):
                name = pack_name(pid)
                what = f"pack {pid}"
                try:
                    data = repo.read_pack(pid)
                    entries = parse_pack(data, pid, what)
                except ObjectNotFound:
                    continue
                except (IntegrityError, RepositoryFormatError) as exc:
                    found.add(name, str(exc))
                    salvaged = _salvage_ids(data) or cat.block_ids_in_pack(repo.id, pid)
                    if not salvaged:
                        unreadable.append(name)
                    for bid in salvaged:
                        bad_blocks[bid] = name
                    cat.mark_damaged(repo.id, [(pid, b, str(exc)) for b in salvaged])
                    continue
                results = pool.map(lambda e, d=data, w=what: _check_entry(repo, d, e, key, w),
                                   entries)
                ok_ids: list[bytes] = []
                for entry, problem in zip(entries, results, strict=True):
                    blocks += 1
                    nbytes += entry.plain_len
                    if problem is None:
                        ok_ids.append(entry.block_id)
                    else:
                        found.add(name, problem)
                        bad_blocks.setdefault(entry.block_id, name)
                        cat.mark_damaged(repo.id, [(pid, entry.block_id, problem)])
                good.add(ok_ids)
                if progress is not None:
                    progress(n + 1, len(pack_ids))
        twice = cat.duplicate_index_rows(repo.id)
        point_ids = repo.point_ids()
        for pid in point_ids:
            mname = manifest_name(pid)
            try:
                m = repo.read_manifest(pid)
            except ObjectNotFound:
                continue
            except (IntegrityError, RepositoryFormatError) as exc:
                found.add(mname, str(exc), pid)
                continue
            disagrees = point_problems(ws, m, availability=False, duplicates=False)
            if twice:
                disagrees.append(f"{twice} pack, block or point row(s) of the repository are "
                                 "indexed twice")
            if disagrees:
                found.add(mname, f"the catalog's view of point {pid} disagrees with its "
                          f"manifest ({'; '.join(disagrees)}); run {ws.rescan_hint}", pid)
            for disk in m.disks:
                ids = [disk.blocks.id_at(i) for i in range(len(disk.blocks))]
                for bid in good.missing(ids):
                    file = bad_blocks.get(bid)
                    if file is not None:
                        found.affects(file, pid)
                    elif (where := cat.pack_of_block(repo.id, bid)) is not None:
                        found.add(pack_name(where), f"block {bid.hex()[:16]} is missing (pack "
                                  f"{where} is gone)", pid)
                    elif unreadable:
                        # It can only have been in a pack whose index is unreadable.
                        for file in unreadable:
                            found.affects(file, pid)
                    else:
                        found.add(mname, f"names block {bid.hex()[:16]}, which no pack holds",
                                  pid)
        _vanished(ws, found)
    finally:
        good.drop()
    return found.report(len(point_ids), len(pack_ids), blocks, nbytes)


def verify_point(ws: Workspace, point_id: str, *, threads: int = 2,
                 progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Check one point: its manifest, and every block it references (with its pack framing)."""
    from appliance.jobs.restore import find_point

    repo, cat = ws.repo, ws.cat
    found = _Findings()
    mname = manifest_name(point_id)
    if point_id in {v[0] for v in cat.vanished(repo.id)}:
        _vanished(ws, found)
        return found.report(1, 0, 0, 0)
    if point_id not in repo.point_ids():
        find_point(ws, point_id)  # not found (or, if the catalog knows it: missing)
        found.add(mname, "the manifest is missing", point_id)
        return found.report(1, 0, 0, 0)
    try:
        m = repo.read_manifest(point_id)
    except (IntegrityError, RepositoryFormatError, ObjectNotFound) as exc:
        found.add(mname, str(exc), point_id)
        return found.report(1, 0, 0, 0)
    try:
        key: bytes | None = repo.block_key()
    except (IntegrityError, RepositoryFormatError, ObjectNotFound):
        key = None
    reader = BlockReader(ws)
    blocks = nbytes = 0
    packs: set[str] = set()

    def check(loc_: BlockLocation) -> tuple[str | None, str | None, int]:
        try:
            plain = reader.read(loc_, point_id)
        except (IntegrityError, RepositoryFormatError) as exc:
            return (pack_name(loc_.pack_id) if loc_.pack_id else mname), str(exc), 0
        if key is not None and codec.block_id(key, plain) != loc_.block_id:
            return pack_name(loc_.pack_id or ""), (
                f"block {loc_.block_id.hex()[:16]} does not match its identity"), 0
        return None, None, len(plain)

    disagrees = point_problems(ws, m, availability=False)
    if disagrees:
        found.add(mname, f"the catalog's view of point {point_id} disagrees with its manifest "
                  f"({'; '.join(disagrees)}); run {ws.rescan_hint}", point_id)
    with reader, ThreadPoolExecutor(max_workers=max(1, threads),
                                    thread_name_prefix="verify") as pool:
        for disk in m.disks:
            plan = cat.restore_plan(repo.id, point_id, disk.index)
            for loc, (file, problem, size) in zip(plan, pool.map(check, plan), strict=True):
                blocks += 1
                nbytes += size
                if loc.pack_id:
                    packs.add(loc.pack_id)
                if file is not None and problem is not None:
                    found.add(file, problem, point_id)
            if progress is not None:
                progress(disk.index + 1, len(m.disks))
    return found.report(1, len(packs), blocks, nbytes)
