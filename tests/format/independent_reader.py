"""An independent reader of vmkeep repositories, written from docs/FORMAT.md alone.

It imports nothing from vmkeep (only the standard library, zstandard, xxhash and blake3), so
that it proves the specification is enough to restore a point. Section numbers (§) refer to
docs/FORMAT.md. It reads a quiescent repository and takes no locks.

Errors: :class:`DamageError` for anything §3, §4, §5 or §7 call damage,
:class:`OtherFormatError` for a version this reader does not know (§3, §9) and
:class:`UnsupportedError` for encryption (``key_id ≠ 0``, §8). All derive from
:class:`ReaderError`.
"""

from __future__ import annotations

import itertools
import json
import re
import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import blake3
import xxhash
import zstandard

FORMAT_VERSION = 1

# §3 object files
OBJ_HEADER = struct.Struct("<8sHBBIQ")  # magic, version, codec, reserved, key_id, payload_len
OBJ_CHECK_LEN = 16
MAGIC_CONFIG = b"VMKCONF\0"
MAGIC_KEY = b"VMKKEY\0\0"
MAGIC_LOCK = b"VMKLOCK\0"
MAGIC_MANIFEST = b"VMKMANI\0"

# §4 packs
PACK_HEADER = struct.Struct("<8sHHI16sQ")  # magic, version, flags, reserved, pack_id, check
PACK_MAGIC = b"VMKPACK\0"
# block_id, kind, codec, flags, key_id, offset, stored_len, plain_len, check
PACK_ENTRY = struct.Struct("<32sBBHIQII16s")
# index_offset, entry_count, reserved, index_check, footer_check, magic
PACK_FOOTER = struct.Struct("<QII16sQ8s")
PACK_END_MAGIC = b"VMKPEND\0"
KIND_DISK_BLOCK = 1
KIND_STREAM_CHUNK = 2
CODEC_PLAIN = 0
CODEC_ZSTD = 1

# §2 names
POINT_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")
PACK_NAME_RE = re.compile(r"^([0-9a-f]{32})\.pack$")
BLOCK_SIZES = (256 << 10, 512 << 10, 1 << 20, 4 << 20)  # §1

assert OBJ_HEADER.size == 24
assert PACK_HEADER.size == 40
assert PACK_ENTRY.size == 72
assert PACK_FOOTER.size == 48


class ReaderError(Exception):
    """Base of everything this reader raises on purpose."""


class DamageError(ReaderError):
    """A file is damaged (§7)."""


class OtherFormatError(ReaderError):
    """A file carries a format version this reader does not know (§9)."""


class UnsupportedError(ReaderError):
    """Something valid that a version-1 reader must refuse (encryption, §8)."""


def check128(data: bytes) -> bytes:
    """The §1 *check*: xxh3-128 as big-endian digest bytes."""
    return xxhash.xxh3_128_digest(data)


def _unzstd(data: bytes, expected_len: int | None, what: str) -> bytes:
    """Decompress exactly one zstd frame; its output must be ``expected_len`` bytes if given."""
    try:
        dobj = zstandard.ZstdDecompressor().decompressobj()
        out = dobj.decompress(data)
        complete = dobj.eof
        trailing = dobj.unused_data
    except zstandard.ZstdError as e:
        raise DamageError(f"{what}: zstd frame does not decompress: {e}") from e
    if not complete:
        raise DamageError(f"{what}: zstd frame is truncated")
    if trailing:
        raise DamageError(f"{what}: {len(trailing)} bytes follow the zstd frame")
    if expected_len is not None and len(out) != expected_len:
        raise DamageError(f"{what}: zstd frame decompresses to {len(out)} bytes, "
                          f"not {expected_len}")
    return out


# --------------------------------------------------------------------------- §3 object files

def read_object_file(path: Path, magic: bytes) -> bytes:
    """Check an object file as §3 says and return its (decompressed) payload."""
    data = path.read_bytes()
    what = str(path)
    if len(data) < OBJ_HEADER.size + OBJ_CHECK_LEN:
        raise DamageError(f"{what}: {len(data)} bytes, shorter than 40")
    got_magic, version, codec, reserved, key_id, payload_len = OBJ_HEADER.unpack_from(data, 0)
    if len(data) != OBJ_HEADER.size + payload_len + OBJ_CHECK_LEN:
        raise DamageError(f"{what}: size {len(data)} ≠ 24 + payload_len ({payload_len}) + 16")
    if got_magic != magic:
        raise DamageError(f"{what}: magic {got_magic!r}, expected {magic!r}")
    end = OBJ_HEADER.size + payload_len
    if check128(data[:end]) != data[end:]:
        raise DamageError(f"{what}: xxh3-128 check does not match")
    if version != FORMAT_VERSION:
        raise OtherFormatError(f"{what}: uses format version {version}; "
                               f"this reader reads version {FORMAT_VERSION}")
    if key_id != 0:
        raise UnsupportedError(f"{what}: encrypted (key_id {key_id}); "
                               "version-1 readers cannot decrypt")
    if reserved != 0:
        raise DamageError(f"{what}: reserved byte is {reserved}, not 0")
    payload = data[OBJ_HEADER.size:end]
    if codec == CODEC_PLAIN:
        return payload
    if codec == CODEC_ZSTD:
        try:
            size = zstandard.get_frame_parameters(payload).content_size
        except zstandard.ZstdError as e:
            raise DamageError(f"{what}: payload is not a zstd frame: {e}") from e
        if size == zstandard.CONTENTSIZE_UNKNOWN:
            raise DamageError(f"{what}: zstd frame does not record its uncompressed size")
        return _unzstd(payload, size, what)
    raise DamageError(f"{what}: unknown codec {codec}")


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DamageError(f"{what}: payload is not UTF-8 JSON: {e}") from e
    if not isinstance(doc, dict):
        raise DamageError(f"{what}: payload is not a JSON object")
    return doc


def read_config(repo_dir: Path) -> dict[str, Any]:
    path = Path(repo_dir) / "config"
    if not path.is_file():
        raise DamageError(f"{path}: missing; not a repository")
    doc = _json_object(read_object_file(path, MAGIC_CONFIG), str(path))
    for field in ("repository_id", "block_id_key"):
        if field not in doc:
            raise DamageError(f"{path}: no {field!r}")
    if doc.get("block_id", "blake3-keyed") != "blake3-keyed" or \
            doc.get("check", "xxh3-128") != "xxh3-128":
        raise OtherFormatError(f"{path}: block_id {doc.get('block_id')!r} / check "
                               f"{doc.get('check')!r} are not those of version 1")
    return doc


def read_keys(repo_dir: Path) -> dict[str, bytes]:
    """key_id → 32-byte block-id key, for every key file in ``keys/``."""
    out: dict[str, bytes] = {}
    folder = Path(repo_dir) / "keys"
    if not folder.is_dir():
        return out
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        doc = _json_object(read_object_file(path, MAGIC_KEY), str(path))
        if doc.get("purpose") != "block-id" or doc.get("algorithm") != "blake3-keyed":
            continue
        key = bytes.fromhex(str(doc["key"]))
        if len(key) != 32:
            raise DamageError(f"{path}: key is {len(key)} bytes, not 32")
        out[str(doc["key_id"])] = key
    return out


# --------------------------------------------------------------------------- §4 packs

@dataclass(frozen=True)
class PackEntry:
    pack: Path
    block_id: bytes
    kind: int
    codec: int
    flags: int
    key_id: int
    offset: int
    stored_len: int
    plain_len: int
    check: bytes


def read_pack_index(path: Path) -> list[PackEntry]:
    """Check a pack's header, footer and index (§4, §7) and return its entries."""
    what = str(path)
    m = PACK_NAME_RE.match(path.name)
    if not m:
        raise ValueError(f"{what}: not a pack name")
    size = path.stat().st_size
    if size < PACK_HEADER.size + PACK_FOOTER.size:
        raise DamageError(f"{what}: {size} bytes, too short for header and footer")
    with path.open("rb") as f:
        header = f.read(PACK_HEADER.size)
        f.seek(size - PACK_FOOTER.size)
        footer = f.read(PACK_FOOTER.size)
        magic, version, flags, reserved, pack_id, header_check = PACK_HEADER.unpack(header)
        if magic != PACK_MAGIC:
            raise DamageError(f"{what}: header magic {magic!r}")
        if xxhash.xxh3_64_intdigest(header[:32]) != header_check:
            raise DamageError(f"{what}: header_check does not match")
        if version != FORMAT_VERSION:
            raise OtherFormatError(f"{what}: uses format version {version}; "
                                   f"this reader reads version {FORMAT_VERSION}")
        if flags != 0 or reserved != 0:
            raise DamageError(f"{what}: header flags {flags} / reserved {reserved} not 0")
        if pack_id.hex() != m.group(1):
            raise DamageError(f"{what}: header pack_id {pack_id.hex()} ≠ the file name")
        index_offset, count, f_reserved, index_check, footer_check, end_magic = \
            PACK_FOOTER.unpack(footer)
        if end_magic != PACK_END_MAGIC:
            raise DamageError(f"{what}: footer magic {end_magic!r} (truncated or damaged)")
        if xxhash.xxh3_64_intdigest(footer[:32]) != footer_check:
            raise DamageError(f"{what}: footer_check does not match")
        if f_reserved != 0:
            raise DamageError(f"{what}: footer reserved {f_reserved} not 0")
        if index_offset < PACK_HEADER.size or \
                index_offset + PACK_ENTRY.size * count + PACK_FOOTER.size != size:
            raise DamageError(f"{what}: index_offset {index_offset} + 72 × {count} + 48 "
                              f"≠ file size {size}")
        f.seek(index_offset)
        index = f.read(PACK_ENTRY.size * count)
    if check128(index) != index_check:
        raise DamageError(f"{what}: index_check does not match")
    entries: list[PackEntry] = []
    seen: set[bytes] = set()
    expect = PACK_HEADER.size
    for i in range(count):
        (block_id, kind, codec, e_flags, key_id, offset, stored_len, plain_len,
         check) = PACK_ENTRY.unpack_from(index, i * PACK_ENTRY.size)
        if offset != expect:
            raise DamageError(f"{what}: entry {i} at offset {offset}, expected {expect}")
        expect = offset + stored_len
        if kind not in (KIND_DISK_BLOCK, KIND_STREAM_CHUNK) or \
                codec not in (CODEC_PLAIN, CODEC_ZSTD) or e_flags != 0:
            raise DamageError(f"{what}: entry {i}: kind {kind} codec {codec} flags {e_flags}")
        if block_id in seen:
            raise DamageError(f"{what}: block id {block_id.hex()} appears twice")
        seen.add(block_id)
        entries.append(PackEntry(path, block_id, kind, codec, e_flags, key_id, offset,
                                 stored_len, plain_len, check))
    if expect != index_offset:
        raise DamageError(f"{what}: last entry ends at {expect}, index_offset is {index_offset}")
    return entries


def iter_pack_paths(repo_dir: Path) -> list[Path]:
    """Every ``packs/<xx>/<pack_id>.pack``; other names are ignored (§2)."""
    root = Path(repo_dir) / "packs"
    out: list[Path] = []
    if not root.is_dir():
        return out
    for sub in sorted(root.iterdir()):
        if not sub.is_dir() or not re.fullmatch(r"[0-9a-f]{2}", sub.name):
            continue
        for path in sorted(sub.iterdir()):
            m = PACK_NAME_RE.match(path.name)
            if m and path.is_file() and m.group(1)[:2] == sub.name:
                out.append(path)
    return out


def build_block_index(repo_dir: Path) -> dict[bytes, PackEntry]:
    """block id → an entry of some pack holding it (any will do, §5)."""
    where: dict[bytes, PackEntry] = {}
    for path in iter_pack_paths(repo_dir):
        for entry in read_pack_index(path):
            where.setdefault(entry.block_id, entry)
    return where


def read_block(entry: PackEntry, keys: dict[str, bytes] | None = None) -> bytes:
    """Read, decode and check one stored block (§4); with ``keys`` also recompute its id."""
    what = f"{entry.pack} block {entry.block_id.hex()}"
    if entry.key_id != 0:
        raise UnsupportedError(f"{what}: encrypted (key_id {entry.key_id}); "
                               "version-1 readers cannot decrypt")
    with entry.pack.open("rb") as f:
        f.seek(entry.offset)
        stored = f.read(entry.stored_len)
    if len(stored) != entry.stored_len:
        raise DamageError(f"{what}: only {len(stored)} of {entry.stored_len} stored bytes")
    if entry.codec == CODEC_ZSTD:
        plain = _unzstd(stored, entry.plain_len, what)
    else:
        plain = stored
        if len(plain) != entry.plain_len:
            raise DamageError(f"{what}: plain block is {len(plain)} bytes, not "
                              f"{entry.plain_len}")
    if check128(plain) != entry.check:
        raise DamageError(f"{what}: xxh3-128 check does not match")
    if keys is not None and not any(
            blake3.blake3(plain, key=k).digest() == entry.block_id for k in keys.values()):
        raise DamageError(f"{what}: keyed BLAKE3 of the plain bytes is not the block id")
    return plain


# --------------------------------------------------------------------------- §5 manifests

@dataclass(frozen=True)
class Manifest:
    doc: dict[str, Any]
    # per disk, in the order of doc["disks"]: list of (block index, block id)
    block_maps: list[list[tuple[int, bytes]]]


def read_manifest(repo_dir: Path, point_id: str) -> Manifest:
    path = Path(repo_dir) / "manifests" / point_id
    what = str(path)
    if not POINT_ID_RE.match(point_id):
        raise ValueError(f"{point_id!r} is not a point id")
    if not path.is_file():
        raise ReaderError(f"{what}: no such restore point")
    payload = read_object_file(path, MAGIC_MANIFEST)
    if len(payload) < 4:
        raise DamageError(f"{what}: payload too short for json_len")
    (json_len,) = struct.unpack_from("<I", payload, 0)
    if 4 + json_len > len(payload):
        raise DamageError(f"{what}: json_len {json_len} beyond the payload")
    doc = _json_object(payload[4:4 + json_len], what)
    if doc.get("point_id") != point_id:
        raise DamageError(f"{what}: point_id {doc.get('point_id')!r} ≠ the file name")
    disks = doc.get("disks")
    if not isinstance(disks, list):
        raise DamageError(f"{what}: no disks list")
    pos = 4 + json_len
    maps: list[list[tuple[int, bytes]]] = []
    for disk in disks:
        n = int(disk["blocks"])
        size = int(disk["size"])
        block_size = int(disk["block_size"])
        if block_size not in BLOCK_SIZES:
            raise DamageError(f"{what}: disk {disk.get('index')}: block size {block_size}")
        n_total = -(-size // block_size)
        if pos + 40 * n > len(payload):
            raise DamageError(f"{what}: disk {disk.get('index')}: block map is truncated")
        indices = struct.unpack_from(f"<{n}Q", payload, pos)
        pos += 8 * n
        ids = [payload[pos + 32 * i:pos + 32 * (i + 1)] for i in range(n)]
        pos += 32 * n
        for a, b in itertools.pairwise(indices):
            if a >= b:
                raise DamageError(f"{what}: disk {disk.get('index')}: indices not ascending")
        if n and indices[-1] >= n_total:
            raise DamageError(f"{what}: disk {disk.get('index')}: block {indices[-1]} "
                              f"beyond the disk's {n_total} blocks")
        maps.append(list(zip(indices, ids, strict=True)))
    if pos != len(payload):
        raise DamageError(f"{what}: {len(payload) - pos} bytes follow the last disk's ids")
    return Manifest(doc, maps)


def list_point_ids(repo_dir: Path) -> list[str]:
    folder = Path(repo_dir) / "manifests"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if POINT_ID_RE.match(p.name) and p.is_file())


def _created(doc: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(doc["created"]))
    except (KeyError, ValueError) as e:
        raise DamageError(f"manifest {doc.get('point_id')}: bad created {doc.get('created')!r}"
                          ) from e


def list_points(repo_dir: Path | str) -> list[dict[str, Any]]:
    """The JSON document of every restore point's manifest, oldest first.

    Oldest first means by ``created``, then by point id: §2 says point ids "sort by age", but
    they carry whole seconds only, and two points made in the same second sort by their
    random suffix. Also checks the config (a damaged config makes the whole repository
    unusable, §7).
    """
    repo = Path(repo_dir)
    read_config(repo)
    docs = [read_manifest(repo, pid).doc for pid in list_point_ids(repo)]
    return sorted(docs, key=lambda d: (_created(d), d["point_id"]))


def restore(repo_dir: Path | str, point_id: str, disk_index: int, out_path: Path | str,
            verify_ids: bool = False) -> None:
    """Restore one disk of one point to ``out_path`` as §5 describes ("Restoring a disk").

    With ``verify_ids`` every block's keyed BLAKE3 id is recomputed too (as `verify` does).
    """
    repo = Path(repo_dir)
    read_config(repo)
    manifest = read_manifest(repo, point_id)
    pos = [i for i, d in enumerate(manifest.doc["disks"]) if d["index"] == disk_index]
    if len(pos) != 1:
        raise ReaderError(f"point {point_id} has no disk {disk_index}")
    disk = manifest.doc["disks"][pos[0]]
    block_map = manifest.block_maps[pos[0]]
    size = int(disk["size"])
    block_size = int(disk["block_size"])
    keys = read_keys(repo) if verify_ids else None
    if keys is not None and not keys:
        raise ReaderError(f"{repo}: no block-id key to verify ids with")
    where = build_block_index(repo)
    with Path(out_path).open("wb") as out:
        out.truncate(size)
        for index, block_id in block_map:
            entry = where.get(block_id)
            if entry is None:
                raise DamageError(f"point {point_id} disk {disk_index} block {index}: "
                                  f"no pack holds block id {block_id.hex()}")
            if entry.kind != KIND_DISK_BLOCK:
                raise DamageError(f"block id {block_id.hex()} is of kind {entry.kind}, "
                                  "not a disk block")
            plain = read_block(entry, keys)
            start = index * block_size
            want = min(block_size, size - start)
            if len(plain) != want:
                raise DamageError(f"point {point_id} disk {disk_index} block {index}: "
                                  f"{len(plain)} bytes, the block covers {want}")
            out.seek(start)
            out.write(plain)


def verify_packs(repo_dir: Path | str) -> int:
    """Read every block of every pack whole and check it; return the number of blocks."""
    repo = Path(repo_dir)
    keys = read_keys(repo)
    n = 0
    for path in iter_pack_paths(repo):
        for entry in read_pack_index(path):
            read_block(entry, keys or None)
            n += 1
    return n
