"""The appliance's home at start: made when missing, made private, and locked for the
appliance's whole life (one appliance per home)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import Iterator

from appliance.errors import ApplianceError
from appliance.home import Home
from appliance.private import summary, tighten_tree

log = logging.getLogger("appliance.daemon")


class AlreadyRunningError(ApplianceError):
    """Another appliance holds this home."""

    code = "appliance_running"


def make_home(home: Home) -> None:
    if not home.root.exists():
        try:
            home.root.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            pass  # a second `appliance start` made it at the same moment; the lock decides
        else:
            os.chmod(home.root, 0o700)  # mkdir's mode is filtered by the umask
    if not home.root.is_dir():
        raise ApplianceError(f"appliance home {home.root} is not a folder; name a folder "
                             "with --home or VMKEEP_HOME")
    if not home.socket.parent.exists():
        home.socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(home.socket.parent, 0o700)


@contextlib.contextmanager
def home_lock(home: Home) -> Iterator[None]:
    fd = os.open(home.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise AlreadyRunningError(f"an appliance already runs for home {home.root}; "
                                          "stop it with `vmkeep appliance stop`") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def tighten_home(home: Home) -> str | None:
    """Take group and other access off the home and all it holds; the notice naming what was
    changed (None: it was private)."""
    changed = tighten_tree(home.root)
    if not changed:
        return None
    notice = summary(changed, f"the appliance home {home.root}") + \
        " (start with --allow-shared-home to leave a home as it is)"
    log.warning("%s", notice)
    return notice
