"""Reading blocks back: each pack's framing is checked the first time it is touched, each
block's xxh3-128 on every read. A copy that fails its check (or whose pack is gone) is
recorded in the catalog as damaged — deduplication never references it again — and the
block's other good copies, if any, are read instead (docs/FORMAT.md §7)."""

from __future__ import annotations

import threading
from types import TracebackType

from appliance.errors import IntegrityError, RepositoryFormatError
from appliance.jobs.workspace import Workspace
from appliance.repository.backend import ObjectNotFound
from appliance.repository.pack import PackEntry
from catalog.models import BlockLocation


class BlockReader:
    """Thread-safe reader of blocks by catalog location; close it (or use ``with``)."""

    def __init__(self, ws: Workspace) -> None:
        self.repo = ws.repo
        self._cat = ws.cat.cursor()  # used by reader threads, one at a time (``_lock``)
        self._packs: dict[str, dict[int, PackEntry]] = {}
        self._lock = threading.Lock()
        self.damaged: list[tuple[str, bytes, str]] = []

    def close(self) -> None:
        with self._lock:
            self._cat.close()

    def __enter__(self) -> BlockReader:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _index(self, pack_id: str) -> dict[int, PackEntry]:
        with self._lock:
            cached = self._packs.get(pack_id)
        if cached is not None:
            return cached
        try:
            _size, entries = self.repo.read_pack_index(pack_id)
        except ObjectNotFound:
            raise IntegrityError(f"pack {pack_id} is missing from the repository") from None
        by_offset = {e.offset: e for e in entries}
        with self._lock:
            self._packs[pack_id] = by_offset
        return by_offset

    def _read_copy(self, loc: BlockLocation, pack_id: str) -> bytes:
        entry = self._index(pack_id).get(loc.offset)
        if entry is None or entry.block_id != loc.block_id:
            raise IntegrityError(
                f"pack {pack_id} does not hold block {loc.block_id.hex()[:16]} where the "
                "catalog says")
        stored = self.repo.read_stored(pack_id, entry.offset, entry.stored_len)
        return self.repo.open_block(entry, stored, f"pack {pack_id}")

    def read(self, loc: BlockLocation, point_id: str) -> bytes:
        if loc.pack_id is None:
            raise IntegrityError(
                f"block {loc.block_id.hex()[:16]} of point {point_id} is in no pack: the "
                "repository is damaged; run verify to see what else is affected")
        try:
            return self._read_copy(loc, loc.pack_id)
        except (IntegrityError, RepositoryFormatError) as first:
            self._mark(loc.pack_id, loc.block_id, str(first))
            with self._lock:
                others = [c for c in self._cat.good_copies(self.repo.id, loc.block_id)
                          if c.pack_id != loc.pack_id]
            for other in others:
                assert other.pack_id is not None
                try:
                    return self._read_copy(other, other.pack_id)
                except (IntegrityError, RepositoryFormatError) as exc:
                    self._mark(other.pack_id, loc.block_id, str(exc))
            raise first from None

    def _mark(self, pack_id: str, block_id: bytes, problem: str) -> None:
        with self._lock:
            self.damaged.append((pack_id, block_id, problem))
            self._cat.mark_damaged(self.repo.id, [(pack_id, block_id, problem)])
