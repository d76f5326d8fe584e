"""Replies of a real appliance, recorded for the fake client (tests/tui/recorded.json).

``record(client, ...)`` calls every reading method of ``ApplianceClient`` the TUI uses and
keeps each reply as JSON, plus the errors the TUI reads (the fingerprint to confirm, what a
restore over the original VM would overwrite, a refused query). ``test_recorded.py`` records
against a real appliance and vcsim and checks the stored file still has the same shape
(``VMKEEP_RECORD=1`` rewrites it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from appliance import api
from appliance.client import ApplianceClient
from appliance.errors import VmkeepError
from tui.screens.catalog import READY

RECORDED = Path(__file__).with_name("recorded.json")


def _dump(value: Any) -> Any:
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _error(call: Any) -> dict[str, Any]:
    try:
        call()
    except VmkeepError as exc:
        detail = api.ErrorBody.of(exc).model_dump(mode="json")["detail"]
        return {"code": exc.code, "message": str(exc), "detail": detail}
    raise AssertionError("the call was expected to be refused")


def record(client: ApplianceClient, *, vcenter: api.VCenterAdd) -> dict[str, Any]:
    points = client.points()
    sessions = client.sessions()
    repo = client.repositories()[0].name
    doc: dict[str, Any] = {
        "handshake": _dump(client.handshake()),
        "vcenters": _dump(client.vcenters()),
        "repositories": _dump(client.repositories()),
        "jobs": _dump(client.jobs()),
        "sessions": _dump(sessions),
        "session": _dump(client.session(sessions[-1].id)),
        "points": _dump(points),
        "inventory": _dump(client.inventory()),
        "alerts": _dump(client.alerts()),
        "containers": _dump(client.containers()),
        "hunter": _dump(client.hunter(dry_run=True)),
        "test_vcenter": _dump(client.test_vcenter(client.vcenters()[0].name)),
        "verify": _dump(client.verify(repo, points[-1].id)),
        "notifications": _dump(client.notifications()),
        "queries": {sql: _dump(client.query(sql))
                    for sql in [q for _, q in READY]},
        "errors": {
            "add_vcenter_unpinned": _error(lambda: client.add_vcenter(vcenter)),
            "restore_vm_original": _error(
                lambda: client.restore_vm(api.VmRestore(point=points[-1].id))),
            "query_write": _error(lambda: client.query("DELETE FROM points")),
        },
    }
    return doc


def load() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(RECORDED.read_text())
    return doc


def shape(value: Any) -> Any:
    """A JSON value's shape: the keys and types, not the values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__
