"""The home screen: jobs, running sessions with a progress bar per VM, repositories, alerts."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Label, Static

from appliance import api
from appliance.api import shown
from tui import format as fmt
from tui.base import VmkeepScreen, fetch
from tui.screens.sessions import session_percent


@dataclass
class Overview:
    jobs: list[api.Job]
    sessions: list[api.SessionSummary]
    running: list[api.Session]
    repositories: list[api.Repository]
    alerts: list[api.Alert] = field(default_factory=list)


class OverviewLoaded(Message):
    def __init__(self, overview: Overview) -> None:
        super().__init__()
        self.overview = overview

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, OverviewLoaded)


def vm_tasks(s: api.Session) -> list[tuple[api.Task, str | None]]:
    """Each VM's task with the bottleneck of its disk being read (a VM's own stage is
    snapshot / reading; its disks' tasks name the pipeline's slowest stage)."""
    out = []
    for t in s.tasks:
        if t.disk is not None:
            continue
        disks = [d for d in s.tasks if d.disk is not None and d.vm == t.name
                 and d.state == "running" and d.stage]
        out.append((t, disks[0].stage if disks else t.stage))
    return out


def task_line(t: api.Task, stage: str | None = None) -> str:
    """One VM of a running session: bar, percentage, bytes, rate, ETA, bottleneck stage."""
    pct = fmt.percent(t.bytes_done, t.bytes_total)
    name = shown(t.name)[:14]  # a VM's name from vCenter: escaped
    if t.state != "running":
        return f"  {name:<14} {fmt.result(t.state, t.result)}"
    return (f"  {name:<14} {fmt.bar(t.bytes_done, t.bytes_total, 10)} {pct:3d}% "
            f"{fmt.sizes(t.bytes_done, t.bytes_total)} {fmt.rate(t.rate)} "
            f"ETA {fmt.duration(t.eta_seconds)} {stage or t.stage or ''}").rstrip()


def running_text(running: list[api.Session], max_lines: int = 4) -> str:
    """Each running session with its percentage (the mean of its VMs', as the session view
    shows it) and its VMs, busiest first; at most ``max_lines`` VM lines in all (the session
    view shows every VM and disk)."""
    if not running:
        return "  no session running"
    lines = []
    left = max_lines
    order = {"running": 0, "waiting": 1}
    for s in running:
        lines.append(f" ▶ {shown(s.job)} ({s.kind}) {session_percent(s)}% since "
                     f"{fmt.when(s.started)}")
        tasks = sorted(vm_tasks(s), key=lambda ts: order.get(ts[0].state, 2))
        visible = tasks[:max(1, left)]
        lines.extend(task_line(t, stage) for t, stage in visible)
        left -= len(visible)
        if len(tasks) > len(visible):
            done = sum(t.state not in ("running", "waiting") for t, _ in tasks)
            lines.append(f"  … {len(tasks) - len(visible)} more VMs ({done}/{len(tasks)} "
                         "done; o on the job shows all)")
    return "\n".join(lines)


def alerts(o: Overview, verified: dict[str, tuple[bool, str]]) -> list[str]:
    """What needs the administrator: the appliance's alerts, as ``vmkeep alerts`` lists them
    (jobs whose last session failed or warned, each VM that failed or warned in it with the
    reason, VMs without a good point within their RPO, leftover snapshots the Snapshot Hunter
    found, repositories running out of space or unreachable, a failed configuration backup),
    and health checks run here that found damage."""
    out = [f"{'✗' if a.severity == 'error' else '⚠'} {a.message}" for a in o.alerts]
    for point, (ok, summary) in sorted(verified.items()):
        if not ok:
            out.append(f"✗ health check of {point} failed: {summary}")
    return out


def free_text(r: api.Repository) -> str:
    """Free space of the repository's storage, with its share: '75.6 GiB 81%'."""
    if r.free_bytes is None:
        return "—"
    share = f" {r.free_bytes * 100 // r.total_bytes}%" if r.total_bytes else ""
    return f"{fmt.size(r.free_bytes)}{share}"


class DashboardScreen(VmkeepScreen):
    """Jobs, what runs now, repositories and alerts, refreshed every two seconds."""

    MODE = "dashboard"
    REFRESH_EVERY = 2.0
    BINDINGS = [  # noqa: RUF012
        Binding("o", "open_session", "Open session"),
        Binding("f5", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.overview: Overview | None = None

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
            "Job", "Status", "Last result", "Last run (UTC)", "Next run")
        self.query_one("#repos", DataTable).add_columns("Repository", "Used", "Free", "Dedup",
                                                       "Points")

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
        found = fetch(self, "alerts", c.alerts) or []
        self.post_message(OverviewLoaded(Overview(jobs, sessions, running, repos, found)))

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
                          fmt.when(last.started, zone=False) if last else "never",
                          api.next_run_text(job) if job.enabled else "—"),
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
            repos.add_row(*fmt.plain(r.name, fmt.size(r.stored_bytes), free_text(r),
                                     f"{r.dedup_ratio:.2f}×" if r.dedup_ratio else "—",
                                     str(r.points)),
                          key=r.name)
        found = alerts(o, self.vmkeep.verified)
        self.query_one("#alerts", Static).update(
            "\n".join(f"  {shown(a)}" for a in found) if found else "  ✓ nothing needs action")

    def action_refresh(self) -> None:
        self.reload()

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
