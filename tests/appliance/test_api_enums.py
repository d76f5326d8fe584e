"""The wire enums (states, results, levels, kinds) are listed in the OpenAPI document, so a
client sees every value a field takes and the fuzzer sends only those; a value outside them
is refused at the edge."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic
import pytest

from appliance import api
from appliance.home import Home
from appliance.registry import Registry
from appliance.server import ApplianceState, create_app
from appliance.sessions.manager import SessionManager

RESULTS = {"success", "warning", "failed"}
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("SessionSummary", "kind"): {"backup", "copy", "logs", "restore"},
    ("SessionSummary", "state"): {"running", "ended", "stopped", "interrupted"},
    ("SessionSummary", "result"): RESULTS,
    ("Session", "kind"): {"backup", "copy", "logs", "restore"},
    ("Session", "state"): {"running", "ended", "stopped", "interrupted"},
    ("Session", "result"): RESULTS,
    ("Task", "state"): {"waiting", "running", "ended", "stopped"},
    ("Task", "result"): RESULTS,
    ("LogLine", "level"): {"info", "warning", "error"},
    ("Point", "kind"): {"full", "incremental"},
    ("Alert", "kind"): {"rpo", "orphans", "space", "repository", "config", "session", "vm"},
    ("Alert", "severity"): {"warning", "error"},
    ("Repository", "kind"): {"local", "sftp"},
    ("ConfigScheduleView", "last_result"): {"success", "failed"},
    ("ScheduleSpec", "kind"): {"none", "daily", "monthly", "periodic", "after"},
    ("GuestSpec", "on_script_failure"): {"fail", "warn"},
    ("GuestSpec", "unreachable"): {"fail", "warn"},
    ("JobCreate", "quiesce_fallback"): {"fail", "warn"},
    ("JobSpec", "quiesce_fallback"): {"fail", "warn"},
    ("JobCreate", "transport"): {"host", "vcenter", "direct", "hotadd"},
    ("JobEdit", "transport"): {"host", "vcenter", "direct", "hotadd"},
    ("JobSpec", "transport"): {"host", "vcenter", "direct", "hotadd"},
    ("VmRestore", "transport"): {"host", "vcenter", "hotadd"},
    ("Notifications", "on"): RESULTS,
    ("InventoryVm", "power_state"): {"poweredOn", "poweredOff", "suspended"},
    ("InventoryVm", "last_result"): RESULTS,
    ("InventoryVm", "rpo_status"): {"ok", "breached", "none"},
    ("VCenterPurposeCheck", "purpose"): {"backup", "restore", "hunter"},
    ("InventoryContainer", "kind"): {"Datacenter", "Folder", "ClusterComputeResource",
                                     "ComputeResource", "HostSystem", "ResourcePool"},
}


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = Path(tmp_path_factory.mktemp("home"))
    registry = Registry(Home(home, home / "appliance.sock"))
    app = create_app(ApplianceState(home=registry.home, pid=1, started=datetime.now(UTC),
                                    request_stop=lambda: None, registry=registry,
                                    sessions=SessionManager(registry)))
    yield app.openapi()


def enum_of(schemas: dict[str, Any], prop: dict[str, Any]) -> set[str] | None:
    """The values a property's schema allows (through null-unions, lists and $refs)."""
    if "enum" in prop:
        return set(prop["enum"])
    if "const" in prop:
        return {prop["const"]}
    if "$ref" in prop:
        return enum_of(schemas, schemas[prop["$ref"].rsplit("/", 1)[-1]])
    if "items" in prop:
        return enum_of(schemas, prop["items"])
    for option in prop.get("anyOf", []):
        if option.get("type") != "null":
            return enum_of(schemas, option)
    return None


@pytest.mark.parametrize(("model", "field"), sorted(EXPECTED))
def test_a_wire_enum_is_an_enum_in_the_openapi_document(
        openapi: dict[str, Any], model: str, field: str) -> None:
    schemas = openapi["components"]["schemas"]
    assert model in schemas, sorted(schemas)
    assert enum_of(schemas, schemas[model]["properties"][field]) == EXPECTED[model, field]


def test_a_session_events_name_is_an_enum_in_its_schema() -> None:
    """Events go out as Server-Sent Events, outside the OpenAPI document: their own schema."""
    schema = api.SessionEvent.model_json_schema()
    assert enum_of(schema.get("$defs", {}), schema["properties"]["event"]) == {
        "log", "tasks", "end"}


def test_guest_processing_is_a_typed_model_in_the_openapi_document(
        openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    prop = schemas["Point"]["properties"]["guest_processing"]
    assert {"$ref": "#/components/schemas/GuestProcessing"} in prop["anyOf"]
    assert set(schemas["GuestProcessing"]["properties"]) == {"quiesced", "guest", "scripts",
                                                             "postgres"}


def test_a_value_outside_the_enum_is_refused_both_ways() -> None:
    with pytest.raises(pydantic.ValidationError):
        api.LogLine(time=datetime.now(UTC), level="debug",  # type: ignore[arg-type]
                    message="x")
    with pytest.raises(pydantic.ValidationError):
        api.ScheduleSpec(kind="hourly")  # type: ignore[arg-type]


def test_guest_processing_keeps_what_it_knows_of_a_record_from_another_version() -> None:
    gp = api.GuestProcessing.model_validate(
        {"quiesced": True, "guest": "root@db:22", "from_the_future": 1,
         "postgres": {"target": "127.0.0.1:5432:postgres", "backup_label": "START WAL",
                      "new_field": "x"}})
    assert gp.quiesced is True and gp.postgres is not None
    assert gp.postgres.backup_label == "START WAL" and gp.scripts == []
