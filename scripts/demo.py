"""`make demo`: make a sample disk image, back it up (full, then incremental), restore both
points, check them, and print a summary. Runs the real `vmkeep` CLI, as an admin would.

Everything lives in .demo/ (repository, catalog cache, images); run it again at will. Later
issues extend this with vcsim and the TUI.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
MiB = 1 << 20


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def vmkeep(*args: str) -> str:
    print(f"$ vmkeep {' '.join(args)}", flush=True)
    env = {**os.environ, "VMKEEP_CACHE_DIR": str(DEMO / "cache")}
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    for line in proc.stderr.splitlines():
        print(f"  {line}")
    if proc.returncode != 0:
        sys.exit(f"demo: `vmkeep {' '.join(args)}` failed with exit code {proc.returncode}")
    return proc.stdout


def make_sample(path: Path, size: int, rng: random.Random) -> None:
    """A VM-like disk: unallocated space, logs, binaries, random data, a copied region."""
    with path.open("wb") as f:
        f.truncate(size)
        for mib in range(0, size // MiB):
            kind = rng.randrange(6)
            f.seek(mib * MiB)
            if kind == 1:
                line = f"Nov 24 21:00:{mib % 60:02d} web01 nginx: GET /api/v1/items 200\n"
                f.write((line.encode() * (MiB // len(line) + 1))[:MiB])
            elif kind == 2:
                f.write(rng.randbytes(4096) * 256)
            elif kind == 3:
                f.write(rng.randbytes(MiB))
            # kinds 0, 4, 5: left unallocated


def main() -> int:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    rng = random.Random(2026)
    image = DEMO / "web01-disk0.img"
    repo = DEMO / "repository"
    make_sample(image, 64 * MiB, rng)
    print(f"sample disk {image.relative_to(ROOT)}: 64 MiB, sparse\n")
    started = time.monotonic()
    full = vmkeep("image", "backup", "--repo", str(repo), "--name", "web01", str(image)).strip()
    sha_full = sha256(image)
    # The guest writes a little; the changed-areas list plays the part of VMware CBT.
    areas = []
    with image.open("r+b") as f:
        for _ in range(5):
            off = rng.randrange(0, 64 * MiB - 65536) // 4096 * 4096
            f.seek(off)
            f.write(rng.randbytes(16384))
            areas.append({"offset": off, "length": 16384})
    (DEMO / "changed.json").write_text(json.dumps(areas))
    incr = vmkeep("image", "backup", "--repo", str(repo), "--name", "web01", "--changed",
                  str(DEMO / "changed.json"), str(image)).strip()
    sha_incr = sha256(image)
    print(vmkeep("image", "points", "--repo", str(repo)))
    ok = True
    for point, expected in ((full, sha_full), (incr, sha_incr)):
        out = DEMO / f"restored-{point}.img"
        vmkeep("image", "restore", "--repo", str(repo), point, str(out))
        same = sha256(out) == expected
        ok &= same
        print(f"  restored {point}: {'byte-identical' if same else 'MISMATCH'}")
    print(vmkeep("image", "verify", "--repo", str(repo)))
    listing = json.loads(vmkeep("image", "points", "--repo", str(repo), "--json"))
    size = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())
    print("summary")
    print(f"  restore points: {len(listing)} ({', '.join(p['kind'] for p in listing)})")
    print(f"  read: full {listing[0]['bytes_read'] / MiB:.1f} MiB, incremental "
          f"{listing[1]['bytes_read'] / MiB:.1f} MiB")
    print(f"  repository: {size / MiB:.1f} MiB for a 64 MiB disk ({repo.relative_to(ROOT)})")
    print(f"  restores: {'all byte-identical' if ok else 'FAILED'}; "
          f"{time.monotonic() - started:.1f} s in all")
    if sys.stdout.isatty():
        print("\n(the TUI arrives with the appliance; see the issues)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
