"""The privilege table (appliance/vsphere/privileges.py) and docs/VSPHERE.md agree: each
purpose's section lists exactly that purpose's privileges, the page names no privilege the
table does not have, and the wire model's purposes are the table's."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from appliance import api
from appliance.vsphere.privileges import (
    ALL_TRANSPORTS,
    BY_ID,
    PRIVILEGES,
    PURPOSES,
    SOURCES,
    Purpose,
    all_ids,
    required,
    transport_note,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "VSPHERE.md"
SECTIONS: dict[Purpose, str] = {"backup": "Backup", "restore": "Restore",
                                "hunter": "Snapshot Hunter"}
# A privilege id as the API names it: Group.Name or Group.Sub.Name.
_ID = re.compile(r"\b(?:System|VirtualMachine|Datastore|Global|Resource|Network|Sessions|Host|"
                 r"Cryptographer|Folder|Task|StorageProfile|VApp)\.[A-Z][A-Za-z]*(?:\.[A-Z][A-Za-z]*)?")
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|")


def _section_ids(text: str, title: str) -> list[str]:
    """The privilege ids in the first column of the table under ``### title``."""
    lines = text.splitlines()
    start = lines.index(f"### {title}")
    ids = []
    in_table = False
    for line in lines[start + 1:]:
        if line.startswith("#") or (in_table and not line.startswith("|")):
            break  # the next section, or the end of the section's first table
        in_table = line.startswith("|")
        m = _ROW.match(line)
        if m:
            ids.append(m.group(1))
    return ids


@pytest.mark.parametrize("purpose", PURPOSES)
def test_each_purposes_section_lists_exactly_its_privileges(purpose: Purpose) -> None:
    listed = _section_ids(DOC.read_text(encoding="utf-8"), SECTIONS[purpose])
    assert len(listed) == len(set(listed)), "a privilege listed twice"
    assert listed == list(required(purpose))  # same privileges, same order


def test_the_page_names_no_privilege_the_table_lacks() -> None:
    named = set(_ID.findall(DOC.read_text(encoding="utf-8")))
    assert named - set(all_ids()) == set()
    assert set(all_ids()) <= named


def test_the_backup_table_says_which_transports_need_each() -> None:
    text = DOC.read_text(encoding="utf-8")
    for line in text[text.index("### Backup"):text.index("### Restore")].splitlines():
        m = _ROW.match(line)
        if m:
            cell = line.rstrip("| ").rsplit("|", 1)[-1].strip()
            assert cell == (transport_note(m.group(1)) or "all"), line


def test_the_table_is_well_formed() -> None:
    ids = [p.id for p in PRIVILEGES]
    assert len(ids) == len(set(ids)) and set(BY_ID) == set(ids)
    for p in PRIVILEGES:
        assert _ID.fullmatch(p.id), p.id
        assert p.purposes and set(p.purposes) <= set(PURPOSES)
        assert p.sources and set(p.sources) <= set(SOURCES)
        assert p.transports and set(p.transports) <= set(ALL_TRANSPORTS)
        assert p.used_for and p.label
    for purpose in PURPOSES:
        assert {"System.Anonymous", "System.View", "System.Read"} <= set(required(purpose))


def test_the_wire_purposes_are_the_tables() -> None:
    assert typing.get_args(api.PrivilegePurpose) == PURPOSES
    assert typing.get_args(Purpose) == PURPOSES
