"""Reading blocks back: each pack's framing is checked the first time it is touched, each
block's xxh3-128 on every read."""

from __future__ import annotations

import threading

from appliance.errors import IntegrityError
from appliance.repository.backend import ObjectNotFound
from appliance.repository.pack import PackEntry
from appliance.repository.repo import Repository
from catalog.models import BlockLocation


class BlockReader:
    """Thread-safe reader of blocks by catalog location."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self._packs: dict[str, dict[int, PackEntry]] = {}
        self._lock = threading.Lock()

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

    def read(self, loc: BlockLocation, point_id: str) -> bytes:
        if loc.pack_id is None:
            raise IntegrityError(
                f"block {loc.block_id.hex()[:16]} of point {point_id} is in no pack: the "
                "repository is damaged; run verify to see what else is affected")
        entry = self._index(loc.pack_id).get(loc.offset)
        if entry is None or entry.block_id != loc.block_id:
            raise IntegrityError(
                f"pack {loc.pack_id} does not hold block {loc.block_id.hex()[:16]} where the "
                "catalog says; run `vmkeep image rescan` and verify")
        stored = self.repo.read_stored(loc.pack_id, entry.offset, entry.stored_len)
        return self.repo.open_block(entry, stored, f"pack {loc.pack_id}")
