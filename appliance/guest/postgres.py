"""Application-aware PostgreSQL around a snapshot, agentless: vmkeep keeps one ``psql``
session open in the guest over SSH across the snapshot — ``pg_backup_start`` before it (with
a fast checkpoint), ``pg_backup_stop`` after it — so the image is a proper base backup whose
backup label vmkeep keeps with the restore point. If anything goes wrong, closing the session
ends the backup mode (non-exclusive backups end with their session), so the server is never
left in backup mode. The WAL archive (archive_command) is collected by a log backup job.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from dataclasses import dataclass
from typing import Any, Final

import paramiko

from appliance.errors import VmkeepError
from appliance.guest.scripts import Guest

END: Final = "vmkeep-psql-done"


class PostgresError(VmkeepError):
    exit_code = 14
    code = "postgres"


@dataclass(frozen=True, slots=True)
class PgTarget:
    """Where psql in the guest connects: ``HOST:PORT:USER[:DATABASE]``."""

    host: str
    port: int
    user: str
    database: str = "postgres"

    @staticmethod
    def parse(text: str) -> PgTarget:
        parts = text.split(":")
        if len(parts) not in (3, 4) or not parts[1].isdigit() or not parts[2]:
            raise VmkeepError(f"{text!r} is not a PostgreSQL target; give "
                              "HOST:PORT:USER[:DATABASE] as psql in the guest reaches it")
        return PgTarget(parts[0], int(parts[1]), parts[2], *(parts[3:] or []))


class PgBackup:
    """One non-exclusive base backup held open across a snapshot."""

    def __init__(self, guest: Guest, target: PgTarget, *, timeout: float = 120.0) -> None:
        self.timeout = timeout
        command = (f"psql -X -A -t -q -v ON_ERROR_STOP=1 -h {shlex.quote(target.host)} "
                   f"-p {target.port} -U {shlex.quote(target.user)} "
                   f"-d {shlex.quote(target.database)}")
        try:
            self.channel: Any = guest.client.get_transport().open_session()  # type: ignore[union-attr]
            self.channel.exec_command(command)
        except (paramiko.SSHException, OSError, AttributeError) as exc:
            raise PostgresError(f"cannot start psql in the guest: {exc}") from None
        self._out = b""

    def _ask(self, sql: str) -> str:
        """Send SQL; the output up to the marker (psql stops at the first error)."""
        self.channel.sendall(f"{sql}\n\\echo {END}\n".encode())
        deadline = time.monotonic() + self.timeout
        while END.encode() not in self._out:
            if self.channel.recv_ready():
                self._out += self.channel.recv(65536)
            elif self.channel.exit_status_ready() and not self.channel.recv_ready():
                err = self.channel.recv_stderr(65536).decode(errors="replace").strip()
                raise PostgresError(f"psql in the guest stopped: {err or 'no reason given'}")
            elif time.monotonic() > deadline:
                raise PostgresError(f"PostgreSQL did not answer within {self.timeout:g} s")
            else:
                time.sleep(0.02)
        text, _, rest = self._out.decode(errors="replace").partition(END)
        self._out = rest.lstrip("\n").encode()
        return text

    def start(self) -> str:
        """``pg_backup_start`` with a fast checkpoint; the backup's start LSN."""
        return self._ask("SELECT pg_backup_start('vmkeep', true);").strip()

    def stop(self) -> dict[str, str]:
        """``pg_backup_stop``: its LSN, the backup label and the tablespace map."""
        out = self._ask("SELECT lsn || '|' || encode(convert_to(labelfile, 'UTF8'), 'base64') "
                        "|| '|' || encode(convert_to(coalesce(spcmapfile, ''), 'UTF8'), "
                        "'base64') FROM pg_backup_stop(true);")
        import base64

        lsn, label, spcmap = "".join(out.split()).split("|")
        return {"stop_lsn": lsn, "backup_label": base64.b64decode(label).decode(),
                "tablespace_map": base64.b64decode(spcmap).decode()}

    def close(self) -> None:
        with contextlib.suppress(paramiko.SSHException, OSError):
            self.channel.close()


def archiving_trouble(guest: Guest, target_text: str) -> str | None:
    """Why PostgreSQL's WAL may not be reaching the archive folder (archive_mode off, or
    archive_command failing since its last success), or None when it archives."""
    t = PgTarget.parse(target_text)
    query = ("SELECT current_setting('archive_mode') || '|' || failed_count || '|' || "
             "coalesce(last_failed_wal, '') || '|' || (coalesce(last_failed_time, 'epoch') > "
             "coalesce(last_archived_time, 'epoch'))::text FROM pg_stat_archiver")
    status, out, err = guest.exec(
        f"psql -X -A -t -h {shlex.quote(t.host)} -p {t.port} -U {shlex.quote(t.user)} "
        f"-d {shlex.quote(t.database)} -c {shlex.quote(query)}", timeout=60)
    if status != 0:
        return (f"PostgreSQL ({target_text}) could not be asked whether it archives: "
                f"{err.strip() or out.strip()}")
    mode, failed, wal, failing = [*out.strip().split("|"), "", "", "", ""][:4]
    if mode == "off":
        return ("PostgreSQL is not archiving (archive_mode = off): no WAL reaches the log "
                "folder; set archive_mode = on and an archive_command that writes there")
    if failing == "true":
        return (f"PostgreSQL's archive_command is failing ({failed} failure(s), last with "
                f"{wal}); the WAL waits in pg_wal until it works again — check the command")
    return None
