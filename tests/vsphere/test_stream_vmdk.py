"""The streamOptimized VMDK writer against the real ``qemu-img``: ``info`` sees a
streamOptimized disk of the right size, ``check`` finds no error, and ``convert`` to raw
gives back exactly the disk the blocks describe."""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from appliance.vsphere.stream_vmdk import (
    GRAIN,
    SECTOR,
    StreamVmdk,
    StreamVmdkError,
    framing_bound,
    stream_length,
)
from tests.helpers import skip_unless_ci


@pytest.fixture(autouse=True)
def _qemu_img() -> None:
    if shutil.which("qemu-img") is None:
        skip_unless_ci("qemu-img (Debian qemu-utils) is not installed")

MIB = 1 << 20


def _write(tmp_path: Path, capacity: int, blocks: list[tuple[int, bytes]],
           stored: bool = False) -> tuple[Path, StreamVmdk]:
    stream = StreamVmdk(capacity, iter(blocks), name="disk.vmdk", stored=stored)
    path = tmp_path / "disk.vmdk"
    with path.open("wb") as f:
        for chunk in stream:
            f.write(chunk)
    assert stream.bytes_out == path.stat().st_size
    return path, stream


def _roundtrip(tmp_path: Path, capacity: int, blocks: list[tuple[int, bytes]],
               stored: bool = False) -> StreamVmdk:
    path, stream = _write(tmp_path, capacity, blocks, stored)
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["format"] == "vmdk"
    assert info["virtual-size"] == capacity
    assert info["format-specific"]["data"]["create-type"] == "streamOptimized"
    check = subprocess.run(["qemu-img", "check", "-f", "vmdk", str(path)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-f", "vmdk", "-O", "raw", str(path), str(raw)],
                   check=True, capture_output=True)
    expected = bytearray(capacity)
    for offset, data in blocks:
        expected[offset:offset + len(data)] = data
    assert raw.read_bytes() == bytes(expected)
    data_bytes = sum(GRAIN for _ in range(stream.grains))
    assert stream.bytes_out <= data_bytes + framing_bound(capacity, stream.grains)
    return stream


def test_an_empty_disk(tmp_path: Path) -> None:
    stream = _roundtrip(tmp_path, 8 * MIB, [])
    assert stream.grains == 0
    assert stream.bytes_out < 8 * 1024


def test_one_grain(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(GRAIN)
    stream = _roundtrip(tmp_path, 4 * MIB, [(3 * GRAIN, data)])
    assert stream.grains == 1


def test_grains_across_grain_table_boundaries(tmp_path: Path) -> None:
    rnd = random.Random(2)
    # 32 MiB per grain table: blocks in the first, third and last tables, one across a boundary
    blocks = [(0, rnd.randbytes(256 << 10)),
              (32 * MIB - GRAIN, rnd.randbytes(2 * GRAIN)),
              (70 * MIB, b"\x07" * MIB),
              (127 * MIB, rnd.randbytes(MIB))]
    stream = _roundtrip(tmp_path, 128 * MIB, blocks)
    assert stream.grains == 4 + 2 + 16 + 16


def test_a_disk_whose_size_is_not_a_grain_multiple(tmp_path: Path) -> None:
    capacity = 5 * MIB + 3 * SECTOR
    rnd = random.Random(3)
    blocks = [(MIB, rnd.randbytes(MIB)), (5 * MIB, rnd.randbytes(3 * SECTOR))]
    stream = _roundtrip(tmp_path, capacity, blocks)
    assert stream.grains == 16 + 1


def test_all_zero_grains_are_left_out(tmp_path: Path) -> None:
    rnd = random.Random(4)
    block = bytes(GRAIN) + rnd.randbytes(GRAIN) + bytes(2 * GRAIN)
    stream = _roundtrip(tmp_path, 2 * MIB, [(0, bytes(256 << 10)), (MIB, block)])
    assert stream.grains == 1


def test_misaligned_or_unordered_blocks_are_refused() -> None:
    with pytest.raises(StreamVmdkError, match="not aligned"):
        list(StreamVmdk(MIB, [(SECTOR, b"x" * GRAIN)]))
    with pytest.raises(StreamVmdkError, match="ascending"):
        list(StreamVmdk(MIB, [(2 * GRAIN, b"x" * GRAIN), (0, b"x" * GRAIN)]))
    with pytest.raises(StreamVmdkError, match="past the disk"):
        list(StreamVmdk(MIB, [(MIB - GRAIN, b"x" * 2 * GRAIN)]))
    with pytest.raises(StreamVmdkError, match="inside a grain"):
        list(StreamVmdk(MIB, [(0, b"x" * 100)]))
    with pytest.raises(StreamVmdkError, match="multiple of 512"):
        StreamVmdk(MIB + 1, [])


def test_grain_markers_carry_their_lba(tmp_path: Path) -> None:
    """qemu-img reads grains through the tables; an NFC receiver (vcsim's, ESXi's) reads the
    stream in order and places each grain at its marker's LBA: walk the markers too."""
    rnd = random.Random(5)
    blocks = [(GRAIN, rnd.randbytes(GRAIN)), (40 * MIB, rnd.randbytes(2 * GRAIN))]
    path, _ = _write(tmp_path, 64 * MIB, blocks)
    body = path.read_bytes()
    desc_sectors = struct.unpack_from("<Q", body, 28)[0]
    at = (1 + desc_sectors) * SECTOR
    seen: dict[int, bytes] = {}
    while True:
        value, size = struct.unpack_from("<QI", body, at)
        if size:
            seen[value * SECTOR] = zlib.decompress(body[at + 12:at + 12 + size])
            at += -(-(12 + size) // SECTOR) * SECTOR
            continue
        kind = struct.unpack_from("<I", body, at + 12)[0]
        if kind == 0:
            break
        at += (1 + value) * SECTOR
    assert at + SECTOR == len(body)
    assert seen == {GRAIN: blocks[0][1], 40 * MIB: blocks[1][1][:GRAIN],
                    40 * MIB + GRAIN: blocks[1][1][GRAIN:]}


def test_stored_streams_have_the_length_computed_before_reading(tmp_path: Path) -> None:
    """An NFC upload carries a Content-Length: in stored mode the stream's length follows
    from which 64 KiB areas the blocks cover, whatever they hold (zeros included), and
    qemu-img reads the disk back exactly."""
    rnd = random.Random(5)
    capacity = 80 * MIB + 3 * SECTOR  # a short last grain, more than one grain table
    bs = 256 << 10
    blocks = [(0, rnd.randbytes(bs)), (bs, bytes(bs)),  # a zero block is still sent
              (bs * 2, rnd.randbytes(GRAIN) + bytes(bs - GRAIN)),
              (40 * MIB, rnd.randbytes(bs)), (capacity - 3 * SECTOR, rnd.randbytes(3 * SECTOR))]
    extents = [(o, len(d)) for o, d in blocks]
    stream = _roundtrip(tmp_path, capacity, blocks, stored=True)
    assert stream.bytes_out == stream_length(capacity, extents, name="disk.vmdk")
    assert stream.grains == 4 * 3 + 1 + 4  # every grain of the blocks, zero or not
    for empty in (0, GRAIN):
        _path, s = _write(tmp_path, empty, [], stored=True)
        assert s.bytes_out == stream_length(empty, [], name="disk.vmdk")
