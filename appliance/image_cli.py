"""``vmkeep image …``: the offline commands on a repository folder.

They keep their catalog as a cache per repository under the user's data folder
(``VMKEEP_CACHE_DIR`` overrides), resynchronised from the repository on every open.

What they make is private (folders 0700, files 0600, whatever the umask): a repository a
command writes to and the cache folder are tightened first when they have group or other
access, each path changed named in a warning on stderr (``appliance.private``).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from appliance import inputs
from appliance.errors import (
    EXIT_DAMAGE_FOUND,
    BadInputError,
    IntegrityError,
    LockedError,
    NoSpaceError,
    NotFoundError,
    StorageIOError,
    UsageError,
)
from appliance.inputs import shown
from appliance.jobs.backup import BackupOptions, DiskInput, block_size_named, run_backup
from appliance.jobs.prune import execute_prune, plan_prune, sweep
from appliance.jobs.restore import restore_disk
from appliance.jobs.retention import RetentionPolicy
from appliance.jobs.verify import (
    VerifyReport,
    damaged_config_report,
    verify_point,
    verify_repository,
)
from appliance.jobs.workspace import Workspace, cleanup, open_workspace
from appliance.password import optional_password, password_from_file
from appliance.private import Tightened, make_dir, summary, tighten_files
from appliance.progress import Progress, human_bytes
from appliance.repository import codec
from appliance.repository.address import Address, tighten
from appliance.repository.lock import RepoLock, acquire, read_locks
from appliance.repository.repo import Repository, repair_config
from appliance.repository.sftp import is_sftp
from appliance.source import ImageFileSource, parse_areas
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
    """The repository the command names: ``--repo`` and, for sftp://, its SSH options."""
    location = args.repo
    encryption = encryption_password(args)
    if not is_sftp(location):
        if getattr(args, "ssh_key", None) or getattr(args, "host_key_fingerprint", None):
            raise UsageError(f"{location} is a local folder: --ssh-key and "
                             "--host-key-fingerprint are for sftp:// repositories")
        return Address(location, password=encryption)
    secret = optional_password(args, "VMKEEP_SSH_PASSWORD", "SSH password")
    return Address(location, SshAuth(key_file=args.ssh_key, password=secret),
                   args.host_key_fingerprint, password=encryption)


def encryption_password(args: argparse.Namespace) -> str | None:
    """``--encryption-password-file`` or ``VMKEEP_ENCRYPTION_PASSWORD``; None without."""
    name = getattr(args, "encryption_password_file", None)
    if name:
        return password_from_file(name)
    return os.environ.get("VMKEEP_ENCRYPTION_PASSWORD") or None


def open_address(address: Address, *, create: bool) -> Repository:
    """Open the repository; an SSH host key nobody pinned is shown and, on a terminal,
    asked about (elsewhere the error names the fingerprint to pass)."""
    try:
        return address.open(create=create)
    except HostKeyUnpinnedError as exc:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise
        print(str(exc), file=sys.stderr)
        answer = input(f"Trust host key {exc.offered} and go on? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise UsageError("the host key was not trusted; nothing was done") from None
        print(f"(next time pass --host-key-fingerprint {exc.offered})", file=sys.stderr)
        return address.with_fingerprint(exc.offered).open(create=create)


@contextmanager
def opened(args: argparse.Namespace, *, create: bool, lock_wait: float
           ) -> Iterator[tuple[Repository, Catalog]]:
    repo = open_address(address_of(args), create=create)
    try:
        if create:  # a command that writes to the repository
            warn_tightened(tighten(repo.backend), f"the repository {repo.location}")
        cat = open_catalog(repo, lock_wait)
        try:
            yield repo, cat
        finally:
            cat.close()
    finally:
        repo.close()


def rescan_hint(args: argparse.Namespace) -> str:
    return f"`vmkeep image rescan --repo {args.repo}`"


@contextmanager
def workspace(args: argparse.Namespace, *, exclusive: bool, operation: str,
              create: bool = False, read_only_ok: bool = False, rescan: bool = False
              ) -> Iterator[Workspace]:
    """The repository the command names, locked, with its catalog cache in step (the only
    way the offline commands touch a repository)."""
    with opened(args, create=create, lock_wait=args.lock_wait) as (repo, cat), \
            open_workspace(repo, cat.cursor, exclusive=exclusive, operation=operation,
                           wait=args.lock_wait, read_only_ok=read_only_ok, rescan=rescan,
                           rescan_hint=rescan_hint(args)) as ws:
        noted(ws.lock)
        yield ws


def cmd_backup(args: argparse.Namespace) -> int:
    # Check every input before the repository is created or touched.
    options = BackupOptions(block_size=block_size_named(args.block_size),
                            compression=codec.compression_named(args.compression).name,
                            threads=max(1, args.threads))
    source = ImageFileSource(Path(args.file))
    try:
        changed = None
        if args.changed is not None:
            try:
                text = Path(args.changed).read_text()
            except FileNotFoundError:
                raise NotFoundError(f"changed-areas file {args.changed} does not exist; name an "
                                    "existing JSON file") from None
            except UnicodeDecodeError:
                raise BadInputError(f"changed-areas file {args.changed} is not UTF-8 text; give "
                                    "a JSON list of {\"offset\": int, \"length\": int}") from None
            except OSError as exc:
                raise UsageError(f"changed-areas file {args.changed} is unreadable "
                                 f"({exc.strerror}); name a readable JSON file") from None
            changed = parse_areas(text, args.changed, source.size)
        disk = DiskInput(0, source, changed,
                         changed_reason="" if changed is not None else "no --changed list given")
        with opened(args, create=True, lock_wait=args.lock_wait) as (repo, cat):
            cleanup(repo, cat.cursor)
            progress = Progress(f"backup {args.name}")
            try:
                with open_workspace(repo, cat.cursor, exclusive=False, operation="backup",
                                    wait=args.lock_wait, rescan_hint=rescan_hint(args)) as ws:
                    noted(ws.lock)
                    result = run_backup(ws, args.name, [disk], options, progress=progress)
            except BaseException:
                progress.done()
                cleanup(repo, cat.cursor, force=True)
                raise
            progress.done()
    finally:
        source.close()
    print(result.point_id)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{result.kind} backup of {args.name}: read {human_bytes(result.bytes_read)}, stored "
          f"{human_bytes(result.bytes_stored)} new ({result.blocks_new} blocks, "
          f"{result.blocks_deduplicated} deduplicated) in {result.seconds:.1f}s; "
          f"{result.reason}", file=sys.stderr)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    target = Path(args.file)
    if target.exists():
        raise UsageError(f"restore target {target} already exists; remove it or name a new file")
    with workspace(args, exclusive=False, operation="restore", read_only_ok=True) as ws:
        progress = Progress(f"restore {args.point}")
        try:
            result = restore_disk(ws, args.point, args.disk, target, progress=progress)
        finally:
            progress.done()
    for path in result.removed_partials:
        print(f"removed {path}, left by a restore that is no longer running", file=sys.stderr)
    print(f"restored disk {result.disk_index} of {result.point_id} to {result.target} "
          f"({human_bytes(result.size)}) in {result.seconds:.1f}s", file=sys.stderr)
    return 0


def print_report(report: VerifyReport) -> None:
    for d in report.damage:
        affects = ", ".join(d.points) if d.points else "no restore point"
        print(shown(f"DAMAGED {d.file}: {d.problem}; affects {affects}"))
    summary = (f"checked {report.points_checked} points, {report.packs_checked} packs, "
               f"{report.blocks_checked} blocks ({human_bytes(report.bytes_checked)})")
    if report.ok:
        print(f"ok: {summary}; no damage found")
    else:
        pts = report.damaged_points
        print(f"damage found: {summary}; {len(report.damage)} damaged files affect "
              f"{len(pts)} restore points" + (f": {', '.join(pts)}" if pts else ""))


def cmd_verify(args: argparse.Namespace) -> int:
    address = address_of(args)
    try:
        repo = open_address(address, create=False)
    except IntegrityError as exc:
        if args.point is not None:
            raise
        backend = address.backend()
        try:
            print_report(damaged_config_report(backend, str(exc)))
        finally:
            backend.close()
        return EXIT_DAMAGE_FOUND
    cat = open_catalog(repo, args.lock_wait)
    try:
        with open_workspace(repo, cat.cursor, exclusive=False, operation="verify",
                            wait=args.lock_wait, read_only_ok=True,
                            rescan_hint=rescan_hint(args)) as ws:
            noted(ws.lock)
            report = verify_point(ws, args.point) if args.point else verify_repository(ws)
    finally:
        cat.close()
        repo.close()
    print_report(report)
    return 0 if report.ok else EXIT_DAMAGE_FOUND


def point_listing(ws: Workspace, name: str | None) -> list[dict[str, object]]:
    cat, repo = ws.cat, ws.repo
    out: list[dict[str, object]] = []
    for p in cat.points(repo.id, name):
        disks = cat.disks(p.point_id)
        out.append({
            "id": p.point_id, "vm": p.object_name,
            "created": p.created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "kind": p.kind, "bytes_read": p.bytes_read, "bytes_stored": p.bytes_stored,
            "parent": p.parent_id, "compression": p.compression, "reason": p.reason,
            "disks": [{"index": d.disk_index, "label": d.label, "size": d.size,
                       "block_size": d.block_size, "change_id": d.change_id}
                      for d in disks],
        })
    return out


def cmd_points(args: argparse.Namespace) -> int:
    with workspace(args, exclusive=False, operation="list", read_only_ok=True) as ws:
        listing = point_listing(ws, args.name)
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    if not listing:
        print(f"no restore points in {args.repo}")
        return 0
    print(f"{'ID':<26} {'NAME':<20} {'CREATED (UTC)':<20} {'KIND':<11} {'READ':>10} "
          f"{'STORED':>10}")
    for p in listing:
        print(f"{shown(p['id']):<26} {shown(p['vm']):<20} {p['created']!s:<20} {p['kind']!s:<11} "
              f"{human_bytes(int(str(p['bytes_read']))):>10} "
              f"{human_bytes(int(str(p['bytes_stored']))):>10}")
    return 0


def cmd_rescan(args: argparse.Namespace) -> int:
    with workspace(args, exclusive=False, operation="rescan", rescan=True) as ws:
        result = ws.synced
    print(f"rescanned {args.repo}: {result.points_added} restore points, "
          f"{result.packs_added} packs indexed")
    for problem in result.damaged:
        print(f"skipped damaged file: {shown(problem)}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    policy = RetentionPolicy(args.keep_last, args.keep_days)
    if not 0 < args.compact_below <= 1:
        raise UsageError(f"--compact-below {args.compact_below} must be in (0, 1]")
    with workspace(args, exclusive=not args.dry_run, operation="prune",
                   read_only_ok=args.dry_run) as ws:
        plan = plan_prune(ws, policy, datetime.now(UTC), compact_below=args.compact_below)
        for d in plan.decisions:
            why = ", ".join(d.reasons) if d.keep else "outside the policy"
            print(f"{'keep' if d.keep else 'remove'} {d.point_id} {shown(d.object_name)} "
                  f"{d.created.strftime('%Y-%m-%dT%H:%M:%SZ')}: {why}")
        print(f"{'would free' if args.dry_run else 'frees'} about "
              f"{human_bytes(plan.bytes_freed)} ({plan.bytes_freed} bytes): "
              f"{len(plan.remove_points)} points removed, {len(plan.delete_packs)} packs "
              f"deleted, {len(plan.compact_packs)} packs compacted")
        if args.dry_run:
            return 0
        result = execute_prune(ws, plan)
        sweep(ws)
    print(f"pruned: {result.points_removed} points removed, {result.packs_deleted} packs "
          f"deleted, {result.packs_compacted} compacted into {result.packs_written}; freed "
          f"{human_bytes(result.bytes_freed)}")
    return 0


def cmd_repair_config(args: argparse.Namespace) -> int:
    """Recreate a lost config from what the repository's files record (offline, under an
    exclusive lock of the folder)."""
    address = address_of(args)
    backend = address.backend()
    try:
        with acquire(backend, exclusive=True, operation="repair-config",
                     wait=args.lock_wait):
            repo, notes = repair_config(backend, password=address.password,
                                        repository_id=args.repository_id)
            points = len(repo.point_ids())
    finally:
        backend.close()
    print(f"recreated {args.repo}/config: " + "; ".join(notes))
    print(f"{points} restore point(s) are readable again; check them with "
          f"`vmkeep image verify --repo {args.repo}`")
    return 0


COMMANDS = {"backup": cmd_backup, "restore": cmd_restore, "verify": cmd_verify,
            "points": cmd_points, "rescan": cmd_rescan, "prune": cmd_prune,
            "repair-config": cmd_repair_config}


def run(args: argparse.Namespace) -> int:
    if args.command != "repair-config":
        private_cache()  # before a repository is made: no folder for the cache is usage
    with cache_errors():
        return COMMANDS[args.command](args)


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
