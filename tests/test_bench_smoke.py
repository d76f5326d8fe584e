"""The benchmark runs end to end on a small image with vmkeep alone (no peers in CI)."""

from __future__ import annotations

import json
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
