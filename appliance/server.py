"""The appliance's HTTP/JSON API: routes that hand requests to services, and nothing else.

``create_app(state)`` builds the ASGI app (FastAPI, so the OpenAPI document comes with it);
the daemon (``appliance.daemon``) serves it on its Unix socket. Every error is a
``VmkeepError`` turned into ``ErrorBody`` JSON with an HTTP status from its family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from appliance import api
from appliance.errors import (
    ApplianceError,
    BadInputError,
    LockedError,
    NotFoundError,
    UsageError,
    VmkeepError,
)
from appliance.home import Home

_STATUS: tuple[tuple[type[VmkeepError], int], ...] = (
    (NotFoundError, 404),
    (UsageError, 400),
    (BadInputError, 422),
    (LockedError, 409),
    (ApplianceError, 503),
)


def http_status(exc: VmkeepError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


@dataclass(slots=True)
class ApplianceState:
    """What the routes need of the running appliance."""

    home: Home
    pid: int
    started: datetime
    request_stop: Callable[[], None]


def create_app(state: ApplianceState) -> FastAPI:
    app = FastAPI(title="vmkeep appliance", version=api.APPLIANCE_VERSION,
                  description="The local API of the vmkeep appliance (see docs/API.md).")

    @app.exception_handler(VmkeepError)
    async def vmkeep_error(_request: Request, exc: VmkeepError) -> JSONResponse:
        body = api.ErrorBody(code=exc.code, message=str(exc), exit_code=exc.exit_code)
        return JSONResponse(body.model_dump(), status_code=http_status(exc))

    @app.get(f"{api.PREFIX}/handshake", response_model=api.Handshake,
             responses={503: {"model": api.ErrorBody}})
    def handshake() -> api.Handshake:
        """The API versions this appliance speaks, and which appliance this is."""
        return api.Handshake(
            api_version=api.API_VERSION,
            supported_api_versions=list(api.SUPPORTED_API_VERSIONS),
            appliance_version=api.APPLIANCE_VERSION, pid=state.pid,
            home=str(state.home.root), started=state.started)

    @app.post(f"{api.PREFIX}/shutdown", response_model=api.Accepted, status_code=202)
    def shutdown() -> api.Accepted:
        """Stop the appliance: running sessions end as "stopped", then the process exits."""
        state.request_stop()
        return api.Accepted(message="the appliance is stopping")

    return app
