"""Jobs: the list, and run / active full / stop / enable-disable / delete / create / edit."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Label

from appliance import api
from tui import columns, empty
from tui import format as fmt
from tui.base import VmkeepScreen, fetch
from tui.filter import KEY, key_at, narrow, remember
from tui.screens.dialogs import ConfirmScreen
from tui.screens.wizard import JobWizard


def what(spec: api.JobSpec) -> str:
    """What a job works on: its VMs' count, or what it copies or collects."""
    if spec.copy_of:
        return "copy of " + ", ".join(spec.copy_of)
    if spec.logs is not None:
        return f"logs of {spec.logs.vm}"
    if spec.containers:
        return f"{len(spec.vms)} + {len(spec.containers)} folders"
    return str(len(spec.vms))


#: The jobs table's columns; a narrow terminal leaves out the highest rank first.
COLUMNS = (columns.Column("Job", 0), columns.Column("On", 4), columns.Column("VMs", 5),
           columns.Column("Repository", 6), columns.Column("Schedule", 1),
           columns.Column("Next run", 0), columns.Column("Last result", 0),
           columns.Column("Last run (UTC)", 2))


class JobsLoaded(Message):
    def __init__(self, jobs: list[api.Job]) -> None:
        super().__init__()
        self.jobs = jobs


class JobsScreen(VmkeepScreen):
    """The backup jobs and what can be done with them."""

    MODE = "jobs"
    REFRESH_EVERY = 3.0
    BINDINGS = [  # noqa: RUF012
        Binding("n", "new", "New"),
        Binding("e", "edit", "Edit"),
        Binding("r", "run", "Run"),
        Binding("f", "run_full", "Active full"),
        Binding("s", "stop", "Stop"),
        Binding("t", "toggle_enabled", "On/off"),  # enable or disable; 80 columns
        Binding("delete,x", "delete", "Delete"),
        Binding("o", "open", "Last session", show=False),  # enter too; 80 columns
        KEY,
    ]
    FILTERS = {"jobs": "show_jobs"}  # noqa: RUF012

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[api.Job] = []

    def body(self) -> ComposeResult:
        yield Label("Jobs", classes="panel-title")
        yield DataTable(id="jobs", cursor_type="row", zebra_stripes=True)

    def on_resize(self) -> None:
        self.show_jobs()

    def load_data(self) -> None:
        jobs = fetch(self, "jobs", self.client.jobs)
        if jobs is not None:
            self.post_message(JobsLoaded(jobs))

    def on_jobs_loaded(self, message: JobsLoaded) -> None:
        self.jobs = message.jobs
        self.show_jobs()
        empty.title(self.query_one(".panel-title", Label), "Jobs",
                    None if self.jobs else empty.NO_JOB)

    def show_jobs(self) -> None:
        """The jobs, in the columns that fit the table's width (COLUMNS' ranks)."""
        table = self.query_one(DataTable)
        rows = []
        for j in self.jobs:
            last = j.last_session
            rows.append(fmt.plain(j.spec.name, "yes" if j.enabled else "no", what(j.spec),
                                  j.spec.repository, fmt.schedule(j.spec.schedule),
                                  api.next_run_text(j) if j.enabled else "—",
                                  fmt.result(last.state, last.result) if last else "—",
                                  fmt.when(last.started, zone=False) if last else "never"))
        available = (table.size.width or self.size.width) - 1  # a scrollbar may take 1
        shown = columns.fit(columns.widths(COLUMNS, rows), [c.rank for c in COLUMNS],
                            available) if available else list(range(len(COLUMNS)))
        mark = remember(table)
        if [str(c.label) for c in table.columns.values()] != [COLUMNS[i].label
                                                               for i in shown]:
            table.clear(columns=True)
            table.add_columns(*(COLUMNS[i].label for i in shown))
        else:
            table.clear()
        for j, row in zip(self.jobs, rows, strict=True):
            table.add_row(*(row[i] for i in shown), key=j.spec.name)
        narrow(table, mark)

    def selected(self) -> api.Job | None:
        if not self.jobs:
            self.notify("no job yet: press n to create one")
            return None
        name = key_at(self.query_one(DataTable))
        job = next((j for j in self.jobs if j.spec.name == name), None)
        if job is None:
            self.notify("no job under the cursor (the filter shows none)")
        return job

    def action_new(self) -> None:
        self.app.push_screen(JobWizard(None), lambda _: self.reload())

    def action_edit(self) -> None:
        job = self.selected()
        if job is not None:
            self.app.push_screen(JobWizard(job), lambda _: self.reload())

    def _run(self, full: bool) -> None:
        job = self.selected()
        if job is None:
            return
        name = job.spec.name

        def work() -> None:
            s = fetch(self, f"run {name}", lambda: self.client.run_job(name, full=full))
            if s is not None:
                self.app.call_from_thread(self.vmkeep.action_open_session, s.id)

        self.run_worker(work, thread=True, group="act", exit_on_error=False)

    def action_run(self) -> None:
        self._run(False)

    def action_run_full(self) -> None:
        self._run(True)

    def action_stop(self) -> None:
        job = self.selected()
        if job is not None:
            name = job.spec.name
            self.act(f"stop {name}", lambda: self.client.stop_job(name))

    def action_toggle_enabled(self) -> None:
        job = self.selected()
        if job is not None:
            name, on = job.spec.name, not job.enabled
            self.act(f"{'enable' if on else 'disable'} {name}",
                     lambda: self.client.set_job_enabled(name, on),
                     done=f"job {name} {'enabled' if on else 'disabled'}")

    def action_delete(self) -> None:
        job = self.selected()
        if job is None:
            return
        name = job.spec.name

        def answered(yes: bool | None) -> None:
            if yes:
                self.act(f"delete {name}", lambda: self.client.delete_job(name))

        self.app.push_screen(ConfirmScreen(
            f"Delete job {name}?",
            f"The job {name} ({len(job.spec.vms)} VM(s)) and its schedule go. Its restore "
            "points stay in repository " + job.spec.repository + "."), answered)

    def on_data_table_row_selected(self, _: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        job = self.selected()
        if job is not None and job.last_session is not None:
            self.vmkeep.action_open_session(job.last_session.id)
