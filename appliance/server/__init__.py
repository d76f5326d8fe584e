"""The appliance's HTTP/JSON API: routes that hand requests to services, and nothing else.

``create_app(state)`` builds the ASGI app (FastAPI, so the OpenAPI document comes with it);
the daemon (``appliance.daemon``) serves it on its Unix socket. Every error is a
``VmkeepError`` turned into ``ErrorBody`` JSON with an HTTP status from its family
(``responses``). The app-level pieces are here: the middleware (``guard``: the body's size
limit, a JSON 500 for any bug), the error handlers, the handshake and the shutdown; the
routes of each area are a module of ``routes`` (vCenters, repositories, jobs, sessions, …).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from appliance import api
from appliance.errors import BadInputError, NotFoundError, UsageError, VmkeepError
from appliance.server.guard import MAX_BODY, Guard
from appliance.server.responses import ERRORS, http_status
from appliance.server.routes import (
    alerts,
    config,
    inventory,
    jobs,
    maintenance,
    points,
    query,
    repositories,
    restores,
    sessions,
    vcenters,
)
from appliance.server.state import ApplianceState

__all__ = ["ERRORS", "MAX_BODY", "ApplianceState", "Guard", "create_app", "http_status"]

# Each area's routes, in the order they are added (so the OpenAPI document lists them so).
_AREAS: tuple[Callable[[FastAPI, ApplianceState], None], ...] = (
    vcenters.add_routes, repositories.add_routes, query.add_routes, jobs.add_routes,
    sessions.add_routes, points.add_routes, config.add_routes, alerts.add_routes,
    inventory.add_routes, maintenance.add_routes, restores.add_routes)


def create_app(state: ApplianceState) -> FastAPI:
    app = FastAPI(title="vmkeep appliance", version=api.APPLIANCE_VERSION,
                  description="The local API of the vmkeep appliance (see docs/API.md).")

    @app.middleware("http")
    async def allow_header(request: Request, call_next: Any) -> Any:
        """A 405 names every method of the path (Starlette names only the first route's)."""
        response = await call_next(request)
        if response.status_code == 405:
            scope = {"type": "http", "path": request.url.path, "method": request.method}
            methods = sorted({m for route in app.routes
                              if isinstance(route, APIRoute)
                              and route.matches(scope)[0] is not Match.NONE
                              for m in route.methods or ()})
            response.headers["Allow"] = ", ".join(methods)
        return response

    # Added last, so outermost: around the other middleware too.
    app.add_middleware(Guard)

    @app.exception_handler(VmkeepError)
    async def vmkeep_error(_request: Request, exc: VmkeepError) -> JSONResponse:
        body = api.ErrorBody.of(exc)
        return JSONResponse(body.model_dump(mode="json", exclude_none=True),
                            status_code=http_status(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        """A request that does not fit the API: the same error form as every other."""
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            problems.append(f"{where}: {msg}")
        body = api.ErrorBody(code=BadInputError.code, exit_code=BadInputError.exit_code,
                             message="the request does not fit the API: "
                                     + "; ".join(problems) + "; see docs/API.md")
        return JSONResponse(body.model_dump(exclude_none=True), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = NotFoundError if exc.status_code == 404 else UsageError
        body = api.ErrorBody(code=code.code, exit_code=code.exit_code,
                             message=f"{exc.detail}: see docs/API.md for the API's paths")
        return JSONResponse(body.model_dump(exclude_none=True), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.get(f"{api.PREFIX}/handshake", response_model=api.Handshake,
             responses={503: {"model": api.ErrorBody}})
    def handshake() -> api.Handshake:
        """The API versions this appliance speaks, and which appliance this is."""
        return api.Handshake(
            api_version=api.API_VERSION,
            supported_api_versions=list(api.SUPPORTED_API_VERSIONS),
            appliance_version=api.APPLIANCE_VERSION, pid=state.pid,
            home=str(state.home.root), started=state.started)

    for add_routes in _AREAS:
        add_routes(app, state)

    @app.post(f"{api.PREFIX}/shutdown", response_model=api.Accepted, status_code=202)
    def shutdown() -> api.Accepted:
        """Stop the appliance: running sessions end as "stopped", then the process exits."""
        state.request_stop()
        return api.Accepted(message="the appliance is stopping")

    return app
