"""Modal dialogs: a confirmation that says what will happen, one that needs a name typed, and
a small form."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static


class ConfirmScreen(ModalScreen[bool]):
    """Yes or no to an action whose consequences ``text`` spells out."""

    BINDINGS = [  # noqa: RUF012
        Binding("y", "answer(True)", "Yes, do it"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="dialog-title", markup=False)
            yield Static(self.text, id="dialog-text", markup=False)
            yield Label("y = yes, n = no", id="dialog-keys")
        yield Footer()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class TypeToConfirmScreen(ModalScreen[bool]):
    """For what cannot be undone: ``text`` spells it out, and only typing ``expected`` (the
    VM's name, as the CLI asks) and Enter goes ahead; Escape does not."""

    BINDINGS = [  # noqa: RUF012
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, title: str, text: str, expected: str) -> None:
        super().__init__()
        self.title_text = title
        self.text = text
        self.expected = expected

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="dialog-title", markup=False)
            yield Static(self.text, id="dialog-text", markup=False)
            yield Label(f"Type the VM's name ({self.expected}) and Enter to go ahead; "
                        "Escape cancels", id="dialog-keys", markup=False)
            yield Input(placeholder=self.expected, id="typed-name")
            yield Label("", id="typed-wrong", markup=False)
        yield Footer()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.expected:
            self.dismiss(True)
        else:
            self.query_one("#typed-wrong", Label).update(
                f"that is not {self.expected!r}: nothing was changed; type it exactly")

    def action_cancel(self) -> None:
        self.dismiss(False)


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    value: str = ""
    password: bool = False
    placeholder: str = ""


class FormScreen(ModalScreen[dict[str, str] | None]):
    """A few labelled inputs; enter on the last (or ctrl+s) submits, escape cancels."""

    BINDINGS = [  # noqa: RUF012
        Binding("ctrl+s", "submit", "Submit"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, title: str, fields: list[Field], note: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.fields = fields
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="dialog-title", markup=False)
            if self.note:
                yield Static(self.note, id="dialog-text", markup=False)
            for f in self.fields:
                yield Label(f.label, markup=False)
                yield Input(f.value, placeholder=f.placeholder, password=f.password,
                            id=f"field-{f.name}")
        yield Footer()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        if event.input is inputs[-1]:
            self.action_submit()
        else:
            self.focus_next()

    def action_submit(self) -> None:
        self.dismiss({f.name: self.query_one(f"#field-{f.name}", Input).value.strip()
                      for f in self.fields})

    def action_cancel(self) -> None:
        self.dismiss(None)
