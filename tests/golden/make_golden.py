"""Regenerate the golden repository in tests/golden/ with the real `vmkeep` CLI.

ONLY FOR A DELIBERATE FORMAT CHANGE. The golden repository exists to prove that what vmkeep
once wrote keeps reading: regenerating it after an accidental format change hides exactly the
bug it is there to catch. Change docs/FORMAT.md (and its version numbers, §9) first, then run

    .venv/bin/python tests/golden/make_golden.py

from the repository root and commit tests/golden/repo/ and tests/golden/expected.json.

What it makes: one protected image "golden" (3 MiB + 40,000 bytes, block size 256 KiB, so the
last block is short) with two restore points:

* a full backup (zstd-fast) of an image with text, a hole, allocated zeros, a block repeated
  inside the image (dedup), a repeated 4 KiB pattern, a half-zero block, a byte ramp and a short
  random last block (incompressible, so stored plain: codec 0);
* an incremental backup (`--changed`, zstd-9) that overwrites part of one data block, writes
  into a former hole and zeroes a data block (which thereby becomes a zero block).

The restored sha256 of each point's disk 0 goes to expected.json. The repository's empty
`locks/` and `tmp/` folders are removed because git keeps no empty folders; readers must cope.
The whole thing stays well under 100 KiB.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
GOLDEN_REPO = HERE / "repo"
EXPECTED = HERE / "expected.json"

KiB = 1 << 10
MiB = 1 << 20
BLOCK = 256 * KiB
SIZE = 3 * MiB + 40_000
NAME = "golden"


def _text(seed: int, length: int) -> bytes:
    lines = []
    n = 0
    total = 0
    while total < length:
        line = f"{seed:04d} 2026-01-01T00:00:{n % 60:02d}Z INFO golden heartbeat seq={n}\n"
        lines.append(line)
        total += len(line)
        n += 1
    return "".join(lines).encode()[:length]


def write_full_image(path: Path) -> None:
    rng = random.Random(20260101)
    with path.open("wb") as f:
        f.truncate(SIZE)

        def put(block: int, data: bytes, within: int = 0) -> None:
            f.seek(block * BLOCK + within)
            f.write(data)

        put(0, _text(1, BLOCK))                       # compressible text
        # block 1: hole (zero block)
        put(2, bytes(BLOCK))                          # allocated zeros (zero block)
        put(3, rng.randbytes(4 * KiB) * (BLOCK // (4 * KiB)))  # repeated pattern
        put(4, _text(1, BLOCK))                       # same as block 0: deduplicated
        put(5, _text(5, BLOCK))
        put(6, _text(6, BLOCK // 2))                  # first half text, second half zeros
        # blocks 7-10: hole
        put(11, bytes(i % 251 for i in range(BLOCK)))  # byte ramp
        put(12, rng.randbytes(SIZE - 12 * BLOCK))     # short, incompressible last block


def change_image(path: Path) -> list[dict[str, int]]:
    rng = random.Random(20260102)
    areas = [
        {"offset": 5 * BLOCK + 12 * KiB, "length": 8 * KiB},  # overwrite part of block 5
        {"offset": 9 * BLOCK + 64 * KiB, "length": 4 * KiB},  # data into the hole
        {"offset": 3 * BLOCK, "length": BLOCK},               # block 3 becomes zeros
    ]
    with path.open("r+b") as f:
        f.seek(areas[0]["offset"])
        f.write(_text(7, 8 * KiB))
        f.seek(areas[1]["offset"])
        f.write(rng.randbytes(1 * KiB) * 4)
        f.seek(areas[2]["offset"])
        f.write(bytes(BLOCK))
    return areas


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(args: list[str], cache: Path) -> str:
    env = {**os.environ, "VMKEEP_CACHE_DIR": str(cache)}
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"vmkeep {' '.join(args)} failed ({proc.returncode}):\n"
                         f"{proc.stdout}{proc.stderr}")
    return proc.stdout


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="vmkeep-golden-") as tmp_name:
        tmp = Path(tmp_name)
        cache = tmp / "cache"
        cache.mkdir()
        repo = tmp / "repo"
        image = tmp / "golden.img"
        areas_file = tmp / "areas.json"

        write_full_image(image)
        hashes = [sha256_of(image)]
        cli(["image", "backup", "--repo", str(repo), "--name", NAME, "--block-size", "256K",
             "--compression", "zstd-fast", str(image)], cache)
        areas_file.write_text(json.dumps(change_image(image)))
        hashes.append(sha256_of(image))
        cli(["image", "backup", "--repo", str(repo), "--name", NAME, "--block-size", "256K",
             "--compression", "zstd-9", "--changed", str(areas_file), str(image)], cache)

        points: list[dict[str, Any]] = json.loads(
            cli(["image", "points", "--repo", str(repo), "--json"], cache))
        if len(points) != 2 or [p["kind"] for p in points] != ["full", "incremental"]:
            raise SystemExit(f"unexpected points: {points}")

        # Empty folders do not survive git: drop them (the tests check readers cope).
        for folder in ("locks", "tmp"):
            d = repo / folder
            if d.is_dir():
                if any(d.iterdir()):
                    raise SystemExit(f"{d} is not empty after the backups")
                d.rmdir()

        # The copy as git will hold it must restore the same bytes with the real CLI.
        check = tmp / "check"
        (tmp / "cache2").mkdir()
        shutil.copytree(repo, check)
        expected_points = []
        for point, digest in zip(points, hashes, strict=True):
            out = tmp / f"{point['id']}.img"
            cli(["image", "restore", "--repo", str(check), point["id"], str(out)],
                tmp / "cache2")
            if sha256_of(out) != digest:
                raise SystemExit(f"restore of {point['id']} differs from the source image")
            expected_points.append({"point_id": point["id"], "kind": point["kind"],
                                    "disks": {"0": {"size": SIZE, "sha256": digest}}})

        if GOLDEN_REPO.exists():
            shutil.rmtree(GOLDEN_REPO)
        shutil.copytree(repo, GOLDEN_REPO)
        EXPECTED.write_text(json.dumps({
            "comment": "sha256 of each point's restored disk; made by make_golden.py",
            "name": NAME,
            "block_size": BLOCK,
            "points": expected_points,
        }, indent=2) + "\n")

    total = sum(p.stat().st_size for p in GOLDEN_REPO.rglob("*") if p.is_file())
    print(f"wrote {GOLDEN_REPO} ({total} bytes) and {EXPECTED}")


if __name__ == "__main__":
    main()
