"""Benchmark a backup into an SSH (SFTP) repository against the same backup into a local one.

    python scripts/bench/sftp.py [--size 1G] [--runs 3] [--workdir DIR]

Starts a real OpenSSH server on 127.0.0.1 (tests/sshd.py: needs root and openssh-server, which
`make bench` installs), generates genimage.py's VM-like image of --size (cached in WORKDIR),
then for run 1..N backs the image up (a full: every block read, hashed, compressed, stored)
into a fresh local repository and into a fresh SFTP repository on that server, and restores
it from each. Prints the medians and the ratio SFTP / local; the issue's target is a backup
to SFTP at least 0.60 as fast as to a local repository. sshd is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

from genimage import generate_image, parse_size

from appliance.jobs.backup import BackupOptions, DiskInput, run_backup
from appliance.jobs.restore import restore_disk
from appliance.jobs.workspace import open_workspace
from appliance.repository.address import Address
from appliance.source import ImageFileSource
from appliance.ssh import SshAuth
from catalog.store import Catalog

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))  # the tests' sshd fixture starts the server
from tests.sshd import Sshd, start_sshd, stop_sshd  # noqa: E402


def _one(address: Address, image: Path, out: Path) -> tuple[float, float, int]:
    """(backup seconds, restore seconds, stored bytes) of one full backup and restore."""
    repo = address.open(create=True)
    cat = Catalog.open(None)
    try:
        t0 = time.monotonic()
        with open_workspace(repo, cat.cursor, exclusive=False, operation="bench") as ws:
            result = run_backup(ws, "bench", [DiskInput(0, ImageFileSource(image), None)],
                                BackupOptions())
        t1 = time.monotonic()
        out.unlink(missing_ok=True)
        with open_workspace(repo, cat.cursor, exclusive=False, operation="bench") as ws:
            restore_disk(ws, result.point_id, 0, out)
        t2 = time.monotonic()
        return t1 - t0, t2 - t1, result.bytes_stored
    finally:
        cat.close()
        repo.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1G")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", default=str(REPO_ROOT / ".bench" / "sftp"))
    args = ap.parse_args(argv)
    size = parse_size(args.size)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    image = work / f"image-{args.size}.img"
    if not image.exists():
        generate_image(image, size, seed=1)
    sshd: Sshd = start_sshd()
    rows: dict[str, list[tuple[float, float, int]]] = {"local": [], "sftp": []}
    try:
        for n in range(args.runs):
            local = work / f"local-{n}"
            shutil.rmtree(local, ignore_errors=True)
            rows["local"].append(_one(Address(str(local)), image, work / "restored.img"))
            remote = Address(sshd.url(f"bench-{n}"), SshAuth(key_file=str(sshd.key_file)),
                             sshd.fingerprint)
            rows["sftp"].append(_one(remote, image, work / "restored.img"))
            shutil.rmtree(local, ignore_errors=True)
    finally:
        stop_sshd(sshd)
    mib = size / (1 << 20)
    print(f"backup of a {args.size} VM-like image, median of {args.runs} run(s)")
    print(f"{'repository':<12}{'backup s':>10}{'MiB/s':>9}{'restore s':>11}{'stored MiB':>12}")
    med = {}
    for kind, got in rows.items():
        b = statistics.median(x[0] for x in got)
        r = statistics.median(x[1] for x in got)
        med[kind] = b
        print(f"{kind:<12}{b:>10.2f}{mib / b:>9.0f}{r:>11.2f}{got[0][2] / (1 << 20):>12.0f}")
    ratio = med["local"] / med["sftp"]
    print(f"SFTP backup speed / local: {ratio:.2f} (target >= 0.60)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
