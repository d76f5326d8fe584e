"""Private by default, the appliance (issue 11): under umask 022 in an open /tmp folder, the
appliance's home (catalog, secrets, log, id, lock) and a repository `repo add` makes are its
owner's alone and closed to `nobody`; a home, or a repository, an older vmkeep left open is
made private at start (and at `repo add`), each path named; `--allow-shared-home` leaves the
home as it is."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.appliance.lab import run_vmkeep
from tests.helpers import CliResult, MiB, make_image, poll
from tests.private import assert_private, every_path, need_root, open_dir, shared_modes, umask022

__all__ = ["open_dir", "umask022"]  # fixtures


class Appl:
    def __init__(self, folder: Path) -> None:
        self.home = folder / "home"
        self.env = {**os.environ, "VMKEEP_HOME": str(self.home),
                    "VMKEEP_CACHE_DIR": str(folder / "cache")}
        self.env.pop("VMKEEP_SOCKET", None)

    def __call__(self, *args: str) -> CliResult:
        return run_vmkeep(self.env, *args)

    def log(self) -> str:
        return (self.home / "appliance.log").read_text()


@pytest.fixture
def appl(open_dir: Path) -> Iterator[Appl]:
    a = Appl(open_dir)
    try:
        yield a
    finally:
        a("appliance", "stop")


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_the_home_and_an_added_repository_are_private(appl: Appl, open_dir: Path,
                                                      tmp_path: Path) -> None:
    need_root()
    r = appl("appliance", "start")
    assert r.code == 0, r.err
    assert "group or other access" not in r.err
    r = appl("repo", "add", "main", "--path", str(open_dir / "main"))
    assert r.code == 0, r.err
    # A repository an older vmkeep made open (0755/0644): imported, and made private.
    image = tmp_path / "disk.img"
    make_image(image, 2 * MiB, seed=2)
    old = open_dir / "old"
    assert appl("image", "backup", "--repo", str(old), "--name", "a", str(image)).code == 0
    for p in every_path(old):
        p.chmod(0o755 if p.is_dir() else 0o644)
    r = appl("repo", "add", "old", "--path", str(old))
    assert r.code == 0, r.err
    assert shared_modes(every_path(old)) == {}
    log = appl.log()
    assert f"repository old ({old}) had group or other access" in log
    assert f"{old}/config (0644 -> 0600)" in log
    assert appl("appliance", "stop").code == 0
    home = assert_private(appl.home)
    assert {p.name for p in home} >= {"catalog.duckdb", "secrets.enc", "secret.key",
                                      "appliance.log", "appliance.id", "appliance.lock"}
    assert_private(open_dir / "main")
    assert_private(old)
    # Opened again while the appliance is stopped: its next start makes it private (in a
    # thread, logged), its home untouched since it was private.
    old.chmod(0o755)
    (old / "keys").chmod(0o755)
    before = len(appl.log())
    r = appl("appliance", "start")
    assert r.code == 0, r.err
    assert "group or other access" not in r.err
    poll("the start to make the repository private (logged)",
         lambda: f"{old}/keys (0755 -> 0700)" in appl.log()[before:] or None)
    assert (mode(old), mode(old / "keys")) == (0o700, 0o700)


def test_an_open_home_is_made_private_at_start_unless_allowed(appl: Appl) -> None:
    need_root()
    appl.home.mkdir(mode=0o755)
    assert mode(appl.home) == 0o755
    r = appl("appliance", "start", "--allow-shared-home")
    assert r.code == 0, r.err
    assert "group or other access" not in r.err
    assert mode(appl.home) == 0o755  # left as it is
    assert shared_modes(every_path(appl.home)[1:]) == {}  # what it makes is private anyway
    assert appl("appliance", "stop").code == 0
    catalog = appl.home / "catalog.duckdb"
    catalog.chmod(0o644)  # as an older vmkeep left it under umask 022
    notes = appl.home / "notes.txt"
    notes.write_text("the admin's\n")
    assert mode(notes) == 0o644
    r = appl("appliance", "start", "--allow-shared-home")
    assert r.code == 0, r.err
    assert "group or other access" not in r.err
    assert (mode(appl.home), mode(catalog), mode(notes)) == (0o755, 0o644, 0o644)
    assert appl("appliance", "stop").code == 0
    r = appl("appliance", "start")
    assert r.code == 0, r.err
    notice = next(line for line in r.err.splitlines() if "group or other access" in line)
    assert f"the appliance home {appl.home} had group or other access" in notice
    for named in (f"{appl.home} (0755 -> 0700)", f"{catalog} (0644 -> 0600)",
                  f"{notes} (0644 -> 0600)"):
        assert named in notice
        assert named in appl.log()
    assert "--allow-shared-home" in notice
    assert appl("appliance", "stop").code == 0
    assert_private(appl.home)
