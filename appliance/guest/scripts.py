"""Pre-freeze and post-thaw scripts in a Linux guest, over SSH, agentless.

A script (its text, kept with the job) is uploaded over SFTP into a private folder that
``mktemp -d`` makes (mode 0700), run there under GNU ``timeout`` (coreutils, on every Linux
guest) with the job's limit, and the folder is removed afterwards. ``timeout`` makes the
script's process group its own and signals the whole group when the time is up (TERM, then
KILL five seconds later), so the script's children go with it; vmkeep then kills whatever is
still in that group and checks that nothing is left. Exit status, stdout and stderr are kept.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import paramiko

from appliance.errors import SshError
from appliance.ssh import SshAuth, SshTarget, connect

KILL_AFTER: Final = 5  # seconds between TERM and KILL when a script runs out of time


class GuestScriptError(SshError):
    """The script could not be run at all (upload, mktemp, the connection)."""

    code = "guest_script"


@dataclass(frozen=True, slots=True)
class ScriptRun:
    name: str  # pre-freeze | post-thaw
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    started: datetime
    ended: datetime
    left_behind: int = 0  # processes of its group still there after the run (then killed)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "exit_code": self.exit_code, "timed_out": self.timed_out,
                "started": self.started.isoformat(), "ended": self.ended.isoformat(),
                "stdout": self.stdout, "stderr": self.stderr}


class Guest:
    """An SSH login to a guest whose host key is pinned (``appliance.ssh``)."""

    def __init__(self, target: SshTarget, auth: SshAuth, fingerprint: str | None, *,
                 timeout: float = 30.0) -> None:
        self.target = target
        self.client = connect(target, auth, fingerprint, timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Guest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exec(self, command: str, timeout: float | None = None) -> tuple[int, str, str]:
        """A shell command in the guest: (exit status, stdout, stderr)."""
        try:
            _in, out, err = self.client.exec_command(command, timeout=timeout)
            _in.channel.shutdown_write()
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
            return out.channel.recv_exit_status(), stdout, stderr
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise GuestScriptError(f"the guest {self.target} dropped the connection: "
                                   f"{exc}") from None

    def run_script(self, name: str, text: str, timeout: float) -> ScriptRun:
        """Upload ``text`` as a script, run it with a time limit, remove it (module doc)."""
        status, out, err = self.exec("mktemp -d /tmp/vmkeep-script.XXXXXXXX")
        folder = out.strip()
        if status != 0 or not folder.startswith("/tmp/vmkeep-script."):
            raise GuestScriptError(f"could not make a private folder in the guest "
                                   f"{self.target}: {err.strip() or out.strip()}")
        path = f"{folder}/{name}"
        try:
            try:
                with self.client.open_sftp() as sftp:
                    sftp.putfo(io.BytesIO(text.encode()), path)
                    sftp.chmod(path, 0o700)
            except (OSError, paramiko.SSHException) as exc:
                raise GuestScriptError(f"could not upload the {name} script to the guest "
                                       f"{self.target}: {exc}") from None
            # `echo $$` names the group: exec keeps the pid, and timeout leads its own group.
            # Output goes to files, so a child left running cannot hold the channel open.
            inner = (f"echo $$; exec timeout -k {KILL_AFTER} {max(1, int(timeout))} "
                     f"{shlex.quote(path)} >stdout 2>stderr </dev/null")
            command = f"cd {shlex.quote(folder)} && sh -c {shlex.quote(inner)}"
            started = datetime.now(UTC)
            t0 = time.monotonic()
            status, out, _err = self.exec(command, timeout=timeout + KILL_AFTER + 30)
            ended = datetime.now(UTC)
            group = out.strip().splitlines()[0] if out.strip() else ""
            left = 0
            if group.isdigit():
                # Whatever of the group outlived the script (it ignored TERM, or was stopped).
                _s, still, _e = self.exec(
                    f"ps -e -o pgid=,stat= | awk '$1 == {group} && $2 !~ /^Z/' | wc -l")
                left = int(still.strip() or 0)
                if left:
                    self.exec(f"pkill -KILL -g {group}")
            # timeout says 124 (TERM sufficed) or 137; killed with its group, the command has
            # no exit status at all (-1): either way it ran out of time.
            timed_out = status != 0 and time.monotonic() - t0 >= timeout
            _s, stdout, _e = self.exec(f"cat {shlex.quote(folder)}/stdout")
            _s, stderr, _e = self.exec(f"cat {shlex.quote(folder)}/stderr")
            return ScriptRun(name, status, stdout, stderr, timed_out, started, ended, left)
        finally:
            with contextlib.suppress(GuestScriptError):
                self.exec(f"rm -rf {shlex.quote(folder)}")


@dataclass(frozen=True, slots=True)
class GuestFile:
    name: str
    size: int
    mtime: float


def list_files(guest: Guest, folder: str, pattern: str) -> list[GuestFile]:
    """Regular files in ``folder`` whose names match ``pattern`` (fnmatch), sorted by name."""
    import fnmatch
    import stat as stat_mod

    try:
        with guest.client.open_sftp() as sftp:
            entries = sftp.listdir_attr(folder)
    except FileNotFoundError:
        raise GuestScriptError(f"the guest {guest.target} has no folder {folder}") from None
    except (OSError, paramiko.SSHException) as exc:
        raise GuestScriptError(f"cannot list {folder} in the guest {guest.target}: "
                               f"{exc}") from None
    return sorted((GuestFile(e.filename, e.st_size or 0, float(e.st_mtime or 0))
                   for e in entries if stat_mod.S_ISREG(e.st_mode or 0)
                   and fnmatch.fnmatchcase(e.filename, pattern)), key=lambda f: f.name)


def fetch_file(guest: Guest, folder: str, name: str) -> bytes:
    try:
        with guest.client.open_sftp() as sftp, sftp.open(f"{folder}/{name}", "rb") as f:
            size = f.stat().st_size or 0
            f.prefetch(size)
            data: bytes = f.read(size)
            return data
    except (OSError, paramiko.SSHException) as exc:
        raise GuestScriptError(f"cannot read {folder}/{name} in the guest {guest.target}: "
                               f"{exc}") from None


def delete_files(guest: Guest, folder: str, names: list[str]) -> None:
    try:
        with guest.client.open_sftp() as sftp:
            for name in names:
                sftp.remove(f"{folder}/{name}")
    except (OSError, paramiko.SSHException) as exc:
        raise GuestScriptError(f"cannot remove collected files from {folder} in the guest "
                               f"{guest.target}: {exc}") from None
