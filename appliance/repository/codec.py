"""Block transforms: compression, the block identity (keyed BLAKE3) and the check (xxh3-128).

A block's *identity* decides deduplication; it is keyed with a per-repository secret so that a
guest, which controls its own bytes, cannot forge a block that stands in for another VM's data.
A block's *check* is the fast xxh3-128 of its plain bytes, verified on every read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Final

import blake3
import xxhash
import zstandard

from appliance.errors import IntegrityError, UsageError

CODEC_NONE: Final = 0
CODEC_ZSTD: Final = 1

ID_SIZE: Final = 32
CHECK_SIZE: Final = 16


@dataclass(frozen=True, slots=True)
class Compression:
    """A named compression setting as jobs and the CLI spell it."""

    name: str
    codec: int
    level: int


COMPRESSIONS: Final[dict[str, Compression]] = {
    "none": Compression("none", CODEC_NONE, 0),
    "zstd-fast": Compression("zstd-fast", CODEC_ZSTD, 1),
    "zstd-3": Compression("zstd-3", CODEC_ZSTD, 3),
    "zstd-9": Compression("zstd-9", CODEC_ZSTD, 9),
}
DEFAULT_COMPRESSION: Final = "zstd-fast"


def compression_named(name: str) -> Compression:
    try:
        return COMPRESSIONS[name]
    except KeyError:
        raise UsageError(
            f"unknown compression {name!r}; choose one of {', '.join(COMPRESSIONS)}"
        ) from None


_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "cctx", None)
    if cache is None:
        cache = {}
        _local.cctx = cache
    cctx = cache.get(level)
    if cctx is None:
        cctx = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False)
        cache[level] = cctx
    return cctx


def _decompressor() -> zstandard.ZstdDecompressor:
    dctx: zstandard.ZstdDecompressor | None = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = zstandard.ZstdDecompressor()
        _local.dctx = dctx
    return dctx


def compress(data: bytes, compression: Compression) -> tuple[int, bytes]:
    """Return (codec, stored bytes). Stores plain when compression does not pay."""
    if compression.codec == CODEC_NONE:
        return CODEC_NONE, data
    packed: bytes = _compressor(compression.level).compress(data)
    if len(packed) >= len(data):
        return CODEC_NONE, data
    return CODEC_ZSTD, packed


def decompress(codec: int, stored: bytes, plain_len: int) -> bytes:
    if codec == CODEC_NONE:
        if len(stored) != plain_len:
            raise IntegrityError(f"stored block has {len(stored)} bytes, expected {plain_len}")
        return stored
    if codec == CODEC_ZSTD:
        try:
            # Trust no size from the (possibly damaged) frame header beyond plain_len.
            declared = zstandard.frame_content_size(stored)
            if declared != plain_len:
                raise IntegrityError(f"zstd frame declares {declared} bytes, expected {plain_len}")
            plain: bytes = _decompressor().decompress(stored, max_output_size=plain_len)
        except (zstandard.ZstdError, MemoryError) as exc:
            raise IntegrityError(f"compressed block does not decompress: {exc}") from None
        if len(plain) != plain_len:
            raise IntegrityError(f"block decompresses to {len(plain)} bytes, expected {plain_len}")
        return plain
    raise IntegrityError(f"unknown codec {codec} in block record")


def check_of(data: bytes) -> bytes:
    """The xxh3-128 check of plain bytes (16 bytes, big-endian as xxhash's digest())."""
    return xxhash.xxh3_128_digest(data)


def block_id(key: bytes, data: bytes) -> bytes:
    """The dedup identity: BLAKE3 keyed with the repository's 32-byte block-id key."""
    return blake3.blake3(data, key=key).digest()


def new_key() -> bytes:
    import secrets

    return secrets.token_bytes(32)
