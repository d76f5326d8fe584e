"""The vmkeep TUI application and its factory (shared by ``__main__`` and the tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Input, TextArea

from appliance.errors import VmkeepError
from tui.backend import Backend
from tui.base import TABS, VmkeepScreen
from tui.messages import ConnectionBack, ConnectionLost, Failed, Succeeded
from tui.screens.catalog import CatalogScreen
from tui.screens.dashboard import DashboardScreen
from tui.screens.help import HelpScreen
from tui.screens.inventory import InventoryScreen
from tui.screens.jobs import JobsScreen
from tui.screens.points import PointsScreen
from tui.screens.repositories import RepositoriesScreen
from tui.screens.sessions import SessionScreen, SessionsScreen

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


SCREENS: dict[str, type[VmkeepScreen]] = {
    "dashboard": DashboardScreen,
    "jobs": JobsScreen,
    "sessions": SessionsScreen,
    "inventory": InventoryScreen,
    "points": PointsScreen,
    "catalog": CatalogScreen,
    "repositories": RepositoriesScreen,
}


class VmkeepApp(App[int]):
    """Keyboard-driven administration and live monitoring of one vmkeep appliance."""

    TITLE = "vmkeep"
    # Every screen's .tcss (beside its .py) is loaded here, once: a screen that brought its own
    # CSS_PATH would make Textual re-parse and re-apply all CSS to every mounted screen when it
    # first opens (~100 ms with seven screens). Each file scopes its rules to its screen.
    CSS_PATH = ["app.tcss", *(f"screens/{name}.tcss" for name in (  # noqa: RUF012
        "dashboard", "jobs", "wizard", "sessions", "inventory", "points", "catalog",
        "repositories", "dialogs", "vm_history"))]
    MODES = dict(SCREENS)  # noqa: RUF012 (Textual's class variable)
    DEFAULT_MODE = "dashboard"
    BINDINGS = [  # noqa: RUF012
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("question_mark", "help", "Help", show=False),
        Binding("q", "quit_by_q", "Quit", show=False),
        *(Binding(key, f"switch_mode('{mode}')", label, show=False)
          for key, mode, label in TABS),
    ]

    def __init__(self, client: Backend, *, clock: Clock = utcnow,
                 reconnect_every: float = 1.0) -> None:
        super().__init__()
        self.client = client
        self.clock = clock
        self.reconnect_every = reconnect_every
        self.connected = True
        self.lost_reason = ""
        self.verified: dict[str, tuple[bool, str]] = {}  # point id → (ok, summary) this run
        self._stop = threading.Event()

    # -- connection -----------------------------------------------------------------------

    def on_connection_lost(self, message: ConnectionLost) -> None:
        self.lost_reason = message.reason
        if self.connected:
            self.connected = False
            self.notify(message.reason, title="⚠ connection lost", severity="warning")
            self._each_screen(lambda s: s.show_connection())
            self.reconnect()

    @work(thread=True, exclusive=True, group="reconnect", exit_on_error=False)
    def reconnect(self) -> None:
        while not self._stop.is_set():
            try:
                self.client.handshake()
            except VmkeepError as exc:
                self.lost_reason = str(exc)
                self._stop.wait(self.reconnect_every)
                continue
            self.post_message(ConnectionBack())
            return

    def on_connection_back(self, _: ConnectionBack) -> None:
        self.connected = True
        self.notify("reconnected to the appliance", title="connection")
        self._each_screen(lambda s: s.show_connection())
        if isinstance(self.screen, VmkeepScreen):
            self.screen.reload()

    def _each_screen(self, fn: Callable[[VmkeepScreen], None]) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, VmkeepScreen) and screen.is_mounted:
                fn(screen)

    # -- reports --------------------------------------------------------------------------

    def on_failed(self, message: Failed) -> None:
        self.notify(message.message, title=f"✗ {message.what}", severity="error", timeout=8)

    def on_succeeded(self, message: Succeeded) -> None:
        self.notify(message.message, title="✓ done")

    # -- the command palette: every key binding of the screen, by its description ---------

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """vmkeep's own commands only (no theme or screenshot entries): this screen's keys,
        then every other screen's actions (going there first), the screens, help, quit."""
        seen: set[str] = set()
        for key, active in screen.active_bindings.items():
            b = active.binding
            if not b.description or b.action in seen or b.action.startswith("switch_mode"):
                continue
            seen.add(b.action)
            yield SystemCommand(b.description, f"key {key}",
                                partial(self._run_in, active.node, b.action))
        for key, mode, label in TABS:
            yield SystemCommand(f"Go to {label}", f"screen {mode} (key {key})",
                                partial(self.switch_mode, mode))
            if isinstance(screen, SCREENS[mode]):
                continue
            for other in SCREENS[mode].BINDINGS:
                if isinstance(other, Binding) and other.description:
                    yield SystemCommand(f"{label}: {other.description}",
                                        f"on {label} (key {other.key} there)",
                                        partial(self._run_on, mode, other.action))
        yield SystemCommand("Help", "every key of this screen (key ?)", self.action_help)
        yield SystemCommand("Quit", "leave the TUI (ctrl+q)", self.exit)

    def _run_in(self, node: object, action: str) -> None:
        self.call_later(self.run_action, action, node)

    def _run_on(self, mode: str, action: str) -> None:
        """Go to ``mode``'s screen and run ``action`` there."""
        self.switch_mode(mode)
        self.call_later(lambda: self.run_action(action, self.screen))

    # -- keys -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """A digit switches screens only on a screen of the app, never under a dialog or a
        wizard (where it would throw away what was typed) nor while a text field has
        focus; `q` quits only there too."""
        if action in ("switch_mode", "quit_by_q", "help"):
            if not isinstance(self.screen, VmkeepScreen):
                return False
            if action != "help" and not self.screen.MODE:  # a wizard: what was typed stays
                return False
            if isinstance(self.focused, Input | TextArea):
                return False
        return True

    async def action_quit_by_q(self) -> None:
        """`q` on one of the seven screens (ctrl+q quits everywhere)."""
        await self.action_quit()

    def action_help(self) -> None:
        """Every key of the current screen, with what it does: the screen's own first, then
        those of the focused widget (moving in a list, a field), then the app's."""
        screen = self.screen
        own: list[tuple[str, str]] = []
        widget: list[tuple[str, str]] = []
        app: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        for key, active in screen.active_bindings.items():
            b = active.binding
            what = b.description or b.action.replace("_", " ")
            if b.action.startswith("switch_mode") or (what, key) in seen or "copy" in b.action:
                continue
            seen.add((what, key))
            group = own if active.node is screen else app if active.node is self else widget
            group.append((self.get_key_display(b), what))
        keys = own + widget + app
        keys += [(key, f"go to {label}") for key, _mode, label in TABS]
        name = getattr(self.screen, "MODE", "") or type(self.screen).__name__
        self.push_screen(HelpScreen(f"Keys of {name}", keys))

    def action_open_session(self, session_id: str) -> None:
        self.push_screen(SessionScreen(session_id))

    def on_unmount(self) -> None:
        self._stop.set()


def create_app(client: Backend, *, clock: Clock = utcnow,
               reconnect_every: float = 1.0) -> VmkeepApp:
    """The app for ``client``: the one factory of ``python -m tui`` and the tests."""
    return VmkeepApp(client, clock=clock, reconnect_every=reconnect_every)
