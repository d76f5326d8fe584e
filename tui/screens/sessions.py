"""Sessions: the history (every run of a job and every restore, newest first, with its kind)
and one session's live view (a restore's: its disks' progress, then what was restored or
why it failed)."""

from __future__ import annotations

from collections.abc import Callable

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Label, RichLog, Static

from appliance import api
from appliance.api import shown
from appliance.errors import VmkeepError
from tui import empty
from tui import format as fmt
from tui.base import VmkeepScreen, fetch
from tui.filter import KEY, key_at, narrow, remember


class SessionsLoaded(Message):
    def __init__(self, sessions: list[api.SessionSummary]) -> None:
        super().__init__()
        self.sessions = sessions


class SessionsScreen(VmkeepScreen):
    """Every session, newest first; enter opens one."""

    MODE = "sessions"
    REFRESH_EVERY = 3.0
    BINDINGS = [Binding("o", "open", "Open session"), KEY]  # noqa: RUF012
    FILTERS = {"sessions": "show_sessions"}  # noqa: RUF012

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[api.SessionSummary] = []

    def body(self) -> ComposeResult:
        yield Label("Sessions (newest first)", classes="panel-title")
        yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(DataTable).add_columns("Started (UTC)", "Job", "Kind", "Result",
                                              "Ended (UTC)")

    def load_data(self) -> None:
        sessions = fetch(self, "sessions", self.client.sessions)
        if sessions is not None:
            self.post_message(SessionsLoaded(sessions[::-1]))

    def on_sessions_loaded(self, message: SessionsLoaded) -> None:
        self.sessions = message.sessions
        self.show_sessions()

    def show_sessions(self) -> None:
        table = self.query_one(DataTable)
        mark = remember(table)
        table.clear()
        for s in self.sessions:
            table.add_row(*fmt.plain(fmt.when(s.started, zone=False), s.job, s.kind,
                                     fmt.result(s.state, s.result),
                          fmt.when(s.ended, zone=False) if s.ended else "—"), key=s.id)
        narrow(table, mark)
        empty.title(self.query_one(".panel-title", Label), "Sessions (newest first)",
                    None if self.sessions else empty.NO_SESSION)

    def on_data_table_row_selected(self, _: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        key = key_at(self.query_one(DataTable))
        if key is not None:
            self.vmkeep.action_open_session(key)


class SessionUpdated(Message):
    def __init__(self, session: api.Session) -> None:
        super().__init__()
        self.session = session

    def can_replace(self, message: Message) -> bool:
        """A newer view of the session replaces one not shown yet (progress coalesces)."""
        return isinstance(message, SessionUpdated)


def log_line(line: api.LogLine) -> str:
    """A log line; warnings and errors stand out by sign and colour."""
    text = escape(f"{line.time.strftime('%H:%M:%S')} {shown(line.message)}")
    if line.level == "error":
        return f"[bold red]✗ {text}[/]"
    if line.level == "warning":
        return f"[bold yellow]⚠ {text}[/]"
    return f"  {text}"


def ordered_tasks(tasks: list[api.Task]) -> list[api.Task]:
    """Each VM's task followed by its disks' tasks (their stage is the bottleneck)."""
    vms = [t for t in tasks if t.disk is None]
    out: list[api.Task] = []
    for vm in vms:
        out.append(vm)
        out.extend(sorted((t for t in tasks if t.disk is not None and t.vm == vm.name),
                          key=lambda t: t.disk or 0))
    out.extend(t for t in tasks if t.disk is not None and t.vm not in {v.name for v in vms})
    return out


def stats_text(st: api.SessionStats) -> str:
    """A finished backup session's summary in three lines of at most 80 columns."""
    def ratio(r: float | None) -> str:
        return "—" if r is None else f"{r:.1f}x"

    shares = " · ".join(f"{x.stage.split()[0].removesuffix('/compression')} "
                        f"{100 * x.share:.0f}%" for x in st.stages)
    return (f"Took {fmt.duration(st.duration_seconds)} at {fmt.rate(st.rate)} · "
            f"processed {fmt.size(st.processed)} · read {fmt.size(st.read)}\n"
            f"transferred {fmt.size(st.transferred)} · dedup {ratio(st.dedup_ratio)} · "
            f"compression {ratio(st.compression_ratio)}\n"
            f"Bottleneck: {st.bottleneck or '—'} ({shares})")


def outcome_text(o: api.SessionOutcome) -> str:
    """A finished restore's outcome: what was restored, or why it failed."""
    return f"✗ {shown(o.message)}" if o.error is not None else f"✓ {shown(o.message)}"


def task_percent(state: str, result: str | None, done: int, total: int) -> int:
    """How far a session or task is: a finished success is 100 % even with nothing to read
    (an incremental run without changes)."""
    if state != "running" and result in ("success", "warning"):
        return 100
    return fmt.percent(done, total)


def session_percent(s: api.Session) -> int:
    """How far a session is: the mean of its VMs' percentages, so VMs not started yet (whose
    size is not known) count as 0 % rather than not at all."""
    if s.state != "running" and s.result in ("success", "warning"):
        return 100
    vms = [task_percent(t.state, t.result, t.bytes_done, t.bytes_total)
           for t in s.tasks if t.disk is None]
    return sum(vms) // len(vms) if vms else 0


class SessionScreen(VmkeepScreen):
    """One session: per-VM progress updating live and the log tail following it. A running
    session is followed by long polls (``wait``); a finished one is read once."""

    BINDINGS = [  # noqa: RUF012
        Binding("escape,backspace", "back", "Back"),
        Binding("s", "stop", "Stop job"),
    ]
    WAIT = 5.0

    def __init__(self, session_id: str) -> None:
        super().__init__()
        self.session_id = session_id
        self.session: api.Session | None = None
        self.logged = 0
        self.seen_percentages: list[int] = []  # what the progress showed, in order

    def body(self) -> ComposeResult:
        yield Static(f"Session {self.session_id}: loading…", id="session-head", markup=False)
        yield Static("", id="session-stats", markup=False)
        yield DataTable(id="tasks", cursor_type="row")
        yield Label("Log", classes="panel-title")
        yield RichLog(id="log", markup=True, wrap=True, auto_scroll=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#tasks", DataTable).add_columns(
            "VM", "Progress", "Done", "Rate", "ETA", "Stage", "Result")

    def on_screen_resume(self) -> None:
        self.show_connection()
        self.reload()

    def load_data(self) -> None:
        """Follow the session until it ends (or the screen goes): by its event stream, or by
        long polls when the stream is not to be had."""
        from textual.worker import get_current_worker

        worker = get_current_worker()
        s = fetch(self, "session", lambda: self.client.session(self.session_id))
        if s is None or worker.is_cancelled:
            return
        self.post_message(SessionUpdated(s))
        if s.state != "running":
            return
        if self.follow_events(s, lambda: worker.is_cancelled) or worker.is_cancelled:
            return
        wait = self.WAIT
        while not worker.is_cancelled:
            s = fetch(self, "session",
                      lambda w=wait: self.client.session(self.session_id, wait=w))  # type: ignore[misc]
            if s is None or worker.is_cancelled:
                return
            self.post_message(SessionUpdated(s))
            if s.state != "running":
                return
            wait = self.WAIT

    def follow_events(self, s: api.Session, cancelled: Callable[[], bool]) -> bool:
        """Follow ``s`` by ``GET /v1/sessions/{id}/events`` (a late joiner gets the log so far
        first). True when it followed to the end; False: go on with long polls."""
        log: list[api.LogLine] = []
        tasks = s.tasks
        try:
            for event in self.client.events(self.session_id):
                if cancelled():
                    return True
                if event.event == "log" and event.line is not None:
                    log.append(event.line)
                elif event.event == "tasks" and event.tasks is not None:
                    tasks = event.tasks
                elif event.event == "end":
                    break
                self.post_message(SessionUpdated(s.model_copy(update={
                    "tasks": tasks, "log": log if len(log) >= len(s.log) else s.log})))
        except VmkeepError:
            return False  # the stream broke off: long polls take over (and report)
        except Exception:
            return False
        final = fetch(self, "session", lambda: self.client.session(self.session_id))
        if final is not None:
            self.post_message(SessionUpdated(final))
        return True

    def on_session_updated(self, message: SessionUpdated) -> None:
        s = self.session = message.session
        pct = session_percent(s)
        if s.state == "running" and (not self.seen_percentages
                                     or self.seen_percentages[-1] != pct):
            self.seen_percentages.append(pct)
        self.query_one("#session-head", Static).update(
            f"{s.job} · {s.kind} · {fmt.result(s.state, s.result)} · {pct}% · "
            f"{fmt.span(s.started, s.ended)}\nsession {s.id}")
        stats = self.query_one("#session-stats", Static)
        was_shown = stats.display
        stats.display = s.stats is not None or s.outcome is not None
        if s.stats is not None:
            stats.update(stats_text(s.stats))
        elif s.outcome is not None:
            stats.update(outcome_text(s.outcome))
        table = self.query_one("#tasks", DataTable)
        table.clear()
        for t in ordered_tasks(s.tasks):
            pct = task_percent(t.state, t.result, t.bytes_done, t.bytes_total)
            name = t.name if t.disk is None else f" └ disk {t.disk}"
            table.add_row(*fmt.plain(name, f"{fmt.bar(pct, 100, 10)} "
                          f"{pct:3d}%",
                          fmt.sizes(t.bytes_done, t.bytes_total),
                          fmt.rate(t.rate), fmt.duration(t.eta_seconds), t.stage or "—",
                          fmt.result(t.state, t.result)), key=t.name)
        log = self.query_one(RichLog)
        if len(s.log) < self.logged:
            log.clear()
            self.logged = 0
        width = log.scrollable_content_region.width or None  # wrapped to the log's width
        for line in s.log[self.logged:]:
            log.write(log_line(line), width=width)
        self.logged = len(s.log)
        if stats.display != was_shown:
            # The summary appearing makes the log shorter after its writes scrolled it (a
            # write scrolls by itself): the last line stays in view once the layout is done.
            self.call_after_refresh(log.scroll_end, animate=False)

    def on_resize(self) -> None:
        """Wrap the log again to its new width (written lines keep the width they had)."""
        if self.session is not None and self.logged:
            self.query_one(RichLog).clear()
            self.logged = 0
            self.post_message(SessionUpdated(self.session))

    def action_back(self) -> None:
        self.dismiss()

    def action_stop(self) -> None:
        if self.session is not None and self.session.kind == "restore":
            self.notify("a restore runs to its end: it cannot be stopped")
            return
        if self.session is not None and self.session.state == "running":
            job = self.session.job
            self.act("stop", lambda: self.client.stop_job(job), then=lambda: None)
