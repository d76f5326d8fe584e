"""Object files: the framing shared by config, key, lock and manifest files.

Byte layout (little-endian)::

    0   8  magic          b"VMKCONF\\0" | b"VMKKEY\\0\\0" | b"VMKLOCK\\0" | b"VMKMANI\\0"
    8   2  version        format version of this file (1)
    10  1  codec          0 = payload stored plain, 1 = zstd frame
    11  1  reserved       0
    12  4  key_id         0 = not encrypted; else the encryption key that sealed the payload
    16  8  payload_len    bytes of payload that follow the header
    24  …  payload
    end 16 check          xxh3-128 of header + payload

A file whose size is not 24 + payload_len + 16, whose magic or check does not match, or whose
version is unknown is damaged (or foreign) and is never half-read.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Final

from appliance.errors import IntegrityError, RepositoryFormatError
from appliance.repository import codec
from appliance.repository.crypto import PasswordRequiredError, Sealer

HEADER: Final = struct.Struct("<8sHBBIQ")
TRAILER_SIZE: Final = 16
FORMAT_VERSION: Final = 1

MAGIC_CONFIG: Final = b"VMKCONF\0"
MAGIC_KEY: Final = b"VMKKEY\0\0"
MAGIC_LOCK: Final = b"VMKLOCK\0"
MAGIC_MANIFEST: Final = b"VMKMANI\0"


def encode(magic: bytes, payload: bytes, *, compress: bool = False,
           sealer: Sealer | None = None) -> bytes:
    """An object file; with ``sealer`` its payload (compressed first) is sealed (§8)."""
    codec_id = codec.CODEC_NONE
    if compress:
        codec_id, payload = codec.compress(payload, codec.COMPRESSIONS["zstd-3"])
    key_id = 0
    if sealer is not None:
        payload, key_id = sealer.seal(payload, magic), sealer.key_id
    header = HEADER.pack(magic, FORMAT_VERSION, codec_id, 0, key_id, len(payload))
    body = header + payload
    return body + codec.check_of(body)


def decode(magic: bytes, data: bytes, what: str, sealer: Sealer | None = None) -> bytes:
    """Return the plain payload of an object file, or raise IntegrityError naming ``what``.
    A sealed payload needs the ``sealer`` of its key."""
    if len(data) < HEADER.size + TRAILER_SIZE:
        raise IntegrityError(f"{what} is truncated ({len(data)} bytes)")
    got_magic, version, codec_id, _res, key_id, payload_len = HEADER.unpack_from(data)
    if got_magic != magic:
        raise IntegrityError(f"{what} has magic {got_magic!r}, expected {magic!r}")
    if len(data) != HEADER.size + payload_len + TRAILER_SIZE:
        raise IntegrityError(
            f"{what} is {len(data)} bytes, expected {HEADER.size + payload_len + TRAILER_SIZE}"
        )
    body, check = data[:-TRAILER_SIZE], data[-TRAILER_SIZE:]
    if codec.check_of(body) != check:
        raise IntegrityError(f"{what} fails its xxh3-128 check")
    if version != FORMAT_VERSION:
        raise RepositoryFormatError(
            f"{what} uses format version {version}; this vmkeep reads version "
            f"{FORMAT_VERSION}: use a vmkeep release that reads version {version}"
        )
    payload = body[HEADER.size :]
    if key_id != 0:
        if sealer is None:
            raise PasswordRequiredError(f"{what} is encrypted: give the repository's password")
        if sealer.key_id != key_id:
            raise RepositoryFormatError(f"{what} is sealed with key {key_id}, which this "
                                        "repository does not name")
        payload = sealer.open(payload, magic, what)
    if codec_id == codec.CODEC_NONE:
        return payload
    # The uncompressed size is in the zstd frame header; bound it to 1 GiB.
    import zstandard

    try:
        out: bytes = zstandard.ZstdDecompressor().decompress(payload, max_output_size=1 << 30)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"{what} payload does not decompress: {exc}") from None
    return out


def encode_json(magic: bytes, doc: dict[str, Any], sealer: Sealer | None = None) -> bytes:
    return encode(magic, json.dumps(doc, sort_keys=True, separators=(",", ":")).encode(),
                  sealer=sealer)


def decode_json(magic: bytes, data: bytes, what: str,
                sealer: Sealer | None = None) -> dict[str, Any]:
    payload = decode(magic, data, what, sealer)
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{what} holds malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise IntegrityError(f"{what} holds JSON that is not an object")
    return doc
