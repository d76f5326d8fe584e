"""The client of the appliance's API, used by the CLI and the TUI.

It imports only ``appliance.api`` and ``appliance.errors`` (and httpx with its httpcore), so a
client process loads neither DuckDB, pyVmomi nor paramiko. Every call checks the handshake
once; an error the appliance reports is raised here as the same ``VmkeepError`` family
(``RemoteError`` with the server's code and exit code, or the local class of that code).

Every connection is checked before a byte goes over it (``SocketTrustError`` otherwise):
before the connect, the socket's folder must belong to this process's user and be writable by
nobody else, and the socket file must belong to that user; after it, the process at the other
end of this very connection must run as that user (``SO_PEERCRED``). The appliance checks its
clients the same way, so both ends are the same user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import stat
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpcore
import httpx
from pydantic import BaseModel, ValidationError

from appliance import api
from appliance.errors import (
    ApiVersionError,
    ApplianceError,
    ApplianceNotRunningError,
    RemoteError,
    SocketTrustError,
    VmkeepError,
)

M = TypeVar("M", bound=BaseModel)
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


def _who(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid} (no such user here)"


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


_OWN_FOLDER = ("point VMKEEP_SOCKET (or --home) at a folder of your own that only you can "
               "write")


def owned_by_other(what: str, owner: int, uid: int) -> SocketTrustError:
    """The error for ``what`` (a socket, its folder, its server, a home) of user ``owner``."""
    name = _name(owner)
    return SocketTrustError(
        f"{what} belongs to {_who(owner)}, not to you ({_name(uid)}, uid {uid}): vmkeep "
        "stops here and sends nothing; if that user's appliance is the one you mean, run "
        f"vmkeep as {name} (e.g. `sudo -u {name} vmkeep …`), otherwise {_OWN_FOLDER}")


def check_socket_folder(path: Path, uid: int) -> None:
    """The folder of the appliance's socket ``path`` (as named and where it really is) must
    belong to ``uid`` and be writable by no group or other user: in a shared folder, even a
    sticky one like /tmp, anyone may put a server. A folder that cannot be looked at passes
    (a connect then fails with what is wrong)."""
    real = Path(os.path.realpath(path))
    for folder in dict.fromkeys((path.parent, real.parent)):
        try:
            st = os.stat(folder)
        except OSError:
            continue
        if st.st_uid != uid:
            raise owned_by_other(f"the appliance socket's folder {folder}", st.st_uid, uid)
        if st.st_mode & _OTHERS_WRITE:
            shared = st.st_mode & stat.S_ISVTX  # sticky: shared on purpose, like /tmp
            raise SocketTrustError(
                f"the appliance socket's folder {folder} (owner {_name(st.st_uid)}, uid "
                f"{st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}) may be written by other "
                "users, so any of them could put their own server there: vmkeep stops here "
                f"and sends nothing; {_OWN_FOLDER}"
                + ("" if shared else f" (or `chmod go-w {folder}`)"))


def check_socket_path(path: Path, uid: int) -> None:
    """Before connecting to the appliance's socket ``path``: its folder passes
    ``check_socket_folder`` and the socket file, when there is one, belongs to ``uid``."""
    check_socket_folder(path, uid)
    try:
        st = os.stat(os.path.realpath(path))
    except OSError:
        return
    if st.st_uid != uid:
        raise owned_by_other(f"the appliance socket {path}", st.st_uid, uid)


def check_peer(sock: socket.socket, path: Path, uid: int) -> None:
    """After connecting: the process serving ``sock`` (its ``SO_PEERCRED``, taken when it
    listened) must run as ``uid``."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except OSError as exc:
        raise SocketTrustError(f"cannot tell which user serves the appliance socket {path} "
                               f"({exc.strerror}): vmkeep stops here and sends nothing"
                               ) from None
    pid, peer, _gid = _PEERCRED.unpack(raw)
    if peer != uid:
        raise owned_by_other(f"the process serving the appliance socket {path} (pid {pid})",
                             peer, uid)


class _TrustedBackend(httpcore.SyncBackend):
    """httpcore's network backend with the checks of ``check_socket_path`` before and
    ``check_peer`` after each connect to the socket: the connection they pass is the one that
    carries the requests."""

    def __init__(self, uid: int) -> None:
        self._uid = uid

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None
                            ) -> httpcore.NetworkStream:
        check_socket_path(Path(path), self._uid)
        stream = super().connect_unix_socket(path, timeout, socket_options)
        try:
            check_peer(stream.get_extra_info("socket"), Path(path), self._uid)
        except BaseException:
            stream.close()
            raise
        return stream


class _TrustedTransport(httpx.HTTPTransport):
    """httpx's transport on a Unix socket whose every connection passes the trust checks."""

    def __init__(self, socket_path: str, uid: int) -> None:
        super().__init__(uds=socket_path)
        self._pool = httpcore.ConnectionPool(uds=socket_path,
                                             network_backend=_TrustedBackend(uid))


class ApplianceClient:
    def __init__(self, socket_path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.socket_path = Path(socket_path)
        self.uid = os.geteuid()  # the user the socket, its folder and its server must be
        self._http = httpx.Client(transport=_TrustedTransport(os.fspath(socket_path), self.uid),
                                  base_url="http://appliance", timeout=timeout)
        self._checked = False

    @classmethod
    def from_environment(cls, home: str | None = None, *, timeout: float = 300.0
                         ) -> ApplianceClient:
        """The client of the appliance that ``--home`` / VMKEEP_HOME / VMKEEP_SOCKET name."""
        from appliance.home import resolve

        return cls(resolve(home).socket, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApplianceClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _not_running(self, why: str) -> ApplianceNotRunningError:
        return ApplianceNotRunningError(
            f"no appliance answers on {self.socket_path} ({why}); start it with `vmkeep "
            "appliance start` (and check VMKEEP_HOME / VMKEEP_SOCKET)")

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        with self._errors(method, path):
            return self._http.request(method, api.PREFIX + path, **kw)

    @contextlib.contextmanager
    def _errors(self, method: str, path: str) -> Iterator[None]:
        """httpx's failures as errors that say what to do."""
        try:
            yield
        except httpx.ConnectError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, PermissionError) or "Permission denied" in str(exc):
                raise ApplianceError(
                    f"permission denied on {self.socket_path}: the appliance belongs to "
                    "another user; run as that user") from None
            raise self._not_running(_reason(exc)) from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise self._not_running(f"the connection was closed: {_reason(exc)}") from None
        except httpx.TimeoutException:
            raise ApplianceError(f"the appliance on {self.socket_path} did not answer in "
                                 f"time ({method} {path}); see its log") from None

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        if not self._checked:
            self.handshake()
        resp = self._send(method, path, **kw)
        if resp.status_code >= 400:
            raise _error_of(resp)
        try:
            return resp.json()
        except ValueError:
            raise self._misfit(method, path) from None

    def _misfit(self, method: str, path: str) -> ApplianceError:
        return ApplianceError(f"the appliance sent a reply to {method} {path} that does not "
                              f"fit API v{api.API_VERSION}; is it another version?")

    def _call(self, method: str, path: str, model: type[M], **kw: Any) -> M:
        try:
            return model.model_validate(self._json(method, path, **kw))
        except ValidationError:
            raise self._misfit(method, path) from None

    def _call_list(self, method: str, path: str, model: type[M], **kw: Any) -> list[M]:
        doc = self._json(method, path, **kw)
        try:
            return [model.model_validate(item) for item in doc]
        except (ValidationError, TypeError):
            raise self._misfit(method, path) from None

    # -- calls --------------------------------------------------------------------------------

    def handshake(self) -> api.Handshake:
        """The appliance's versions; raises ApiVersionError when we share none."""
        resp = self._send("GET", "/handshake")
        if resp.status_code == 404:
            raise ApiVersionError(f"the appliance on {self.socket_path} does not speak API "
                                  f"v{api.API_VERSION}; upgrade vmkeep on both sides")
        if resp.status_code >= 400:
            raise _error_of(resp)
        try:
            hs = api.Handshake.model_validate(resp.json())
        except (ValidationError, ValueError):
            raise ApiVersionError(f"the appliance on {self.socket_path} answered the handshake "
                                  "in a form this vmkeep does not know; upgrade vmkeep on "
                                  "both sides") from None
        if api.API_VERSION not in hs.supported_api_versions:
            raise ApiVersionError(
                f"the appliance (version {hs.appliance_version}) speaks API versions "
                f"{hs.supported_api_versions}, this client {api.API_VERSION}; upgrade vmkeep "
                "on both sides")
        self._checked = True
        return hs

    def shutdown(self) -> api.Accepted:
        return self._call("POST", "/shutdown", api.Accepted)

    # vCenters
    def vcenters(self) -> list[api.VCenter]:
        return self._call_list("GET", "/vcenters", api.VCenter)

    def add_vcenter(self, spec: api.VCenterAdd) -> api.VCenter:
        return self._call("POST", "/vcenters", api.VCenter, json=spec.model_dump())

    def edit_vcenter(self, name: str, spec: api.VCenterEdit) -> api.VCenter:
        return self._call("PATCH", f"/vcenters/{_seg(name)}", api.VCenter,
                          json=spec.model_dump(exclude_none=True))

    def test_vcenter(self, name: str) -> api.VCenterTest:
        return self._call("POST", f"/vcenters/{_seg(name)}/test", api.VCenterTest)

    def check_vcenter(self, name: str) -> api.VCenterCheck:
        """Which privileges the stored account lacks, per purpose (reads only)."""
        return self._call("GET", f"/vcenters/{_seg(name)}/check", api.VCenterCheck)

    def remove_vcenter(self, name: str) -> api.Done:
        return self._call("DELETE", f"/vcenters/{_seg(name)}", api.Done)

    # jobs and sessions
    def jobs(self) -> list[api.Job]:
        return self._call_list("GET", "/jobs", api.Job)

    def job(self, name: str) -> api.Job:
        return self._call("GET", f"/jobs/{_seg(name)}", api.Job)

    def check_job(self, name: str) -> api.JobCheck:
        """What job ``name``'s next run will do with each VM and disk (reads only)."""
        return self._call("GET", f"/jobs/{_seg(name)}/check", api.JobCheck)

    def create_job(self, spec: api.JobCreate) -> api.Job:
        return self._call("POST", "/jobs", api.Job, json=spec.model_dump())

    def edit_job(self, name: str, changes: api.JobEdit) -> api.Job:
        return self._call("PATCH", f"/jobs/{_seg(name)}", api.Job,
                          json=changes.model_dump(exclude_unset=True))

    def delete_job(self, name: str) -> api.Done:
        return self._call("DELETE", f"/jobs/{_seg(name)}", api.Done)

    def set_job_enabled(self, name: str, enabled: bool) -> api.Job:
        verb = "enable" if enabled else "disable"
        return self._call("POST", f"/jobs/{_seg(name)}/{verb}", api.Job)

    def run_job(self, name: str, *, full: bool = False) -> api.SessionSummary:
        return self._call("POST", f"/jobs/{_seg(name)}/run", api.SessionSummary,
                          json=api.JobRun(full=full).model_dump())

    def stop_job(self, name: str) -> api.Done:
        return self._call("POST", f"/jobs/{_seg(name)}/stop", api.Done)

    def sessions(self, kind: api.SessionKind | None = None) -> list[api.SessionSummary]:
        """Every session, oldest first (``kind``: only those of that kind)."""
        return self._call_list("GET", "/sessions", api.SessionSummary,
                               params={"kind": kind} if kind else None)

    def session(self, session_id: str, *, wait: float = 0.0) -> api.Session:
        """The session; with ``wait``, first wait up to that long for it to change."""
        return self._call("GET", f"/sessions/{_seg(session_id)}", api.Session,
                          params={"wait": wait} if wait else None)

    def events(self, session_id: str) -> Iterator[api.SessionEvent]:
        """Follow a session by its event stream (``GET /v1/sessions/{id}/events``): its log
        so far, then what happens, up to and including the ``end`` event."""
        if not self._checked:
            self.handshake()
        path = f"/sessions/{_seg(session_id)}/events"
        with self._errors("GET", path), \
                self._http.stream("GET", api.PREFIX + path,
                                  timeout=httpx.Timeout(30.0, read=60.0)) as resp:
            if resp.status_code >= 400:
                resp.read()
                raise _error_of(resp)
            for line in resp.iter_lines():
                if not line.startswith("data: "):
                    continue  # the event name repeats the data's; comments keep alive
                try:
                    event = api.SessionEvent.model_validate_json(line[6:])
                except ValidationError:
                    raise self._misfit("GET", path) from None
                yield event
                if event.event == "end":
                    return
        raise self._not_running(f"session {session_id}'s events ended before its end")

    def points(self, vm: str | None = None) -> list[api.Point]:
        return self._call_list("GET", "/points", api.Point,
                               params={"vm": vm} if vm else None)

    def config_backup(self, repository: str, password: str) -> api.ConfigBackupDone:
        return self._call("POST", "/config/backup", api.ConfigBackupDone,
                          json=api.ConfigBackup(repository=repository,
                                                password=password).model_dump())

    def config_restore(self, path: str, password: str | None) -> api.ConfigRestored:
        return self._call("POST", "/config/restore", api.ConfigRestored,
                          json=api.ConfigRestore(path=path, password=password).model_dump())

    def config_schedule(self) -> api.ConfigScheduleView:
        return self._call("GET", "/settings/config-backup", api.ConfigScheduleView)

    def set_config_schedule(self, value: api.ConfigSchedule) -> api.ConfigScheduleView:
        return self._call("PUT", "/settings/config-backup", api.ConfigScheduleView,
                          json=value.model_dump(mode="json"))

    def notifications(self) -> api.Notifications:
        return self._call("GET", "/settings/notifications", api.Notifications)

    def set_notifications(self, value: api.Notifications) -> api.Notifications:
        return self._call("PUT", "/settings/notifications", api.Notifications,
                          json=value.model_dump())

    def hunter(self, *, vcenter: str | None = None, dry_run: bool = True,
               include_foreign: bool = False) -> list[api.HuntReport]:
        body = api.HuntRequest(vcenter=vcenter, dry_run=dry_run,
                               include_foreign=include_foreign)
        return self._call_list("POST", "/hunter", api.HuntReport, json=body.model_dump())

    def inventory(self, vcenter: str | None = None) -> list[api.InventoryVm]:
        return self._call_list("GET", "/inventory", api.InventoryVm,
                               params={"vcenter": vcenter} if vcenter else None)

    def alerts(self) -> list[api.Alert]:
        return self._call_list("GET", "/alerts", api.Alert)

    def containers(self, vcenter: str | None = None) -> list[api.InventoryContainer]:
        return self._call_list("GET", "/inventory/containers", api.InventoryContainer,
                               params={"vcenter": vcenter} if vcenter else None)

    def move(self, request: api.MoveRequest) -> api.MoveAnswer:
        return self._call("POST", "/move", api.MoveAnswer, json=request.model_dump())

    def verify(self, repository: str, point: str | None = None) -> api.VerifyAnswer:
        return self._call("POST", "/verify", api.VerifyAnswer,
                          json=api.VerifyRequest(repository=repository,
                                                 point=point).model_dump())

    def prune(self, request: api.PruneRequest) -> api.PruneAnswer:
        return self._call("POST", "/prune", api.PruneAnswer, json=request.model_dump())

    def restore_vm(self, request: api.VmRestore) -> api.SessionSummary:
        """Start a VM restore (checked first: its refusals are raised here); its session."""
        return self._call("POST", "/restore/vm", api.SessionSummary, json=request.model_dump())

    def plan_restore_vm(self, request: api.VmRestore) -> api.VmRestorePlan:
        return self._call("POST", "/restore/vm/plan", api.VmRestorePlan,
                          json=request.model_dump())

    def restore_postgres(self, request: api.PostgresRestore) -> api.SessionSummary:
        """Start preparing a PostgreSQL data folder (checked first); its session."""
        return self._call("POST", "/restore/postgres", api.SessionSummary,
                          json=request.model_dump(mode="json"))

    def restore_disk(self, point: str, disk: int, to: str) -> api.SessionSummary:
        """Start a disk restore to a new file (checked first); its session."""
        return self._call("POST", "/restore/disk", api.SessionSummary,
                          json=api.DiskRestore(point=point, disk=disk, to=to).model_dump())

    # catalog
    def query(self, sql: str, *, max_rows: int = 1000, timeout: float = 10.0
              ) -> api.QueryAnswer:
        return self._call("POST", "/catalog/query", api.QueryAnswer,
                          json=api.QueryRequest(sql=sql, max_rows=max_rows,
                                                timeout=timeout).model_dump())

    # repositories
    def repositories(self) -> list[api.Repository]:
        return self._call_list("GET", "/repositories", api.Repository)

    def add_repository(self, name: str, path: str, *, ssh_key: str | None = None,
                       ssh_password: str | None = None,
                       host_key_fingerprint: str | None = None,
                       encryption_password: str | None = None,
                       reconnect_every: float | None = None,
                       reconnect_for: float | None = None) -> api.Repository:
        body = api.RepositoryAdd(name=name, path=path, ssh_key=ssh_key,
                                 ssh_password=ssh_password,
                                 host_key_fingerprint=host_key_fingerprint,
                                 encryption_password=encryption_password,
                                 reconnect_every_seconds=reconnect_every,
                                 reconnect_for_seconds=reconnect_for)
        return self._call("POST", "/repositories", api.Repository, json=body.model_dump())

    def harden_repository(self, name: str, days: int | None,
                          epoch_days: int | None = None) -> api.Repository:
        return self._call("POST", f"/repositories/{_seg(name)}/harden", api.Repository,
                          json=api.RepositoryHarden(days=days,
                                                    epoch_days=epoch_days).model_dump())

    def audit_repository(self, name: str) -> api.AuditAnswer:
        return self._call("GET", f"/repositories/{_seg(name)}/audit", api.AuditAnswer)

    def edit_repository(self, name: str, changes: api.RepositoryEdit) -> api.Repository:
        return self._call("PATCH", f"/repositories/{_seg(name)}", api.Repository,
                          json=changes.model_dump(exclude_none=True))

    def rescan_repository(self, name: str) -> api.Repository:
        return self._call("POST", f"/repositories/{_seg(name)}/rescan", api.Repository)

    def repair_repository_key(self, name: str) -> api.Done:
        return self._call("POST", f"/repositories/{_seg(name)}/repair-key", api.Done)

    def remove_repository(self, name: str) -> api.Done:
        return self._call("DELETE", f"/repositories/{_seg(name)}", api.Done)


def _seg(name: str) -> str:
    """A name as one path segment."""
    return quote(name, safe="")


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _error_of(resp: httpx.Response) -> VmkeepError:
    try:
        body = api.ErrorBody.model_validate(resp.json())
    except (ValidationError, ValueError):
        return ApplianceError(f"the appliance answered HTTP {resp.status_code} without an "
                              "error description; see its log")
    return RemoteError(body.message, code=body.code, exit_code=body.exit_code,
                       detail=body.error_detail())
