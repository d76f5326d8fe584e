"""The appliance's home folder and socket: where its state, secrets, log and socket live.

Home: ``--home`` if given, else ``$VMKEEP_HOME``, else the per-user data folder
(``platformdirs.user_data_dir("vmkeep")``). Socket: ``$VMKEEP_SOCKET``, else
``HOME/appliance.sock``. The CLI, the TUI, the daemon and the systemd unit all find it so.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ApplianceError, UsageError
from appliance.private import open_new

SOCKET_NAME = "appliance.sock"
ID_NAME = "appliance.id"
_ID = re.compile(r"[0-9a-f]{12}")
CATALOG_NAME = "catalog.duckdb"
LAST_CONFIG_BACKUP = "config-backup.last"
# Files that say a home has been used: without its catalog such a home is not a new one.
STATE_FILES = ("secrets.enc", "secret.key", LAST_CONFIG_BACKUP, CATALOG_NAME + ".wal")
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


@dataclass(frozen=True, slots=True)
class Home:
    root: Path
    socket: Path

    @property
    def log(self) -> Path:
        return self.root / "appliance.log"

    @property
    def catalog(self) -> Path:
        """The appliance's DuckDB catalog: its authoritative state and the index."""
        return self.root / CATALOG_NAME

    @property
    def last_config_backup(self) -> Path:
        """Where the newest scheduled configuration backup went (one line: its path; sealed
        with the password the secret store keeps), written after each one, so that a lost
        catalog can be restored without knowing where to look."""
        return self.root / LAST_CONFIG_BACKUP

    @property
    def start_failure(self) -> Path:
        """Why the appliance did not start (JSON: message, code, exit code), for the
        ``appliance start`` that started it to say in one line."""
        return self.root / "appliance.failed"

    @property
    def start_notice(self) -> Path:
        """What the appliance did at start that its administrator should know (a line)."""
        return self.root / "appliance.notice"

    def used(self) -> bool:
        """Whether the home holds appliance state besides the catalog."""
        return any((self.root / name).exists() for name in STATE_FILES)

    def latest_config_backup(self) -> str | None:
        """The newest configuration backup's path as last recorded, or None."""
        try:
            return self.last_config_backup.read_text().strip() or None
        except OSError:
            return None

    @property
    def lock(self) -> Path:
        """Held (flock) by the running appliance for its whole life: one per home."""
        return self.root / "appliance.lock"

    @property
    def id_file(self) -> Path:
        return self.root / ID_NAME


def appliance_id(home: Home) -> str:
    """This appliance's id: 12 hex digits made at its first start and kept in
    ``HOME/appliance.id``. Its snapshots carry it, so it removes its own leftovers and never
    another appliance's."""
    try:
        text = home.id_file.read_text().strip()
    except FileNotFoundError:
        new = secrets.token_hex(6)
        tmp = home.id_file.with_name(f".{ID_NAME}.{os.getpid()}.tmp")
        fd = open_new(tmp)
        try:
            os.write(fd, f"{new}\n".encode())
        finally:
            os.close(fd)
        try:
            os.link(tmp, home.id_file)  # never replaces an id another start just made
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        text = home.id_file.read_text().strip()
    except OSError as exc:
        raise ApplianceError(f"cannot read the appliance id in {home.id_file}: "
                             f"{exc.strerror}") from None
    if not _ID.fullmatch(text):
        raise ApplianceError(f"{home.id_file} does not hold an appliance id (12 hex digits); "
                             "put the id back, or remove the file to get a new one (the old "
                             "id's leftover snapshots are then the Snapshot Hunter's)")
    return text


def default_root() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("vmkeep"))


def resolve(home: str | os.PathLike[str] | None = None) -> Home:
    """The home and socket from the argument, the environment or the defaults."""
    root = Path(home) if home else (Path(os.environ["VMKEEP_HOME"])
                                     if os.environ.get("VMKEEP_HOME") else default_root())
    root = root.expanduser().absolute()
    sock = os.environ.get("VMKEEP_SOCKET")
    socket = Path(sock).expanduser().absolute() if sock else root / SOCKET_NAME
    if len(os.fsencode(socket)) > MAX_SOCKET_PATH:
        raise UsageError(f"socket path {socket} is longer than {MAX_SOCKET_PATH} bytes, the "
                         "limit of a Unix socket; set VMKEEP_SOCKET to a shorter path")
    return Home(root, socket)
