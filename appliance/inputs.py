"""What an administrator may type, in one place: the CLI's argument checks and the API's
validators (``appliance.api``) both use these, so a name or path refused by one is refused by
the other with the same reason. Also how text that came from elsewhere (vCenter, a
repository) is shown on a terminal: escaped, so a newline or an escape code in a VM's name
cannot split a table row or reach the terminal.

Every check returns the problem as a phrase (``None`` when the value is fine); callers turn it
into their own error (``argparse.ArgumentTypeError``, pydantic's ``ValueError``).
"""

from __future__ import annotations

import math
import os
import posixpath
from datetime import timedelta

from appliance.errors import UsageError

NAME_MAX = 80  # vmkeep's own names (vCenters, repositories, jobs); vSphere's VM name limit too
TEXT_MAX = 1024  # one line of other text: a VM reference, an inventory path, a host, a user
PATH_MAX = 4096  # Linux's PATH_MAX
DAYS_MAX = 36_500  # a hundred years: anything longer is a typo
SECONDS_MAX = 366 * 86_400.0  # waits, timeouts and periods: a year at most
COUNT_MAX = 10_000  # points to keep, retries, threads, disks: more is a typo

# Folders that are never a repository, a restore target or a data folder: the root and the
# system's own folders (the folders themselves; a folder inside, e.g. /var/backups/r1, is fine).
SYSTEM_FOLDERS: frozenset[str] = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
    "/opt", "/proc", "/root", "/run", "/sbin", "/sys", "/tmp",
    "/usr", "/usr/bin", "/usr/lib", "/usr/local", "/usr/sbin", "/usr/share", "/var",
    "/var/lib", "/var/log", "/var/tmp", "/var/run", "/var/cache", "/var/spool",
})

# A JSON-schema pattern for one line of text (no C0/C1 control characters, no DEL).
ONE_LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"


def control_chars(text: str) -> list[str]:
    """The characters of ``text`` a terminal does not print as themselves."""
    return [c for c in text if not c.isprintable()]


def name_problem(text: str, *, limit: int = NAME_MAX, slashes: bool = False) -> str | None:
    """A name an administrator types: 1 to ``limit`` printable characters, not only spaces;
    vmkeep's own names (vCenters, repositories, jobs, images) also without slashes (a new
    VM's name may have them: ``slashes``)."""
    if not text.strip():
        return "is empty; give a name"
    if len(text) > limit:
        return f"is {len(text)} characters long; give at most {limit}"
    if control_chars(text):
        return ("holds control characters (a newline, tab, escape, …); give printable "
                "characters only")
    if not slashes and ("/" in text or "\\" in text):
        return "holds a slash; give a name without slashes"
    return None


def vm_name_problem(text: str) -> str | None:
    """A new VM's name: as ``name_problem``, slashes allowed (vSphere allows them)."""
    return name_problem(text, slashes=True)


def text_problem(text: str, *, limit: int = TEXT_MAX) -> str | None:
    """One line of other text (a VM name or UUID, an inventory path, a host, a user): no
    control characters, at most ``limit`` characters."""
    if len(text) > limit:
        return f"is {len(text)} characters long; give at most {limit}"
    if control_chars(text):
        return ("holds control characters (a newline, tab, escape, NUL, …); give printable "
                "characters only")
    return None


def path_problem(text: str, *, absolute: bool = True) -> str | None:
    """A local path: no NUL or control characters, at most ``PATH_MAX`` bytes, absolute
    (unless ``absolute`` is False: then relative to the current folder), and not one of the
    system's own folders (``SYSTEM_FOLDERS``)."""
    problem = read_path_problem(text)
    if problem is not None:
        return problem
    if absolute and not text.startswith("/"):
        return ("is relative; give an absolute path (the appliance does not share your "
                "working folder)")
    full = os.path.expanduser(text)
    if not full.startswith("/"):
        try:
            full = os.path.join(os.getcwd(), full)
        except OSError:
            return None  # no current folder: the command's own check says so
    full = posixpath.normpath(full)
    if full.startswith("//"):
        full = "/" + full.lstrip("/")
    if full in SYSTEM_FOLDERS:
        return (f"is the system folder {full}; give a folder of vmkeep's own, such as "
                "/srv/vmkeep or /var/backups/vmkeep")
    return None


def read_path_problem(text: str) -> str | None:
    """A local path that is only read (a backup file, a folder to look in): no NUL or control
    characters, at most ``PATH_MAX`` bytes."""
    if not text:
        return "is empty; give a path"
    if "\0" in text:
        return "holds a NUL byte; give a path without one"
    if control_chars(text):
        return "holds control characters (a newline, tab, escape, …); give a path without them"
    if len(os.fsencode(text)) > PATH_MAX:
        return f"is longer than {PATH_MAX} bytes"
    return None


def folder_problem(folder: str | os.PathLike[str]) -> str | None:
    """Why ``folder`` cannot be used or made by this user (None: it is a folder, or the
    nearest folder above it that exists lets this user make folders in it). Looks only:
    nothing is created."""
    path = os.path.abspath(folder)
    probe = path
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        return f"{probe} is not a folder"
    if probe != path:
        if not os.access(probe, os.W_OK | os.X_OK):
            return f"this user cannot make folders in {probe}"
    elif not os.access(probe, os.W_OK | os.X_OK):
        return f"this user cannot write in {probe}"
    return None


def count_problem(value: int, *, low: int = 1, high: int) -> str | None:
    if not low <= value <= high:
        return f"is out of range; give {low} to {high}"
    return None


def number_problem(value: float, *, low: float = 0.0, high: float,
                   low_open: bool = False) -> str | None:
    """A finite number from ``low`` (excluded when ``low_open``) to ``high``."""
    def number(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else f"{x:g}"

    allowed = (f"more than {number(low)} and at most {number(high)}" if low_open
               else f"{number(low)} to {number(high)}")
    if not math.isfinite(value):
        return f"is not a finite number; give {allowed}"
    if value < low or (low_open and value == low) or value > high:
        return f"is out of range; give {allowed}"
    return None


def shown(text: object) -> str:
    """``text`` safe for a terminal: characters that are not printable are escaped as Python
    writes them (``\\n``, ``\\t``, ``\\x1b``, ``\\u200b``); everything else stays as it is."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


MAX_PERIOD_SECONDS = 366 * 86400  # longer is a typo (and would overflow date arithmetic)


def parse_period(text: str) -> timedelta:
    """``90s``, ``30m``, ``2h`` (a schedule's period, a retry wait, …)."""
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    if len(t) < 2 or t[-1] not in units or not (t[:-1].isascii() and t[:-1].isdigit()) \
            or int(t[:-1]) < 1:
        raise UsageError(f"{text!r} is not a period; give a number and s, m or h (e.g. 30m)")
    seconds = int(t[:-1]) * units[t[-1]]
    if seconds > MAX_PERIOD_SECONDS:
        raise UsageError(f"{text!r} is longer than a year; give a shorter period (e.g. 30m)")
    return timedelta(seconds=seconds)
