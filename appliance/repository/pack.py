"""Pack files: immutable containers of stored blocks, with their own index at the end.

Byte layout (little-endian)::

    header (40 bytes)
      0   8  magic        b"VMKPACK\\0"
      8   2  version      1
      10  2  flags        0
      12  4  reserved     0
      16  16 pack_id      random; the file is named by its hex
      32  8  header_check xxh3-64 of bytes 0..31
    body: the stored bytes of each block, back to back, in index order
    index: entry_count entries of 72 bytes
      0   32 block_id     keyed BLAKE3 of the plain bytes (the dedup identity)
      32  1  kind         1 = block (disk blocks, and log files' bytes); 2 is reserved and
                          never written
      33  1  codec        0 = plain, 1 = zstd frame
      34  2  flags        0
      36  4  key_id       0 = not encrypted; else the encryption key's number, and the stored
                          bytes are an AES-256-GCM envelope (FORMAT.md section 8)
      40  8  offset       of the stored bytes from the start of the file
      48  4  stored_len
      52  4  plain_len
      56  16 check        xxh3-128 of the plain bytes (zero when key_id != 0: then it is
                          sealed inside the envelope)
    footer (48 bytes)
      0   8  index_offset
      8   4  entry_count
      12  4  reserved     0
      16  16 index_check  xxh3-128 of the index bytes
      32  8  footer_check xxh3-64 of footer bytes 0..31
      40  8  magic        b"VMKPEND\\0"
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import xxhash

from appliance.errors import IntegrityError, RepositoryFormatError
from appliance.repository import codec
from appliance.repository.crypto import PasswordRequiredError, Sealer

MAGIC: Final = b"VMKPACK\0"
END_MAGIC: Final = b"VMKPEND\0"
VERSION: Final = 1
HEADER: Final = struct.Struct("<8sHHI16sQ")
ENTRY: Final = struct.Struct("<32sBBHIQII16s")
FOOTER: Final = struct.Struct("<QII16sQ8s")

KIND_DISK_BLOCK: Final = 1
KIND_STREAM_CHUNK: Final = 2


@dataclass(frozen=True, slots=True)
class PackEntry:
    block_id: bytes
    kind: int
    codec: int
    key_id: int
    offset: int
    stored_len: int
    plain_len: int
    check: bytes


def pack_name(pack_id: str) -> str:
    return f"packs/{pack_id[:2]}/{pack_id}.pack"


def pack_id_of(name: str) -> str | None:
    """The pack id of a backend name, or None if the name is not a pack file."""
    base = name.rsplit("/", 1)[-1]
    if not name.startswith("packs/") or not base.endswith(".pack"):
        return None
    stem = base[: -len(".pack")]
    if len(stem) != 32 or any(c not in "0123456789abcdef" for c in stem):
        return None
    return stem


def new_pack_id() -> str:
    return secrets.token_hex(16)


def encode_header(pack_id: str) -> bytes:
    head = HEADER.pack(MAGIC, VERSION, 0, 0, bytes.fromhex(pack_id), 0)[:32]
    return head + struct.pack("<Q", xxhash.xxh3_64_intdigest(head))


def encode_trailer(entries: Iterable[PackEntry], index_offset: int) -> bytes:
    index = b"".join(
        ENTRY.pack(e.block_id, e.kind, e.codec, 0, e.key_id, e.offset, e.stored_len,
                   e.plain_len, e.check)
        for e in entries
    )
    count = len(index) // ENTRY.size
    head = struct.pack("<QII16s", index_offset, count, 0, codec.check_of(index))
    return index + head + struct.pack("<Q", xxhash.xxh3_64_intdigest(head)) + END_MAGIC


def check_header(data: bytes, pack_id: str, what: str) -> None:
    if len(data) < HEADER.size:
        raise IntegrityError(f"{what}: header is truncated")
    magic, version, _flags, _res, pid, hcheck = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise IntegrityError(f"{what}: header magic is {magic!r}, expected {MAGIC!r}")
    if xxhash.xxh3_64_intdigest(data[:32]) != hcheck:
        raise IntegrityError(f"{what}: header fails its check")
    if version != VERSION:
        raise RepositoryFormatError(f"{what} uses format version {version}; this vmkeep reads "
                                    f"version {VERSION}: use a vmkeep release that reads "
                                    f"version {version}")
    if pid.hex() != pack_id:
        raise IntegrityError(f"{what}: header names pack {pid.hex()}, expected {pack_id}")


def parse_footer(footer: bytes, file_size: int, what: str) -> tuple[int, int, bytes]:
    """Return (index_offset, entry_count, index_check) from the last 48 bytes of a pack."""
    if len(footer) != FOOTER.size:
        raise IntegrityError(f"{what}: footer is truncated")
    index_offset, count, _res, index_check, fcheck, magic = FOOTER.unpack(footer)
    if magic != END_MAGIC:
        raise IntegrityError(f"{what}: footer magic is {magic!r}, expected {END_MAGIC!r}")
    if xxhash.xxh3_64_intdigest(footer[:32]) != fcheck:
        raise IntegrityError(f"{what}: footer fails its check")
    if index_offset + count * ENTRY.size + FOOTER.size != file_size:
        raise IntegrityError(
            f"{what}: index of {count} entries at {index_offset} does not fit a file of "
            f"{file_size} bytes"
        )
    return index_offset, count, index_check


def parse_index(index: bytes, count: int, index_check: bytes, index_offset: int,
                what: str) -> list[PackEntry]:
    if len(index) != count * ENTRY.size or codec.check_of(index) != index_check:
        raise IntegrityError(f"{what}: index fails its check")
    entries: list[PackEntry] = []
    expected = HEADER.size
    for i in range(count):
        bid, kind, codec_id, _flags, key_id, off, slen, plen, check = ENTRY.unpack_from(
            index, i * ENTRY.size
        )
        if off != expected or off + slen > index_offset:
            raise IntegrityError(f"{what}: index entry {i} points outside the pack body")
        expected = off + slen
        entries.append(PackEntry(bid, kind, codec_id, key_id, off, slen, plen, check))
    if expected != index_offset:
        raise IntegrityError(f"{what}: body length does not match the index")
    return entries


def parse_pack(data: bytes, pack_id: str, what: str) -> list[PackEntry]:
    """Check a whole pack's framing and return its index (block bodies are not checked here)."""
    check_header(data, pack_id, what)
    index_offset, count, index_check = parse_footer(data[-FOOTER.size :], len(data), what)
    index = data[index_offset : index_offset + count * ENTRY.size]
    return parse_index(index, count, index_check, index_offset, what)


def seal_block(sealer: Sealer, block_id: bytes, codec_output: bytes, check: bytes) -> bytes:
    """A block's stored bytes in an encrypted repository (§8): ``check ‖ codec output``,
    sealed with its id as associated data (so it cannot stand in for another block)."""
    return sealer.seal(check + codec_output, block_id)


def open_block(entry: PackEntry, stored: bytes, what: str,
               sealer: Sealer | None = None) -> bytes:
    """Turn a block's stored bytes back into its plain bytes, verifying its check."""
    if len(stored) != entry.stored_len:
        raise IntegrityError(f"{what}: block {entry.block_id.hex()[:16]} is truncated")
    check = entry.check
    if entry.key_id != 0:
        if sealer is None:
            raise PasswordRequiredError(f"{what}: block is encrypted: give the repository's "
                                        "password")
        if sealer.key_id != entry.key_id:
            raise RepositoryFormatError(f"{what}: block is sealed with key {entry.key_id}, "
                                        "which this repository does not name")
        opened = sealer.open(stored, entry.block_id,
                             f"{what}: block {entry.block_id.hex()[:16]}")
        check, stored = opened[:16], opened[16:]
    try:
        plain = codec.decompress(entry.codec, stored, entry.plain_len)
    except IntegrityError as exc:
        raise IntegrityError(f"{what}: block {entry.block_id.hex()[:16]}: {exc}") from None
    if codec.check_of(plain) != check:
        raise IntegrityError(f"{what}: block {entry.block_id.hex()[:16]} fails its xxh3-128 check")
    return plain


class PackWriter:
    """Collects stored blocks in memory; ``finish()`` returns the complete pack bytes."""

    def __init__(self) -> None:
        self.pack_id = new_pack_id()
        self._parts: list[bytes] = [encode_header(self.pack_id)]
        self.entries: list[PackEntry] = []
        self.size = HEADER.size

    def add(self, block_id: bytes, kind: int, codec_id: int, stored: bytes, plain_len: int,
            check: bytes, key_id: int = 0) -> PackEntry:
        entry = PackEntry(block_id, kind, codec_id, key_id, self.size, len(stored), plain_len,
                          check)
        self._parts.append(stored)
        self.entries.append(entry)
        self.size += len(stored)
        return entry

    def __len__(self) -> int:
        return len(self.entries)

    def finish(self) -> bytes:
        self._parts.append(encode_trailer(self.entries, self.size))
        data = b"".join(self._parts)
        self._parts = []
        return data
