"""`make install` / `make install-service` (scripts/install.sh): vmkeep in a virtualenv of its
own, linked where the systemd unit's ExecStart runs it, working from any folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

UNIT = REPO_ROOT / "scripts" / "vmkeep-appliance.service"


def version() -> str:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return str(project["project"]["version"])


def make_install(root: Path, *, deps: bool, target: str = "install-service",
                 ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "MAKE"))}
    if not deps:
        env["PIP_NO_DEPS"] = "1"  # pip's own setting: only vmkeep itself, quick and offline
    return subprocess.run(
        ["make", "-s", target, f"PREFIX={root / 'prefix'}", f"VMKEEP_VENV={root / 'venv'}",
         f"SYSTEMD_UNIT_DIR={root / 'units'}", f"PYTHON={sys.executable}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def run_installed(command: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed command as systemd or an administrator runs it: from another folder,
    without this source tree on the path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(command), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def exec_start(unit: Path) -> str:
    found = re.search(r"^ExecStart=(\S+)", unit.read_text(encoding="utf-8"), re.MULTILINE)
    assert found, f"{unit} has no ExecStart"
    return found.group(1)


def test_the_default_install_puts_vmkeep_where_the_unit_runs_it() -> None:
    dry = subprocess.run(["make", "-n", "install"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    assert "PREFIX='/usr/local'" in dry.stdout and "scripts/install.sh" in dry.stdout
    assert exec_start(UNIT) == "/usr/local/bin/vmkeep"


def test_make_install_service_installs_a_vmkeep_the_unit_runs(tmp_path: Path) -> None:
    built_before = (REPO_ROOT / "build").exists()
    first = make_install(tmp_path, deps=False)
    assert first.returncode == 0, first.stderr
    command = tmp_path / "prefix" / "bin" / "vmkeep"
    unit = tmp_path / "units" / "vmkeep-appliance.service"
    assert exec_start(unit) == str(command)
    assert f"ExecStop={command} appliance stop" in unit.read_text(encoding="utf-8")
    done = run_installed(command, "--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"vmkeep {version()}\n"), done.stderr
    assert Path(os.path.realpath(command)).is_relative_to(tmp_path / "venv")
    # what `vmkeep tui` loads besides Python modules: its stylesheets
    wanted = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "tui").rglob("*.tcss")}
    site = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))
    assert {p.relative_to(site).as_posix() for p in (site / "tui").rglob("*.tcss")} == wanted
    if not built_before:
        assert not (REPO_ROOT / "build").exists(), "the install built in the source folder"

    again = make_install(tmp_path, deps=False)  # upgrading is running it again
    assert again.returncode == 0, again.stderr
    assert run_installed(command, "--version", cwd=tmp_path).returncode == 0
    assert exec_start(unit) == str(command)


@pytest.mark.slow
def test_make_install_with_its_dependencies_runs_the_appliance_commands(tmp_path: Path) -> None:
    done = make_install(tmp_path, deps=True, target="install")
    assert done.returncode == 0, done.stderr
    command = tmp_path / "prefix" / "bin" / "vmkeep"
    status = run_installed(command, "appliance", "status", "--home", str(tmp_path / "home"),
                           cwd=tmp_path)
    assert status.returncode == 3 and status.stdout.startswith("not running"), status.stderr
