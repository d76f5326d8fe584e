"""Crash points for the crash-safety tests, hold points for tests of concurrency.

``crash_point("name")`` kills the process with SIGKILL when the environment variable
``VMKEEP_CRASH_AT`` is ``name`` or ``name:N`` and this is the N-th time (default 1st) the point
is passed. Unset (always, outside tests) it costs one comparison.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_SPEC = os.environ.get("VMKEEP_CRASH_AT", "")
_NAME, _, _COUNT = _SPEC.partition(":")
_TARGET = int(_COUNT) if _COUNT.isdigit() else 1
_seen = 0


def crash_point(name: str) -> None:
    global _seen
    if _NAME and name == _NAME:
        _seen += 1
        if _seen == _TARGET:
            os.kill(os.getpid(), signal.SIGKILL)


_HOLD = os.environ.get("VMKEEP_HOLD_AT", "")
_RELEASE = os.environ.get("VMKEEP_HOLD_RELEASE", "")


def hold_point(name: str, detail: str = "") -> None:
    """Wait here while ``VMKEEP_HOLD_AT`` is ``name`` or ``name:detail`` and the file named by
    ``VMKEEP_HOLD_RELEASE`` does not exist (at most two minutes): lets a test see what the
    rest of the appliance does meanwhile. Unset, it costs one comparison."""
    hook = _HOOKS.get(name)
    if hook is not None:
        hook(detail)
    if not _HOLD or _HOLD not in (name, f"{name}:{detail}") or not _RELEASE:
        return
    deadline = time.monotonic() + 120
    while not os.path.exists(_RELEASE) and time.monotonic() < deadline:
        time.sleep(0.05)


_HOOKS: dict[str, Callable[[str], None]] = {}


@contextmanager
def hooked(name: str, hook: Callable[[str], None]) -> Iterator[None]:
    """In-process tests: call ``hook(detail)`` whenever ``hold_point(name)`` is passed (in the
    thread that passes it), so a test can hold one thread there while another runs."""
    _HOOKS[name] = hook
    try:
        yield
    finally:
        _HOOKS.pop(name, None)
