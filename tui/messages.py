"""Messages the workers post to the app (typed; the UI thread acts on them)."""

from __future__ import annotations

from textual.message import Message


class ConnectionLost(Message):
    """A call found no appliance on the socket."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class ConnectionBack(Message):
    """The appliance answers the handshake again."""


class Failed(Message):
    """A call was refused: its message goes to the user as it is."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__()
        self.what = what
        self.message = message


class Succeeded(Message):
    """An action went through: say so."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message
