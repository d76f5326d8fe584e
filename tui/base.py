"""What every screen shares: the top bar with the screens' keys, the connection banner, the
footer, and loading through thread workers that post typed messages back."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, OptionList, Static, Tree

from appliance.errors import ApplianceNotRunningError, VmkeepError
from tui.backend import Backend
from tui.filter import FilterBar
from tui.messages import ConnectionLost, Failed, Succeeded

if TYPE_CHECKING:
    from tui.app import VmkeepApp

T = TypeVar("T")

TABS = (("1", "dashboard", "Dashboard"), ("2", "jobs", "Jobs"), ("3", "sessions", "Sessions"),
        ("4", "inventory", "Inventory"), ("5", "points", "Points"), ("6", "catalog", "SQL"),
        ("7", "repositories", "Repos"))


class TopBar(Static):
    """One line: the screens and their number keys; the current one marked."""

    def __init__(self, current: str) -> None:
        parts = []
        for key, mode, label in TABS:
            text = f"{key} {label}"
            parts.append(f"[reverse] {text} [/]" if mode == current else f" {text} ")
        super().__init__("vmkeep" + "".join(parts), id="topbar")


class Banner(Static):
    """The connection state, shown only while the appliance does not answer."""


def fetch(target: VmkeepScreen, what: str, call: Callable[[], T]) -> T | None:
    """Run ``call`` (in a worker thread); report a lost appliance or a refusal by message."""
    try:
        return call()
    except VmkeepError as exc:
        report(target, what, exc)
    except Exception as exc:  # a bug or a transport error the client does not name
        target.app.post_message(Failed(what, f"{type(exc).__name__}: {exc}"))
    return None


def report(target: VmkeepScreen, what: str, exc: VmkeepError) -> None:
    """Say that the appliance is gone, or what it refused (from any thread)."""
    if isinstance(exc, ApplianceNotRunningError):
        target.app.post_message(ConnectionLost(str(exc)))
    else:
        target.app.post_message(Failed(what, str(exc)))


class VmkeepScreen(Screen[None]):
    """A screen of the app. Subclasses compose ``body`` and load in ``load_data`` (a thread).

    Every screen moves the cursor of its focused list the same way: ``j``/``k`` as down/up,
    Home/End to the first/last row (a table's own Home/End only scroll sideways)."""

    MODE: ClassVar[str] = ""
    REFRESH_EVERY: ClassVar[float | None] = None
    #: The lists `/` filters (with ``tui.filter.KEY`` among the screen's keys): each one's id
    #: → the method that fills it again from what the screen holds (``tui.filter``).
    FILTERS: ClassVar[dict[str, str]] = {}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor('down')", "Down", show=False),
        Binding("k", "cursor('up')", "Up", show=False),
        Binding("home", "cursor('first')", "First row", show=False, priority=True),
        Binding("end", "cursor('last')", "Last row", show=False, priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        # The app loads every screen's CSS at start (App.CSS_PATH). Once one screen has been
        # styled with the current stylesheet, a new screen need not make Textual re-parse all
        # CSS and restyle every mounted screen when it first shows (it would, as its count
        # starts at -1): that halves the time a screen takes to open.
        app = self.app
        current = app._css_update_count
        if any(s._css_update_count == current for stack in app._screen_stacks.values()
               for s in stack):
            self._css_update_count = current

    @property
    def vmkeep(self) -> VmkeepApp:
        from tui.app import VmkeepApp

        assert isinstance(self.app, VmkeepApp)
        return self.app

    @property
    def client(self) -> Backend:
        return self.vmkeep.client

    def compose(self) -> ComposeResult:
        yield TopBar(self.MODE)
        yield Banner("", id="banner")
        yield from self.body()
        if self.FILTERS:
            yield FilterBar({wid: getattr(self, name) for wid, name in self.FILTERS.items()})
        # Compact, without the palette entry (`?` and ctrl+p list every key): a screen's
        # action keys fit 80 columns (issue 15).
        yield Footer(compact=True, show_command_palette=False)

    def body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.show_connection()
        if self.REFRESH_EVERY:
            self.set_interval(self.REFRESH_EVERY, self._tick)

    def on_screen_resume(self) -> None:
        self.show_connection()
        self.reload()

    def action_cursor(self, where: str) -> None:
        """Move the focused list's cursor: ``down``, ``up``, ``first`` or ``last`` (in a text
        field, Home and End move in the text as always)."""
        w = self.focused
        if isinstance(w, Input):
            if where in ("first", "last"):
                w.action_home() if where == "first" else w.action_end()
            return
        if isinstance(w, DataTable):
            if where in ("down", "up"):
                w.action_cursor_down() if where == "down" else w.action_cursor_up()
            elif w.row_count:
                w.move_cursor(row=0 if where == "first" else w.row_count - 1)
        elif isinstance(w, OptionList):
            {"down": w.action_cursor_down, "up": w.action_cursor_up,
             "first": w.action_first, "last": w.action_last}[where]()
        elif isinstance(w, Tree):
            if where in ("down", "up"):
                w.action_cursor_down() if where == "down" else w.action_cursor_up()
            else:
                w.move_cursor_to_line(0 if where == "first" else max(0, w.last_line))

    def action_filter(self) -> None:
        """`/`: the filter's line, for the focused list (else the screen's first)."""
        bar = self.query_one(FilterBar)
        bar.open(self.focused.id if self.focused is not None else None)

    def _tick(self) -> None:
        if self.vmkeep.connected and self.is_current:
            self.reload()

    def show_connection(self) -> None:
        banner = self.query_one(Banner)
        if self.vmkeep.connected:
            banner.display = False
        else:
            banner.update("⚠ appliance not answering — reconnecting… "
                          "(start it: vmkeep appliance start)")
            banner.display = True

    def reload(self) -> None:
        """Load the screen's data in a worker thread (one at a time)."""
        self.run_worker(self.load_data, thread=True, exclusive=True, group="load",
                        exit_on_error=False)

    def load_data(self) -> None:
        """In a worker thread: fetch and post a message with what was fetched."""

    def act(self, what: str, call: Callable[[], object], done: str | None = None,
            then: Callable[[], None] | None = None) -> None:
        """Carry out an action in a worker thread; say how it went; then reload."""

        def work() -> None:
            answer = fetch(self, what, call)
            if answer is not None:
                msg = done or getattr(answer, "message", None) or f"{what}: done"
                self.app.post_message(Succeeded(str(msg)))
                self.app.call_from_thread(then or self.reload)

        self.run_worker(work, thread=True, group="act", exit_on_error=False)
