"""The catalog console: read-only SQL through the appliance, the documented views as
ready-made queries, this session's history, results in a scrollable table, errors inline."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import DataTable, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from appliance import api
from appliance.errors import ApplianceNotRunningError, VmkeepError
from tui import format as fmt
from tui.base import VmkeepScreen
from tui.messages import ConnectionLost

READY = (
    ("points per VM", "SELECT * FROM points_per_vm ORDER BY vm"),
    ("changed bytes per run",
     "SELECT * FROM changed_bytes_per_run ORDER BY created DESC LIMIT 100"),
    ("stored bytes and dedup per VM", "SELECT * FROM stored_bytes_per_vm ORDER BY vm"),
    ("space per repository", "SELECT * FROM space_per_repository"),
    ("sessions", "SELECT id, job, state, result, started, ended FROM sessions "
                 "ORDER BY started DESC LIMIT 100"),
)


def _one_line(sql: str, width: int) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= width else text[:width - 1] + "…"


class QueryDone(Message):
    def __init__(self, sql: str, answer: api.QueryAnswer | None, error: str | None) -> None:
        super().__init__()
        self.sql = sql
        self.answer = answer
        self.error = error


class CatalogScreen(VmkeepScreen):
    """SQL over the catalog (one SELECT; the appliance refuses anything else)."""

    MODE = "catalog"
    BINDINGS = [  # noqa: RUF012
        Binding("ctrl+r,f5", "run", "Run query", priority=True),
        Binding("ctrl+l", "focus_list", "Ready-made & history", priority=True),
        Binding("ctrl+e", "focus_editor", "Editor", priority=True),
        Binding("ctrl+t", "focus_results", "Results", priority=True),
        Binding("escape", "focus_list", "Leave editor", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.history: list[str] = []

    def body(self) -> ComposeResult:
        with Horizontal(id="top"):
            yield TextArea(READY[0][1], id="sql", language=None, soft_wrap=True)
            yield OptionList(id="queries")
        yield Static("", id="query-status", markup=False)
        yield DataTable(id="results", zebra_stripes=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.fill_list()
        self.query_one("#queries", OptionList).focus()

    def on_screen_resume(self) -> None:
        self.show_connection()

    def fill_list(self) -> None:
        ol = self.query_one("#queries", OptionList)
        ol.clear_options()
        if self.history:  # newest first, then the ready-made queries
            ol.add_options([Option(f"↺ {_one_line(sql, 25)}", id=f"hist-{i}")
                            for i, sql in reversed(list(enumerate(self.history)))])
            ol.add_option(None)
        ol.add_options([Option(f"▸ {label}", id=f"ready-{i}") for i, (label, _) in
                        enumerate(READY)])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        oid = event.option.id or ""
        kind, _, n = oid.partition("-")
        sql = READY[int(n)][1] if kind == "ready" else self.history[int(n)]
        editor = self.query_one("#sql", TextArea)
        editor.text = sql
        editor.focus()

    def action_focus_list(self) -> None:
        self.query_one("#queries").focus()

    def action_focus_editor(self) -> None:
        self.query_one("#sql").focus()

    def action_focus_results(self) -> None:
        self.query_one("#results").focus()

    def action_run(self) -> None:
        sql = self.query_one("#sql", TextArea).text.strip()
        if not sql:
            return
        self.query_one("#query-status", Static).update("running…")

        def work() -> None:
            try:
                answer = self.client.query(sql)
            except ApplianceNotRunningError as exc:
                self.app.post_message(ConnectionLost(str(exc)))
                self.post_message(QueryDone(sql, None, str(exc)))
            except VmkeepError as exc:
                self.post_message(QueryDone(sql, None, str(exc)))
            else:
                self.post_message(QueryDone(sql, answer, None))

        self.run_worker(work, thread=True, exclusive=True, group="query", exit_on_error=False)

    def on_query_done(self, message: QueryDone) -> None:
        if message.sql not in self.history:
            self.history.append(message.sql)
            self.fill_list()
        status = self.query_one("#query-status", Static)
        table = self.query_one("#results", DataTable)
        if message.answer is None:
            table.clear(columns=True)
            status.update(f"✗ {message.error}")
            status.add_class("error")
            return
        status.remove_class("error")
        a = message.answer
        table.clear(columns=True)
        table.add_columns(*a.columns)
        table.add_rows([fmt.plain(*("NULL" if v is None else str(v) for v in row))
                        for row in a.rows])
        more = " (truncated)" if a.truncated else ""
        status.update(f"✓ {len(a.rows)} row(s){more} in {a.seconds:.3f} s")
