"""What every area service shares: the home, the secret store, the appliance's catalog
connection (one at a time: a lock serialises every use), and SSH repositories' free space as
last seen. Plus the small rules more than one area applies (names, secret names)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from appliance.errors import UsageError
from appliance.home import CATALOG_NAME, Home
from appliance.jobs.workspace import Workspace, open_workspace
from appliance.repository.repo import Repository
from appliance.secret_store import SecretStore
from catalog.store import Catalog

log = logging.getLogger("appliance.registry")


class State:
    """The home, the secret store and the catalog of a running appliance."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.secrets = SecretStore(home.root)
        self.remote_space: dict[str, tuple[int, int] | None] = {}  # SSH: name → (free, total)
        self._cat = Catalog.open(home.root / CATALOG_NAME, sealed=True)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._cat.close()

    @contextmanager
    def catalog(self) -> Iterator[Catalog]:
        with self._lock:
            yield self._cat

    def cursor(self) -> Catalog:
        """A catalog cursor of its own (for a workspace or a worker thread); close it."""
        with self._lock:
            return self._cat.cursor()

    @contextmanager
    def workspace(self, repo: Repository, name: str, *, exclusive: bool, operation: str,
                  rescan: bool = False, read_only_ok: bool = False) -> Iterator[Workspace]:
        """Repository ``name`` (opened as ``repo``) locked, with a private catalog cursor in
        step with it (``appliance.jobs.workspace``): the only way the appliance reads or
        writes a repository. Never holds the catalog lock, so the API answers meanwhile."""
        with open_workspace(repo, self.cursor, exclusive=exclusive, operation=operation,
                            rescan=rescan, read_only_ok=read_only_ok,
                            rescan_hint=f"`vmkeep repo rescan {name}`") as ws:
            if ws.lock.note:  # reading without a lock: the repository cannot be written
                log.warning("%s", ws.lock.note)
            yield ws


def check_name(kind: str, name: str) -> str:
    """A vCenter's, repository's or job's name, stripped (UsageError when unusable)."""
    name = name.strip()
    if not name or len(name) > 80 or any(c in name for c in "/\\\0") or not name.isprintable():
        raise UsageError(f"{kind} name {name!r} is not usable: give 1 to 80 printable "
                         "characters without slashes")
    return name


def vcenter_secret(vcenter: str) -> str:
    """The secret holding a vCenter's password."""
    return f"vcenter/{vcenter}/password"


def key_secret(repository: str) -> str:
    """The secret holding the copy of a repository's block-id key file."""
    return f"repository/{repository}/block-id-key"
