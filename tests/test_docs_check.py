"""`make docs-check`: future-tense promises in the docs fail the check, naming file and line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "check_docs.py"


def run_check(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, files)],
                          capture_output=True, text=True, check=False, timeout=60)


def test_a_promise_of_the_past_as_future_fails_naming_file_and_line(tmp_path: Path) -> None:
    doc = tmp_path / "GUIDE.md"
    doc.write_text("# Guide\n\nBackups work.\n\nEncryption is Still To Come.\n", encoding="utf-8")
    done = run_check(doc)
    assert done.returncode == 1
    assert f"{doc}:5: 'Still To Come'" in done.stderr


def test_the_same_phrase_under_a_plans_heading_passes(tmp_path: Path) -> None:
    doc = tmp_path / "GUIDE.md"
    doc.write_text("# Guide\n\nBackups work.\n\n## Plans\n\n### Storage\n\n"
                   "Tape support is still to come; S3 arrives with a later issue.\n",
                   encoding="utf-8")
    done = run_check(doc)
    assert done.returncode == 0, done.stderr


def test_a_section_after_the_plans_one_is_checked_again(tmp_path: Path) -> None:
    doc = tmp_path / "GUIDE.md"
    doc.write_text("# Guide\n\n## Plans\n\nTape is still to come.\n\n## Usage\n\n"
                   "The appliance will serve it.\n", encoding="utf-8")
    done = run_check(doc)
    assert done.returncode == 1
    assert f"{doc}:9: 'will serve'" in done.stderr
    assert ":5:" not in done.stderr


def test_the_real_readme_and_docs_pass() -> None:
    done = run_check()
    assert done.returncode == 0, done.stderr
