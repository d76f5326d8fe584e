"""The whole TUI (every screen, and ``python -m tui``'s module) loads no engine library."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO_ROOT


def test_the_tui_loads_no_engine_library() -> None:
    code = ("import sys, tui.app, tui.__main__; bad = [m for m in ('duckdb', 'pyVmomi', "
            "'paramiko', 'catalog', 'fastapi', 'uvicorn') if m in sys.modules]; "
            "print(','.join(bad))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.strip() == ""


def test_vmkeep_tui_has_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", "tui", "--help"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--home" in proc.stdout
