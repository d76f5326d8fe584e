"""The import directions of DESIGN.md §3 hold: import-linter contracts, and the TUI package
loads none of duckdb, pyVmomi or paramiko."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO_ROOT


def test_import_linter_contracts_hold() -> None:
    exe = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(exe)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "broken" not in proc.stdout.lower() or "0 broken" in proc.stdout


def test_the_tuis_contract_is_an_allow_list(tmp_path: Path) -> None:
    """A TUI import of any module of ours but client, api and errors breaks the TUI's
    contract, also of a module the contract never named (one new to the appliance)."""
    for package in ("appliance", "catalog", "tui"):
        shutil.copytree(REPO_ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "appliance" / "brand_new.py").write_text('"""New to the appliance."""\n')
    (tmp_path / "tui" / "probe.py").write_text(
        '"""Imports what the TUI may not."""\n\nfrom appliance import brand_new, inputs\n')
    exe = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(exe)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "200"})
    assert proc.returncode != 0, proc.stdout + proc.stderr
    out = " ".join(proc.stdout.split())
    assert ("tui imports of ours only appliance.client, appliance.api and appliance.errors "
            "BROKEN") in out, out
    assert "1 broken" in out, out
    assert "tui.probe -> appliance.brand_new" in out and "tui.probe -> appliance.inputs" in out, \
        out


def test_importing_tui_loads_no_engine_libraries() -> None:
    code = ("import sys, tui; bad = [m for m in ('duckdb', 'pyVmomi', 'paramiko', 'catalog') "
            "if m in sys.modules]; print(','.join(bad))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.strip() == ""


def test_cli_help_does_not_import_the_engine() -> None:
    code = ("import sys\nfrom appliance import cli\n"
            "try:\n    cli.build_parser().parse_args(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('duckdb' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.strip().endswith("False")


def test_cli_parser_loads_no_engine_and_no_client() -> None:
    """Every command group's parser is built at start: that loads neither the engine (the
    offline groups import it when they run) nor the HTTP client and API models (the online
    groups import them when they run), so `vmkeep … --help` answers at once."""
    code = ("import sys\nfrom appliance import cli\n"
            "try:\n    cli.build_parser().parse_args(['job', 'create', '--help'])\n"
            "except SystemExit:\n    pass\n"
            "print([m for m in ('duckdb', 'pyVmomi', 'paramiko', 'pydantic', 'httpx', "
            "'appliance.jobs', 'appliance.repository', 'appliance.daemon') "
            "if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.strip().endswith("[]")
