"""A streamOptimized VMDK written on the fly from a disk's allocated data: what an NFC import
(``HttpNfcLease``) takes as a disk's body.

The layout follows VMware's "Virtual Disk Format 5.0" (stream-optimized compressed sparse
extent), all little-endian, in 512-byte sectors:

- sector 0: the sparse header (magic ``KDMV``, version 3, flags newline test + compressed
  grains + markers, grains of 128 sectors, 512 entries per grain table, deflate) with
  ``gdOffset = GD_AT_END``: the grain directory's place is only known at the end;
- the embedded descriptor (``createType="streamOptimized"``, one ``SPARSE`` extent);
- one grain marker per allocated 64 KiB grain: its LBA (u64), the compressed size (u32), the
  zlib data, padded to a sector. All-zero grains are left out: they read as zeros;
- after the last grain of each 512-grain table: a GT marker and the grain table (4 sectors),
  whose entries are the sectors of the grain markers. A table without grains is not written
  (its directory entry is 0, "unallocated", as VirtualBox's stream writer does);
- a GD marker and the grain directory, a footer marker and a copy of the header carrying the
  real ``gdOffset``, and the end-of-stream marker.

The writer is pure (no vSphere): it keeps the grain directory and the current grain table,
nothing else, whatever the disk's size. Data comes as ``(offset, bytes)`` in ascending,
non-overlapping order, 64 KiB-aligned (the repository's blocks are multiples of it); a
block may end short only at the disk's end.

**Stored mode** (``stored=True``, what an NFC import sends): every grain of the given
blocks is written, zero or not, deflated at level 0 (zlib's stored blocks: the grain's bytes
framed, 65,552 bytes per 64 KiB grain whatever they hold). The stream's length then depends
only on which 64 KiB areas the blocks cover, so ``stream_length`` gives it before a byte is
read, and the upload carries a ``Content-Length`` as every NFC client (ovftool, govc, the
pyVmomi samples) sends one. The price is no compression on the wire: the bytes sent are
the point's stored blocks plus the framing, never more.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Iterable, Iterator

from appliance.errors import InternalError

SECTOR = 512
GRAIN_SECTORS = 128
GRAIN = GRAIN_SECTORS * SECTOR  # 64 KiB
GTES_PER_GT = 512
GT_SECTORS = GTES_PER_GT * 4 // SECTOR  # 4
GD_AT_END = 0xFFFFFFFFFFFFFFFF
MAGIC = 0x564D444B  # "KDMV" little-endian
FLAGS = (1 << 0) | (1 << 16) | (1 << 17)  # newline test, compressed grains, markers
COMPRESS_DEFLATE = 1
MARKER_EOS, MARKER_GT, MARKER_GD, MARKER_FOOTER = 0, 1, 2, 3
CONTENT_TYPE = "application/x-vnd.vmware-streamVmdk"

_HEADER = struct.Struct("<IIIQQQQIQQQB4sH433x")
_MARKER = struct.Struct("<QII")  # value (LBA or sector count), size, type
_GRAIN_MARKER = struct.Struct("<QI")
_ZERO_GRAIN = bytes(GRAIN)
assert _HEADER.size == SECTOR


class StreamVmdkError(InternalError):
    """The data given to the writer is not in the order or alignment it needs."""

    code = "stream_vmdk"


def _pad(data: bytes) -> bytes:
    rest = -len(data) % SECTOR
    return data + bytes(rest) if rest else data


def _metadata_marker(sectors: int, kind: int) -> bytes:
    return _pad(_MARKER.pack(sectors, 0, kind))


def descriptor(capacity_sectors: int, *, name: str, adapter_type: str) -> bytes:
    """The embedded descriptor text of a streamOptimized disk of ``capacity_sectors``."""
    heads, sectors = (16, 63) if adapter_type == "ide" else (255, 63)
    cylinders = min(65535, max(1, capacity_sectors // (heads * sectors)))
    cid = uuid.uuid4().hex[:8]
    lines = [
        "# Disk DescriptorFile",
        "version=1",
        "encoding=\"UTF-8\"",
        f"CID={cid}",
        "parentCID=ffffffff",
        "createType=\"streamOptimized\"",
        "",
        "# Extent description",
        f"RW {capacity_sectors} SPARSE \"{name}\"",
        "",
        "# The Disk Data Base",
        "#DDB",
        "",
        "ddb.virtualHWVersion = \"4\"",
        f"ddb.adapterType = \"{adapter_type}\"",
        f"ddb.geometry.cylinders = \"{cylinders}\"",
        f"ddb.geometry.heads = \"{heads}\"",
        f"ddb.geometry.sectors = \"{sectors}\"",
        "ddb.toolsVersion = \"2147483647\"",
        "",
    ]
    return "\n".join(lines).encode()


def header(capacity_sectors: int, *, descriptor_sectors: int, gd_offset: int) -> bytes:
    """A sparse extent header (the first sector, and the footer's copy)."""
    return _HEADER.pack(MAGIC, 3, FLAGS, capacity_sectors, GRAIN_SECTORS, 1,
                        descriptor_sectors, GTES_PER_GT, 0, gd_offset,
                        1 + descriptor_sectors, 0, b"\n \r\n", COMPRESS_DEFLATE)


def framing_bound(capacity: int, grains: int) -> int:
    """The most bytes a stream of ``capacity`` bytes with ``grains`` grains sent can have
    beyond the grains' data: header and descriptor (at most 2 KiB), one sector per grain
    for its marker and compression overhead (zlib adds at most 33 bytes to 64 KiB), one
    marker and 4 sectors per grain table, the directory and its marker, the footer's marker,
    header and the end-of-stream marker."""
    tables = -(-capacity // (GRAIN * GTES_PER_GT))
    gd_sectors = max(1, -(-tables * 4 // SECTOR))
    return (4 * SECTOR + grains * SECTOR + min(grains, tables) * (1 + GT_SECTORS) * SECTOR
            + (1 + gd_sectors) * SECTOR + 3 * SECTOR)


_STORED_GRAIN = len(zlib.compress(_ZERO_GRAIN, 0))  # the same for any 64 KiB at level 0
_STORED_RECORD = -(-(_GRAIN_MARKER.size + _STORED_GRAIN) // SECTOR) * SECTOR


def stream_length(capacity: int, extents: Iterable[tuple[int, int]], *,
                  name: str = "disk.vmdk", adapter_type: str = "lsilogic") -> int:
    """The exact length of a stored-mode stream (``StreamVmdk(..., stored=True)``) of a disk
    of ``capacity`` bytes whose blocks cover ``extents`` (``(offset, length)``, ascending,
    as the blocks will come)."""
    cap_sectors = capacity // SECTOR
    desc = _pad(descriptor(cap_sectors, name=name, adapter_type=adapter_type))
    grains = 0
    tables: set[int] = set()
    for offset, length in extents:
        first = offset // GRAIN
        last = (offset + length - 1) // GRAIN if length else first - 1
        grains += max(0, last - first + 1)
        tables.update(range(first // GTES_PER_GT, last // GTES_PER_GT + 1))
    n_tables = -(-cap_sectors // (GRAIN_SECTORS * GTES_PER_GT))
    gd_bytes = len(_pad(bytes(4 * n_tables))) if n_tables else SECTOR
    return (SECTOR + len(desc) + grains * _STORED_RECORD
            + len(tables) * (1 + GT_SECTORS) * SECTOR + SECTOR + gd_bytes + 3 * SECTOR)


class StreamVmdk:
    """Iterate to get the VMDK's bytes, chunk by chunk; ``bytes_out`` counts what was given
    so far and ``grains`` the grains written. One pass only. ``stored``: every grain of the
    blocks, at deflate level 0 (see the module's docstring)."""

    def __init__(self, capacity: int, blocks: Iterable[tuple[int, bytes]], *,
                 name: str = "disk.vmdk", adapter_type: str = "lsilogic",
                 level: int = 1, stored: bool = False) -> None:
        if capacity < 0 or capacity % SECTOR:
            raise StreamVmdkError(f"a disk's capacity must be a multiple of {SECTOR} bytes, "
                                  f"not {capacity}")
        self.capacity = capacity
        self._blocks = blocks
        self._name = name
        self._adapter = adapter_type
        self._level = 0 if stored else level
        self._stored = stored
        self.bytes_out = 0
        self.grains = 0
        self._started = False

    def __iter__(self) -> Iterator[bytes]:
        if self._started:
            raise StreamVmdkError("a StreamVmdk is iterated once; make a new one to resend")
        self._started = True
        return self._generate()

    def _emit(self, data: bytes) -> bytes:
        self.bytes_out += len(data)
        return data

    def _generate(self) -> Iterator[bytes]:
        cap_sectors = self.capacity // SECTOR
        desc = _pad(descriptor(cap_sectors, name=self._name, adapter_type=self._adapter))
        desc_sectors = len(desc) // SECTOR
        yield self._emit(header(cap_sectors, descriptor_sectors=desc_sectors,
                                gd_offset=GD_AT_END) + desc)
        tables = -(-cap_sectors // (GRAIN_SECTORS * GTES_PER_GT))
        gd = [0] * tables
        gt: list[int] = []
        gt_index = -1

        def flush() -> bytes:
            # a GT marker and the table; its entries point at grain markers
            sector = self.bytes_out // SECTOR + 1
            gd[gt_index] = sector
            table = struct.pack(f"<{GTES_PER_GT}I", *gt)
            return self._emit(_metadata_marker(GT_SECTORS, MARKER_GT) + table)

        for lba_byte, data in self._grains():
            index = lba_byte // GRAIN
            if index // GTES_PER_GT != gt_index:
                if gt_index >= 0:
                    yield flush()
                gt_index = index // GTES_PER_GT
                gt = [0] * GTES_PER_GT
            gt[index % GTES_PER_GT] = self.bytes_out // SECTOR
            packed = zlib.compress(data, self._level)
            self.grains += 1
            yield self._emit(_pad(_GRAIN_MARKER.pack(lba_byte // SECTOR, len(packed)) + packed))
        if gt_index >= 0:
            yield flush()
        gd_bytes = _pad(struct.pack(f"<{tables}I", *gd)) if tables else bytes(SECTOR)
        gd_sectors = len(gd_bytes) // SECTOR
        gd_offset = self.bytes_out // SECTOR + 1
        yield self._emit(_metadata_marker(gd_sectors, MARKER_GD) + gd_bytes)
        yield self._emit(_metadata_marker(1, MARKER_FOOTER)
                         + header(cap_sectors, descriptor_sectors=desc_sectors,
                                  gd_offset=gd_offset)
                         + _metadata_marker(0, MARKER_EOS))

    def _grains(self) -> Iterator[tuple[int, bytes]]:
        """(byte offset, 64 KiB) of each non-zero grain, a short last grain zero-padded."""
        end = 0
        for offset, data in self._blocks:
            if offset % GRAIN:
                raise StreamVmdkError(f"a block at byte {offset} is not aligned to the "
                                      f"{GRAIN}-byte grains of a streamOptimized disk")
            if offset < end:
                raise StreamVmdkError(f"a block at byte {offset} comes after data up to byte "
                                      f"{end}: blocks must be ascending and not overlap")
            stop = offset + len(data)
            if stop > self.capacity:
                raise StreamVmdkError(f"a block at byte {offset} of {len(data)} bytes ends "
                                      f"past the disk's capacity of {self.capacity} bytes")
            if len(data) % GRAIN and stop != self.capacity:
                raise StreamVmdkError(f"a block at byte {offset} of {len(data)} bytes ends "
                                      "inside a grain and not at the disk's end")
            end = stop
            view = memoryview(data)
            for at in range(0, len(data), GRAIN):
                grain = bytes(view[at:at + GRAIN])
                if len(grain) < GRAIN:
                    grain += bytes(GRAIN - len(grain))
                if self._stored or grain != _ZERO_GRAIN:
                    yield offset + at, grain
