"""What the ``vmkeep vsphere …`` commands share: their log lines on stderr, a logged-in
vSphere session from the connection options (``connected``) and the repository with its
catalog cache (``repository``). The engine is imported only when one of them is used."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from appliance.errors import UsageError, VSphereError
from appliance.inputs import shown
from appliance.password import read_password

if TYPE_CHECKING:
    from appliance.jobs.workspace import Workspace
    from appliance.vsphere.session import VSphereSession


# -- log lines ------------------------------------------------------------------------------

def say(level: str, message: str) -> None:
    """One stderr line ``vmkeep: LEVEL: message`` (level: info, warning, error)."""
    print(f"vmkeep: {level}: {shown(' '.join(message.split()))}", file=sys.stderr)


def log_to_stderr(verbose: bool) -> Callable[[str, str], None]:
    """A ``(level, message)`` callback: warnings and errors always, info with ``verbose``."""
    def log(level: str, message: str) -> None:
        if level != "info" or verbose:
            say(level, message)
    return log


class _StderrHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            say(record.levelname.lower(), record.getMessage())
        except Exception:  # a log line must never break the command
            self.handleError(record)


@contextmanager
def logging_to_stderr(verbose: bool) -> Iterator[None]:
    """Route vmkeep's own ``logging`` (e.g. the --insecure warning) to ``say`` lines."""
    logger = logging.getLogger("appliance")
    handler = _StderrHandler(logging.INFO if verbose else logging.WARNING)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(handler.level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


# -- connecting -----------------------------------------------------------------------------

def pinned_fingerprint(args: argparse.Namespace) -> str | None:
    """``--fingerprint`` as lower-case hex (None with --insecure or when not given)."""
    from appliance.vsphere.session import normalize_fingerprint

    if args.insecure or args.fingerprint is None:
        return None
    try:
        return normalize_fingerprint(args.fingerprint)
    except VSphereError as exc:
        raise UsageError(f"--fingerprint {exc}") from None


@contextmanager
def connected(args: argparse.Namespace) -> Iterator[VSphereSession]:
    """A logged-in session from the connection options (``args.add_connection_options``)."""
    from appliance.vsphere.session import connect

    pin = pinned_fingerprint(args)
    password = read_password(args)
    with connect(args.host, args.port, args.user, password, fingerprint=pin,
                 insecure=args.insecure) as session:
        yield session


@contextmanager
def repository(args: argparse.Namespace, *, operation: str, writes: bool
               ) -> Iterator[Workspace]:
    """``--repo`` with its catalog cache: a shared workspace.

    ``writes``: the command adds to the repository; it is created when missing, crash
    leftovers are swept first, and a run that fails is cleaned up after (as `image backup`).
    """
    from appliance.cli.offline import workspace

    with workspace(args, operation=operation, writes=writes, read_only_ok=not writes) as ws:
        yield ws


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
