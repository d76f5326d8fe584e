"""docs/FORMAT.md is the truth: an independent reader written from it restores what the real
CLI writes, the committed golden repository keeps reading (with the reader and the CLI), and
the reader notices damage where §7 says a reader notices it."""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import xxhash

from tests.format import independent_reader as reader
from tests.helpers import (
    MiB,
    change_image,
    make_image,
    run_cli,
    sha256_of,
    tree_digest,
    write_areas,
)

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
GOLDEN_REPO = GOLDEN / "repo"


def golden_expected() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((GOLDEN / "expected.json").read_text())
    return doc


def copy_golden(tmp_path: Path) -> Path:
    dest = tmp_path / "golden-copy"
    shutil.copytree(GOLDEN_REPO, dest)
    return dest


def backup(repo: Path, image: Path, cache: Path, *extra: str) -> str:
    res = run_cli(["image", "backup", "--repo", str(repo), "--name", "fmt", *extra, str(image)],
                  cache)
    assert res.code == 0, res.err
    return res.out.strip().splitlines()[-1]


def check_point_doc(doc: dict[str, Any]) -> None:
    """§2/§5: the id is the creation time in UTC (whole seconds) plus 8 random hex digits."""
    created = datetime.fromisoformat(doc["created"])
    assert created.utcoffset() == timedelta(0)
    assert doc["point_id"][:16] == created.strftime("%Y%m%dT%H%M%SZ")
    assert set(doc) >= {"point_id", "object", "created", "kind", "parent", "compression",
                        "reason", "bytes_read", "bytes_stored", "config", "disks", "streams"}
    for disk in doc["disks"]:
        assert set(disk) >= {"index", "label", "size", "block_size", "blocks", "change_id",
                             "meta"}


def cli_points(repo: Path, cache: Path) -> list[dict[str, Any]]:
    res = run_cli(["image", "points", "--repo", str(repo), "--json"], cache)
    assert res.code == 0, res.err
    points: list[dict[str, Any]] = json.loads(res.out)
    return points


# --------------------------------------------------------------------------- fresh repository

@pytest.mark.parametrize("block_size", ["256K", "1M"])
def test_reader_restores_fresh_full_and_incremental(tmp_path: Path, cache: Path,
                                                    block_size: str) -> None:
    repo = tmp_path / "repo"
    image = tmp_path / "disk.img"
    make_image(image, size=5 * MiB + 12_345, seed=11)  # the last block is short
    expected: dict[str, str] = {}

    full = backup(repo, image, cache, "--block-size", block_size)
    expected[full] = sha256_of(image)
    areas = change_image(image, seed=12, count=4)
    incr = backup(repo, image, cache, "--block-size", block_size,
                  "--changed", str(write_areas(tmp_path / "areas.json", areas)))
    expected[incr] = sha256_of(image)
    assert expected[full] != expected[incr]

    points = reader.list_points(repo)
    assert [p["point_id"] for p in points] == [full, incr]
    assert [p["kind"] for p in points] == ["full", "incremental"]
    assert points[1]["parent"] == full
    assert [p["id"] for p in cli_points(repo, cache)] == [full, incr]
    for p in points:
        check_point_doc(p)
        (disk,) = p["disks"]
        assert disk["size"] == image.stat().st_size
        assert disk["block_size"] == {"256K": 256 << 10, "1M": 1 << 20}[block_size]
        assert p["streams"] == []

    for point_id, digest in expected.items():
        out = tmp_path / f"{point_id}.img"
        reader.restore(repo, point_id, 0, out, verify_ids=True)
        assert out.stat().st_size == image.stat().st_size
        assert sha256_of(out) == digest, point_id
    assert reader.verify_packs(repo) > 0


# --------------------------------------------------------------------------- golden repository

def test_golden_repository_is_small_and_complete() -> None:
    files = [p for p in GOLDEN_REPO.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 300 << 10
    assert (GOLDEN_REPO / "config").is_file()
    assert list((GOLDEN_REPO / "keys").iterdir())
    assert list((GOLDEN_REPO / "packs").rglob("*.pack"))


def test_reader_restores_golden_points(tmp_path: Path) -> None:
    before = tree_digest(GOLDEN_REPO)
    expected = golden_expected()
    points = reader.list_points(GOLDEN_REPO)
    # Oldest first. (Both golden points were made in the same second, and the incremental's
    # random id suffix sorts before the full's: ordering by name alone would be wrong.)
    assert [p["point_id"] for p in points] == [p["point_id"] for p in expected["points"]]
    for p in points:
        check_point_doc(p)
    assert [p["kind"] for p in points] == [p["kind"] for p in expected["points"]]
    for want in expected["points"]:
        for disk, info in want["disks"].items():
            out = tmp_path / f"{want['point_id']}-{disk}.img"
            reader.restore(GOLDEN_REPO, want["point_id"], int(disk), out, verify_ids=True)
            assert out.stat().st_size == info["size"]
            assert sha256_of(out) == info["sha256"], want["point_id"]
    assert reader.verify_packs(GOLDEN_REPO) > 0
    assert tree_digest(GOLDEN_REPO) == before


def test_cli_reads_golden_copy(tmp_path: Path, cache: Path) -> None:
    repo = copy_golden(tmp_path)
    # As git holds it: no empty locks/ or tmp/ folders.
    assert not (repo / "locks").exists()
    assert not (repo / "tmp").exists()
    expected = golden_expected()

    res = run_cli(["image", "verify", "--repo", str(repo)], cache)
    assert res.code == 0, res.out + res.err
    assert [p["id"] for p in cli_points(repo, cache)] == \
        [p["point_id"] for p in expected["points"]]
    for want in expected["points"]:
        for disk, info in want["disks"].items():
            out = tmp_path / f"{want['point_id']}-{disk}.img"
            res = run_cli(["image", "restore", "--repo", str(repo), "--disk", disk,
                           want["point_id"], str(out)], cache)
            assert res.code == 0, res.out + res.err
            assert sha256_of(out) == info["sha256"], want["point_id"]


# --------------------------------------------------------------------------- damage

def all_entries(repo: Path) -> list[reader.PackEntry]:
    return [e for p in reader.iter_pack_paths(repo) for e in reader.read_pack_index(p)]


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def points_needing(repo: Path, block_id: bytes) -> list[str]:
    return [pid for pid in reader.list_point_ids(repo)
            if any(b == block_id for m in reader.read_manifest(repo, pid).block_maps
                   for _, b in m)]


@pytest.mark.parametrize("codec", [reader.CODEC_ZSTD, reader.CODEC_PLAIN])
def test_reader_detects_flipped_byte_in_pack_body(tmp_path: Path, cache: Path,
                                                  codec: int) -> None:
    repo = copy_golden(tmp_path)
    entry = next(e for e in all_entries(repo) if e.codec == codec)
    needing = points_needing(repo, entry.block_id)
    assert needing
    flip(entry.pack, entry.offset + entry.stored_len // 2)

    with pytest.raises(reader.DamageError):
        reader.read_block(entry)
    for point_id in needing:
        with pytest.raises(reader.DamageError):
            reader.restore(repo, point_id, 0, tmp_path / "out.img")
    with pytest.raises(reader.DamageError):
        reader.verify_packs(repo)
    # The real CLI notices it too.
    res = run_cli(["image", "verify", "--repo", str(repo)], cache)
    assert res.code != 0, res.out + res.err


def _pack(repo: Path) -> Path:
    return reader.iter_pack_paths(repo)[0]


def _manifest(repo: Path) -> Path:
    return repo / "manifests" / reader.list_point_ids(repo)[0]


def _damage_pack_header(repo: Path) -> None:
    flip(_pack(repo), 20)  # inside pack_id


def _damage_pack_index(repo: Path) -> None:
    p = _pack(repo)
    flip(p, p.stat().st_size - 48 - 72 + 50)  # last entry's stored_len


def _damage_pack_footer(repo: Path) -> None:
    p = _pack(repo)
    flip(p, p.stat().st_size - 48 + 8)  # entry_count


def _truncate_pack(repo: Path) -> None:
    p = _pack(repo)
    p.write_bytes(p.read_bytes()[:-1])


def _rename_pack(repo: Path) -> None:
    p = _pack(repo)
    other = p.name[:2] + ("0" if p.name[2] != "0" else "1") + p.name[3:]
    p.rename(p.with_name(other))  # pack_id in the header ≠ the file name


def _damage_manifest(repo: Path) -> None:
    flip(_manifest(repo), 30)


def _extend_manifest(repo: Path) -> None:
    m = _manifest(repo)
    m.write_bytes(m.read_bytes() + b"\0")


def _damage_config(repo: Path) -> None:
    flip(repo / "config", 26)


def _delete_pack(repo: Path) -> None:
    for p in reader.iter_pack_paths(repo):
        p.unlink()


@pytest.mark.parametrize("damage", [
    _damage_pack_header, _damage_pack_index, _damage_pack_footer, _truncate_pack,
    _rename_pack, _damage_manifest, _extend_manifest, _damage_config, _delete_pack,
])
def test_reader_detects_damage(tmp_path: Path, damage: Callable[[Path], None]) -> None:
    repo = copy_golden(tmp_path)
    damage(repo)
    with pytest.raises(reader.DamageError):
        for point_id in [p["point_id"] for p in golden_expected()["points"]]:
            reader.restore(repo, point_id, 0, tmp_path / "out.img")


def _rewrite_object_header(path: Path, **fields: int) -> None:
    """Change header fields of an object file and recompute its check (valid but foreign)."""
    data = bytearray(path.read_bytes()[:-16])
    magic, version, codec, reserved, key_id, payload_len = reader.OBJ_HEADER.unpack_from(data)
    values = {"version": version, "key_id": key_id, **fields}
    reader.OBJ_HEADER.pack_into(data, 0, magic, values["version"], codec, reserved,
                                values["key_id"], payload_len)
    path.write_bytes(bytes(data) + xxhash.xxh3_128_digest(bytes(data)))


def test_reader_refuses_other_version_and_encryption(tmp_path: Path) -> None:
    repo = copy_golden(tmp_path)
    manifest = _manifest(repo)
    original = manifest.read_bytes()
    _rewrite_object_header(manifest, version=2)
    with pytest.raises(reader.OtherFormatError, match="version 2"):
        reader.read_manifest(repo, manifest.name)
    manifest.write_bytes(original)
    _rewrite_object_header(manifest, key_id=7)
    with pytest.raises(reader.UnsupportedError):
        reader.read_manifest(repo, manifest.name)

    # A pack header with another version (header_check recomputed) is another format too.
    pack = _pack(repo)
    data = bytearray(pack.read_bytes())
    struct.pack_into("<H", data, 8, 2)
    struct.pack_into("<Q", data, 32, xxhash.xxh3_64_intdigest(bytes(data[:32])))
    pack.write_bytes(bytes(data))
    with pytest.raises(reader.OtherFormatError):
        reader.read_pack_index(pack)


def test_reader_ignores_foreign_names_and_accepts_crash_leftovers(tmp_path: Path) -> None:
    """§2: unknown names are ignored; §6.4: tmp/ files, unreferenced packs and a block held
    by two packs are all accepted."""
    repo = copy_golden(tmp_path)
    (repo / "manifests" / "README").write_text("not a point")
    (repo / "manifests" / "20260101T000000Z-1234.tmp").write_text("not a point")
    (repo / "packs" / "zz").mkdir()
    (repo / "tmp").mkdir()
    (repo / "tmp" / "partial").write_bytes(b"VMKPACK\0garbage")
    # A second copy of a pack under a new id: every block is now held by two packs.
    src = _pack(repo)
    data = bytearray(src.read_bytes())
    new_id = bytes(16 - 1) + b"\x01"
    data[16:32] = new_id
    struct.pack_into("<Q", data, 32, xxhash.xxh3_64_intdigest(bytes(data[:32])))
    dup_dir = repo / "packs" / new_id.hex()[:2]
    dup_dir.mkdir(exist_ok=True)
    (dup_dir / f"{new_id.hex()}.pack").write_bytes(bytes(data))

    expected = golden_expected()
    assert [p["point_id"] for p in reader.list_points(repo)] == \
        [p["point_id"] for p in expected["points"]]
    for want in expected["points"]:
        out = tmp_path / "out.img"
        reader.restore(repo, want["point_id"], 0, out, verify_ids=True)
        assert sha256_of(out) == want["disks"]["0"]["sha256"]
