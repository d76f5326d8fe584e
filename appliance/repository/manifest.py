"""Restore-point manifests: with the packs, enough to restore a point without any catalog.

A manifest is an object file (see ``objfile``) with magic ``VMKMANI\\0`` and a zstd payload::

    0   4  json_len (u32 LE)
    4   …  JSON document (UTF-8), see ``Manifest.to_json``
    then, for each disk in the JSON's ``disks`` order, with n = disks[i].blocks:
        n × u64 LE   block indices, strictly ascending (block i covers bytes
                     [i*block_size, min((i+1)*block_size, size)))
        n × 32 bytes block ids, in the same order
    Blocks not listed are all-zero.
"""

from __future__ import annotations

import json
import re
import struct
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from appliance.errors import IntegrityError
from appliance.repository import objfile
from appliance.repository.codec import ID_SIZE
from appliance.repository.crypto import Sealer

POINT_ID_RE: Final = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")


def manifest_name(point_id: str) -> str:
    return f"manifests/{point_id}"


def point_id_of(name: str) -> str | None:
    base = name.rsplit("/", 1)[-1]
    if not name.startswith("manifests/") or not POINT_ID_RE.match(base):
        return None
    return base


@dataclass(frozen=True, slots=True)
class BlockMap:
    """A disk's blocks: ascending indices and their 32-byte ids, zeros left out."""

    indices: array[int]  # array("Q")
    ids: bytes

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.indices) * ID_SIZE:
            raise ValueError("block map ids and indices differ in length")

    def __len__(self) -> int:
        return len(self.indices)

    def id_at(self, i: int) -> bytes:
        return self.ids[i * ID_SIZE : (i + 1) * ID_SIZE]

    @staticmethod
    def empty() -> BlockMap:
        return BlockMap(array("Q"), b"")


@dataclass(frozen=True, slots=True)
class DiskRecord:
    index: int
    label: str
    size: int
    block_size: int
    blocks: BlockMap
    change_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Manifest:
    point_id: str
    object_name: str
    object_kind: str
    created: datetime
    kind: str  # "full" | "incremental"
    parent: str | None
    compression: str
    reason: str
    bytes_read: int
    bytes_stored: int
    disks: tuple[DiskRecord, ...]
    config: dict[str, Any] = field(default_factory=dict)
    object_uuid: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "point_id": self.point_id,
            "object": {"name": self.object_name, "kind": self.object_kind,
                       "uuid": self.object_uuid},
            "created": self.created.isoformat(),
            "kind": self.kind,
            "parent": self.parent,
            "compression": self.compression,
            "reason": self.reason,
            "bytes_read": self.bytes_read,
            "bytes_stored": self.bytes_stored,
            "config": self.config,
            "disks": [
                {"index": d.index, "label": d.label, "size": d.size, "block_size": d.block_size,
                 "blocks": len(d.blocks), "change_id": d.change_id, "meta": d.meta}
                for d in self.disks
            ],
            "streams": [],
        }


def encode(manifest: Manifest, sealer: Sealer | None = None) -> bytes:
    doc = json.dumps(manifest.to_json(), sort_keys=True, separators=(",", ":")).encode()
    parts = [struct.pack("<I", len(doc)), doc]
    for disk in manifest.disks:
        idx = array("Q", disk.blocks.indices)
        if idx.itemsize != 8:  # pragma: no cover - every supported platform has 8-byte Q
            raise RuntimeError("array('Q') is not 64-bit here")
        parts.append(idx.tobytes())
        parts.append(disk.blocks.ids)
    return objfile.encode(objfile.MAGIC_MANIFEST, b"".join(parts), compress=True,
                          sealer=sealer)


def decode(data: bytes, what: str, sealer: Sealer | None = None) -> Manifest:
    payload = objfile.decode(objfile.MAGIC_MANIFEST, data, what, sealer)
    try:
        (json_len,) = struct.unpack_from("<I", payload)
        doc = json.loads(payload[4 : 4 + json_len])
        pos = 4 + json_len
        disks: list[DiskRecord] = []
        for d in doc["disks"]:
            n = int(d["blocks"])
            idx = array("Q")
            idx.frombytes(payload[pos : pos + 8 * n])
            pos += 8 * n
            ids = payload[pos : pos + ID_SIZE * n]
            pos += ID_SIZE * n
            if len(idx) != n or len(ids) != ID_SIZE * n:
                raise IntegrityError(f"{what}: block map of disk {d['index']} is truncated")
            if any(idx[i] >= idx[i + 1] for i in range(n - 1)):
                raise IntegrityError(f"{what}: block map of disk {d['index']} is not ascending")
            disks.append(DiskRecord(int(d["index"]), str(d["label"]), int(d["size"]),
                                    int(d["block_size"]), BlockMap(idx, ids),
                                    d.get("change_id"), dict(d.get("meta") or {})))
        if pos != len(payload):
            raise IntegrityError(f"{what}: {len(payload) - pos} unexpected bytes after block maps")
        obj = doc["object"]
        return Manifest(
            point_id=str(doc["point_id"]), object_name=str(obj["name"]),
            object_kind=str(obj["kind"]), created=datetime.fromisoformat(doc["created"]),
            kind=str(doc["kind"]), parent=doc.get("parent"),
            compression=str(doc["compression"]), reason=str(doc.get("reason", "")),
            bytes_read=int(doc["bytes_read"]), bytes_stored=int(doc["bytes_stored"]),
            disks=tuple(disks), config=dict(doc.get("config") or {}),
            object_uuid=obj.get("uuid"),
        )
    except IntegrityError:
        raise
    except (KeyError, TypeError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{what}: malformed manifest: {exc!r}") from None
