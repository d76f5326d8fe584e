"""What the offline commands (``vmkeep image …``, ``vmkeep vsphere …``) share: a repository
folder opened by its address (``Address.open``, as the appliance opens its repositories) with
its catalog cache, locked and synchronised (``workspace``), the only way they touch a
repository. Imported when such a command runs, never to build the parser: it loads the engine
(DuckDB, the repository layer).

The catalog is kept as a cache per repository under the user's data folder
(``VMKEEP_CACHE_DIR`` overrides), resynchronised from the repository on every open.

What they make is private (folders 0700, files 0600, whatever the umask): a repository a
command writes to and the cache folder are tightened first when they have group or other
access, each path changed named in a warning on stderr (``appliance.private``).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from appliance import inputs
from appliance.errors import (
    LockedError,
    NoSpaceError,
    NotFoundError,
    StorageIOError,
    UsageError,
)
from appliance.jobs.workspace import Workspace, cleanup, open_workspace
from appliance.password import optional_password, password_from_file
from appliance.private import Tightened, make_dir, summary, tighten_files
from appliance.repository.address import Address, tighten
from appliance.repository.lock import RepoLock, read_locks
from appliance.repository.repo import Repository
from appliance.repository.sftp import is_sftp
from appliance.ssh import HostKeyUnpinnedError, SshAuth
from catalog.store import (
    Catalog,
    CatalogBusy,
    CatalogError,
    CatalogNoSpace,
    is_damaged,
    is_no_space,
)


def cache_dir() -> Path:
    env = os.environ.get("VMKEEP_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("vmkeep")) / "catalogs"


# The caches this command opened: damage met after ``Catalog.check`` sets them aside (run).
_opened: list[Path] = []


def warn_tightened(changed: list[Tightened], what: str) -> None:
    if changed:
        print(f"vmkeep: warning: {summary(changed, what)}", file=sys.stderr)


# A cache file: <repository id>.duckdb, its WAL, and what was set aside as broken.
_CACHE_FILE = re.compile(r"[0-9a-f]{32}\.duckdb(\.wal)?(\.broken)?")


def private_cache() -> Path:
    """``cache_dir()``, once it is known that it can be used (or made), made 0700: else a
    usage error that names the variable to set. When it has group or other access, it and its
    cache files (nothing else there: the folder may be the administrator's) are made private,
    with a warning."""
    folder = cache_dir()
    problem = inputs.folder_problem(folder)
    if problem is None:
        try:
            make_dir(folder)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise cache_full(exc) from None
            problem = exc.strerror or type(exc).__name__
    if problem is not None:
        where = ("VMKEEP_CACHE_DIR" if os.environ.get("VMKEEP_CACHE_DIR")
                 else "the per-user data folder (from HOME or XDG_DATA_HOME)")
        raise UsageError(f"no folder for the catalog cache: {folder}, {where}, cannot be used "
                         f"({problem}); set VMKEEP_CACHE_DIR to a folder this user can write")
    warn_tightened(tighten_files(folder, lambda n: _CACHE_FILE.fullmatch(n) is not None),
                   f"the catalog cache {folder}")
    return folder


def open_catalog(repo: Repository, lock_wait: float) -> Catalog:
    path = private_cache() / f"{repo.id}.duckdb"
    _opened.append(path)
    try:
        return checked(Catalog.open(path, wait=lock_wait))
    except CatalogBusy:
        # The catalog cannot say who has it open; the repository's locks name who is at work.
        holders = [info.describe() for _name, info in read_locks(repo.backend) if info]
        held = f" (repository held by: {'; '.join(holders)})" if holders else ""
        raise LockedError(f"catalog {path} is in use by another vmkeep process{held}; wait for "
                          "it to finish (or pass a longer --lock-wait)") from None
    except CatalogNoSpace as exc:
        raise cache_full(exc) from None
    except CatalogError as exc:
        # The catalog is a cache: a broken one is set aside and rebuilt from the repository.
        set_aside(path)
        print(f"vmkeep: warning: {exc}; set aside as {path}.broken, rebuilding the catalog "
              "cache from the repository", file=sys.stderr)
    try:
        return Catalog.open(path, wait=lock_wait)
    except CatalogNoSpace as exc:
        raise cache_full(exc) from None


def set_aside(path: Path) -> None:
    for p in (path, Path(f"{path}.wal")):
        if p.exists():
            p.rename(Path(f"{p}.broken"))


def checked(cat: Catalog) -> Catalog:
    """The catalog, once every block of it was read (DuckDB finds a damaged block only when
    it reads it: better here, where a damaged cache is rebuilt, than mid-command)."""
    try:
        cat.check()
    except BaseException:
        with contextlib.suppress(Exception):
            cat.close()
        raise
    return cat


def cache_full(exc: BaseException) -> NoSpaceError:
    return NoSpaceError(f"no space left for the catalog cache in {cache_dir()} ({exc}); free "
                        "space there or set VMKEEP_CACHE_DIR to a folder with room, then run "
                        "again")


def noted(held: RepoLock) -> RepoLock:
    """The lock, after saying on stderr that it is a read-only one (nothing written)."""
    if held.note:
        print(f"vmkeep: warning: {held.note}", file=sys.stderr)
    return held


def address_of(args: argparse.Namespace) -> Address:
    """The repository the command names: ``--repo`` and, for sftp://, its SSH options (an SSH
    host key nobody pinned is asked about on a terminal: ``trust_on_terminal``)."""
    location = args.repo
    encryption = encryption_password(args)
    if not is_sftp(location):
        if getattr(args, "ssh_key", None) or getattr(args, "host_key_fingerprint", None):
            raise UsageError(f"{location} is a local folder: --ssh-key and "
                             "--host-key-fingerprint are for sftp:// repositories")
        return Address(location, password=encryption)
    secret = optional_password(args, "VMKEEP_SSH_PASSWORD", "SSH password")
    return Address(location, SshAuth(key_file=args.ssh_key, password=secret),
                   args.host_key_fingerprint, password=encryption, trust=trust_on_terminal)


def encryption_password(args: argparse.Namespace) -> str | None:
    """``--encryption-password-file`` or ``VMKEEP_ENCRYPTION_PASSWORD``; None without."""
    name = getattr(args, "encryption_password_file", None)
    if name:
        return password_from_file(name)
    return os.environ.get("VMKEEP_ENCRYPTION_PASSWORD") or None


def trust_on_terminal(exc: HostKeyUnpinnedError) -> bool:
    """An SSH host key nobody pinned, shown and, on a terminal, asked about (elsewhere False:
    the error names the fingerprint to pass)."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    print(str(exc), file=sys.stderr)
    answer = input(f"Trust host key {exc.offered} and go on? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise UsageError("the host key was not trusted; nothing was done") from None
    print(f"(next time pass --host-key-fingerprint {exc.offered})", file=sys.stderr)
    return True


def rescan_hint(args: argparse.Namespace) -> str:
    return f"`vmkeep image rescan --repo {args.repo}`"


@contextmanager
def workspace(args: argparse.Namespace, *, operation: str, exclusive: bool = False,
              writes: bool = False, read_only_ok: bool = False, rescan: bool = False
              ) -> Iterator[Workspace]:
    """The repository the command names (opened by its address, ``address_of``), locked,
    with its catalog cache in step: the only way the offline commands touch a repository.

    ``writes``: the command adds to the repository: it is created when missing (and made
    private), crash leftovers are swept first, and a run that fails is cleaned up after."""
    with address_of(args).open(create=writes) as repo:
        if writes:
            warn_tightened(tighten(repo.backend), f"the repository {repo.location}")
        with workspace_of(args, repo, operation=operation, exclusive=exclusive, writes=writes,
                          read_only_ok=read_only_ok, rescan=rescan) as ws:
            yield ws


@contextmanager
def workspace_of(args: argparse.Namespace, repo: Repository, *, operation: str,
                 exclusive: bool = False, writes: bool = False, read_only_ok: bool = False,
                 rescan: bool = False) -> Iterator[Workspace]:
    """``workspace`` of a repository the command opened itself (its catalog cache opened
    here, closed on leaving; the repository is the caller's to close)."""
    cat = open_catalog(repo, args.lock_wait)
    try:
        if writes:
            cleanup(repo, cat.cursor)
        try:
            with open_workspace(repo, cat.cursor, exclusive=exclusive, operation=operation,
                                wait=args.lock_wait, read_only_ok=read_only_ok,
                                rescan=rescan, rescan_hint=rescan_hint(args)) as ws:
                noted(ws.lock)
                yield ws
        except BaseException:
            if writes:
                cleanup(repo, cat.cursor, force=True)
            raise
    finally:
        cat.close()


@contextmanager
def cache_errors() -> Iterator[None]:
    """Around an offline command: the catalog cache's file system full is exit 7 (the
    repository's says so itself), and damage met in the cache sets it aside."""
    _opened.clear()
    try:
        yield
    except Exception as exc:
        if is_no_space(exc):
            raise cache_full(exc) from None
        if is_damaged(exc) and _opened:
            raise cache_damaged(exc) from None
        raise


@contextmanager
def folder_expected(args: argparse.Namespace) -> Iterator[None]:
    """Around an offline command: a ``--repo`` that names no folder here and looks like a
    name (no slash) is said to be taken as a folder, with the appliance's command for a
    repository of that name (docs/CLI.md, Grammar)."""
    try:
        yield
    except NotFoundError as exc:
        repo = str(getattr(args, "repo", "") or "")
        if not repo or "/" in repo or is_sftp(repo) or Path(repo).exists() \
                or not str(exc).startswith("repository folder"):
            raise
        raise NotFoundError(f"{exc}; --repo here takes a folder (DIR) or an sftp:// URL, not "
                            f"a name: for the appliance's repository named {repo!r} run "
                            f"`vmkeep verify --repo {repo}`, `vmkeep prune --repo {repo}` or "
                            "`vmkeep points list`") from None


def cache_damaged(exc: BaseException) -> StorageIOError:
    """Damage the opening check could not see (DuckDB reads an index block only for a lookup
    that needs it): the cache is set aside, so the next run rebuilds it."""
    names = []
    for path in _opened:
        set_aside(path)
        names.append(f"{path}.broken")
    return StorageIOError(f"the catalog cache was found damaged ({exc}); it is set aside as "
                          f"{', '.join(names)} and rebuilt from the repository next time: run "
                          "the command again")
