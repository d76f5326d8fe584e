"""Crash points for the crash-safety tests.

``crash_point("name")`` kills the process with SIGKILL when the environment variable
``VMKEEP_CRASH_AT`` is ``name`` or ``name:N`` and this is the N-th time (default 1st) the point
is passed. Unset (always, outside tests) it costs one comparison.
"""

from __future__ import annotations

import os
import signal

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
