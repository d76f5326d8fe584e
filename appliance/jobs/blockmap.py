"""Pure block-map arithmetic: overlaying what a backup read onto the previous map."""

from __future__ import annotations

from array import array
from collections.abc import Sequence

from appliance.repository.codec import ID_SIZE
from appliance.repository.manifest import BlockMap


def overlay(base: BlockMap, updates: Sequence[tuple[int, bytes | None]], *, replace_all: bool
            ) -> tuple[BlockMap, list[int], list[bytes | None]]:
    """Apply ``updates`` (ascending (block index, id or None for zero)) to ``base``.

    With ``replace_all`` every block not in ``updates`` is zero (a full read); otherwise it keeps
    its id from ``base``. Returns the new map and the delta against ``base``: the indices whose
    id changed, with None where a block became zero.
    """
    out_idx = array("Q")
    out_ids: list[bytes] = []
    d_idx: list[int] = []
    d_ids: list[bytes | None] = []
    n = len(base)
    i = 0
    for index, new_id in updates:
        while i < n and base.indices[i] < index:
            if replace_all:
                d_idx.append(base.indices[i])
                d_ids.append(None)
            else:
                out_idx.append(base.indices[i])
                out_ids.append(base.id_at(i))
            i += 1
        old = base.id_at(i) if i < n and base.indices[i] == index else None
        if old is not None:
            i += 1
        if new_id is not None:
            out_idx.append(index)
            out_ids.append(new_id)
        if new_id != old:
            d_idx.append(index)
            d_ids.append(new_id)
    while i < n:
        if replace_all:
            d_idx.append(base.indices[i])
            d_ids.append(None)
        else:
            out_idx.append(base.indices[i])
            out_ids.append(base.id_at(i))
        i += 1
    ids = b"".join(out_ids)
    assert len(ids) == len(out_idx) * ID_SIZE
    return BlockMap(out_idx, ids), d_idx, d_ids
