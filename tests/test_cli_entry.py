"""What an administrator meets first: `vmkeep` alone, `vmkeep --version`, `vmkeep GROUP` alone,
and each command's `--help` ending with examples of that command (not another's)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from collections.abc import Iterator

from appliance import api
from appliance.cli import build_parser
from appliance.cli.commands import GROUPS
from tests.helpers import REPO_ROOT


def vmkeep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def test_vmkeep_alone_shows_the_commands_and_exits_2() -> None:
    done = vmkeep()
    assert done.returncode == 2
    assert done.stdout.startswith("usage: vmkeep")
    for line in ("image     back up and restore raw disk images (offline)",
                 "job       backup jobs: what, where, how",
                 "tui       the keyboard-driven TUI"):
        assert line in done.stdout
    assert "--version" in done.stdout
    assert "group" not in done.stdout + done.stderr  # the parser's internal name


def test_a_group_alone_names_its_commands() -> None:
    done = vmkeep("job")
    assert done.returncode == 2
    assert done.stderr.startswith("vmkeep: error: vmkeep job: give a command: create, edit, "
                                  "list, show, check, run, stop, ")
    assert "see `vmkeep job --help`" in done.stderr
    assert "arguments are required" not in done.stderr


def test_version_prints_the_projects_version() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    done = vmkeep("--version")
    assert (done.returncode, done.stdout, done.stderr) == (
        0, f"vmkeep {project['project']['version']}\n", "")
    # the version `vmkeep appliance status` (and the TUI) show for the running appliance
    assert project["project"]["version"] == api.APPLIANCE_VERSION


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """A parser and every parser under it (`vmkeep job`, `vmkeep job create`, …)."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from parsers(child)


def examples(parser: argparse.ArgumentParser) -> list[str]:
    """The commands the help's examples run (`VC=…` settings and continuations left out)."""
    text = parser.format_help()
    assert "examples:" in text, f"`{parser.prog} --help` has no examples"
    lines = text.split("examples:", 1)[1].splitlines()
    return [line.strip() for line in lines if "vmkeep " in line and not line.startswith("      ")]


def test_every_command_help_has_examples_of_its_own_group() -> None:
    found = 0
    for parser in parsers(build_parser()):
        words = parser.prog.split()
        if len(words) < 2:
            continue  # `vmkeep --help` lists the commands instead
        group = words[1]
        shown = examples(parser)
        own = [x for x in shown if f"vmkeep {group} " in x or x.endswith(f"vmkeep {group}")]
        assert own, f"`{parser.prog} --help`: no example of `vmkeep {group}`: {shown}"
        found += 1
    assert found > len(GROUPS)


def test_the_job_examples_show_only_under_job_commands() -> None:
    for parser in parsers(build_parser()):
        text = parser.format_help()
        if parser.prog.startswith("vmkeep job"):
            assert "vmkeep job create nightly" in text
        else:
            assert "vmkeep job create nightly" not in text, parser.prog
