"""Indexing in a workspace: packs and points recorded once, and ``rescan``.

Bringing the catalog up to date happens when a workspace is opened
(``appliance.jobs.workspace``), under the repository's lock; these are the steps writers use
on the way (a new pack, a new point), each recorded once whoever sees it first.
"""

from __future__ import annotations

from appliance.jobs.workspace import (
    Delta,
    SyncResult,
    Workspace,
    index_pack_of,
    record_point_of,
)
from appliance.repository.manifest import Manifest

__all__ = ["Delta", "SyncResult", "index_pack", "record_point"]


def index_pack(ws: Workspace, pack_id: str) -> bool:
    """Index a durable pack of the workspace's repository (False: recorded already)."""
    return index_pack_of(ws.repo, ws.cat, pack_id)


def record_point(ws: Workspace, m: Manifest, manifest_bytes: int, base_point: str | None,
                 deltas: dict[int, Delta] | None = None) -> bool:
    """Record a point whose manifest is durable (False: recorded already)."""
    return record_point_of(ws.repo, ws.cat, m, manifest_bytes, base_point, deltas)
