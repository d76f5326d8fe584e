"""Routes of the sessions: list them, follow one (waiting for a change, or as Server-Sent
Events)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from appliance import api
from appliance.server.responses import ERRORS
from appliance.server.state import ApplianceState
from appliance.sessions.manager import SessionManager


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


def add_routes(app: FastAPI, state: ApplianceState) -> None:
    mgr = state.sessions
    v = api.PREFIX

    @app.get(f"{v}/sessions", response_model=list[api.SessionSummary], responses=ERRORS)
    def list_sessions(kind: api.SessionKind | None = None) -> list[api.SessionSummary]:
        """Every session, oldest first; ``kind``: only those of that kind (e.g. restore)."""
        return mgr.sessions(kind)

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
