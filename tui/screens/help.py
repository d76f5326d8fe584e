"""The help screen (`?`): every key of the screen it was opened on, with what it does."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static


class HelpScreen(ModalScreen[None]):
    """``keys``: (key, what it does) of the screen below, in the order they apply."""

    BINDINGS = [  # noqa: RUF012
        Binding("escape,question_mark,q,enter", "close", "Close"),
    ]

    def __init__(self, title: str, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.keys = keys

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Label(self.title_text, id="dialog-title", markup=False)
            width = max((len(k) for k, _ in self.keys), default=0)
            yield Static("\n".join(f"{k:<{width}}  {what}" for k, what in self.keys),
                         id="dialog-text", markup=False)
            yield Label("Esc, ? or q closes this help", id="dialog-keys")
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)
