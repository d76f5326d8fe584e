"""Fuzz the appliance's API from its own OpenAPI document (schemathesis, fixed seed and
example count) against a scratch home: no server error, no reply that breaks the schema.

vSphere logins are made to fail at once (this test must not reach any host), and the
operations that create folders or files at a path the request names (adding a repository,
restoring a disk) or stop the appliance are left out; everything else is exercised."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
from schemathesis import checks

from appliance.home import Home
from appliance.registry import Registry
from appliance.server import ApplianceState, create_app
from appliance.sessions import SessionManager
from appliance.vsphere import session as vsphere_session
from appliance.vsphere.session import VSphereUnreachableError

_HOME = Path(tempfile.mkdtemp(prefix="vmkeep-fuzz-"))
_REGISTRY = Registry(Home(_HOME, _HOME / "appliance.sock"))
APP = create_app(ApplianceState(home=_REGISTRY.home, pid=1, started=datetime.now(UTC),
                                request_stop=lambda: None, registry=_REGISTRY,
                                sessions=SessionManager(_REGISTRY)))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(
    path_regex=r"^/v1/(shutdown|restore/disk)$").exclude(method="POST", path="/v1/repositories")


@pytest.fixture(scope="module", autouse=True)
def _scratch_home() -> Iterator[None]:
    yield
    _REGISTRY.close()
    _REGISTRY._cat = None  # type: ignore[assignment]  # free DuckDB before the interpreter ends
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_vsphere(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(host: str, port: int, *a: Any, **k: Any) -> Any:
        raise VSphereUnreachableError(f"cannot reach vSphere at {host}:{port} (this test "
                                      "reaches no host)")
    monkeypatch.setattr(vsphere_session, "connect", refuse)


@schema.parametrize()
@seed(20261202)
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_holds_its_schema(case: Any) -> None:
    """What the issue asks: no server error, replies (bodies, status codes, headers, content
    types) as documented, and a 405 that names every method. Whether each request the schema
    allows is also accepted (names, SQL and references are checked further by the appliance)
    is not asked here."""
    case.call_and_validate(checks=[
        checks.not_a_server_error, checks.response_schema_conformance,
        checks.status_code_conformance, checks.content_type_conformance,
        checks.response_headers_conformance, checks.allow_header_conformance,
        checks.unsupported_method])
