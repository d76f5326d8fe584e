"""The appliance's HTTP/JSON API: routes that hand requests to services, and nothing else.

``create_app(state)`` builds the ASGI app (FastAPI, so the OpenAPI document comes with it);
the daemon (``appliance.daemon``) serves it on its Unix socket. Every error is a
``VmkeepError`` turned into ``ErrorBody`` JSON with an HTTP status from its family.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appliance import api
from appliance.errors import (
    ApplianceError,
    BadInputError,
    ConflictError,
    InternalError,
    LockedError,
    NotFoundError,
    SshError,
    TooLargeError,
    UsageError,
    VmkeepError,
    VSphereError,
)
from appliance.home import Home
from appliance.registry import Registry
from appliance.sessions import SessionManager
from catalog.models import VCenterRow

log = logging.getLogger(__name__)

# The largest request body the appliance reads: its requests are names, paths, settings, a
# job's scripts and key texts; a catalog query's SQL is capped at 64 KiB on its own.
MAX_BODY = 1 << 20

_STATUS: tuple[tuple[type[VmkeepError], int], ...] = (
    (TooLargeError, 413),
    (NotFoundError, 404),
    (UsageError, 400),
    (BadInputError, 422),
    (LockedError, 409),
    (ConflictError, 409),
    (ApplianceError, 503),
    (VSphereError, 424),  # the vCenter refused or could not be reached: not our fault
    (SshError, 424),  # so did an SSH host
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
    registry: Registry
    sessions: SessionManager
    alerts: Callable[[], list[api.Alert]] = list  # what needs an administrator now


def _vcenter(row: VCenterRow) -> api.VCenter:
    return api.VCenter(name=row.name, host=row.host, port=row.port, user=row.user,
                       fingerprint=row.fingerprint, insecure=row.insecure, added=row.added)


def _sse(event: api.SessionEvent) -> str:
    return f"event: {event.event}\ndata: {event.model_dump_json()}\n\n"


def _events(mgr: SessionManager, s: api.Session) -> Iterator[str]:
    """The Server-Sent Events of one session (runs in a worker thread)."""
    shown, tasks = 0, None
    while True:
        for line in s.log[shown:]:
            yield _sse(api.SessionEvent(event="log", line=line))
        shown = len(s.log)
        if s.tasks != tasks:
            tasks = s.tasks
            yield _sse(api.SessionEvent(event="tasks", tasks=tasks))
        if s.state != "running":
            yield _sse(api.SessionEvent(event="end", summary=api.SessionSummary(
                id=s.id, job=s.job, kind=s.kind, state=s.state, result=s.result,
                started=s.started, ended=s.ended)))
            return
        before = (len(s.log), s.tasks)
        mgr.wait_changed(s.id, 15.0)
        s = mgr.session(s.id)
        if (len(s.log), s.tasks) == before:
            yield ": keep-alive\n\n"


def _json_value(x: Any) -> Any:
    """A catalog value as JSON: numbers and strings as they are, the rest as text (bytes as
    hex)."""
    if x is None or isinstance(x, bool | str):
        return x
    if isinstance(x, int):
        return x if abs(x) < 2**53 else str(x)
    if isinstance(x, float):
        return x if x == x and abs(x) != float("inf") else str(x)
    if isinstance(x, bytes | bytearray | memoryview):
        return bytes(x).hex()
    if isinstance(x, list | tuple):
        return [_json_value(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _json_value(v) for k, v in x.items()}
    if isinstance(x, datetime):
        return x.isoformat()
    return str(x)


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": api.ErrorBody} for status in (400, 404, 409, 413, 422, 424, 500, 503)}


class _BodyTooLarge(Exception):
    """The request body streamed past ``MAX_BODY`` (raised out of ``receive``)."""


async def _send_error(send: Send, status: int, error: VmkeepError, *,
                      close: bool = False) -> None:
    body = api.ErrorBody.of(error).model_dump_json(exclude_none=True).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if close:  # the rest of the request body is never read: the connection cannot go on
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _too_large(size: int | None, limit: int) -> TooLargeError:
    what = f"{size} bytes" if size is not None else f"larger than {limit} bytes"
    return TooLargeError(f"the request body is {what}; the appliance takes at most {limit} "
                         "bytes per request: send less (see docs/API.md)")


class Guard:
    """Pure ASGI middleware around the whole app: a request body larger than ``limit`` is
    answered 413 without being read (by its Content-Length, or once a chunked body streams
    past the limit), and any exception that escapes the app becomes a JSON ``ErrorBody``
    500 (code ``internal``), logged with its traceback: never a plain-text 500."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                size: int | None = int(length)
            except ValueError:
                size = None
            if size is not None and size > self.limit:
                await _send_error(send, 413, _too_large(size, self.limit), close=True)
                return
        received = 0
        started = False  # a response began: nothing more can be said
        refused = False  # we answered 413: what the app still sends is dropped

        async def limited_receive() -> Message:
            nonlocal received, started, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Answered here and now: the app turns errors while reading a body into
                    # its own 400, which is then dropped.
                    if not started:
                        started = refused = True
                        await _send_error(send, 413, _too_large(None, self.limit), close=True)
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            pass  # answered 413 in limited_receive
        except Exception as exc:
            if started:
                raise  # mid-answer: the server logs it and drops the connection
            log.error("unexpected error answering %s %s", scope.get("method"),
                      scope.get("path"), exc_info=exc)
            await _send_error(send, 500, InternalError(
                f"the appliance met an unexpected error ({type(exc).__name__}); this is a bug: "
                "please report it with the appliance's log"))


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

    reg = state.registry
    v = api.PREFIX

    @app.get(f"{v}/vcenters", response_model=list[api.VCenter], responses=ERRORS)
    def list_vcenters() -> list[api.VCenter]:
        return [_vcenter(r) for r in reg.vcenters.all()]

    @app.post(f"{v}/vcenters", response_model=api.VCenter, status_code=201,
              responses=ERRORS)
    def add_vcenter(body: api.VCenterAdd) -> api.VCenter:
        """Log in once (checks the pinned fingerprint; without one and without ``insecure``
        the error shows the server's), then keep the vCenter; the password goes to the
        secret store."""
        return _vcenter(reg.vcenters.add(body.name, body.host, body.port, body.user,
                                        body.password, fingerprint=body.fingerprint,
                                        insecure=body.insecure))

    @app.get(f"{v}/vcenters/{{name}}", response_model=api.VCenter, responses=ERRORS)
    def get_vcenter(name: str) -> api.VCenter:
        return _vcenter(reg.vcenters.get(name))

    @app.patch(f"{v}/vcenters/{{name}}", response_model=api.VCenter, responses=ERRORS)
    def edit_vcenter(name: str, body: api.VCenterEdit) -> api.VCenter:
        return _vcenter(reg.vcenters.edit(name, host=body.host, port=body.port,
                                         user=body.user, password=body.password,
                                         fingerprint=body.fingerprint,
                                         insecure=body.insecure))

    @app.post(f"{v}/vcenters/{{name}}/test", response_model=api.VCenterTest,
              responses=ERRORS)
    def test_vcenter(name: str) -> api.VCenterTest:
        vms = reg.vcenters.test(name)
        return api.VCenterTest(name=name, ok=True, vms=vms,
                               message=f"logged in to {name!r}; it shows {vms} VMs")

    @app.delete(f"{v}/vcenters/{{name}}", response_model=api.Done, responses=ERRORS)
    def remove_vcenter(name: str) -> api.Done:
        reg.vcenters.remove(name)
        return api.Done(message=f"removed vCenter {name!r} and its stored password")

    @app.get(f"{v}/repositories", response_model=list[api.Repository], responses=ERRORS)
    def list_repositories() -> list[api.Repository]:
        return [r.wire() for r in reg.repositories.all()]

    @app.post(f"{v}/repositories", response_model=api.Repository, status_code=201,
              responses=ERRORS)
    def add_repository(body: api.RepositoryAdd) -> api.Repository:
        """Create the folder and a repository in it if missing, or import the repository
        there (its points are indexed)."""
        return reg.repositories.add(
            body.name, body.path, ssh_key=body.ssh_key, ssh_password=body.ssh_password,
            host_key_fingerprint=body.host_key_fingerprint,
            encryption_password=body.encryption_password,
            reconnect_every=body.reconnect_every_seconds,
            reconnect_for=body.reconnect_for_seconds).wire()

    @app.post(f"{v}/repositories/{{name}}/harden", response_model=api.Repository,
              responses=ERRORS)
    def harden_repository(name: str, body: api.RepositoryHarden) -> api.Repository:
        """Make an SSH repository hardened: after each session its files become immutable
        on the host (through the root-owned helper, which must answer first)."""
        return reg.hardening.harden(name, body.days, body.epoch_days).wire()

    @app.get(f"{v}/repositories/{{name}}/audit", response_model=api.AuditAnswer,
             responses=ERRORS)
    def audit_repository(name: str) -> api.AuditAnswer:
        """A hardened repository's lock ledger against what the host says is immutable."""
        lines = reg.hardening.audit(name)
        return api.AuditAnswer(ok=not lines, lines=lines)

    @app.patch(f"{v}/repositories/{{name}}", response_model=api.Repository, responses=ERRORS)
    def edit_repository(name: str, body: api.RepositoryEdit) -> api.Repository:
        """An SSH repository's login or pinned host key, checked by logging in first."""
        return reg.repositories.edit(
            name, ssh_key=body.ssh_key, ssh_password=body.ssh_password,
            host_key_fingerprint=body.host_key_fingerprint).wire()

    @app.get(f"{v}/repositories/{{name}}", response_model=api.Repository, responses=ERRORS)
    def get_repository(name: str) -> api.Repository:
        return reg.repositories.get(name).wire()

    @app.post(f"{v}/repositories/{{name}}/rescan", response_model=api.Repository,
              responses=ERRORS)
    def rescan_repository(name: str) -> api.Repository:
        return reg.repositories.rescan(name).wire()

    @app.post(f"{v}/repositories/{{name}}/repair-key", response_model=api.Done,
              responses=ERRORS)
    def repair_repository_key(name: str) -> api.Done:
        """Write the appliance's copy of the block-id key file back when it is missing or
        damaged (never over an intact key that differs)."""
        return api.Done(message=reg.repositories.repair_key(name))

    @app.delete(f"{v}/repositories/{{name}}", response_model=api.Done, responses=ERRORS)
    def remove_repository(name: str) -> api.Done:
        reg.repositories.remove(name)
        return api.Done(message=f"forgot repository {name!r}; its files stay where they are")

    @app.post(f"{v}/catalog/query", response_model=api.QueryAnswer, responses=ERRORS)
    def catalog_query(body: api.QueryRequest) -> api.QueryAnswer:
        """One read-only SELECT over the catalog, checked by DuckDB's parser; 422 with the
        reason when refused."""
        result = reg.queries.run(body.sql, max_rows=body.max_rows, timeout=body.timeout)
        return api.QueryAnswer(columns=list(result.columns),
                               rows=[[_json_value(x) for x in row] for row in result.rows],
                               truncated=result.truncated, seconds=result.seconds)

    mgr = state.sessions

    def job_view(name: str) -> api.Job:
        row = reg.jobs.get(name)
        return api.Job(spec=row.spec,
                       enabled=row.enabled, created=row.created,
                       last_session=mgr.last_session(name))

    @app.get(f"{v}/jobs", response_model=list[api.Job], responses=ERRORS)
    def list_jobs() -> list[api.Job]:
        return [job_view(j.name) for j in reg.jobs.all()]

    @app.post(f"{v}/jobs", response_model=api.Job, status_code=201, responses=ERRORS)
    def create_job(body: api.JobCreate) -> api.Job:
        """Check the names and resolve the VMs to instance UUIDs (a login to the vCenter)."""
        return job_view(reg.jobs.add(body).name)

    @app.get(f"{v}/jobs/{{name}}", response_model=api.Job, responses=ERRORS)
    def get_job(name: str) -> api.Job:
        return job_view(name)

    @app.patch(f"{v}/jobs/{{name}}", response_model=api.Job, responses=ERRORS)
    def edit_job(name: str, body: api.JobEdit) -> api.Job:
        """Change what the body gives; VMs given are resolved again."""
        return job_view(reg.jobs.edit(name, body).name)

    @app.delete(f"{v}/jobs/{{name}}", response_model=api.Done, responses=ERRORS)
    def delete_job(name: str) -> api.Done:
        reg.jobs.remove(name)
        return api.Done(message=f"deleted job {name!r}; its restore points stay")

    @app.post(f"{v}/jobs/{{name}}/enable", response_model=api.Job, responses=ERRORS)
    def enable_job(name: str) -> api.Job:
        reg.jobs.set_enabled(name, True)
        return job_view(name)

    @app.post(f"{v}/jobs/{{name}}/disable", response_model=api.Job, responses=ERRORS)
    def disable_job(name: str) -> api.Job:
        reg.jobs.set_enabled(name, False)
        return job_view(name)

    @app.post(f"{v}/jobs/{{name}}/run", response_model=api.SessionSummary, status_code=202,
              responses=ERRORS)
    def run_job(name: str, body: api.JobRun) -> api.SessionSummary:
        """Start a session now; follow it with ``GET /v1/sessions/{id}``."""
        return mgr.run_job(name, full=body.full)

    @app.post(f"{v}/jobs/{{name}}/stop", response_model=api.Done, responses=ERRORS)
    def stop_job(name: str) -> api.Done:
        ids = mgr.stop_job(name)
        return api.Done(message=f"stopping session(s) {', '.join(ids)} of job {name!r}")

    @app.get(f"{v}/sessions", response_model=list[api.SessionSummary], responses=ERRORS)
    def list_sessions() -> list[api.SessionSummary]:
        return mgr.sessions()

    @app.get(f"{v}/sessions/{{session_id}}", response_model=api.Session, responses=ERRORS)
    def get_session(session_id: str, wait: float = 0.0) -> api.Session:
        """The session with its tasks and log. ``wait`` (seconds, at most 30): first wait for
        a change of a running session, for clients that follow it."""
        if wait > 0:
            mgr.wait_changed(session_id, min(wait, 30.0))
        return mgr.session(session_id)

    @app.get(f"{v}/sessions/{{session_id}}/events", response_class=StreamingResponse,
             responses={**ERRORS, 200: {"description": "Server-Sent Events, each a "
                                                       "SessionEvent in JSON",
                                        "content": {"text/event-stream": {}}}})
    def session_events(session_id: str) -> StreamingResponse:
        """The session as a stream of Server-Sent Events: its log so far, then each new line,
        the tasks whenever they change, and ``end`` once it is over (then the stream ends).
        A comment line every 15 s of quiet keeps the connection alive."""
        first = mgr.session(session_id)  # a wrong id is a 404 before the stream starts
        return StreamingResponse(_events(mgr, first), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    @app.get(f"{v}/points", response_model=list[api.Point], responses=ERRORS)
    def list_points(vm: str | None = None) -> list[api.Point]:
        """Restore points of every repository, oldest first (``vm``: only that VM's), with
        the guest processing of their backups."""
        guest = reg.restores.guest_processing()
        return [api.Point(id=p.point_id, vm=p.object_name, created=p.created,
                          kind=cast("api.PointKind", p.kind),  # the manifest's; checked here
                          bytes_read=p.bytes_read, bytes_stored=p.bytes_stored,
                          repository=repo, parent=p.parent_id, reason=p.reason,
                          disks=[api.PointDisk(index=d.disk_index, label=d.label, size=d.size,
                                               block_size=d.block_size, change_id=d.change_id)
                                 for d in disks],
                          guest_processing=api.GuestProcessing.model_validate(
                              guest[p.point_id]) if p.point_id in guest else None)
                for repo, p, disks in reg.restores.points(vm)]

    @app.post(f"{v}/config/backup", response_model=api.ConfigBackupDone, responses=ERRORS)
    def config_backup(body: api.ConfigBackup) -> api.ConfigBackupDone:
        """Seal vCenters, repositories, jobs, settings and secrets with the password into
        the repository (``appliance-config/``)."""
        return api.ConfigBackupDone(path=str(reg.config.backup(body.repository,
                                                                body.password)))

    @app.post(f"{v}/config/restore", response_model=api.ConfigRestored, responses=ERRORS)
    def config_restore(body: api.ConfigRestore) -> api.ConfigRestored:
        """Bring a configuration backup back into this fresh appliance."""
        return reg.config.restore(body.path, body.password)

    @app.get(f"{v}/settings/config-backup", response_model=api.ConfigScheduleView,
             responses=ERRORS)
    def get_config_schedule() -> api.ConfigScheduleView:
        """The configuration backup's schedule and how its last scheduled run went."""
        return reg.config.view()

    @app.put(f"{v}/settings/config-backup", response_model=api.ConfigScheduleView,
             responses=ERRORS)
    def put_config_schedule(body: api.ConfigSchedule) -> api.ConfigScheduleView:
        """Back the configuration up on a schedule (``schedule.kind`` none: never)."""
        return reg.config.set_schedule(body)

    @app.get(f"{v}/settings/notifications", response_model=api.Notifications,
             responses=ERRORS)
    def get_notifications() -> api.Notifications:
        return reg.config.notifications()

    @app.put(f"{v}/settings/notifications", response_model=api.Notifications,
             responses=ERRORS)
    def put_notifications(body: api.Notifications) -> api.Notifications:
        """E-mail (SMTP) and webhook for sessions that end with the results in ``on``."""
        return reg.config.set_notifications(body)

    @app.get(f"{v}/alerts", response_model=list[api.Alert], responses=ERRORS)
    def alerts() -> list[api.Alert]:
        """What needs an administrator as of the last look (every ``alert_every_seconds``):
        VMs past their job's RPO, Snapshot Hunter findings, repositories short of space."""
        return state.alerts()

    @app.post(f"{v}/hunter", response_model=list[api.HuntReport], responses=ERRORS)
    def hunter(body: api.HuntRequest) -> list[api.HuntReport]:
        """Snapshot Hunter on one vCenter or all: leftover vmkeep snapshots first; with
        ``dry_run`` (the default) nothing is changed."""
        return [api.HuntReport(vcenter=name, lines=lines)
                for name, lines in reg.vcenters.hunt(vcenter=body.vcenter, dry_run=body.dry_run,
                                            include_foreign=body.include_foreign)]

    @app.get(f"{v}/inventory", response_model=list[api.InventoryVm], responses=ERRORS)
    def inventory(vcenter: str | None = None) -> list[api.InventoryVm]:
        """Every VM of one vCenter or all, with its state, the jobs that protect it and its
        newest restore point."""
        return reg.vcenters.inventory(vcenter)

    @app.get(f"{v}/inventory/containers", response_model=list[api.InventoryContainer],
             responses=ERRORS)
    def containers(vcenter: str | None = None) -> list[api.InventoryContainer]:
        """Every datacenter, folder, cluster, host and resource pool of one vCenter or all,
        by inventory path, with the VMs directly in each: what a job's ``containers`` name."""
        return reg.vcenters.containers(vcenter)

    @app.post(f"{v}/move", response_model=api.MoveAnswer, responses=ERRORS)
    def move(body: api.MoveRequest) -> api.MoveAnswer:
        """Move every point of a job (or one VM) to another repository: copy, verify, switch
        the job, then remove at the source (unless immutable there)."""
        return reg.maintenance.move(body)

    @app.post(f"{v}/verify", response_model=api.VerifyAnswer, responses=ERRORS)
    def verify(body: api.VerifyRequest) -> api.VerifyAnswer:
        """Health check of a repository, or of one point."""
        return reg.maintenance.verify(body.repository, body.point)

    @app.post(f"{v}/prune", response_model=api.PruneAnswer, responses=ERRORS)
    def prune(body: api.PruneRequest) -> api.PruneAnswer:
        """Retention over a whole repository (plan; with ``dry_run`` nothing changes)."""
        return reg.maintenance.prune(body)

    @app.post(f"{v}/restore/vm", response_model=api.Done, responses=ERRORS)
    def restore_vm(body: api.VmRestore) -> api.Done:
        """An entire VM: to a new VM (``name``) or over the original (``confirm``)."""
        return api.Done(message=reg.restores.vm(body))

    @app.post(f"{v}/restore/disk", response_model=api.Done, responses=ERRORS)
    def restore_disk(body: api.DiskRestore) -> api.Done:
        """Write a disk of a point to a new raw image file on the appliance's machine."""
        size = reg.restores.disk(body.point, body.disk, body.to)
        return api.Done(message=f"restored disk {body.disk} of {body.point} to {body.to} "
                                f"({size} bytes)")

    @app.post(f"{v}/restore/postgres", response_model=api.Done, responses=ERRORS)
    def restore_postgres(body: api.PostgresRestore) -> api.Done:
        """Prepare a restored PostgreSQL data folder for point-in-time recovery: the backup
        label kept with the point, the WAL of the VM's log backup job, the settings."""
        return api.Done(message=reg.restores.postgres(body.point, body.data_dir, body.until))

    @app.post(f"{api.PREFIX}/shutdown", response_model=api.Accepted, status_code=202)
    def shutdown() -> api.Accepted:
        """Stop the appliance: running sessions end as "stopped", then the process exits."""
        state.request_stop()
        return api.Accepted(message="the appliance is stopping")

    return app
