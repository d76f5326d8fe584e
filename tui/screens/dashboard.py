"""The home screen: jobs, running sessions with a progress bar per VM, repositories, alerts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Label, Static

from appliance import api
from tui import format as fmt
from tui.base import VmkeepScreen, fetch

NEWEST_PER_VM = "SELECT vm, max(newest) AS newest FROM points_per_vm GROUP BY vm ORDER BY vm"
DEDUP_PER_REPO = ("SELECT repository, sum(bytes_read) AS bytes_read, sum(bytes_stored) AS "
                  "bytes_stored FROM stored_bytes_per_vm GROUP BY repository "
                  "ORDER BY repository")
DEFAULT_RPO_HOURS = 24.0
LOW_SPACE = 0.10  # alert when less than this share of a repository's filesystem is free


@dataclass
class Space:
    free: int
    total: int


@dataclass
class Overview:
    jobs: list[api.Job]
    sessions: list[api.SessionSummary]
    running: list[api.Session]
    repositories: list[api.Repository]
    dedup: dict[str, float] = field(default_factory=dict)
    space: dict[str, Space] = field(default_factory=dict)
    newest: dict[str, datetime] = field(default_factory=dict)


class OverviewLoaded(Message):
    def __init__(self, overview: Overview) -> None:
        super().__init__()
        self.overview = overview

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, OverviewLoaded)


class HunterLoaded(Message):
    def __init__(self, findings: list[str]) -> None:
        super().__init__()
        self.findings = findings


def free_space(location: str) -> Space | None:
    """The free space of a local repository's filesystem (the TUI runs on the appliance's
    machine, as the socket does)."""
    try:
        st = os.statvfs(location)
    except OSError:
        return None
    return Space(st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def task_line(t: api.Task) -> str:
    """One VM of a running session: bar, percentage, bytes, rate, ETA, bottleneck stage."""
    pct = fmt.percent(t.bytes_done, t.bytes_total)
    if t.state != "running":
        return f"  {t.name[:14]:<14} {fmt.result(t.state, t.result)}"
    return (f"  {t.name[:14]:<14} {fmt.bar(t.bytes_done, t.bytes_total, 10)} {pct:3d}% "
            f"{fmt.sizes(t.bytes_done, t.bytes_total)} {fmt.rate(t.rate)} "
            f"ETA {fmt.duration(t.eta_seconds)} {t.stage or ''}").rstrip()


def running_text(running: list[api.Session], max_lines: int = 4) -> str:
    """Each running session and its VMs, busiest first; at most ``max_lines`` VM lines in all
    (the session view shows every VM)."""
    if not running:
        return "  no session running"
    lines = []
    left = max_lines
    order = {"running": 0, "waiting": 1}
    for s in running:
        lines.append(f" ▶ {s.job} ({s.kind}) since {fmt.when(s.started)}")
        tasks = sorted(s.tasks, key=lambda t: order.get(t.state, 2))
        shown = tasks[:max(1, left)]
        lines.extend(task_line(t) for t in shown)
        left -= len(shown)
        if len(tasks) > len(shown):
            done = sum(t.state not in ("running", "waiting") for t in tasks)
            lines.append(f"  … {len(tasks) - len(shown)} more VMs ({done}/{len(tasks)} "
                         "done; o on the job shows all)")
    return "\n".join(lines)


def alerts(o: Overview, hunter: list[str], verified: dict[str, tuple[bool, str]],
           now: datetime) -> list[str]:
    """What needs the administrator: failed or warning sessions, VMs without a recent good
    point, leftover snapshots, repositories running out of space, failed health checks."""
    out: list[str] = []
    for job in o.jobs:
        last = job.last_session
        if last is not None and last.result in ("failed", "warning"):
            sign = "✗" if last.result == "failed" else "⚠"
            out.append(f"{sign} job {job.spec.name}: last session {last.result} "
                       f"({fmt.when(last.started)})")
    for job in o.jobs:
        if not job.enabled:
            continue
        rpo = timedelta(hours=job.spec.rpo_hours or DEFAULT_RPO_HOURS)
        for vm in job.spec.vms:
            newest = o.newest.get(vm.name)
            if newest is None:
                out.append(f"⚠ VM {vm.name} ({job.spec.name}) has no restore point")
            elif now - _aware(newest) > rpo:
                out.append(f"⚠ VM {vm.name} ({job.spec.name}): no point since "
                           f"{fmt.when(newest)}")
    out.extend(f"⚠ hunter: {line}" for line in hunter)
    for name, sp in sorted(o.space.items()):
        if sp.total and sp.free / sp.total < LOW_SPACE:
            out.append(f"✗ repository {name} is running out of space: {fmt.size(sp.free)} free")
    for point, (ok, summary) in sorted(verified.items()):
        if not ok:
            out.append(f"✗ health check of {point} failed: {summary}")
    return out


class DashboardScreen(VmkeepScreen):
    """Jobs, what runs now, repositories and alerts, refreshed every two seconds."""

    MODE = "dashboard"
    REFRESH_EVERY = 2.0
    HUNT_EVERY = 300.0
    BINDINGS = [  # noqa: RUF012
        Binding("o", "open_session", "Open session"),
        Binding("f5", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.overview: Overview | None = None
        self.hunter_findings: list[str] = []

    def body(self) -> ComposeResult:
        with VerticalScroll(id="dash"):
            yield Label("Jobs", classes="panel-title")
            yield DataTable(id="jobs", cursor_type="row", zebra_stripes=True)
            yield Label("Repositories", classes="panel-title")
            yield DataTable(id="repos", cursor_type="row")
            yield Label("Running", classes="panel-title")
            yield Static("  loading…", id="running", markup=False)
            yield Label("Alerts", classes="panel-title")
            yield Static("  loading…", id="alerts", markup=False)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#jobs", DataTable).add_columns(
            "Job", "Status", "Last result", "Last run", "Next run")
        self.query_one("#repos", DataTable).add_columns("Repository", "Used", "Free", "Dedup",
                                                       "Points")
        self.set_interval(self.HUNT_EVERY, self.hunt)
        self.hunt()

    def load_data(self) -> None:
        c = self.client
        jobs = fetch(self, "jobs", c.jobs)
        if jobs is None:
            return
        sessions = fetch(self, "sessions", c.sessions) or []
        running = []
        for s in sessions:
            if s.state == "running":
                detail = fetch(self, "session", lambda s=s: c.session(s.id))  # type: ignore[misc]
                if detail is not None:
                    running.append(detail)
        repos = fetch(self, "repositories", c.repositories) or []
        o = Overview(jobs, sessions, running, repos)
        for r in repos:
            sp = free_space(r.location)
            if sp is not None:
                o.space[r.name] = sp
        answer = fetch(self, "dedup", lambda: c.query(DEDUP_PER_REPO))
        for row in answer.rows if answer else []:
            name, read, stored = row[0], float(row[1] or 0), float(row[2] or 0)
            if stored:
                o.dedup[str(name)] = read / stored
        answer = fetch(self, "newest points", lambda: c.query(NEWEST_PER_VM, max_rows=100000))
        for row in answer.rows if answer else []:
            if row[1]:
                o.newest[str(row[0])] = datetime.fromisoformat(str(row[1]))
        self.post_message(OverviewLoaded(o))

    def hunt(self) -> None:
        def work() -> None:
            reports = fetch(self, "snapshot hunter", lambda: self.client.hunter(dry_run=True))
            if reports is not None:
                self.post_message(HunterLoaded(
                    [f"{r.vcenter}: {line}" for r in reports for line in r.lines[1:]]))

        self.run_worker(work, thread=True, exclusive=True, group="hunt", exit_on_error=False)

    def on_hunter_loaded(self, message: HunterLoaded) -> None:
        self.hunter_findings = message.findings
        if self.overview is not None:
            self.show(self.overview)

    def on_overview_loaded(self, message: OverviewLoaded) -> None:
        self.overview = message.overview
        self.show(message.overview)

    def show(self, o: Overview) -> None:
        table = self.query_one("#jobs", DataTable)
        cursor = table.cursor_row
        table.clear()
        running_jobs = {s.job for s in o.running}
        for job in o.jobs:
            last = job.last_session
            status = ("▶ running" if job.spec.name in running_jobs
                      else "enabled" if job.enabled else "disabled")
            table.add_row(*fmt.plain(job.spec.name, status,
                          fmt.result(last.state, last.result) if last else "—",
                          fmt.when(last.started) if last else "never",
                          fmt.schedule(job.spec.schedule) if job.enabled else "—"),
                          key=job.spec.name)
        if o.jobs:
            table.move_cursor(row=min(cursor, len(o.jobs) - 1))
        else:
            table.add_row(*fmt.plain("no job yet", "press 2, then n", "", "", ""))
        self.query_one("#running", Static).update(running_text(o.running))
        repos = self.query_one("#repos", DataTable)
        repos.clear()
        if not o.repositories:
            repos.add_row(*fmt.plain("no repository yet", "press 7, then a", "", "", ""))
        for r in o.repositories:
            sp = o.space.get(r.name)
            dedup = o.dedup.get(r.name)
            repos.add_row(*fmt.plain(r.name, fmt.size(r.stored_bytes),
                                     fmt.size(sp.free) if sp else "—",
                                     f"{dedup:.2f}×" if dedup else "—", str(r.points)),
                          key=r.name)
        found = alerts(o, self.hunter_findings, self.vmkeep.verified, self.vmkeep.clock())
        self.query_one("#alerts", Static).update(
            "\n".join(f"  {a}" for a in found) if found else "  ✓ nothing needs action")

    def action_refresh(self) -> None:
        self.reload()
        self.hunt()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "jobs":
            self.action_open_session()

    def action_open_session(self) -> None:
        if self.overview is None or not self.overview.jobs:
            return
        table = self.query_one("#jobs", DataTable)
        job = self.overview.jobs[table.cursor_row]
        running = [s for s in self.overview.running if s.job == job.spec.name]
        sid = running[0].id if running else (job.last_session.id if job.last_session else None)
        if sid:
            self.vmkeep.action_open_session(sid)
