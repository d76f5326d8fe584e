"""Corruption: damage every kind of repository file; `verify` must find it and name every point
that needs the damaged file, restores of those points must fail cleanly, and the others must
still restore byte-identical.

The repository is built with the real CLI: image A (full, then incremental) and image B, a copy
of A's second state with some blocks of its own (full, then incremental), so most packs are
shared by several points through deduplication. What a piece of damage *should* affect is
computed by a small reader in this file, written from docs/FORMAT.md alone (object files §3,
packs §4, manifests §5), from the files as they were before the damage: it never asks vmkeep.
The restores before the damage (all byte-identical) and after it (exactly the expected points
fail) are a second, independent check of that expectation.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
import xxhash
import zstandard

from tests.helpers import (
    CliResult,
    MiB,
    change_image,
    make_image,
    run_cli,
    sha256_of,
    tree_digest,
    write_areas,
)

BLOCK_SIZE = 256 << 10
BLOCK_SIZE_ARG = "256K"
LABELS = ("A1", "A2", "B1", "B2")

# -- an independent reader of the format (docs/FORMAT.md only) ---------------------------------

OBJ_HEADER = struct.Struct("<8sHBBIQ")  # magic, version, codec, reserved, key_id, payload_len
PACK_HEADER_SIZE = 40
PACK_FOOTER = struct.Struct("<QII16sQ8s")  # index_offset, count, reserved, index_check, …
PACK_ENTRY = struct.Struct("<32sBBHIQII16s")
MAGIC_MANIFEST = b"VMKMANI\0"


@dataclass(frozen=True)
class Entry:
    block_id: bytes
    codec: int
    offset: int
    stored_len: int
    plain_len: int
    check: bytes


@dataclass(frozen=True)
class PackLayout:
    size: int
    index_offset: int
    entries: tuple[Entry, ...]

    def entry_at(self, offset: int) -> Entry:
        for e in self.entries:
            if e.offset <= offset < e.offset + e.stored_len:
                return e
        raise AssertionError(f"offset {offset} is in no block's stored bytes")


def object_payload(data: bytes, magic: bytes) -> bytes:
    """The plain payload of an intact object file (§3)."""
    got, version, codec, _res, key_id, n = OBJ_HEADER.unpack_from(data)
    assert (got, version, key_id) == (magic, 1, 0)
    assert len(data) == OBJ_HEADER.size + n + 16
    assert xxhash.xxh3_128_digest(data[:-16]) == data[-16:]
    payload = data[OBJ_HEADER.size : OBJ_HEADER.size + n]
    if codec == 0:
        return payload
    assert codec == 1
    out: bytes = zstandard.ZstdDecompressor().decompress(payload)
    return out


def manifest_block_ids(data: bytes) -> set[bytes]:
    """Every block id a manifest names (§5)."""
    payload = object_payload(data, MAGIC_MANIFEST)
    (json_len,) = struct.unpack_from("<I", payload)
    doc = json.loads(payload[4 : 4 + json_len])
    pos = 4 + json_len
    ids: set[bytes] = set()
    for disk in doc["disks"]:
        n = int(disk["blocks"])
        pos += 8 * n  # block indices
        ids.update(payload[pos + 32 * i : pos + 32 * (i + 1)] for i in range(n))
        pos += 32 * n
    assert pos == len(payload)
    return ids


def pack_layout(data: bytes) -> PackLayout:
    """The index of an intact pack (§4)."""
    assert data[:8] == b"VMKPACK\0"
    index_offset, count, _res, index_check, _fcheck, magic = PACK_FOOTER.unpack(data[-48:])
    assert magic == b"VMKPEND\0"
    assert index_offset + count * PACK_ENTRY.size + PACK_FOOTER.size == len(data)
    index = data[index_offset : index_offset + count * PACK_ENTRY.size]
    assert xxhash.xxh3_128_digest(index) == index_check
    entries = []
    for i in range(count):
        bid, _kind, codec, _fl, _key, off, slen, plen, check = PACK_ENTRY.unpack_from(
            index, i * PACK_ENTRY.size)
        entries.append(Entry(bid, codec, off, slen, plen, check))
    return PackLayout(len(data), index_offset, tuple(entries))


def block_still_good(entry: Entry, stored: bytes) -> bool:
    """Would a careful reader get the block's exact plain bytes back from ``stored``?"""
    if entry.codec == 0:
        plain = stored
    else:
        try:
            plain = zstandard.ZstdDecompressor().decompress(stored,
                                                            max_output_size=entry.plain_len)
        except (zstandard.ZstdError, MemoryError):
            return False
    return len(plain) == entry.plain_len and xxhash.xxh3_128_digest(plain) == entry.check


# -- the repository under test ----------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    repo: Path
    cache: Path
    points: dict[str, str]  # label -> point id
    sha: dict[str, str]  # point id -> sha256 of the image it backed up
    packs: dict[str, str]  # label -> relative path of the one pack that backup wrote
    key_file: str
    ids: dict[str, set[bytes]]  # point id -> block ids its manifest names
    layouts: dict[str, PackLayout]  # relative pack path -> layout

    def points_needing(self, block_ids: set[bytes], pack: str) -> set[str]:
        """Points that name a block of ``block_ids`` no other (intact) pack holds."""
        elsewhere = {e.block_id for name, lay in self.layouts.items() if name != pack
                     for e in lay.entries}
        lost = block_ids - elsewhere
        return {p for p, ids in self.ids.items() if ids & lost}


def _backup(repo: Path, cache: Path, name: str, image: Path, *extra: str) -> str:
    r = run_cli(["image", "backup", "--repo", str(repo), "--name", name, "--block-size",
                 BLOCK_SIZE_ARG, *extra, str(image)], cache)
    assert r.code == 0, r.err
    return r.out.splitlines()[0]


def _pack_files(repo: Path) -> set[str]:
    return {str(p.relative_to(repo)) for p in (repo / "packs").rglob("*.pack")}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("corruption")
    repo, cache, images = root / "repo", root / "cache", root / "images"
    cache.mkdir()
    images.mkdir()
    img_a, img_b = images / "a.img", images / "b.img"
    make_image(img_a, 8 * MiB, seed=11)
    points: dict[str, str] = {}
    sha: dict[str, str] = {}
    packs: dict[str, str] = {}

    def step(label: str, name: str, image: Path, *extra: str) -> None:
        before = _pack_files(repo) if repo.exists() else set()
        points[label] = _backup(repo, cache, name, image, *extra)
        sha[points[label]] = sha256_of(image)
        new = _pack_files(repo) - before
        assert len(new) == 1, f"backup {label} wrote packs {new}"
        packs[label] = new.pop()

    step("A1", "A", img_a)
    areas = change_image(img_a, seed=12, count=3, length=8192)
    step("A2", "A", img_a, "--changed", str(write_areas(images / "a2.json", areas)))
    # B: A's second state with a few blocks of its own, away from A2's changed blocks, so it
    # shares blocks with both A1 and A2.
    shutil.copyfile(img_a, img_b)
    a2_blocks = {a["offset"] // BLOCK_SIZE for a in areas}
    rng = random.Random(13)
    own = rng.sample(sorted(set(range(8 * MiB // BLOCK_SIZE)) - a2_blocks), 4)
    with img_b.open("r+b") as f:
        for k in own:
            f.seek(k * BLOCK_SIZE)
            f.write(rng.randbytes(BLOCK_SIZE))
    step("B1", "B", img_b)
    b_areas = change_image(img_b, seed=14, count=2, length=4096)
    step("B2", "B", img_b, "--changed", str(write_areas(images / "b2.json", b_areas)))

    ids = {p: manifest_block_ids((repo / "manifests" / p).read_bytes())
           for p in points.values()}
    layouts = {name: pack_layout((repo / name).read_bytes()) for name in packs.values()}
    (key_file,) = [str(p.relative_to(repo)) for p in (repo / "keys").iterdir()]
    b = Built(repo, cache, points, sha, packs, key_file, ids, layouts)

    # The sharing this file relies on (computed by the reader above, not by vmkeep).
    p = points
    assert b.points_needing({e.block_id for e in layouts[packs["A1"]].entries},
                            packs["A1"]) == set(p.values())
    assert b.points_needing({e.block_id for e in layouts[packs["A2"]].entries},
                            packs["A2"]) == {p["A2"], p["B1"], p["B2"]}
    assert b.points_needing({e.block_id for e in layouts[packs["B1"]].entries},
                            packs["B1"]) == {p["B1"], p["B2"]}
    # Baseline: everything verifies and restores byte-identical before any damage.
    r = run_cli(["image", "verify", "--repo", str(repo)], cache)
    assert r.code == 0 and r.out.startswith("ok: "), r
    for point in points.values():
        target = root / f"baseline-{point}.img"
        r = run_cli(["image", "restore", "--repo", str(repo), point, str(target)], cache)
        assert r.code == 0, r.err
        assert sha256_of(target) == sha[point]
        target.unlink()
    return b


@dataclass(frozen=True)
class Work:
    """A private copy of the built repository and its catalog cache."""

    repo: Path
    cache: Path
    out: Path


@pytest.fixture
def work(built: Built, tmp_path: Path) -> Work:
    repo, cache = tmp_path / "repo", tmp_path / "cache"
    shutil.copytree(built.repo, repo)
    shutil.copytree(built.cache, cache)
    out = tmp_path / "out"
    out.mkdir()
    return Work(repo, cache, out)


# -- damage -----------------------------------------------------------------------------------


def flip(path: Path, lo: int, hi: int, rng: random.Random) -> int:
    """XOR one byte in [lo, hi) with a non-zero value; return its offset."""
    data = bytearray(path.read_bytes())
    at = rng.randrange(lo, hi)
    data[at] ^= rng.randrange(1, 256)
    path.write_bytes(bytes(data))
    return at


def truncate(path: Path, rng: random.Random) -> int:
    size = rng.randrange(0, path.stat().st_size)
    os.truncate(path, size)
    return size


def region(layout: PackLayout, part: str) -> tuple[int, int]:
    return {"header": (0, PACK_HEADER_SIZE),
            "body": (PACK_HEADER_SIZE, layout.index_offset),
            "index": (layout.index_offset, layout.size - PACK_FOOTER.size),
            "footer": (layout.size - PACK_FOOTER.size, layout.size)}[part]


def damage_pack(b: Built, w: Work, pack: str, part: str, seed: int) -> set[str] | None:
    """Damage ``part`` of ``pack`` in the copy; return the points that must be named, or None
    when the damage left every block's plain bytes intact (a benign flip in a zstd frame)."""
    layout = b.layouts[pack]
    rng = random.Random(seed)
    path = w.repo / pack
    if part == "truncate":
        truncate(path, rng)
        lost = {e.block_id for e in layout.entries}
    else:
        at = flip(path, *region(layout, part), rng)
        if part == "body":
            entry = layout.entry_at(at)
            stored = path.read_bytes()[entry.offset : entry.offset + entry.stored_len]
            if block_still_good(entry, stored):
                return None
            lost = {entry.block_id}
        else:
            lost = {e.block_id for e in layout.entries}
    return b.points_needing(lost, pack)


# -- what the CLI must say --------------------------------------------------------------------

DAMAGED_RE = re.compile(r"^DAMAGED (\S+): (.+); affects (.+)$")
SUMMARY_RE = re.compile(
    r"^damage found: .+; (\d+) damaged files affect (\d+) restore points(?:: (.+))?$")


def verify_findings(r: CliResult) -> dict[str, set[str]]:
    """Check the shape of a failing `verify` and return damaged file -> points it names."""
    assert r.code == 1, r
    assert "Traceback" not in r.err and "Traceback" not in r.out, r
    lines = r.out.splitlines()
    assert lines, r
    found: dict[str, set[str]] = {}
    for line in lines[:-1]:
        m = DAMAGED_RE.match(line)
        assert m, f"unexpected verify line {line!r}"
        assert m.group(1) not in found, f"{m.group(1)} reported twice"
        found[m.group(1)] = (set() if m.group(3) == "no restore point"
                             else set(m.group(3).split(", ")))
    s = SUMMARY_RE.match(lines[-1])
    assert s, f"unexpected last line {lines[-1]!r}"
    union = set().union(*found.values())
    assert int(s.group(1)) == len(found)
    assert int(s.group(2)) == len(union)
    assert set(s.group(3).split(", ") if s.group(3) else ()) == union
    return found


def verify(w: Work) -> CliResult:
    return run_cli(["image", "verify", "--repo", str(w.repo)], w.cache)


def restore(w: Work, point: str) -> tuple[CliResult, Path]:
    target = w.out / f"{point}.img"
    return run_cli(["image", "restore", "--repo", str(w.repo), point, str(target)],
                   w.cache), target


def assert_restore_fails(w: Work, point: str, *names: str) -> None:
    """Exit 9 (integrity), one stderr line naming the damaged file, nothing left behind."""
    r, target = restore(w, point)
    assert r.code == 9, r
    lines = r.err.splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("vmkeep: error: "), lines
    assert "Traceback" not in r.err
    assert any(n in lines[0] for n in names), (names, lines[0])
    assert not target.exists()
    assert list(w.out.iterdir()) == [], "a failed restore left files in the target folder"


def assert_restores(b: Built, w: Work, point: str) -> None:
    r, target = restore(w, point)
    assert r.code == 0, r.err
    assert sha256_of(target) == b.sha[point]
    target.unlink()


def check_restores(b: Built, w: Work, affected: set[str], *names: str) -> None:
    for point in b.points.values():
        if point in affected:
            assert_restore_fails(w, point, *names)
        else:
            assert_restores(b, w, point)


def pack_id(pack: str) -> str:
    return Path(pack).stem


# -- packs ------------------------------------------------------------------------------------

PACK_CASES = [
    # (part of the pack, the backup whose pack is damaged, seed)
    ("header", "A1", 101),
    ("body", "A1", 102),
    ("body", "A2", 103),
    ("index", "B1", 104),
    ("footer", "A1", 105),
    ("truncate", "A2", 106),
    ("truncate", "B1", 107),
]


@pytest.mark.parametrize(("part", "label", "seed"), PACK_CASES,
                         ids=[f"{p}-{lab}" for p, lab, _ in PACK_CASES])
def test_damaged_pack_is_found_with_every_point_that_needs_it(
        built: Built, work: Work, part: str, label: str, seed: int) -> None:
    pack = built.packs[label]
    expected = damage_pack(built, work, pack, part, seed)
    assert expected, "the seeded damage must hit a block some point needs"
    if part != "body":
        assert len(expected) >= 2, "the damaged pack should be shared by several points"
    found = verify_findings(verify(work))
    assert found == {pack: expected}
    check_restores(built, work, expected, pack_id(pack))


def test_body_damage_is_found_after_rescan(built: Built, work: Work) -> None:
    """The cache indexed the pack before the damage; after `rescan` rebuilt it from the files
    (the damaged body does not stop the index from reading), verify names the same points."""
    pack = built.packs["A2"]
    expected = damage_pack(built, work, pack, "body", 103)
    r = run_cli(["image", "rescan", "--repo", str(work.repo)], work.cache)
    assert r.code == 0, r
    assert verify_findings(verify(work)) == {pack: expected}


@pytest.mark.parametrize("part", ["header", "footer", "truncate"])
def test_damaged_pack_is_attributed_without_a_catalog(built: Built, work: Work, part: str,
                                                       tmp_path: Path) -> None:
    """A catalog that never indexed the pack (a fresh cache, another machine) cannot say which
    blocks it held: verify must still name the pack with every point that needs it, and must
    not call the intact manifests damaged. (Regression: before 9484d99 it said the pack
    'affects no restore point' and reported every affected manifest as DAMAGED.)"""
    pack = built.packs["A1"]
    expected = damage_pack(built, work, pack, part, 201)
    fresh = tmp_path / "fresh-cache"
    fresh.mkdir()
    r = run_cli(["image", "verify", "--repo", str(work.repo)], fresh)
    assert verify_findings(r) == {pack: expected}


def test_flip_in_a_zstd_frame_header_is_damage(built: Built, work: Work) -> None:
    """A flipped Frame_Content_Size_flag makes the frame declare a huge size. (Regression:
    before 9484d99 decompression trusted it and verify/restore died with 'internal error:
    MemoryError', exit 70.)"""
    pack = built.packs["A1"]
    layout = built.layouts[pack]
    entry = next(e for e in layout.entries if e.codec == 1)
    path = work.repo / pack
    data = bytearray(path.read_bytes())
    data[entry.offset + 4] ^= 0x40  # Frame_Header_Descriptor: Frame_Content_Size_flag
    path.write_bytes(bytes(data))
    stored = bytes(data[entry.offset : entry.offset + entry.stored_len])
    assert not block_still_good(entry, stored)
    expected = built.points_needing({entry.block_id}, pack)
    assert expected
    r = verify(work)
    assert "internal error" not in r.err, r.err
    assert verify_findings(r) == {pack: expected}
    assert_restore_fails(work, sorted(expected)[0], pack_id(pack))


# -- manifests --------------------------------------------------------------------------------


@pytest.mark.parametrize(("how", "label", "seed"),
                         [("flip", "A2", 301), ("flip", "B1", 302), ("truncate", "B1", 303)])
def test_damaged_manifest_names_only_its_point(built: Built, work: Work, how: str, label: str,
                                               seed: int) -> None:
    point = built.points[label]
    path = work.repo / "manifests" / point
    rng = random.Random(seed)
    if how == "flip":
        flip(path, 0, path.stat().st_size, rng)
    else:
        truncate(path, rng)
    assert verify_findings(verify(work)) == {f"manifests/{point}": {point}}
    check_restores(built, work, {point}, point)


def test_restore_of_damaged_manifest_without_catalog_reports_damage(
        built: Built, work: Work, tmp_path: Path) -> None:
    """(Regression: before 9484d99 a catalog that skipped the damaged manifest made restore
    say the point 'is not in repository', exit 3.)"""
    point = built.points["A2"]
    flip(work.repo / "manifests" / point, 0, 40, random.Random(304))
    fresh = tmp_path / "fresh-cache"
    fresh.mkdir(mode=0o700)  # private, as vmkeep makes it (an open one gets a warning line)
    target = work.out / "x.img"
    r = run_cli(["image", "restore", "--repo", str(work.repo), point, str(target)], fresh)
    assert r.code == 9, r
    assert len(r.err.splitlines()) == 1 and "manifest" in r.err, r.err
    assert not target.exists()


@pytest.mark.parametrize("cache", [
    "stale",
    "fresh",
])
def test_verify_of_one_point_reports_its_damaged_manifest(built: Built, work: Work, cache: str,
                                                           tmp_path: Path) -> None:
    point = built.points["B1"]
    flip(work.repo / "manifests" / point, 0, 40, random.Random(305))
    where = work.cache
    if cache == "fresh":
        where = tmp_path / "fresh-cache"
        where.mkdir()
    r = run_cli(["image", "verify", "--repo", str(work.repo), point], where)
    assert verify_findings(r) == {f"manifests/{point}": {point}}


# -- config and key ---------------------------------------------------------------------------


@pytest.mark.parametrize(("how", "seed"), [("flip", 401), ("flip", 402), ("truncate", 403)])
def test_damaged_config_names_every_point(built: Built, work: Work, how: str, seed: int) -> None:
    path = work.repo / "config"
    rng = random.Random(seed)
    if how == "flip":
        flip(path, 0, path.stat().st_size, rng)
    else:
        truncate(path, rng)
    before = tree_digest(work.repo)
    assert verify_findings(verify(work)) == {"config": set(built.points.values())}
    # The whole repository is unusable: every restore fails cleanly, naming the config.
    assert_restore_fails(work, built.points["A1"], "config")
    assert tree_digest(work.repo) == before


@pytest.mark.parametrize(("how", "seed"), [("flip", 501), ("truncate", 502)])
def test_damaged_key_damages_no_point(built: Built, work: Work, how: str, seed: int,
                                      tmp_path: Path) -> None:
    path = work.repo / built.key_file
    rng = random.Random(seed)
    if how == "flip":
        flip(path, 0, path.stat().st_size, rng)
    else:
        truncate(path, rng)
    assert verify_findings(verify(work)) == {built.key_file: set()}
    for point in built.points.values():
        assert_restores(built, work, point)
    # A new backup fails clearly and leaves the repository as it was.
    before = tree_digest(work.repo)
    image = tmp_path / "new.img"
    make_image(image, 2 * MiB, seed=15)
    r = run_cli(["image", "backup", "--repo", str(work.repo), "--name", "C", str(image)],
                work.cache)
    assert r.code == 9, r
    lines = r.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in r.err, r.err
    assert built.key_file in lines[0], lines[0]
    assert tree_digest(work.repo) == before


# -- exhaustive sweep -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("label", LABELS)
def test_sweep_every_pack_region(built: Built, tmp_path: Path, label: str) -> None:
    """Many seeded flips in every region of every pack, and truncations: each is found with
    exactly the points that need the damaged blocks, and one of them fails to restore."""
    pack = built.packs[label]
    benign = 0
    for part in ("header", "body", "index", "footer", "truncate"):
        for seed in range(4):
            case = tmp_path / f"{part}-{seed}"
            w = Work(case / "repo", case / "cache", case / "out")
            shutil.copytree(built.repo, w.repo)
            shutil.copytree(built.cache, w.cache)
            w.out.mkdir()
            expected = damage_pack(built, w, pack, part, 1000 * LABELS.index(label) + seed)
            if expected is None:  # the flip left the block's plain bytes intact
                benign += 1
                assert verify(w).code == 0
                continue
            assert verify_findings(verify(w)) == {pack: expected}, (part, seed)
            assert_restore_fails(w, sorted(expected)[0], pack_id(pack))
            shutil.rmtree(case)
    assert benign <= 1


@pytest.mark.slow
def test_sweep_every_object_file(built: Built, tmp_path: Path) -> None:
    files = {**{f"manifests/{p}": {p} for p in built.points.values()},
             "config": set(built.points.values()), built.key_file: set()}
    for n, (name, expected) in enumerate(sorted(files.items())):
        for seed in range(3):
            case = tmp_path / f"{n}-{seed}"
            w = Work(case / "repo", case / "cache", case / "out")
            shutil.copytree(built.repo, w.repo)
            shutil.copytree(built.cache, w.cache)
            path = w.repo / name
            rng = random.Random(7000 + 10 * n + seed)
            if seed == 2:
                truncate(path, rng)
            else:
                flip(path, 0, path.stat().st_size, rng)
            assert verify_findings(verify(w)) == {name: expected}, (name, seed)
            shutil.rmtree(case)

