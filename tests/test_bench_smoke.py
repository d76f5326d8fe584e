"""The benchmark runs end to end on a small image with vmkeep alone (no peers in CI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO_ROOT


def test_bench_smoke_prints_the_table(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "scripts/bench/run.py", "--no-peers", "--size", "64M", "--runs", "1",
         "--workdir", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "vmkeep" in proc.stdout and "full" in proc.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert results


def test_the_vsphere_restore_bench_measures_every_row(tmp_path: Path) -> None:
    """scripts/bench/vsphere_restore.py against vcsim on a small disk: every row measured,
    the NFC import sending less than the disk (its point is what the bench shows)."""
    proc = subprocess.run(
        [sys.executable, "scripts/bench/vsphere_restore.py", "--size", "32M", "--runs", "1",
         "--workdir", str(tmp_path), "--datastore-dir", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {line.split("  ")[1].strip(): line.split()
            for line in proc.stdout.splitlines() if line.startswith("  ") and " s " not in line}
    for row in ("NFC import", "PUT (vCenter)", "PUT (host)", "host full", "hot-add full"):
        assert row in rows, proc.stdout
    nfc = float(rows["NFC import"][-3])  # x capacity
    assert 0 < nfc < 1.0, proc.stdout
