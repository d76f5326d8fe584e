"""A stored job's definition is parsed from the catalog's JSON in one place only
(``appliance.service.job_definition.parse_job``); everything else reads the parsed
``JobDefinition``."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import REPO_ROOT

PARSE = "JobSpec.model_validate_json"


def places(root: Path) -> list[str]:
    """``file:line`` of every place under ``root`` that parses a job's JSON."""
    return [f"{path.relative_to(root)}:{n}"
            for path in sorted(root.rglob("*.py"))
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if PARSE in line]


def test_the_job_definition_is_parsed_in_one_place() -> None:
    found = places(REPO_ROOT / "appliance")
    assert len(found) == 1 and found[0].startswith("service/job_definition.py:"), (
        "parse a job's JSON with parse_job or JobService.get only: " + ", ".join(found))


def test_the_check_sees_a_second_place(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(f"x = api.{PARSE}(row.spec_json)\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text(f"y = {PARSE}(s)\n", encoding="utf-8")
    assert places(tmp_path) == ["a.py:1", "sub/b.py:1"]
