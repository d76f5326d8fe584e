"""What the appliance knows about: vCenters (with their pinned certificates, passwords in the
secret store) and repositories by name. The API's routes call this; it owns the catalog
connection of the appliance (one at a time: a lock serialises every use).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from secrets import token_urlsafe
from typing import TYPE_CHECKING, Any

from appliance import api
from appliance.errors import (
    ApplianceError,
    BadInputError,
    NotFoundError,
    UsageError,
    VmkeepError,
)
from appliance.faults import hold_point
from appliance.home import CATALOG_NAME, Home
from appliance.jobs.schedule import (
    Schedule,
    active_full_due,
    excluded_disks,
    parse_days,
    parse_period,
    parse_time,
    parse_window,
)
from appliance.secret_store import SecretStore
from catalog.models import DiskRow, JobRow, PointRow, RepositoryName, VCenterRow
from catalog.query import QueryRefused, QueryResult, QueryStopped, Stopper
from catalog.store import Catalog

if TYPE_CHECKING:
    from appliance.jobs.workspace import Workspace
    from appliance.repository.address import Address
    from appliance.repository.repo import Repository

log = logging.getLogger("appliance.registry")
MAX_ROWS = 100_000
MAX_SECONDS = 60.0
MAX_PARALLEL_VMS = 16
CONFIG_PASSWORD = "config-backup/password"  # the secret that seals scheduled config backups
DEFAULT_CONFIG_AT = "01:30"  # UTC: the default configuration backup's daily time


class ConflictError(VmkeepError):
    """The name is taken."""

    exit_code = 2
    code = "conflict"


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


def _guest_target(guest: api.GuestSpec) -> Any:
    """The guest's SSH address from ``HOST[:PORT]``."""
    from appliance.ssh import SshTarget

    host, sep, port = guest.host.rpartition(":")
    if not sep or "]" in port:
        host, port = guest.host, "22"
    host = host.strip("[]")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535 or not guest.user:
        raise UsageError(f"guest {guest.host!r}: give --guest-host HOST[:PORT] and "
                         "--guest-user USER")
    return SshTarget(host, int(port), guest.user)


def _check_name(kind: str, name: str) -> str:
    name = name.strip()
    if not name or len(name) > 80 or any(c in name for c in "/\\\0") or not name.isprintable():
        raise UsageError(f"{kind} name {name!r} is not usable: give 1 to 80 printable "
                         "characters without slashes")
    return name


def schedule_of(spec: api.ScheduleSpec) -> Schedule:
    """The wire form of a schedule as the pure ``Schedule`` (UsageError when it is wrong)."""
    weekday = None
    if spec.weekday is not None:
        day = parse_days(spec.weekday)
        if len(day) != 1:
            raise UsageError(f"{spec.weekday!r} is not one weekday (mon … sun)")
        weekday = day[0]
    return Schedule(
        kind=spec.kind, at=parse_time(spec.at) if spec.at else None,
        days=parse_days(spec.days or ""), day_of_month=spec.day_of_month, nth=spec.nth,
        weekday=weekday, every=parse_period(spec.every) if spec.every else None,
        after=spec.after, tz=spec.tz, window=tuple(parse_window(w) for w in spec.window))


def _key_secret(repository: str) -> str:
    """The secret holding the copy of a repository's block-id key file."""
    return f"repository/{repository}/block-id-key"


def _secret(vcenter: str) -> str:
    return f"vcenter/{vcenter}/password"


def _check_new_repository(cat: Catalog, name: str, location: str) -> None:
    """A new repository's name and location are not in use yet (ConflictError)."""
    if cat.repository_name(name) is not None:
        raise ConflictError(f"a repository named {name!r} exists already; choose another name")
    taken = [r.name for r in cat.repository_names() if r.location == location]
    if taken:
        raise ConflictError(f"{location} is already repository {taken[0]!r}")


class Registry:
    def __init__(self, home: Home) -> None:
        self.home = home
        self.secrets = SecretStore(home.root)
        self._remote_space: dict[str, tuple[int, int] | None] = {}
        self._cat = Catalog.open(home.root / CATALOG_NAME, sealed=True)
        self._lock = threading.Lock()
        self._queries = Stopper()

    def close(self) -> None:
        self.stop_queries()
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
        writes a repository. Never holds the registry's catalog lock, so the API answers
        meanwhile."""
        from appliance.jobs.workspace import open_workspace

        with open_workspace(repo, self.cursor, exclusive=exclusive, operation=operation,
                            rescan=rescan, read_only_ok=read_only_ok,
                            rescan_hint=f"`vmkeep repo rescan {name}`") as ws:
            if ws.lock.note:  # reading without a lock: the repository cannot be written
                log.warning("%s", ws.lock.note)
            yield ws

    # -- administrators' SQL ------------------------------------------------------------------

    def query(self, sql: str, *, max_rows: int, timeout: float) -> QueryResult:
        """One read-only SELECT over the catalog (see ``catalog.query``)."""
        if not 1 <= max_rows <= MAX_ROWS:
            raise UsageError(f"max_rows must be 1 to {MAX_ROWS}, not {max_rows}")
        if not 0 < timeout <= MAX_SECONDS:
            raise UsageError(f"the time limit must be more than 0 and at most {MAX_SECONDS:g} "
                             f"seconds, not {timeout:g}")
        check = self.cursor()  # its own cursor: the registry's catalog lock is not held
        try:
            log.info("catalog query (limit %g s, %d rows): %s", timeout, max_rows,
                     " ".join(sql.split())[:500])
            hold_point("catalog-query")
            return check.select(sql, max_rows=max_rows, timeout=timeout,
                                stopper=self._queries)
        except QueryStopped as exc:
            raise ApplianceError(str(exc)) from None
        except QueryRefused as exc:
            raise BadInputError(f"query refused: {exc}") from None
        finally:
            check.close()

    def stop_queries(self) -> None:
        """Interrupt the administrators' queries that run now and refuse new ones (the
        appliance is stopping)."""
        self._queries.stop()

    # -- vCenters -----------------------------------------------------------------------------

    def add_vcenter(self, name: str, host: str, port: int, user: str, password: str, *,
                    fingerprint: str | None, insecure: bool) -> VCenterRow:
        """Log in once (which checks the pin, or shows the server's fingerprint when none
        was given), then remember the vCenter and its password."""
        from appliance.vsphere.session import connect

        name = _check_name("vCenter", name)
        with self.catalog() as cat:
            if cat.vcenter(name) is not None:
                raise ConflictError(f"a vCenter named {name!r} exists already; choose another "
                                    "name, or `vmkeep vcenter edit` it")
        with connect(host, port, user, password, fingerprint=fingerprint,
                     insecure=insecure) as session:
            pinned = session.fingerprint
        row = VCenterRow(name, host, port, user, pinned, insecure, datetime.now(UTC))
        self.secrets.put(_secret(name), password)
        with self.catalog() as cat:
            cat.add_vcenter(row)
        return row

    def vcenters(self) -> list[VCenterRow]:
        with self.catalog() as cat:
            return cat.vcenters()

    def vcenter(self, name: str) -> VCenterRow:
        with self.catalog() as cat:
            row = cat.vcenter(name)
        if row is None:
            raise NotFoundError(f"no vCenter named {name!r}; `vmkeep vcenter list` shows them")
        return row

    def edit_vcenter(self, name: str, *, host: str | None = None, port: int | None = None,
                     user: str | None = None, password: str | None = None,
                     fingerprint: str | None = None, insecure: bool | None = None
                     ) -> VCenterRow:
        """Change what is given; log in with the result before keeping it (re-pinning a
        renewed certificate is ``fingerprint=``)."""
        from appliance.vsphere.session import connect

        old = self.vcenter(name)
        new_insecure = old.insecure if insecure is None else insecure
        pin = fingerprint if fingerprint is not None else (None if new_insecure
                                                           else old.fingerprint)
        secret = password if password is not None else self.secrets.get(_secret(name))
        row = VCenterRow(name, host or old.host, port or old.port, user or old.user, pin,
                         new_insecure, old.added)
        with connect(row.host, row.port, row.user, secret, fingerprint=pin,
                     insecure=new_insecure) as session:
            row = VCenterRow(row.name, row.host, row.port, row.user, session.fingerprint,
                             row.insecure, row.added)
        if password is not None:
            self.secrets.put(_secret(name), password)
        with self.catalog() as cat:
            cat.update_vcenter(row)
        return row

    def test_vcenter(self, name: str) -> int:
        """Log in with what is stored; returns the number of VMs it sees."""
        from appliance.vsphere.inventory import list_vms
        from appliance.vsphere.session import connect

        row = self.vcenter(name)
        with connect(row.host, row.port, row.user, self.secrets.get(_secret(name)),
                     fingerprint=row.fingerprint, insecure=row.insecure) as session:
            return len(list_vms(session))

    def remove_vcenter(self, name: str) -> None:
        self.vcenter(name)
        with self.catalog() as cat:
            cat.remove_vcenter(name)
        self.secrets.delete(f"vcenter/{name}/")

    # -- repositories -------------------------------------------------------------------------

    def add_repository(self, name: str, path: str, *, ssh_key: str | None = None,
                       ssh_password: str | None = None,
                       host_key_fingerprint: str | None = None,
                       encryption_password: str | None = None,
                       reconnect_every: float | None = None,
                       reconnect_for: float | None = None) -> RepositoryInfo:
        """Use the repository at ``path`` under ``name``: a missing folder is created (with a
        new repository in it); an existing repository is imported (its points indexed).
        ``path`` is a folder or ``sftp://USER@HOST[:PORT]/PATH``; an SSH repository logs in
        with ``ssh_key`` (a private key's text; ``ssh_password`` its passphrase) or
        ``ssh_password``, and its host key must have ``host_key_fingerprint`` (without one,
        the error shows the host's). ``encryption_password`` opens an encrypted repository
        and makes a new one encrypted. Keys and passwords go to the secret store."""
        from appliance.repository.address import Address
        from appliance.repository.sftp import is_sftp
        from appliance.ssh import SshAuth

        name = _check_name("repository", name)
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
        with self.catalog() as cat:
            _check_new_repository(cat, name, location)
        with address.open(create=True) as repo:
            _tighten(repo, name)
            # Indexed in a workspace of its own (the catalog lock is not held meanwhile).
            with self.workspace(repo, name, exclusive=False, operation="import", rescan=True):
                pass
            self._note_space(name, repo)
            self._keep_key(name, repo)
            with self.catalog() as cat:
                _check_new_repository(cat, name, location)  # still free after the import
                for kind, value in (("ssh-key", ssh_key), ("ssh-password", ssh_password),
                                    ("encryption-password", encryption_password)):
                    if value:
                        self.secrets.put(f"repository/{name}/{kind}", value)
                cat.add_repository_name(RepositoryName(
                    name, location, repo.id, datetime.now(UTC), address.fingerprint,
                    reconnect_every, reconnect_for))
        return self.repository(name)

    def edit_repository(self, name: str, *, host_key_fingerprint: str | None = None,
                        ssh_key: str | None = None,
                        ssh_password: str | None = None) -> RepositoryInfo:
        """An SSH repository's login or pinned host key from now on (re-trust a host's new
        key): checked by logging in with the result before it is kept."""
        from appliance.repository.address import Address
        from appliance.ssh import SshAuth

        info = self.repository(name)
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
                raise BadInputError(f"{info.location} now holds another repository "
                                    f"({repo.id}, not {info.repo_id}); remove and add it again")
        if ssh_key or ssh_password is not None:
            for kind, value in (("ssh-key", auth.key_data), ("ssh-password", auth.password)):
                self.secrets.delete(f"repository/{name}/{kind}")
                if value:
                    self.secrets.put(f"repository/{name}/{kind}", value)
        if address.fingerprint:
            with self.catalog() as cat:
                cat.set_host_key(name, address.fingerprint)
        return self.repository(name)

    def address(self, info: RepositoryInfo, secrets: dict[str, str] | None = None
                ) -> Address:
        """Where the repository is and how to log in (``appliance.repository.address``),
        with the secrets of the store (or of ``secrets``)."""
        from appliance.repository.address import Address
        from appliance.repository.sftp import Reconnect
        from appliance.ssh import SshAuth

        find = secrets.get if secrets is not None else self.secrets.find
        encryption = find(f"repository/{info.name}/encryption-password")
        if not info.remote:
            return Address(info.location, password=encryption)
        auth = SshAuth(key_data=find(f"repository/{info.name}/ssh-key"),
                       password=find(f"repository/{info.name}/ssh-password"))
        default = Reconnect()
        reconnect = Reconnect(info.reconnect_every or default.every,
                              info.reconnect_for or default.give_up)
        return Address(info.location, auth, info.host_key_fingerprint, reconnect,
                       password=encryption)

    def open_repository(self, info: RepositoryInfo, *,
                        on_reconnect: Callable[[str], None] | None = None) -> Repository:
        """The repository, opened (close it, or use it in ``with``). An SSH repository's
        free space is noted for ``RepositoryInfo.space``."""
        repo = self.address(info).open(create=False, on_reconnect=on_reconnect)
        self._note_space(info.name, repo)
        repo.key_repair = (f"run `vmkeep repo repair-key {info.name}` to put it back from "
                           "the appliance's copy")
        if _key_secret(info.name) not in self.secrets.names():
            self._keep_key(info.name, repo)
        return repo

    def _keep_key(self, name: str, repo: Any) -> None:
        """Keep a sealed copy of the repository's block-id key file in the secret store (so
        the configuration backup carries it too), once the file is known to be intact."""
        from appliance.errors import IntegrityError

        try:
            repo.block_key()  # checks the file
            data = repo.backend.get(f"keys/{repo.config.key_id}")
        except (IntegrityError, NotFoundError):
            return  # damaged already: nothing good to keep (repair-key says so)
        self.secrets.put(_key_secret(name), json.dumps(
            {"key_file": f"keys/{repo.config.key_id}", "repo_id": repo.id,
             "data": base64.b64encode(data).decode()}))

    def repair_key(self, name: str) -> str:
        """Write the appliance's copy of the repository's block-id key file back (through
        tmp/ and a rename), when the file there is missing or damaged; never over an intact
        key file that differs from the copy."""
        from appliance.errors import IntegrityError
        from appliance.repository.repo import Repository

        info = self.repository(name)
        kept = self.secrets.find(_key_secret(name))
        if kept is None:
            raise NotFoundError(
                f"the appliance keeps no copy of repository {name!r}'s block-id key (the key "
                "was damaged before the appliance first opened the repository, or the copy "
                "came from no configuration backup); restores still work, backups need the "
                "key: put the key file back from a copy of the repository's keys/ folder")
        doc = json.loads(kept)
        key_file, data = str(doc["key_file"]), base64.b64decode(doc["data"])
        with self.open_repository(info) as repo:
            if repo.id != info.repo_id or doc.get("repo_id") not in (None, repo.id):
                raise BadInputError(f"{info.location} now holds another repository "
                                    f"({repo.id}, not {info.repo_id}); remove and add it again")
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

    def _note_space(self, name: str, repo: Any) -> None:
        """An SSH repository's free space, for ``RepositoryInfo.space`` to report."""
        space = getattr(repo.backend, "space", None)
        if space is not None:
            self._remote_space[name] = space()

    def space_now(self, info: RepositoryInfo) -> tuple[int, int] | None:
        """(free, total) of the repository's storage now: an SSH repository is opened."""
        if not info.remote:
            return info.space()
        self.open_repository(info).close()
        return self._remote_space.get(info.name)

    def repository(self, name: str) -> RepositoryInfo:
        return next((r for r in self.repositories() if r.name == name), None) or \
            self._no_repository(name)

    def _no_repository(self, name: str) -> RepositoryInfo:
        raise NotFoundError(f"no repository named {name!r}; `vmkeep repo list` shows them")

    def repositories(self) -> list[RepositoryInfo]:
        sealed = self.secrets.names()
        with self.catalog() as cat:
            out = []
            for r in cat.repository_names():
                points = cat.points(r.repo_id)
                out.append(RepositoryInfo(r.name, r.location, r.repo_id, r.added, len(points),
                                          cat.total_pack_bytes(r.repo_id),
                                          sum(p.bytes_read for p in points),
                                          r.host_key_fingerprint,
                                          self._remote_space.get(r.name),
                                          f"repository/{r.name}/encryption-password" in sealed,
                                          r.reconnect_every, r.reconnect_for,
                                          r.immutable_days, r.epoch_days,
                                          max(cat.ledger(r.repo_id).values(), default=None)))
            return out

    def rescan_repository(self, name: str) -> RepositoryInfo:
        info = self.repository(name)
        with self.open_repository(info) as repo:
            if repo.id != info.repo_id:
                raise BadInputError(f"{info.location} now holds another repository "
                                    f"({repo.id}, not {info.repo_id}); remove and add it again")
            with self.workspace(repo, name, exclusive=False, operation="rescan",
                                rescan=True) as ws:
                if info.immutable_days is not None:
                    self.restore_ledger(ws.repo, ws.cat)
        return self.repository(name)

    def remove_repository(self, name: str) -> None:
        """Forget the repository (its files stay where they are)."""
        info = self.repository(name)
        with self.catalog() as cat:
            cat.remove_repository_name(name)
            cat.clear_index(info.repo_id)
        self.secrets.delete(f"repository/{name}/")

    # -- jobs ---------------------------------------------------------------------------------

    def add_job(self, spec: api.JobCreate, *, replacing: JobRow | None = None) -> JobRow:
        """Check the job's names, resolve its VMs to instance UUIDs, keep it (enabled; or, when
        ``replacing`` an existing job, with that one's state and creation time)."""
        from appliance.jobs.backup import block_size_named
        from appliance.repository import codec
        from appliance.vsphere.inventory import find_vm, vms_in_container
        from appliance.vsphere.session import connect

        name = _check_name("job", spec.name)
        block_size_named(spec.block_size)
        codec.compression_named(spec.compression)
        if spec.copy_of and (spec.vms or spec.containers):
            raise UsageError("a backup copy job copies other jobs' points: give --copy-of JOB "
                             "without --vm or --container")
        if spec.logs is not None:
            if spec.guest is None:
                raise UsageError("a log backup job collects from a guest: give --guest-host, "
                                 "--guest-user and its login")
            if spec.vms or spec.containers or spec.copy_of:
                raise UsageError("a log backup job names its VM with --logs-of VM only")
            if not spec.logs.folder.startswith("/"):
                raise UsageError(f"--log-folder {spec.logs.folder!r} must be an absolute "
                                 "path in the guest")
        elif not spec.vms and not spec.containers and not spec.copy_of:
            raise UsageError("a job needs at least one VM or container: give --vm NAME or "
                             "--container INVENTORY_PATH (or --copy-of JOB for a copy job)")
        if not 1 <= spec.parallel_vms <= MAX_PARALLEL_VMS:
            raise UsageError(f"--parallel-vms must be 1 … {MAX_PARALLEL_VMS}, not "
                             f"{spec.parallel_vms}")
        if spec.keep_last is not None and spec.keep_last < 1:
            raise UsageError(f"--keep-last must be at least 1, not {spec.keep_last}")
        if spec.keep_days is not None and spec.keep_days <= 0:
            raise UsageError(f"--keep-days must be more than 0, not {spec.keep_days:g}")
        schedule_of(spec.schedule)  # a bad schedule fails before anything is stored
        excluded_disks(spec.exclude_disks, "")
        active_full_due(spec.active_full, spec.schedule.tz, datetime.now(UTC), None)
        if spec.schedule.kind == "after" and spec.schedule.after == name:
            raise UsageError(f"job {name!r} cannot run after itself")
        if spec.rpo_hours is not None and spec.rpo_hours <= 0:
            raise UsageError(f"--rpo must be more than 0 hours, not {spec.rpo_hours:g}")
        if not 0 <= spec.retries <= 100 or spec.retry_wait_seconds < 0:
            raise UsageError("retries must be 0 … 100 and the wait between them not negative")
        if spec.quiesce_fallback not in ("fail", "warn"):
            raise UsageError(f"--quiesce-fallback must be fail or warn, not "
                             f"{spec.quiesce_fallback!r}")
        guest = self._check_guest(name, spec.guest, replacing)
        with self.catalog() as cat:
            if replacing is None and cat.job(name) is not None:
                raise ConflictError(f"a job named {name!r} exists already; choose another "
                                    "name")
        self.repository(spec.repository)
        containers = ["/" + c.strip().strip("/") for c in spec.containers]
        if spec.copy_of or spec.logs is not None:
            vms = []
            for source in spec.copy_of or []:
                if source == name:
                    raise UsageError(f"job {name!r} cannot copy itself")
                src = api.JobSpec.model_validate_json(self.job(source).spec_json)
                if src.copy_of:
                    raise UsageError(f"job {source!r} is a copy job itself; copy the backup "
                                     "job it copies")
                if src.repository == spec.repository:
                    raise UsageError(f"job {source!r} writes to repository "
                                     f"{spec.repository!r} already; copy to another one")
        else:
            if not spec.vcenter:
                raise UsageError("a backup job needs the vCenter its VMs are on: --vcenter NAME")
            vc = self.vcenter(spec.vcenter)
            with connect(vc.host, vc.port, vc.user, self.secrets.get(_secret(vc.name)),
                         fingerprint=vc.fingerprint, insecure=vc.insecure) as session:
                vms = [find_vm(session, v) for v in spec.vms]
                for path in containers:
                    vms_in_container(session, path)  # a wrong path fails now, not at 2 a.m.
        stored = api.JobSpec(
            name=name, vcenter=spec.vcenter, repository=spec.repository,
            vms=[api.JobVm(name=v.name, instance_uuid=v.instance_uuid) for v in vms],
            containers=list(dict.fromkeys(containers)), parallel_vms=spec.parallel_vms,
            block_size=spec.block_size, compression=spec.compression,
            enable_cbt=spec.enable_cbt, quiesce=spec.quiesce, sample_blocks=spec.sample_blocks,
            keep_last=spec.keep_last, keep_days=spec.keep_days, schedule=spec.schedule,
            retries=spec.retries, retry_wait_seconds=spec.retry_wait_seconds,
            notify_to=spec.notify_to, exclude_disks=spec.exclude_disks,
            active_full=spec.active_full, rpo_hours=spec.rpo_hours,
            copy_of=list(dict.fromkeys(spec.copy_of)), guest=guest,
            quiesce_fallback=spec.quiesce_fallback, logs=spec.logs)
        row = JobRow(name, stored.model_dump_json(),
                     replacing.enabled if replacing else True,
                     replacing.created if replacing else datetime.now(UTC))
        with self.catalog() as cat:
            cat.put_job(row)
        if spec.guest is not None and (spec.guest.key or spec.guest.password is not None):
            self.secrets.delete(f"job/{name}/")
            for kind, value in (("guest-key", spec.guest.key),
                                ("guest-password", spec.guest.password)):
                if value:
                    self.secrets.put(f"job/{name}/{kind}", value)
        return row

    def _check_guest(self, job: str, guest: api.GuestCreate | None,
                     replacing: JobRow | None) -> api.GuestSpec | None:
        """The guest processing a job keeps (its secret apart), checked."""
        from appliance.ssh import normalize_fingerprint

        if guest is None:
            return None
        _guest_target(guest)
        for what, value in (("--on-script-failure", guest.on_script_failure),
                            ("--guest-unreachable", guest.unreachable)):
            if value not in ("fail", "warn"):
                raise UsageError(f"{what} must be fail or warn, not {value!r}")
        if not 1 <= guest.script_timeout_seconds <= 86400:
            raise UsageError("a script's time limit must be 1 s to 1 day")
        if not guest.key and guest.password is None and not (
                replacing is not None and any(n.startswith(f"job/{job}/guest-")
                                              for n in self.secrets.names())):
            raise UsageError("the guest login needs --guest-key FILE or --guest-password-file "
                             "FILE")
        return api.GuestSpec(
            host=guest.host, user=guest.user,
            host_key_fingerprint=normalize_fingerprint(guest.host_key_fingerprint),
            pre_freeze=guest.pre_freeze, post_thaw=guest.post_thaw,
            script_timeout_seconds=guest.script_timeout_seconds,
            on_script_failure=guest.on_script_failure, unreachable=guest.unreachable,
            postgres=guest.postgres)

    def guest_login(self, job: str, guest: api.GuestSpec, reported_ip: str = ""
                    ) -> tuple[Any, Any, str]:
        """(SshTarget, SshAuth, pinned fingerprint) of a job's guest; ``--guest-host tools``
        takes the address VMware Tools report (``reported_ip``)."""
        from appliance.ssh import SshAuth, SshTarget, SshUnreachableError

        auth = SshAuth(key_data=self.secrets.find(f"job/{job}/guest-key"),
                       password=self.secrets.find(f"job/{job}/guest-password"))
        target = _guest_target(guest)
        if target.host == "tools":
            if not reported_ip:
                raise SshUnreachableError("VMware Tools report no IP address for the VM (are "
                                          "they running?); set --guest-host HOST by hand")
            target = SshTarget(reported_ip, target.port, target.user)
        return target, auth, guest.host_key_fingerprint

    def job_vm_names(self, name: str) -> set[str]:
        """The VMs a backup job names, and those its sessions backed up (its containers')."""
        spec = api.JobSpec.model_validate_json(self.job(name).spec_json)
        with self.catalog() as cat:
            seen = cat.job_task_vms(name)
        return {v.name for v in spec.vms} | seen

    def edit_job(self, name: str, changes: api.JobEdit) -> JobRow:
        """Change what is given; the rest stays. VMs given again are resolved again."""
        row = self.job(name)
        old = api.JobSpec.model_validate_json(row.spec_json)
        merged = old.model_dump(exclude={"vms"})
        merged["vms"] = [v.instance_uuid for v in old.vms]
        merged.update(changes.model_dump(exclude_unset=True))
        return self.add_job(api.JobCreate.model_validate(merged), replacing=row)

    def jobs(self) -> list[JobRow]:
        with self.catalog() as cat:
            return cat.jobs()

    def job(self, name: str) -> JobRow:
        with self.catalog() as cat:
            row = cat.job(name)
        if row is None:
            raise NotFoundError(f"no job named {name!r}; `vmkeep job list` shows them")
        return row

    def set_job_enabled(self, name: str, enabled: bool) -> JobRow:
        row = self.job(name)
        new = JobRow(row.name, row.spec_json, enabled, row.created)
        with self.catalog() as cat:
            cat.put_job(new)
        return new

    def remove_job(self, name: str) -> None:
        self.job(name)
        with self.catalog() as cat:
            cat.remove_job(name)
        self.secrets.delete(f"job/{name}/")

    def vcenter_password(self, name: str) -> str:
        return self.secrets.get(_secret(name))

    # -- restore points -----------------------------------------------------------------------

    def points(self, vm: str | None = None) -> list[tuple[str, PointRow, list[DiskRow]]]:
        """(repository name, point, its disks) of every repository, oldest first."""
        with self.catalog() as cat:
            names = {r.repo_id: r.name for r in cat.repository_names()}
            out = [(names[p.repo_id], p, cat.disks(p.point_id))
                   for p in cat.points(None, vm) if p.repo_id in names]
        return sorted(out, key=lambda t: (t[1].created, t[1].point_id))

    def guest_processing(self) -> dict[str, dict[str, Any]]:
        with self.catalog() as cat:
            return cat.guest_processing()

    def restore_postgres(self, point_id: str, data_dir: str, until: datetime | None) -> str:
        """Make ``data_dir`` (PostgreSQL's data folder taken out of the point's restored disk)
        ready for point-in-time recovery: its backup label, every WAL file the VM's log
        backup job stored (in ``vmkeep-wal/``), recovery.signal and the settings."""
        from appliance.jobs.log_backup import logs_object
        from appliance.jobs.restore import restore_disk

        folder = Path(data_dir)
        if not folder.is_absolute() or not (folder / "PG_VERSION").is_file():
            raise UsageError(f"{data_dir} is not a PostgreSQL data folder (no PG_VERSION): take "
                             "the data folder out of the restored disk first")
        with self.catalog() as cat:
            row = cat.point(point_id)
            names = {r.repo_id: r.name for r in cat.repository_names()}
            pg = (cat.guest_processing().get(point_id) or {}).get("postgres") or {}
        if row is None or row.repo_id not in names:
            raise NotFoundError(f"no restore point {point_id!r}; `vmkeep points list` shows "
                                "them")
        label = pg.get("backup_label")
        if not label:
            raise UsageError(f"point {point_id} holds no PostgreSQL base backup (its job had no "
                             "--postgres, or pg_backup_stop failed); it can only be started "
                             "with crash recovery")
        (folder / "backup_label").write_text(label)
        for stale in ("postmaster.pid", "postmaster.opts"):  # as pg_basebackup leaves out
            (folder / stale).unlink(missing_ok=True)
        if pg.get("tablespace_map"):
            (folder / "tablespace_map").write_text(pg["tablespace_map"])
        wal = folder / "vmkeep-wal"
        wal.mkdir(exist_ok=True)
        count = 0
        name = names[row.repo_id]
        with self._repo(name) as repo, self.workspace(repo, name, exclusive=False,
                                                      operation="restore postgres") as ws:
            hold_point("restore-postgres-locked", point_id)
            for p in ws.cat.points(repo.id, logs_object(row.object_name)):
                for d in ws.cat.disks(p.point_id):
                    target = wal / d.label
                    if not target.exists():
                        restore_disk(ws, p.point_id, d.disk_index, target)
                        count += 1
        (folder / "recovery.signal").write_text("")
        settings = [f"restore_command = 'cp \"{wal}/%f\" \"%p\"'",
                    "recovery_target_action = 'promote'"]
        if until is not None:
            settings.append(f"recovery_target_time = '{until.isoformat()}'")
        with (folder / "postgresql.auto.conf").open("a") as f:
            f.write("\n# vmkeep restore postgres\n" + "\n".join(settings) + "\n")
        return (f"{folder}: backup_label of point {point_id}, {count} WAL file(s) in {wal}, "
                "recovery.signal and " + ", ".join(s.split(" =")[0] for s in settings)
                + "; start PostgreSQL on it (as the data folder's owner) to replay")

    def restore_disk(self, point_id: str, disk: int, target: str) -> int:
        """Write disk ``disk`` of ``point_id`` to the new file ``target``; returns its size."""
        from appliance.jobs.restore import restore_disk

        path = Path(target)
        if not path.is_absolute():
            raise UsageError(f"restore target {target!r} is relative; give an absolute path")
        with self.catalog() as cat:
            row = cat.point(point_id)
            infos = {r.repo_id: r for r in cat.repository_names()}
            if row is None or row.repo_id not in infos:
                raise NotFoundError(f"no restore point {point_id!r} in the appliance's "
                                    "repositories; `vmkeep points list` shows them")
            name = infos[row.repo_id].name
        with self._repo(name) as repo, self.workspace(repo, name, exclusive=False,
                                                      operation="restore",
                                                      read_only_ok=True) as ws:
            return restore_disk(ws, point_id, disk, path).size

    # -- Snapshot Hunter ----------------------------------------------------------------------

    def hunt(self, *, vcenter: str | None, dry_run: bool, include_foreign: bool
             ) -> list[tuple[str, list[str]]]:
        """Run the Snapshot Hunter on one vCenter or all; (vCenter, lines) for each."""
        from appliance.vsphere.hunter import describe, execute_hunt, plan_hunt
        from appliance.vsphere.session import connect

        rows = [self.vcenter(vcenter)] if vcenter else self.vcenters()
        out = []
        for vc in rows:
            with connect(vc.host, vc.port, vc.user, self.secrets.get(_secret(vc.name)),
                         fingerprint=vc.fingerprint, insecure=vc.insecure) as session:
                plan = plan_hunt(session, include_foreign=include_foreign)
                lines = describe(plan)
                if not dry_run and not plan.empty:
                    result = execute_hunt(session, plan)
                    lines += [f"{o.status.value}: VM {o.finding.vm_name!r}: {o.detail}"
                              for o in result.outcomes]
            out.append((vc.name, lines))
        return out

    def hunt_findings(self) -> dict[str, list[tuple[str, str]]]:
        """The Snapshot Hunter's findings (VM name, what) on each vCenter, planned only; a
        vCenter that cannot be reached is a finding of its own."""
        from appliance.vsphere.hunter import plan_hunt

        out: dict[str, list[tuple[str, str]]] = {}
        for vc in self.vcenters():
            try:
                with self._session(vc.name) as session:
                    out[vc.name] = [(f.vm_name, f.what) for f in plan_hunt(session).findings]
            except VmkeepError as exc:
                log.warning("the Snapshot Hunter could not look at vCenter %s: %s", vc.name,
                            exc)
        return out

    # -- settings -----------------------------------------------------------------------------

    def notifications(self) -> api.Notifications:
        with self.catalog() as cat:
            text = cat.setting("notifications")
        return api.Notifications.model_validate_json(text) if text else api.Notifications()

    def set_notifications(self, value: api.Notifications) -> api.Notifications:
        bad = [r for r in value.on if r not in ("failed", "warning", "success")]
        if bad:
            raise UsageError(f"cannot notify on {', '.join(bad)}: choose from failed, warning, "
                             "success")
        if value.webhook_url and not value.webhook_url.startswith(("http://", "https://")):
            raise UsageError(f"webhook {value.webhook_url!r} is not an http(s) URL")
        with self.catalog() as cat:
            cat.put_setting("notifications", value.model_dump_json())
        return value

    # -- configuration backup -----------------------------------------------------------------

    def config_schedule(self) -> api.ConfigScheduleView:
        with self.catalog() as cat:
            text = cat.setting("config_backup")
        if not text:
            return api.ConfigScheduleView(repository=None, schedule=api.ScheduleSpec(),
                                          last_backup=None, last_result=None,
                                          last_message=None)
        return api.ConfigScheduleView.model_validate_json(text)

    def set_config_schedule(self, value: api.ConfigSchedule) -> api.ConfigScheduleView:
        """Back the configuration up on a schedule (kind none turns it off). A password given
        replaces the one the appliance generated (or was given before)."""
        schedule_of(value.schedule)
        if value.schedule.kind == "after":
            raise UsageError("a configuration backup runs on a time schedule, not after a job")
        if value.schedule.kind != "none":
            if value.repository is None:
                raise UsageError("name the repository the configuration goes to: --repo NAME")
            self.repository(value.repository)
            if value.password is None and CONFIG_PASSWORD not in self.secrets.names():
                raise UsageError("give the password that seals the configuration backups "
                                 "(--password-stdin, --password-file or "
                                 "VMKEEP_CONFIG_PASSWORD)")
        if value.password is not None:
            self.secrets.put(CONFIG_PASSWORD, value.password)
        old = self.config_schedule()
        view = api.ConfigScheduleView(
            repository=value.repository, schedule=value.schedule,
            last_backup=old.last_backup, last_result=old.last_result,
            last_message=old.last_message,
            password_generated=old.password_generated and value.password is None)
        with self.catalog() as cat:
            cat.put_setting("config_backup", view.model_dump_json())
        return view

    def default_config_backup(self) -> api.ConfigScheduleView | None:
        """Set up the default configuration backup when none was ever set (not even turned
        off) and the appliance has a repository: daily at ``DEFAULT_CONFIG_AT`` UTC into the
        first repository added, sealed with a password generated into the secret store
        (the one stored already, if any). None when there is nothing to do."""
        with self.catalog() as cat:
            if cat.setting("config_backup") is not None:
                return None
            names = cat.repository_names()
        if not names:
            return None
        first = min(names, key=lambda r: (r.added, r.name))
        if CONFIG_PASSWORD not in self.secrets.names():
            self.secrets.put(CONFIG_PASSWORD, token_urlsafe(24))
        view = api.ConfigScheduleView(
            repository=first.name, schedule=api.ScheduleSpec(kind="daily",
                                                             at=DEFAULT_CONFIG_AT),
            last_backup=None, last_result=None, last_message=None, password_generated=True)
        with self.catalog() as cat:
            if cat.setting("config_backup") is not None:  # set meanwhile: that one holds
                return None
            cat.put_setting("config_backup", view.model_dump_json())
        log.info("configuration backups: daily at %s UTC into repository %s, sealed with a "
                 "generated password (set your own: `vmkeep config schedule "
                 "--password-stdin`)", DEFAULT_CONFIG_AT, first.name)
        return view

    def _config_state(self, *, with_secrets: bool = True) -> dict[str, Any]:
        """The state document a configuration backup seals (its secrets left empty unless
        ``with_secrets``)."""
        from appliance import config_backup as cb

        with self.catalog() as cat:
            settings = {n: t for n in ("notifications", "config_backup")
                        if (t := cat.setting(n)) is not None}
            vcenters, names, jobs = cat.vcenters(), cat.repository_names(), cat.jobs()
        return cb.state_document(vcenters, names, jobs, settings,
                                 self.secrets.all() if with_secrets else {})

    def _config_digest(self) -> str:
        """What the configuration is now, as a digest: the state without what a backup itself
        changes (when it ran, how it went), and the secret store's sealed bytes (never a
        hash of a secret in clear)."""
        from appliance import config_backup as cb

        try:
            sealed = self.secrets.path.read_bytes()
        except FileNotFoundError:
            sealed = b""
        return cb.digest(self._config_state(with_secrets=False), sealed)

    def config_changed(self) -> bool:
        """Whether the configuration changed since the last successful scheduled backup."""
        digest = self._config_digest()
        with self.catalog() as cat:
            return cat.setting("config_backup_digest") != json.dumps(digest)

    def scheduled_config_backup(self, now: datetime) -> api.ConfigScheduleView:
        """Run the scheduled configuration backup now and keep how it went."""
        view = self.config_schedule()
        if view.repository is None:
            raise UsageError("no configuration backup is scheduled")
        digest = self._config_digest()  # before the state: a change meanwhile is seen next
        try:
            path = self._write_config(view.repository, self._config_state(),
                                      self.secrets.get(CONFIG_PASSWORD), record=True)
            result, message = "success", str(path)
        except VmkeepError as exc:
            result, message = "failed", str(exc)
        update = {"last_backup": now, "last_result": result, "last_message": message}
        with self.catalog() as cat:
            # The schedule as it is now: it may have been changed (or turned off) meanwhile.
            text = cat.setting("config_backup")
            current = api.ConfigScheduleView.model_validate_json(text) if text else view
            done = current.model_copy(update=update)
            cat.put_setting("config_backup", done.model_dump_json())
            if result == "success":
                cat.put_setting("config_backup_digest", json.dumps(digest))
        return done

    def config_backup(self, repository: str, password: str) -> str:
        """Seal the appliance's state and secrets with ``password`` into the repository;
        where it went."""
        return self._write_config(repository, self._config_state(), password, record=False)

    def _write_config(self, repository: str, doc: dict[str, Any], password: str, *,
                      record: bool) -> str:
        """Seal ``doc`` into the repository; where it went. ``record``: a scheduled backup,
        sealed with the password the secret store keeps: its path is recorded in the home,
        so that a lost catalog can be restored (`config restore --from` it, no password
        needed) without knowing where to look."""
        from appliance import config_backup as cb
        from appliance.secret_store import write_private

        info = self.repository(repository)
        sealed = cb.seal(doc, password)
        if not info.remote:
            where = str(cb.write(Path(info.location), sealed))
        else:
            name = cb.backup_name()
            with self.open_repository(info) as repo:
                repo.backend.put(name, sealed)
            where = f"{info.location}/{name}"
        if record:
            write_private(self.home.last_config_backup, f"{where}\n".encode())
        return where

    def config_restore(self, path: str, password: str | None) -> api.ConfigRestored:
        """Bring a configuration backup back into this (fresh) appliance: vCenters with their
        passwords, repositories (re-indexed from their files), jobs and settings. Names that
        exist here already are refused before anything changes. Without ``password``: the
        one this appliance's secret store keeps for its configuration backups."""
        from appliance import config_backup as cb

        if password is None:
            password = self.secrets.find(CONFIG_PASSWORD)
            if password is None:
                raise UsageError("this appliance keeps no configuration backup password; "
                                 "give the one the backup was written with "
                                 "(--password-stdin, --password-file or "
                                 "VMKEEP_CONFIG_PASSWORD)")
        source, doc, skipped = cb.open_newest(Path(path), password)
        with self.catalog() as cat:
            clash = ([v["name"] for v in doc["vcenters"] if cat.vcenter(v["name"])]
                     + [r["name"] for r in doc["repositories"]
                        if cat.repository_name(r["name"])]
                     + [j["name"] for j in doc["jobs"] if cat.job(j["name"])])
        if clash:
            raise ConflictError(f"this appliance has {', '.join(sorted(clash))} already; "
                                "restore the configuration into a fresh appliance")
        from appliance.errors import RepositoryFormatError, SshError, StorageIOError

        missing = []
        infos = [RepositoryInfo(r["name"], r["location"], r["repo_id"],
                                datetime.fromisoformat(r["added"]), 0, 0, 0,
                                r.get("host_key_fingerprint"),
                                reconnect_every=r.get("reconnect_every"),
                                reconnect_for=r.get("reconnect_for"))
                 for r in doc["repositories"]]
        for info in infos:
            try:
                with self.address(info, doc["secrets"]).open(create=False) as repo:
                    found = repo.id
            except (NotFoundError, RepositoryFormatError, SshError, StorageIOError):
                found = None
            if found != info.repo_id:
                missing.append(f"{info.name} ({info.location})")
        if missing:
            raise NotFoundError(f"repositories of the backup are not where it says: "
                                f"{', '.join(missing)}; make them reachable at those paths "
                                "first (nothing was restored)")
        for name, value in doc["secrets"].items():
            self.secrets.put(name, value)
        with self.catalog() as cat:
            for v in doc["vcenters"]:
                cat.add_vcenter(VCenterRow(v["name"], v["host"], int(v["port"]), v["user"],
                                           v["fingerprint"], bool(v["insecure"]),
                                           datetime.fromisoformat(v["added"])))
            for name, text in doc["settings"].items():
                cat.put_setting(name, text)
            for j in doc["jobs"]:
                cat.put_job(JobRow(j["name"], json.dumps(j["spec"]), bool(j["enabled"]),
                                   datetime.fromisoformat(j["created"])))
        for info in infos:
            address = self.address(info, doc["secrets"])
            auth = address.auth
            self.add_repository(info.name, info.location,
                                ssh_key=auth.key_data if auth else None,
                                ssh_password=auth.password if auth else None,
                                host_key_fingerprint=info.host_key_fingerprint,
                                encryption_password=address.password,
                                reconnect_every=info.reconnect_every,
                                reconnect_for=info.reconnect_for)
        return api.ConfigRestored(
            vcenters=len(doc["vcenters"]), repositories=len(doc["repositories"]),
            jobs=len(doc["jobs"]), secrets=len(doc["secrets"]), path=str(source),
            skipped_newer=skipped)

    # -- inventory, verify, prune, VM restore -------------------------------------------------

    def _session(self, name: str) -> Any:
        from appliance.vsphere.session import connect

        vc = self.vcenter(name)
        return connect(vc.host, vc.port, vc.user, self.secrets.get(_secret(vc.name)),
                       fingerprint=vc.fingerprint, insecure=vc.insecure)

    def inventory(self, vcenter: str | None = None) -> list[api.InventoryVm]:
        from appliance.vsphere.inventory import list_vms, vms_in_container

        jobs = [api.JobSpec.model_validate_json(j.spec_json) for j in self.jobs()]
        with self.catalog() as cat:
            newest = {p.object_name: p.point_id for p in cat.points()}  # oldest first
        out = []
        for vc in [self.vcenter(vcenter)] if vcenter else self.vcenters():
            with self._session(vc.name) as session:
                held: dict[str, set[str]] = {}  # container path → instance UUIDs now in it
                for path in {c for j in jobs if j.vcenter == vc.name for c in j.containers}:
                    try:
                        held[path] = {v.instance_uuid for v in vms_in_container(session, path)}
                    except NotFoundError:
                        held[path] = set()
                for vm in list_vms(session):
                    out.append(api.InventoryVm(
                        vcenter=vc.name, datacenter=vm.datacenter, host=vm.host,
                        name=vm.name, instance_uuid=vm.instance_uuid,
                        power_state=vm.power_state, cbt_enabled=vm.cbt_enabled,
                        snapshots=[s.name for s in vm.snapshots],
                        consolidation_needed=vm.consolidation_needed,
                        disks=[api.InventoryDisk(index=d.index, capacity_bytes=d.capacity_bytes,
                                                 file_name=d.file_name,
                                                 backing_type=d.backing_type)
                               for d in vm.disks],
                        jobs=[j.name for j in jobs if j.vcenter == vc.name and (
                            any(v.instance_uuid == vm.instance_uuid for v in j.vms)
                            or any(vm.instance_uuid in held[c] for c in j.containers))],
                        last_point=newest.get(vm.name)))
        return out

    def containers(self, vcenter: str | None = None) -> list[api.InventoryContainer]:
        """Every datacenter, folder, cluster, host and resource pool of one vCenter or all."""
        from appliance.vsphere.inventory import list_containers

        out = []
        for vc in [self.vcenter(vcenter)] if vcenter else self.vcenters():
            with self._session(vc.name) as session:
                out += [api.InventoryContainer(vcenter=vc.name, kind=c.kind, path=c.path,
                                               vms=list(c.vms))
                        for c in list_containers(session)]
        return out

    def _repo(self, name: str) -> Repository:
        return self.open_repository(self.repository(name))

    def verify(self, repository: str, point: str | None) -> api.VerifyAnswer:
        from appliance.jobs.verify import verify_point, verify_repository
        from appliance.progress import human_bytes

        with self._repo(repository) as repo, self.workspace(
                repo, repository, exclusive=False, operation="verify",
                read_only_ok=True) as ws:
            report = verify_point(ws, point) if point else verify_repository(ws)
        summary = (f"checked {report.points_checked} points, {report.packs_checked} packs, "
                   f"{report.blocks_checked} blocks ({human_bytes(report.bytes_checked)})")
        return api.VerifyAnswer(
            ok=report.ok, summary=summary,
            damage=[f"{d.file}: {d.problem}; affects "
                    f"{', '.join(d.points) if d.points else 'no restore point'}"
                    for d in report.damage])

    # -- hardened repositories ----------------------------------------------------------------

    def harden_repository(self, name: str, days: int | None, epoch_days: int | None
                          ) -> RepositoryInfo:
        """Make an SSH repository hardened (``days`` None: no longer): its files become
        immutable on the host through the root-owned helper, which must answer first. What
        is there now is locked at once."""
        from appliance.repository.hardening import Hardening

        info = self.repository(name)
        if days is None:
            with self.catalog() as cat:
                cat.set_hardening(name, None, None)
            return self.repository(name)
        hardening = Hardening(days, epoch_days or min(30, days))
        if not info.remote:
            raise UsageError(f"repository {name!r} is a local folder: a hardened repository is "
                             "on another host, reached over SSH (sftp://…), where the "
                             "appliance's account cannot lift immutability")
        with self.open_repository(info) as repo:
            self._helper(repo).check()
            with self.catalog() as cat:
                cat.set_hardening(name, hardening.days, hardening.epoch_days)
            hardened = self.repository(name)
            with self.catalog() as cat:
                self.lock_files(hardened, repo, cat, cat.point_ids(repo.id))
        return self.repository(name)

    def hardening(self, info: RepositoryInfo) -> Any:
        from appliance.repository.hardening import Hardening

        if info.immutable_days is None:
            return None
        return Hardening(info.immutable_days, info.epoch_days or min(30, info.immutable_days))

    def _helper(self, repo: Any) -> Any:
        from appliance.repository.hardening import Helper

        return Helper(repo.backend, repo.backend.where.path)

    def lock_until(self, info: RepositoryInfo, repo: Any, now: datetime) -> datetime:
        from appliance.repository.hardening import lock_until

        return lock_until(self.hardening(info), datetime.fromisoformat(repo.config.created),
                          now)

    def lock_files(self, info: RepositoryInfo, repo: Any, cat: Catalog,
                   point_ids: Any) -> int:
        """Make what ``point_ids`` need immutable until their epoch's end plus the days
        (manifests, the packs of their blocks, the config and keys), with a record of it in
        the repository (``immutable/``) and the catalog's ledger. Returns the files locked."""
        from appliance.repository import objfile
        from appliance.repository.hardening import RECORDS
        from appliance.repository.manifest import manifest_name
        from appliance.repository.pack import pack_name

        until = self.lock_until(info, repo, datetime.now(UTC))
        points = sorted(point_ids)
        # The packs that hold a block of any of the points (the copy restores read: each
        # block's keeper) — one pass over the packs for them all.
        names = {manifest_name(p) for p in points}
        names |= {pack_name(u.pack_id) for u in cat.pack_usage(repo.id, points)
                  if u.live_entries}
        names |= {"config", *repo.backend.list("keys")}
        record = f"{RECORDS}/{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}.json"
        doc = {"until": until.isoformat(), "files": sorted(names)}
        repo.backend.put(record, objfile.encode_json(objfile.MAGIC_LOCK, doc))
        names.add(record)
        ordered = sorted(names)
        self._helper(repo).lock(ordered, until)
        cat.record_locks(repo.id, ordered, until)
        return len(ordered)

    def restore_ledger(self, repo: Any, cat: Catalog) -> None:
        """The lock ledger from the repository's own records (after a rescan)."""
        from appliance.repository import objfile
        from appliance.repository.hardening import RECORDS

        for name in repo.backend.list(RECORDS):
            doc = objfile.decode_json(objfile.MAGIC_LOCK, repo.backend.get(name), name)
            until = datetime.fromisoformat(str(doc["until"]))
            cat.record_locks(repo.id, [*map(str, doc["files"]), name], until)

    def guard_prune(self, info: RepositoryInfo, repo: Any, cat: Catalog, plan: Any) -> Any:
        """In a hardened repository: first let the helper lift expired locks (by the host's
        clock), then refuse to remove a point whose manifest is still immutable (with the
        date), and leave still-locked packs for later. Other repositories: ``plan``."""
        from dataclasses import replace

        from appliance.repository.hardening import refuse_immutable
        from appliance.repository.manifest import manifest_name
        from appliance.repository.pack import pack_name

        if self.hardening(info) is None:
            return plan
        helper = self._helper(repo)
        cat.forget_locks(repo.id, helper.expire())
        held = {name: until for until, _flag, name in helper.status()}  # the host's word
        refuse_immutable([manifest_name(p) for p in plan.remove_points], held,
                         "remove these restore points")
        return replace(
            plan,
            delete_packs=tuple(u for u in plan.delete_packs if pack_name(u.pack_id) not in held),
            compact_packs=tuple(u for u in plan.compact_packs
                                if pack_name(u.pack_id) not in held))

    def audit(self, name: str) -> list[str]:
        """A hardened repository's ledger against the host: one line per disagreement."""
        info = self.repository(name)
        if self.hardening(info) is None:
            raise UsageError(f"repository {name!r} is not hardened (`vmkeep repo harden`)")
        with self.open_repository(info) as repo, self.catalog() as cat:
            ledger = cat.ledger(repo.id)
            status = {n: (until, flag) for until, flag, n in self._helper(repo).status()}
        now = datetime.now(UTC)
        out = []
        for n, until in sorted(ledger.items()):
            if until <= now:
                continue
            got = status.get(n)
            if got is None:
                out.append(f"{n}: the ledger says immutable until {until:%Y-%m-%d}, the host "
                           "keeps no lock")
            elif got[1] != "i":
                out.append(f"{n}: should be immutable until {until:%Y-%m-%d} but is "
                           f"{'missing' if got[1] == 'missing' else 'not immutable'} on the "
                           "host")
        for n, (until, flag) in sorted(status.items()):
            if flag == "i" and n not in ledger:
                out.append(f"{n}: immutable on the host until {until:%Y-%m-%d}, not in the "
                           "ledger (a rescan restores the ledger)")
        return out

    def prune(self, req: api.PruneRequest) -> api.PruneAnswer:
        from appliance.jobs.prune import execute_prune, plan_prune
        from appliance.jobs.retention import RetentionPolicy

        policy = RetentionPolicy(keep_last=req.keep_last, keep_days=req.keep_days)
        info = self.repository(req.repository)
        # The repository's exclusive lock, never the registry's: the API answers meanwhile.
        # A dry run only reads: a shared lock, read-only where the repository cannot be written.
        with self._repo(req.repository) as repo, self.workspace(
                repo, req.repository, exclusive=not req.dry_run, operation="prune",
                read_only_ok=req.dry_run) as ws:
            plan = plan_prune(ws, policy, datetime.now(UTC))
            if not req.dry_run:
                plan = self.guard_prune(info, repo, ws.cat, plan)
            lines = [f"{'keep' if d.keep else 'remove'} {d.point_id} ({d.object_name}): "
                     f"{'; '.join(d.reasons) or 'no rule keeps it'}" for d in plan.decisions]
            if req.dry_run or not plan.remove_points:
                return api.PruneAnswer(lines=[*lines, "nothing was changed"
                                              if req.dry_run else "nothing to remove"],
                                       removed=[])
            result = execute_prune(ws, plan)
        return api.PruneAnswer(lines=[*lines, f"removed {result.points_removed} points"],
                               removed=list(plan.remove_points))

    def move(self, req: api.MoveRequest) -> api.MoveAnswer:
        """Every point of a job (or of one VM) to another repository: copied and verified,
        the job switched over (its next run goes on incrementally there), then removed at the
        source, unless immutable there (then kept, and said so)."""
        from appliance.jobs.copy import copy_points
        from appliance.jobs.prune import execute_prune, plan_removal
        from appliance.repository.hardening import ImmutableError

        dst_info = self.repository(req.to)
        job_row: JobRow | None = None
        if req.job is not None and req.vm is None:
            job_row = self.job(req.job)
            spec = api.JobSpec.model_validate_json(job_row.spec_json)
            if spec.copy_of:
                raise UsageError(f"job {req.job!r} is a copy job; move the points of a backup "
                                 "job")
            src_info = self.repository(spec.repository)
            names = self.job_vm_names(req.job)
        elif req.vm is not None and req.job is None:
            names = {req.vm}
            if req.source is not None:
                src_info = self.repository(req.source)
            else:
                holders = sorted({repo for repo, p, _d in self.points(req.vm)} - {req.to})
                if len(holders) != 1:
                    raise UsageError(f"VM {req.vm!r} has points in {len(holders)} other "
                                     "repositories" + (f" ({', '.join(holders)})" if holders
                                                       else "") + ": name one with --from")
                src_info = self.repository(holders[0])
        else:
            raise UsageError("move the points of a job (--job NAME) or of one VM (--vm NAME)")
        if src_info.name == dst_info.name:
            raise UsageError(f"the points are in repository {dst_info.name!r} already")
        lines: list[str] = []
        with self.open_repository(src_info) as src, self.open_repository(dst_info) as dst, \
                self.workspace(src, src_info.name, exclusive=True, operation="move") as sws, \
                self.workspace(dst, dst_info.name, exclusive=False, operation="move") as dws:
            scat = sws.cat
            ids = [p.point_id for p in scat.points(src.id) if p.object_name in names]
            if not ids:
                raise NotFoundError(f"no points of {', '.join(sorted(names))} in "
                                    f"repository {src_info.name!r}")
            hold_point("move-locked", src_info.name)
            result = copy_points(sws, dws, ids, log=lines.append)
            if result.copied and self.hardening(dst_info) is not None:
                self.lock_files(dst_info, dst, dws.cat, list(result.copied.values()))
            if job_row is not None:
                moved_spec = api.JobSpec.model_validate_json(job_row.spec_json)
                with self.catalog() as cat:
                    cat.put_job(JobRow(job_row.name, moved_spec.model_copy(
                        update={"repository": dst_info.name}).model_dump_json(),
                        job_row.enabled, job_row.created))
                lines.append(f"job {job_row.name!r} now writes to repository "
                             f"{dst_info.name!r}")
            done = [i for i in ids if i in result.copied or i in result.present]
            try:
                plan = self.guard_prune(src_info, src, scat, plan_removal(sws, done))
                execute_prune(sws, plan)
                lines.append(f"removed {len(done)} point(s) from repository "
                             f"{src_info.name!r}")
            except ImmutableError as exc:
                lines.append(f"kept the points in repository {src_info.name!r}: {exc}")
        return api.MoveAnswer(moved=len(ids), lines=lines)

    def restore_vm(self, req: api.VmRestore) -> str:
        """Restore an entire VM (see appliance.jobs.vm_restore); returns what was done."""
        from appliance.jobs import vm_restore

        with self.catalog() as cat:
            row = cat.point(req.point)
            names = {r.repo_id: r for r in cat.repository_names()}
        if row is None or row.repo_id not in names:
            raise NotFoundError(f"no restore point {req.point!r} in the appliance's "
                                "repositories; `vmkeep points list` shows them")
        jobs = [api.JobSpec.model_validate_json(j.spec_json) for j in self.jobs()]
        vcenter = next((j.vcenter for j in jobs if any(v.name == row.object_name
                                                         for v in j.vms)), None)
        if vcenter is None:
            vcs = self.vcenters()
            if len(vcs) != 1:
                raise UsageError(f"no job names VM {row.object_name!r}, so which vCenter to "
                                 "restore to is unknown; keep exactly one vCenter, or restore "
                                 "with `vmkeep vsphere restore-vm`")
            vcenter = vcs[0].name
        log: list[str] = []
        name = names[row.repo_id].name
        with self._repo(name) as repo, self._session(vcenter) as session, \
                self.workspace(repo, name, exclusive=False, operation="restore",
                               read_only_ok=True) as ws:
            if req.name:
                r = vm_restore.restore_new_vm(
                    session, ws, req.point, req.name, datastore=req.datastore,
                    host=req.host, power_on=req.power_on,
                    log=lambda lvl, m: log.append(m))
            else:
                plan = vm_restore.plan_restore_original(session, ws, req.point)
                if not req.confirm:
                    raise UsageError("restoring over the original VM overwrites its disks: "
                                     + " / ".join(plan.describe())
                                     + " — confirm it (--yes)")
                r = vm_restore.restore_original_vm(session, ws, plan,
                                                   confirm=True, power_on=req.power_on,
                                                   log=lambda lvl, m: log.append(m))
        return (f"restored point {r.point_id} to VM {r.vm_name!r} ({r.vm_moref}): "
                f"{len(r.disks)} disk(s), {r.bytes_written} bytes written")


def _tighten(repo: Repository, name: str) -> None:
    """A repository being added made private (its owner's alone), each path changed logged."""
    from appliance.private import summary
    from appliance.repository.address import tighten

    changed = tighten(repo.backend)
    if changed:
        log.warning("%s", summary(changed, f"repository {name} ({repo.location})"))
