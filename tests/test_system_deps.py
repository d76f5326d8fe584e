"""scripts/install-system-deps.sh: `make demo` installs only the demo's Debian packages,
`make test` (and .ci/run) everything the tests need, and neither upgrades a package that is
already installed. apt-get, dpkg-query and id are stand-ins on PATH that record their calls."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "install-system-deps.sh"
SCRIPTS = REPO_ROOT / "scripts"


def packages(name: str) -> list[str]:
    lines = (SCRIPTS / name).read_text(encoding="utf-8").splitlines()
    return [x.strip() for x in lines if x.strip() and not x.lstrip().startswith("#")]


def run(tmp_path: Path, *args: str, installed: tuple[str, ...] = (), uid: int = 0,
        ) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the script as a machine with ``installed`` installed; the apt-get calls it made."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "apt.log"
    log.write_text("", encoding="utf-8")
    stubs = {
        "apt-get": f'echo "$*" >> {log}\n',
        "dpkg-query": "for p in " + " ".join(installed) + ' ; do [ "$p" = "${@: -1}" ] && '
                      "{ echo -n installed; exit 0; }; done; exit 1\n",
        "id": f"echo {uid}\n",
    }
    for name, body in stubs.items():
        stub = bin_dir / name
        stub.write_text("#!/usr/bin/env bash\n" + body, encoding="utf-8")
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "VMKEEP_SYSDEPS_STAMP": str(tmp_path / "stamp")}
    env.pop("VMKEEP_SYSDEPS_FORCE", None)
    done = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    return done, log.read_text(encoding="utf-8").splitlines()


def installs(calls: list[str]) -> list[str]:
    return [p for call in calls if call.startswith("install ")
            for p in call.split() if not p.startswith("-") and p != "install"]


def test_the_demo_installs_only_what_builds_vcsim(tmp_path: Path) -> None:
    done, calls = run(tmp_path, "--demo")
    assert done.returncode == 0, done.stderr
    assert installs(calls) == ["golang-go", "golang-github-vmware-govmomi-dev"]
    assert "installing the Debian packages the demo needs" in done.stdout


def test_the_tests_install_everything_they_need(tmp_path: Path) -> None:
    done, calls = run(tmp_path)
    assert done.returncode == 0, done.stderr
    wanted = packages("system-packages-demo.txt") + packages("system-packages.txt")
    assert installs(calls) == wanted
    assert {"postgresql", "openssh-server", "tmux", "golang-go"} <= set(wanted)


def test_installed_packages_are_left_alone(tmp_path: Path) -> None:
    """An installed PostgreSQL is not upgraded, and nothing is fetched when all are there."""
    done, calls = run(tmp_path, installed=("postgresql", "golang-go"))
    assert done.returncode == 0, done.stderr
    assert "postgresql" not in installs(calls) and "golang-go" not in installs(calls)
    assert "tmux" in installs(calls)
    everything = tuple(packages("system-packages-demo.txt") + packages("system-packages.txt"))
    (tmp_path / "stamp").unlink()
    done, calls = run(tmp_path, installed=everything)
    assert (done.returncode, calls) == (0, [])


def test_not_root_it_names_the_missing_packages_and_installs_nothing(tmp_path: Path) -> None:
    done, calls = run(tmp_path, "--demo", installed=("golang-go",), uid=1000)
    assert (done.returncode, calls) == (0, [])
    assert "golang-github-vmware-govmomi-dev" in done.stderr
    assert "golang-go " not in done.stderr + " "


def test_make_demo_asks_for_the_demos_packages_only() -> None:
    dry = subprocess.run(["make", "-n", "demo"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert "install-system-deps.sh --demo" in dry.stdout
    assert "install-system-deps.sh\n" not in dry.stdout
