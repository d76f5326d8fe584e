"""A point is good only when the catalog's view of it equals its manifest.

No data is read: per disk, the block map the catalog resolves (indices and ids) must be the
manifest's, every block it names must have a good copy in an indexed pack, and no pack, block
or point may be recorded twice. A backup (or copy) checks its new point before it reports
success; a disagreement is repaired from the manifest — the repository is the truth — with a
warning, and a point that still disagrees fails its run. ``verify`` runs the same check over
every point.
"""

from __future__ import annotations

from appliance.errors import IntegrityError
from appliance.jobs.workspace import Workspace, record_point_of
from appliance.repository.manifest import Manifest


def point_problems(ws: Workspace, m: Manifest, *, availability: bool = True,
                   duplicates: bool = True) -> list[str]:
    """How the catalog's view of point ``m`` differs from the manifest (empty: it agrees).
    Without ``availability``, blocks in no indexed pack are not counted (a full check reports
    lost packs itself, by file); without ``duplicates``, rows indexed twice are not looked for
    (a scan of the whole repository's index: a check of every point does it once)."""
    cat, repo_id, pid = ws.cat, ws.repo.id, m.point_id
    if cat.point(pid) is None:
        return ["the catalog does not have the point"]
    problems: list[str] = []
    disks = {d.disk_index: d for d in cat.disks(pid)}
    if sorted(disks) != sorted(d.index for d in m.disks):
        problems.append(f"the catalog has disks {sorted(disks)}, the manifest "
                        f"{sorted(d.index for d in m.disks)}")
    for d in m.disks:
        if d.index not in disks:
            continue
        idx, ids = cat.resolved_map(pid, d.index)
        if len(idx) != len(d.blocks) or idx != d.blocks.indices or ids != d.blocks.ids:
            problems.append(f"disk {d.index}: the catalog's block map ({len(idx)} blocks) "
                            f"is not the manifest's ({len(d.blocks)} blocks)")
            continue
        lost = cat.unavailable_blocks(repo_id, pid, d.index) if availability else []
        if lost:
            problems.append(f"disk {d.index}: {len(lost)} block(s) in no indexed pack "
                            f"(block {lost[0]} first)")
    twice = cat.duplicate_index_rows(repo_id) if duplicates else 0
    if twice:
        problems.append(f"{twice} pack, block or point row(s) of the repository are indexed "
                        "twice")
    return problems


def settle_point(ws: Workspace, m: Manifest, manifest_bytes: int) -> list[str]:
    """Check a new point (just recorded); repair a disagreeing view from the manifest.
    Returns warnings; raises IntegrityError when the point cannot be vouched for."""
    problems = point_problems(ws, m)
    if not problems:
        return []
    # The repository is the truth: forget what the catalog has of the point (and any index
    # rows it holds twice), index the files again and record the point from its manifest.
    ws.cat.remove_point(m.point_id)
    if ws.cat.duplicate_index_rows(ws.repo.id):
        ws.resync(rescan=True)
    else:
        ws.resync()
    if ws.cat.point(m.point_id) is None:
        parent = m.parent if m.parent and ws.cat.point(m.parent) else None
        record_point_of(ws.repo, ws.cat, m, manifest_bytes, parent)
    still = point_problems(ws, m)
    if still:
        raise IntegrityError(
            f"point {m.point_id} cannot be vouched for: {'; '.join(still)}; it is not "
            f"reported as a good restore point; run {ws.rescan_hint} and verify")
    return [f"the catalog's view of point {m.point_id} disagreed with its manifest "
            f"({'; '.join(problems)}); repaired from the manifest"]
