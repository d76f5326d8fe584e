"""A background thread that calls a function every so often until stopped; an exception in
one call is logged and the next call comes as usual."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("appliance.ticker")


class Ticker:
    def __init__(self, name: str, every: float, fn: Callable[[], object]) -> None:
        self.name = name
        self.every = every
        self.fn = fn
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.fn()
            except Exception:  # the thread must outlive one bad call
                log.exception("%s failed", self.name)
