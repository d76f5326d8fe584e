"""One VM's history across jobs and repositories (key `h` on Inventory or Points): its RPO
status and newest point, each job's last result for it with the reasons, and every restore
point of it newest first with its job, repository, kind, size and verified state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Label, Static

from appliance import api
from appliance.api import shown
from tui import columns, empty
from tui import format as fmt
from tui.base import VmkeepScreen, fetch
from tui.filter import KEY, narrow, remember
from tui.fitted import fill

#: The points' columns; a narrow terminal leaves out the highest rank first (time, kind and
#: verified state stay).
COLUMNS = (columns.Column("Created (UTC)", 0), columns.Column("Kind", 0),
           columns.Column("Verified", 0), columns.Column("Job", 1),
           columns.Column("Repository", 2), columns.Column("Stored", 3),
           columns.Column("Read", 4), columns.Column("Id", 5))


@dataclass(frozen=True)
class JobResult:
    """A job's last session as far as one VM goes: its result for the VM and why."""

    job: str
    repository: str
    started: datetime | None  # None: never ran
    result: str  # as fmt.result shows it; "—" when the session did not back the VM up
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class History:
    vm: str
    inventory: api.InventoryVm | None  # None: not in any vCenter now
    jobs: list[JobResult]
    points: list[api.Point]  # newest first


class HistoryLoaded(Message):
    def __init__(self, history: History) -> None:
        super().__init__()
        self.history = history


def job_result(job: api.Job, session: api.Session | None, vm: str) -> JobResult:
    """``vm``'s result in ``job``'s last session (``session``; None: it never ran)."""
    if session is None:
        return JobResult(job.spec.name, job.spec.repository, None, "never ran", ())
    task = next((t for t in session.tasks if t.disk is None and t.name == vm), None)
    result = ("—" if task is None else fmt.result(task.state, task.result))
    reasons = tuple(dict.fromkeys(api.vm_reasons(session, vm)))
    return JobResult(job.spec.name, job.spec.repository, session.started, result, reasons)


def summary_text(h: History) -> str:
    """The VM's coverage in two lines: RPO status, newest point, jobs; its place."""
    newest = h.points[0] if h.points else None
    inv = h.inventory
    rpo = {"ok": "✓ RPO met", "breached": "✗ RPO breached", "none": "no RPO set"}.get(
        inv.rpo_status if inv else "", "RPO unknown (not in a vCenter now)")
    last = (f"newest point {fmt.when(newest.created)} ({newest.kind}, "
            f"{newest.job or 'no job'} → {newest.repository})" if newest
            else "no restore point yet")
    jobs = ", ".join(j.job for j in h.jobs) or "no job protects it"
    place = (f"{inv.vcenter} / {inv.datacenter} / {inv.host} · power {inv.power_state}"
             if inv else "not found in the vCenters' inventory")
    return f"{shown(f'{rpo} · {last}')}\n{shown(f'jobs: {jobs} · {place}')}"


def jobs_text(h: History) -> str:
    """Each job's last result for the VM, with the reasons under it."""
    if not h.jobs:
        return "  no job backs this VM up: add it to a job on the Jobs screen (2, then n or e)"
    width = max(len(j.job) for j in h.jobs)
    lines = []
    for j in h.jobs:
        lines.append(f"  {j.job:<{width}}  {j.result:<12} {fmt.when(j.started):<16} "
                     f"→ {j.repository}")
        lines.extend(f"    {r}" for r in j.reasons)
    return "\n".join(shown(line) for line in lines)


class VmHistoryScreen(VmkeepScreen):
    """The history of one VM; Esc goes back to the screen it was opened on."""

    BINDINGS = [  # noqa: RUF012
        Binding("escape,backspace", "back", "Back"),
        Binding("f5", "refresh", "Refresh"),
        KEY,
    ]
    FILTERS = {"vm-points": "show_all_points"}  # noqa: RUF012

    def __init__(self, vm: str) -> None:
        super().__init__()
        self.vm = vm
        self.history: History | None = None

    def body(self) -> ComposeResult:
        yield Label(f"VM {shown(self.vm)}: history across jobs and repositories",
                    id="vm-title", classes="panel-title", markup=False)
        yield Static("loading…", id="vm-summary", markup=False)
        yield Label("Last result per job", classes="panel-title")
        yield Static("", id="vm-jobs", markup=False)
        yield Label("Restore points, newest first", id="vm-points-title",
                    classes="panel-title")
        yield DataTable(id="vm-points", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#vm-points", DataTable).focus()

    def on_screen_resume(self) -> None:
        self.show_connection()
        self.reload()

    def on_resize(self) -> None:
        if self.history is not None:
            self.show_points(self.history.points)

    def load_data(self) -> None:
        vm, c = self.vm, self.client
        points = fetch(self, "points", lambda: c.points(vm))
        jobs = fetch(self, "jobs", c.jobs)
        if points is None or jobs is None:
            return
        inventory = fetch(self, "inventory", c.inventory) or []
        found = next((v for v in inventory if v.name == vm), None)
        results = []
        for job in jobs:  # those that back it up now (by name or container) or made a point
            name = job.spec.name
            if not (any(v.name == vm for v in job.spec.vms) or (found and name in found.jobs)
                    or any(p.job == name for p in points)):
                continue
            last = job.last_session
            session = (fetch(self, "session", lambda s=last.id: c.session(s))  # type: ignore[misc]
                       if last is not None else None)
            results.append(job_result(job, session, vm))
        self.post_message(HistoryLoaded(History(vm, found, results, points[::-1])))

    def on_history_loaded(self, message: HistoryLoaded) -> None:
        h = self.history = message.history
        self.query_one("#vm-summary", Static).update(summary_text(h))
        self.query_one("#vm-jobs", Static).update(jobs_text(h))
        self.show_points(h.points)

    def show_all_points(self) -> None:
        if self.history is not None:
            self.show_points(self.history.points)

    def show_points(self, points: list[api.Point]) -> None:
        table = self.query_one("#vm-points", DataTable)
        mark = remember(table)
        rows = []
        for p in points:
            ok = self.vmkeep.verified.get(p.id)
            rows.append(fmt.plain(fmt.when(p.created, zone=False), p.kind,
                                  "—" if ok is None else ("✓ ok" if ok[0] else "✗ damaged"),
                                  p.job or "—", p.repository, fmt.size(p.bytes_stored),
                                  fmt.size(p.bytes_read), p.id))
        fill(table, COLUMNS, rows, [p.id for p in points], table.size.width)
        narrow(table, mark)
        empty.title(self.query_one("#vm-points-title", Label),
                    f"Restore points, newest first ({len(points)})",
                    None if points else "No restore point of this VM yet — run a job that "
                    "backs it up: Jobs screen (2, then r) or `vmkeep job run NAME`")

    def action_refresh(self) -> None:
        self.reload()

    def action_back(self) -> None:
        self.dismiss(None)
