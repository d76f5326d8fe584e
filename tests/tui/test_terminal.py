"""`vmkeep tui` in a real terminal: tmux (its own server, killed in teardown) at 80×24, as an
administrator over SSH sees it; keys sent with send-keys, the screen read with capture-pane."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.appliance.lab import run_vmkeep
from tests.helpers import poll

VMKEEP = Path(sys.executable).with_name("vmkeep")


class Tmux:
    def __init__(self) -> None:
        self.socket = f"vmkeep-tui-{uuid.uuid4().hex[:8]}"

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True,
                              capture_output=True, text=True, timeout=30).stdout

    def screen(self, *, escapes: bool = False) -> str:
        return self.run("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "tui")

    def wait_for(self, *texts: str, timeout: float = 30.0) -> str:
        last = [""]

        def shown() -> str | None:
            last[0] = self.screen()
            return last[0] if all(t in last[0] for t in texts) else None

        return poll(lambda: f"{texts} on the screen:\n{last[0]}", shown, timeout, every=0.05)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "tui", *keys)


@pytest.fixture
def appliance_home(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {**os.environ, "VMKEEP_HOME": str(tmp_path / "home"),
           "VMKEEP_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("VMKEEP_SOCKET", None)
    env.pop("NO_COLOR", None)
    try:
        assert run_vmkeep(env, "appliance", "start").code == 0
        r = run_vmkeep(env, "repo", "add", "offsite", "--path", str(tmp_path / "repo"))
        assert r.code == 0, r.err
        yield env
    finally:
        run_vmkeep(env, "appliance", "stop")


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is missing: scripts/install-system-deps.sh installs it")
    t = Tmux()
    try:
        yield t
    finally:
        subprocess.run(["tmux", "-L", t.socket, "kill-server"], capture_output=True,
                       timeout=30)


def test_vmkeep_tui_in_a_terminal_opens_navigates_and_quits_with_0(
        appliance_home: dict[str, str], tmux: Tmux) -> None:
    env = " ".join(f"{k}={shlex.quote(appliance_home[k])}"
                   for k in ("VMKEEP_HOME", "VMKEEP_CACHE_DIR"))
    command = f"env {env} {shlex.quote(str(VMKEEP))} tui; echo EXIT=$?; sleep 600"
    tmux.run("new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", command)
    screen = tmux.wait_for("Jobs", "Repositories", "offsite")
    assert len(screen.splitlines()[0]) <= 80
    assert "1 Dashboard" in screen and "^q Quit" in screen
    tmux.keys("7")
    tmux.wait_for("vCenters", "Add repository")
    tmux.keys("2")
    tmux.wait_for("Last result", "n New")
    tmux.keys("C-q")
    tmux.wait_for("EXIT=0")


def test_in_16_colours_it_survives_the_appliance_restarting(
        appliance_home: dict[str, str], tmux: Tmux) -> None:
    """TERM=xterm (16 colours): no 256-colour or true-colour escapes reach the terminal.
    The appliance stops: the TUI says so; it starts again: the TUI reconnects and says so."""
    env = " ".join(f"{k}={shlex.quote(appliance_home[k])}"
                   for k in ("VMKEEP_HOME", "VMKEEP_CACHE_DIR"))
    command = (f"env TERM=xterm COLORTERM= {env} {shlex.quote(str(VMKEEP))} tui; "
               "echo EXIT=$?; sleep 600")
    tmux.run("new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", command)
    tmux.wait_for("Repositories", "offsite")
    colours = tmux.screen(escapes=True)
    assert "38;5;" not in colours and "38;2;" not in colours and "48;2;" not in colours
    assert run_vmkeep(appliance_home, "appliance", "stop").code == 0
    tmux.wait_for("appliance not answering — reconnecting")
    assert run_vmkeep(appliance_home, "appliance", "start").code == 0
    tmux.wait_for("offsite", timeout=30)
    poll("'not answering' to leave the screen", lambda: "not answering" not in tmux.screen(),
         30, every=0.05)
    tmux.wait_for("reconnected")
    tmux.keys("C-q")
    tmux.wait_for("EXIT=0")


def test_at_80x24_each_screen_shows_its_key_columns_and_footer(
        vcsim_binary: Path, tmp_path: Path, tmux: Tmux) -> None:
    """An administrator's 80×24 over SSH, a job with a long schedule (last Sunday of the
    month in Berlin) that ran once: Jobs shows the job's name, Next run (with its zone) and
    Last result; the session view shows each VM's Result; the inventory's detail shows the
    VM's disks and last point; every screen's footer shows its keys."""
    from tests.appliance.lab import VM, started_lab

    with started_lab(vcsim_binary, tmp_path) as lab:
        assert lab.vmkeep("job", "create", "monthly-berlin", "--vcenter", "vc", "--vm", VM,
                          "--repo", "main", "--enable-cbt", "--monthly", "01:30", "--nth",
                          "last", "--weekday", "sun", "--tz", "Europe/Berlin").code == 0
        assert lab.vmkeep("job", "run", "monthly-berlin", "--wait").code == 0
        env = " ".join(f"{k}={shlex.quote(lab.env[k])}"
                       for k in ("VMKEEP_HOME", "VMKEEP_CACHE_DIR"))
        command = f"env {env} {shlex.quote(str(VMKEEP))} tui; echo EXIT=$?; sleep 600"
        tmux.run("new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", command)
        tmux.wait_for("monthly-berlin")
        tmux.keys("2")
        screen = tmux.wait_for("Next run", "Last result", "✓ success", "CET", "n New")
        footer = screen.rstrip().splitlines()[-1]
        for key in ("n New", "e Edit", "r Run", "s Stop", "del Delete", "/ Filter", "^q Quit"):
            assert key in footer, footer
        header = next(line for line in screen.splitlines() if "Next run" in line)
        assert header.split()[0] == "Job", screen
        tmux.keys("3")
        tmux.wait_for("monthly-berlin", "Sessions", "o Open session")
        tmux.keys("o")
        tmux.wait_for("Result", "✓ success", "esc Back")
        tmux.keys("Escape")  # alone: Escape and a digit at once read as alt+digit
        tmux.wait_for("o Open session")
        tmux.keys("4")
        tmux.wait_for(VM, "f5 Refresh")
        tmux.keys(*["Down"] * 8, "Enter")  # to the VM in the tree, open its details
        screen = tmux.wait_for("disks 0: 1 MiB", "last point 2026", "last result success")
        assert all(len(line) <= 80 for line in screen.splitlines()), screen
        tmux.keys("C-q")
        tmux.wait_for("EXIT=0")


def test_at_80x24_slash_filters_a_list(appliance_home: dict[str, str], tmux: Tmux,
                                       tmp_path: Path) -> None:
    """On a real terminal at 80×24: on the Repos screen with two repositories, `/` opens the
    filter's line above the footer, typing narrows the table to what matches (and says
    "1 of 2"), something that matches nothing says so, Esc shows every row again."""
    r = run_vmkeep(appliance_home, "repo", "add", "second", "--path", str(tmp_path / "r2"))
    assert r.code == 0, r.err
    env = " ".join(f"{k}={shlex.quote(appliance_home[k])}"
                   for k in ("VMKEEP_HOME", "VMKEEP_CACHE_DIR"))
    command = f"env {env} {shlex.quote(str(VMKEEP))} tui; echo EXIT=$?; sleep 600"
    tmux.run("new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", command)
    tmux.wait_for("offsite")
    tmux.keys("7")
    screen = tmux.wait_for("Add repository", "offsite", "second", "/ Filter")
    tmux.keys("/")
    tmux.wait_for("enter keeps · esc clears")
    tmux.keys("sec")
    screen = tmux.wait_for("1 of 2", "second")
    table = screen.split("vCenters")[0]
    assert "offsite" not in table, screen
    tmux.keys("q")  # a letter types into the filter: it does not quit
    tmux.wait_for("no match for 'secq'")
    tmux.keys("Escape")
    screen = tmux.wait_for("offsite", "second")
    assert "no match" not in screen and all(len(line) <= 80 for line in screen.splitlines())
    tmux.keys("C-q")
    tmux.wait_for("EXIT=0")


def test_at_80x24_esc_in_a_changed_wizard_asks(appliance_home: dict[str, str],
                                               tmux: Tmux) -> None:
    """On a real terminal at 80×24: Esc in a new-job wizard where a name was typed asks
    "Discard changes?"; n goes back to the wizard with the name still there; Esc and y close
    it. Esc in a wizard where nothing was typed closes it at once."""
    env = " ".join(f"{k}={shlex.quote(appliance_home[k])}"
                   for k in ("VMKEEP_HOME", "VMKEEP_CACHE_DIR"))
    command = f"env {env} {shlex.quote(str(VMKEEP))} tui; echo EXIT=$?; sleep 600"
    tmux.run("new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", command)
    tmux.wait_for("offsite")
    tmux.keys("2")
    tmux.wait_for("n New")
    tmux.keys("n")
    tmux.wait_for("New job — 1/6 Name")
    tmux.keys("Escape")  # unchanged (loaded or not yet): closes
    tmux.wait_for("n New")
    tmux.keys("n")
    tmux.wait_for("New job — 1/6 Name")
    tmux.keys("nightly")
    tmux.wait_for("nightly")
    tmux.keys("Escape")
    tmux.wait_for("Discard changes?", "y = yes, n = no")
    tmux.keys("n")
    poll("the question to go", lambda: "Discard changes?" not in tmux.screen(), 30, every=0.05)
    tmux.wait_for("New job — 1/6 Name", "nightly")
    tmux.keys("Escape")
    tmux.wait_for("Discard changes?")
    tmux.keys("y")
    tmux.wait_for("n New")
    tmux.keys("C-q")
    tmux.wait_for("EXIT=0")
