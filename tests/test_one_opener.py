"""One way to open a repository (docs/DECISIONS.md, "One way to open a repository"):
``Address.open`` (``appliance.repository.address``) is the only caller of the repository
layer's openers, for the offline CLI and the appliance alike, and the offline commands reach a
repository only through ``appliance.cli.offline.workspace`` (the repository locked, its catalog
cache in step), never by opening a workspace of their own. Checked by reading the source."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import REPO_ROOT

APPLIANCE = REPO_ROOT / "appliance"
OPENERS = re.compile(r"\bRepository\.open_(local|backend)\(")
WORKSPACE = re.compile(r"\bopen_workspace\(")


def calls(root: Path, pattern: re.Pattern[str]) -> list[str]:
    """``file:line`` of every line under ``root`` that matches ``pattern``."""
    return [f"{path.relative_to(root).as_posix()}:{n}"
            for path in sorted(root.rglob("*.py"))
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if pattern.search(line)]


def files(found: list[str]) -> set[str]:
    return {f.rsplit(":", 1)[0] for f in found}


def test_a_repository_is_opened_by_its_address_only() -> None:
    found = calls(APPLIANCE, OPENERS)
    assert files(found) == {"repository/address.py"}, (
        "open a repository with Address.open: " + ", ".join(found))


def test_the_offline_commands_open_workspaces_in_one_place() -> None:
    found = calls(APPLIANCE / "cli", WORKSPACE)
    assert files(found) == {"offline.py"}, (
        "use appliance.cli.offline.workspace: " + ", ".join(found))


def test_the_checks_see_a_second_opener(tmp_path: Path) -> None:
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "x_cmd.py").write_text(
        "repo = Repository.open_local(path, create=False)\n"
        "with open_workspace(repo, cat.cursor, exclusive=False, operation='x') as ws:\n",
        encoding="utf-8")
    assert calls(tmp_path, OPENERS) == ["cli/x_cmd.py:1"]
    assert calls(tmp_path / "cli", WORKSPACE) == ["x_cmd.py:2"]
