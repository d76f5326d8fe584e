"""Repositories by name: where each is (a folder or ``sftp://``), its login and encryption
password in the secret store, a sealed copy of its block-id key, what the catalog indexed of
it. ``RepositoryInfo`` is the service's view; ``RepositoryInfo.wire`` its one mapping to the
API's ``api.Repository``."""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from appliance import api
from appliance.errors import (
    BadInputError,
    ConflictError,
    IntegrityError,
    NotFoundError,
    UsageError,
)
from appliance.private import summary
from appliance.repository import objfile
from appliance.repository.address import Address, tighten
from appliance.repository.hardening import RECORDS
from appliance.repository.repo import Repository
from appliance.repository.sftp import Reconnect, is_sftp
from appliance.service.state import State, check_name, key_secret
from appliance.ssh import HostKeyUnpinnedError, SshAuth
from catalog.models import RepositoryName
from catalog.store import Catalog

log = logging.getLogger("appliance.registry")


@dataclass(frozen=True, slots=True)
class RepositoryInfo:
    name: str
    location: str
    repo_id: str
    added: datetime
    points: int
    stored_bytes: int
    bytes_read: int = 0  # what its points read: over stored_bytes, the dedup ratio
    host_key_fingerprint: str | None = None  # SSH repositories: the pinned host key
    remote_space: tuple[int, int] | None = None  # SSH: (free, total) when last looked
    encrypted: bool = False  # its password is in the secret store
    reconnect_every: float | None = None  # SSH: between reconnects (None: the default)
    reconnect_for: float | None = None  # SSH: how long to keep trying
    immutable_days: int | None = None  # hardened: see appliance.repository.hardening
    epoch_days: int | None = None
    immutable_until: datetime | None = None  # hardened: the latest lock in the ledger

    @property
    def remote(self) -> bool:
        return self.location.startswith("sftp://")

    def space(self) -> tuple[int, int] | None:
        """(free, total) bytes of the file system it is on; None when it cannot be seen (an
        SSH repository's as of the last time a session or the alerts looked)."""
        if self.remote:
            return self.remote_space
        try:
            fs = os.statvfs(self.location)
        except OSError:
            return None
        return fs.f_bavail * fs.f_frsize, fs.f_blocks * fs.f_frsize

    def wire(self) -> api.Repository:
        """The API's view of it (with the free space as of now)."""
        space = self.space()
        return api.Repository(
            name=self.name, location=self.location, repo_id=self.repo_id, added=self.added,
            points=self.points, stored_bytes=self.stored_bytes, bytes_read=self.bytes_read,
            dedup_ratio=(round(self.bytes_read / self.stored_bytes, 2)
                         if self.stored_bytes else None),
            free_bytes=space[0] if space else None, total_bytes=space[1] if space else None,
            kind="sftp" if self.remote else "local",
            host_key_fingerprint=self.host_key_fingerprint, encrypted=self.encrypted,
            reconnect_every_seconds=self.reconnect_every,
            reconnect_for_seconds=self.reconnect_for, immutable_days=self.immutable_days,
            epoch_days=self.epoch_days, immutable_until=self.immutable_until)


def _check_new(cat: Catalog, name: str, location: str) -> None:
    """A new repository's name and location are not in use yet (ConflictError)."""
    if cat.repository_name(name) is not None:
        raise ConflictError(f"a repository named {name!r} exists already; choose another name")
    taken = [r.name for r in cat.repository_names() if r.location == location]
    if taken:
        raise ConflictError(f"{location} is already repository {taken[0]!r}")


def _other_repository(info: RepositoryInfo, repo: Repository) -> BadInputError:
    return BadInputError(f"{info.location} now holds another repository "
                         f"({repo.id}, not {info.repo_id}); remove and add it again")


def restore_ledger(repo: Repository, cat: Catalog) -> None:
    """A hardened repository's lock ledger from its own records (after a rescan)."""
    for name in repo.backend.list(RECORDS):
        doc = objfile.decode_json(objfile.MAGIC_LOCK, repo.backend.get(name), name)
        until = datetime.fromisoformat(str(doc["until"]))
        cat.record_locks(repo.id, [*map(str, doc["files"]), name], until)


class RepositoryService:
    def __init__(self, state: State) -> None:
        self._state = state

    def add(self, name: str, path: str, *, ssh_key: str | None = None,
            ssh_password: str | None = None, host_key_fingerprint: str | None = None,
            encryption_password: str | None = None, reconnect_every: float | None = None,
            reconnect_for: float | None = None) -> RepositoryInfo:
        """Use the repository at ``path`` under ``name``: a missing folder is created (with a
        new repository in it); an existing repository is imported (its points indexed).
        ``path`` is a folder or ``sftp://USER@HOST[:PORT]/PATH``; an SSH repository logs in
        with ``ssh_key`` (a private key's text; ``ssh_password`` its passphrase) or
        ``ssh_password``, and its host key must have ``host_key_fingerprint`` (without one,
        the error shows the host's). ``encryption_password`` opens an encrypted repository
        and makes a new one encrypted. Keys and passwords go to the secret store."""
        name = check_name("repository", name)
        for what, seconds in (("--reconnect-every", reconnect_every),
                              ("--reconnect-for", reconnect_for)):
            if seconds is not None and not 0 < seconds <= 7 * 86400:
                raise UsageError(f"{what} must be more than 0 and at most 7 days")
        if is_sftp(path):
            address = Address(path, SshAuth(key_data=ssh_key, password=ssh_password),
                              host_key_fingerprint, password=encryption_password)
            location = str(address.location).rstrip("/")
        else:
            folder = Path(path).expanduser()
            if not folder.is_absolute():
                raise UsageError(f"repository path {path!r} is relative; give an absolute "
                                 "path (the appliance does not share your working folder)")
            if ssh_key or ssh_password or host_key_fingerprint:
                raise UsageError(f"{path} is a local folder: SSH keys, passwords and host "
                                 "key fingerprints are for sftp:// repositories")
            address = Address(str(folder), password=encryption_password)
            location = str(folder)
        with self._state.catalog() as cat:
            _check_new(cat, name, location)
        try:
            opened = address.open(create=True)
        except HostKeyUnpinnedError as exc:  # named in the API's fields (clients map them)
            raise HostKeyUnpinnedError(
                f"the SSH host of {location} offers host key {exc.offered}; check it against "
                "the host's own (`ssh-keygen -l -E sha256 -f /etc/ssh/ssh_host_*_key.pub` "
                "there) and set `host_key_fingerprint` to it", offered=exc.offered) from None
        with opened as repo:
            _tighten(repo, name)
            # Indexed in a workspace of its own (the catalog lock is not held meanwhile).
            with self._state.workspace(repo, name, exclusive=False, operation="import",
                                       rescan=True):
                pass
            self._note_space(name, repo)
            self._keep_key(name, repo)
            with self._state.catalog() as cat:
                _check_new(cat, name, location)  # still free after the import
                for kind, value in (("ssh-key", ssh_key), ("ssh-password", ssh_password),
                                    ("encryption-password", encryption_password)):
                    if value:
                        self._state.secrets.put(f"repository/{name}/{kind}", value)
                cat.add_repository_name(RepositoryName(
                    name, location, repo.id, datetime.now(UTC), address.fingerprint,
                    reconnect_every, reconnect_for))
        return self.get(name)

    def edit(self, name: str, *, host_key_fingerprint: str | None = None,
             ssh_key: str | None = None, ssh_password: str | None = None) -> RepositoryInfo:
        """An SSH repository's login or pinned host key from now on (re-trust a host's new
        key): checked by logging in with the result before it is kept."""
        info = self.get(name)
        if not info.remote:
            raise UsageError(f"repository {name!r} is a local folder: nothing to edit")
        old = self.address(info)
        assert old.auth is not None
        auth = SshAuth(key_data=ssh_key if ssh_key else
                       (old.auth.key_data if ssh_password is None else None),
                       password=ssh_password if ssh_password is not None else old.auth.password)
        address = Address(info.location, auth, host_key_fingerprint or old.fingerprint,
                          password=old.password)
        with address.open(create=False) as repo:
            if repo.id != info.repo_id:
                raise _other_repository(info, repo)
        secrets = self._state.secrets
        if ssh_key or ssh_password is not None:
            for kind, value in (("ssh-key", auth.key_data), ("ssh-password", auth.password)):
                secrets.delete(f"repository/{name}/{kind}")
                if value:
                    secrets.put(f"repository/{name}/{kind}", value)
        if address.fingerprint:
            with self._state.catalog() as cat:
                cat.set_host_key(name, address.fingerprint)
        return self.get(name)

    def address(self, info: RepositoryInfo, secrets: dict[str, str] | None = None
                ) -> Address:
        """Where the repository is and how to log in (``appliance.repository.address``),
        with the secrets of the store (or of ``secrets``): the appliance's way to name the
        repository to ``Address.open``, the one way to open it."""
        find = secrets.get if secrets is not None else self._state.secrets.find
        encryption = find(f"repository/{info.name}/encryption-password")
        key_repair = (f"run `vmkeep repo repair-key {info.name}` to put it back from the "
                      "appliance's copy")
        if not info.remote:
            return Address(info.location, password=encryption, key_repair=key_repair)
        auth = SshAuth(key_data=find(f"repository/{info.name}/ssh-key"),
                       password=find(f"repository/{info.name}/ssh-password"))
        default = Reconnect()
        reconnect = Reconnect(info.reconnect_every or default.every,
                              info.reconnect_for or default.give_up)
        return Address(info.location, auth, info.host_key_fingerprint, reconnect,
                       password=encryption, key_repair=key_repair)

    def open(self, info: RepositoryInfo, *,
             on_reconnect: Callable[[str], None] | None = None) -> Repository:
        """The repository, opened (close it, or use it in ``with``) by its address. An SSH
        repository's free space is noted for ``RepositoryInfo.space``; the block-id key's
        copy is kept when there is none yet."""
        repo = self.address(info).open(create=False, on_reconnect=on_reconnect)
        self._note_space(info.name, repo)
        if key_secret(info.name) not in self._state.secrets.names():
            self._keep_key(info.name, repo)
        return repo

    def open_named(self, name: str) -> Repository:
        return self.open(self.get(name))

    def _keep_key(self, name: str, repo: Repository) -> None:
        """Keep a sealed copy of the repository's block-id key file in the secret store (so
        the configuration backup carries it too), once the file is known to be intact."""
        try:
            repo.block_key()  # checks the file
            data = repo.backend.get(f"keys/{repo.config.key_id}")
        except (IntegrityError, NotFoundError):
            return  # damaged already: nothing good to keep (repair-key says so)
        self._state.secrets.put(key_secret(name), json.dumps(
            {"key_file": f"keys/{repo.config.key_id}", "repo_id": repo.id,
             "data": base64.b64encode(data).decode()}))

    def repair_key(self, name: str) -> str:
        """Write the appliance's copy of the repository's block-id key file back (through
        tmp/ and a rename), when the file there is missing or damaged; never over an intact
        key file that differs from the copy."""
        info = self.get(name)
        kept = self._state.secrets.find(key_secret(name))
        if kept is None:
            raise NotFoundError(
                f"the appliance keeps no copy of repository {name!r}'s block-id key (the key "
                "was damaged before the appliance first opened the repository, or the copy "
                "came from no configuration backup); restores still work, backups need the "
                "key: put the key file back from a copy of the repository's keys/ folder")
        doc = json.loads(kept)
        key_file, data = str(doc["key_file"]), base64.b64decode(doc["data"])
        with self.open(info) as repo:
            if repo.id != info.repo_id or doc.get("repo_id") not in (None, repo.id):
                raise _other_repository(info, repo)
            where = f"{info.location}/{key_file}"
            if key_file != f"keys/{repo.config.key_id}":
                raise BadInputError(f"the appliance's copy is of {key_file}, but the "
                                    f"repository's config names keys/{repo.config.key_id}; "
                                    "nothing was written")
            try:
                current: bytes | None = repo.backend.get(key_file)
            except NotFoundError:
                current = None
            if current == data:
                return f"{where} is intact and equals the appliance's copy: nothing to do"
            check = Repository(repo.backend, repo.config, repo.sealer)
            if current is not None:
                try:
                    check.block_key()
                except IntegrityError:
                    pass
                else:
                    raise ConflictError(
                        f"{where} is intact and differs from the appliance's copy: refused "
                        "(a good key is never overwritten); if backups fail, check which "
                        "repository this is (`vmkeep repo list --json`)")
            with repo.lock(exclusive=False, operation="repair-key"):
                repo.backend.put(key_file, data)  # written to tmp/, then renamed into place
            Repository(repo.backend, repo.config, repo.sealer).block_key()
        return (f"wrote {where} back from the appliance's copy ("
                + ("it was missing" if current is None else "it was damaged")
                + "); backups deduplicate again")

    def _note_space(self, name: str, repo: Repository) -> None:
        """An SSH repository's free space, for ``RepositoryInfo.space`` to report."""
        space = getattr(repo.backend, "space", None)
        if space is not None:
            self._state.remote_space[name] = space()

    def space_now(self, info: RepositoryInfo) -> tuple[int, int] | None:
        """(free, total) of the repository's storage now: an SSH repository is opened."""
        if not info.remote:
            return info.space()
        self.open(info).close()
        return self._state.remote_space.get(info.name)

    def get(self, name: str) -> RepositoryInfo:
        found = next((r for r in self.all() if r.name == name), None)
        if found is None:
            raise NotFoundError(f"no repository named {name!r}; `vmkeep repo list` shows them "
                                "(--repo takes a repository's NAME here; a folder is for "
                                "`vmkeep image … --repo DIR`)")
        return found

    def all(self) -> list[RepositoryInfo]:
        sealed = self._state.secrets.names()
        with self._state.catalog() as cat:
            out = []
            for r in cat.repository_names():
                points = cat.points(r.repo_id)
                out.append(RepositoryInfo(r.name, r.location, r.repo_id, r.added, len(points),
                                          cat.total_pack_bytes(r.repo_id),
                                          sum(p.bytes_read for p in points),
                                          r.host_key_fingerprint,
                                          self._state.remote_space.get(r.name),
                                          f"repository/{r.name}/encryption-password" in sealed,
                                          r.reconnect_every, r.reconnect_for,
                                          r.immutable_days, r.epoch_days,
                                          max(cat.ledger(r.repo_id).values(), default=None)))
            return out

    def rescan(self, name: str) -> RepositoryInfo:
        info = self.get(name)
        with self.open(info) as repo:
            if repo.id != info.repo_id:
                raise _other_repository(info, repo)
            with self._state.workspace(repo, name, exclusive=False, operation="rescan",
                                       rescan=True) as ws:
                if info.immutable_days is not None:
                    restore_ledger(ws.repo, ws.cat)
        return self.get(name)

    def remove(self, name: str) -> None:
        """Forget the repository (its files stay where they are)."""
        info = self.get(name)
        with self._state.catalog() as cat:
            cat.remove_repository_name(name)
            cat.clear_index(info.repo_id)
        self._state.secrets.delete(f"repository/{name}/")


def _tighten(repo: Repository, name: str) -> None:
    """A repository being added made private (its owner's alone), each path changed logged."""
    changed = tighten(repo.backend)
    if changed:
        log.warning("%s", summary(changed, f"repository {name} ({repo.location})"))
