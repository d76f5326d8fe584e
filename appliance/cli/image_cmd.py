"""``vmkeep image …``: the offline commands on a repository folder (backup, restore, verify,
points, rescan, prune, repair-config). The engine is imported when a command runs
(``appliance.cli.offline``), not to build the parser."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from appliance import inputs
from appliance.cli import image_json
from appliance.cli.args import (
    DAYS,
    KEEP_LAST,
    RAW,
    THREADS,
    Parser,
    Subparsers,
    add_json_option,
    add_repository_options,
    name_arg,
    number,
    whole,
)
from appliance.errors import (
    EXIT_DAMAGE_FOUND,
    BadInputError,
    IntegrityError,
    NotFoundError,
    UsageError,
)
from appliance.inputs import shown
from appliance.progress import Progress, human_bytes

if TYPE_CHECKING:
    from appliance.jobs.verify import VerifyReport
    from appliance.jobs.workspace import Workspace


EPILOG_IMAGE = """examples:
  vmkeep image backup --repo /backups/r1 --name db01 disk.img
  vmkeep image backup --repo /backups/r1 --name db01 --changed areas.json disk.img
  vmkeep image points --repo /backups/r1 --json
  vmkeep image restore --repo /backups/r1 20261124T210101Z-3fa2c1d0 restored.img
  vmkeep image verify --repo /backups/r1
  vmkeep image prune --repo /backups/r1 --keep-last 7 --keep-days 30 --dry-run
  vmkeep image rescan --repo /backups/r1       # rebuild the catalog cache from the files
"""


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    image = sub.add_parser("image", help="back up and restore raw disk images (offline)",
                           description="Back up, restore, check and prune raw disk images in "
                           "a repository folder, without the appliance.",
                           epilog=EPILOG_IMAGE,
                           formatter_class=raw)
    isub = image.add_subparsers(dest="command", required=True, parser_class=Parser)

    common = add_repository_options

    p = isub.add_parser("backup", help="back up an image file as a new restore point")
    common(p)
    p.add_argument("--name", required=True, type=name_arg, help="the protected object's name")
    p.add_argument("--changed", metavar="AREAS.json",
                   help='areas changed since the last point: [{"offset": n, "length": n}, …]')
    p.add_argument("--block-size", default="1M", help="256K, 512K, 1M (default) or 4M")
    p.add_argument("--compression", default="zstd-fast",
                   help="none, zstd-fast (default), zstd-3 or zstd-9")
    p.add_argument("--threads", type=THREADS, default=2, help="worker threads (default 2)")
    p.add_argument("file", metavar="FILE", help="raw image file or block device")
    add_json_option(p)

    p = isub.add_parser("restore", help="restore a point's disk to a new raw image file")
    common(p)
    p.add_argument("--disk", type=whole(0, inputs.COUNT_MAX), default=0,
                   help="disk number (default 0)")
    p.add_argument("point", metavar="POINT")
    p.add_argument("file", metavar="FILE")
    add_json_option(p)

    p = isub.add_parser("verify", help="health check of one point or the whole repository")
    common(p)
    p.add_argument("point", metavar="POINT", nargs="?")
    add_json_option(p, "a JSON object (exit codes as without it)")

    p = isub.add_parser("points", help="list restore points, oldest first")
    common(p)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--name", help="only points of this object")

    p = isub.add_parser("rescan", help="rebuild the catalog cache from the repository alone")
    common(p)
    add_json_option(p)

    p = isub.add_parser("prune", help="apply retention, then free space")
    common(p)
    p.add_argument("--keep-last", type=KEEP_LAST, metavar="N",
                   help="keep the N newest per name")
    p.add_argument("--keep-days", type=DAYS, metavar="D", help="keep points younger than D days")
    p.add_argument("--compact-below", type=number(0.0, 1.0), default=0.75, metavar="SHARE",
                   help="rewrite packs whose live share is under SHARE (default 0.75)")
    p.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")
    add_json_option(p)

    p = isub.add_parser("repair-config",
                        help="recreate a lost config from the key file and the manifests",
                        description="Recreate the config file of a repository that lost it "
                        "(its manifests, packs and key files intact): the block-id key file, "
                        "the master key file of an encrypted repository and the manifests say "
                        "what it held. The repository id is recorded nowhere else: a new one, "
                        "unless --repository-id gives the old one (`vmkeep repo list --json` "
                        "of an appliance that used it). An intact config is never replaced.")
    common(p)
    p.add_argument("--repository-id", metavar="ID",
                   help="the repository id to keep (32 hex digits)")
    add_json_option(p)
    for command in isub.choices.values():  # each command's help ends with the examples too
        command.epilog, command.formatter_class = EPILOG_IMAGE, raw


def cmd_backup(args: argparse.Namespace) -> int:
    from appliance.cli.offline import workspace
    from appliance.jobs.backup import BackupOptions, DiskInput, block_size_named, run_backup
    from appliance.repository import codec
    from appliance.source import ImageFileSource, parse_areas

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
        with workspace(args, operation="backup", writes=True) as ws:
            progress = Progress(f"backup {args.name}")
            try:
                result = run_backup(ws, args.name, [disk], options, progress=progress)
            finally:
                progress.done()
    finally:
        source.close()
    if args.json:
        print(image_json.dump(image_json.backup(args.name, result)))
        return 0
    print(result.point_id)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{result.kind} backup of {args.name}: read {human_bytes(result.bytes_read)}, stored "
          f"{human_bytes(result.bytes_stored)} new ({result.blocks_new} blocks, "
          f"{result.blocks_deduplicated} deduplicated) in {result.seconds:.1f}s; "
          f"{result.reason}", file=sys.stderr)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from appliance.cli.offline import workspace
    from appliance.jobs.restore import restore_disk

    target = Path(args.file)
    if target.exists():
        raise UsageError(f"restore target {target} already exists; remove it or name a new file")
    with workspace(args, operation="restore", read_only_ok=True) as ws:
        progress = Progress(f"restore {args.point}")
        try:
            result = restore_disk(ws, args.point, args.disk, target, progress=progress)
        finally:
            progress.done()
    if args.json:
        print(image_json.dump(image_json.restore(result)))
        return 0
    for path in result.removed_partials:
        print(f"removed {path}, left by a restore that is no longer running", file=sys.stderr)
    print(f"restored disk {result.disk_index} of {result.point_id} to {result.target} "
          f"({human_bytes(result.size)}) in {result.seconds:.1f}s", file=sys.stderr)
    return 0


def print_report(report: VerifyReport, *, as_json: bool = False) -> None:
    if as_json:
        print(image_json.dump(image_json.verify(report)))
        return
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
    from appliance.cli.offline import address_of, workspace_of
    from appliance.jobs.verify import damaged_config_report, verify_point, verify_repository

    address = address_of(args)
    try:
        repo = address.open(create=False)
    except IntegrityError as exc:
        if args.point is not None:
            raise
        backend = address.backend()
        try:
            print_report(damaged_config_report(backend, str(exc)), as_json=args.json)
        finally:
            backend.close()
        return EXIT_DAMAGE_FOUND
    with repo, workspace_of(args, repo, operation="verify", read_only_ok=True) as ws:
        report = verify_point(ws, args.point) if args.point else verify_repository(ws)
    print_report(report, as_json=args.json)
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
    from appliance.cli.offline import workspace

    with workspace(args, operation="list", read_only_ok=True) as ws:
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
    from appliance.cli.offline import workspace

    with workspace(args, operation="rescan", rescan=True) as ws:
        result = ws.synced
    if args.json:
        print(image_json.dump(image_json.rescan(args.repo, result)))
        return 0
    print(f"rescanned {args.repo}: {result.points_added} restore points, "
          f"{result.packs_added} packs indexed")
    for problem in result.damaged:
        print(f"skipped damaged file: {shown(problem)}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from appliance.cli.offline import workspace
    from appliance.jobs.prune import execute_prune, plan_prune, sweep
    from appliance.jobs.retention import RetentionPolicy

    policy = RetentionPolicy(args.keep_last, args.keep_days)
    if not 0 < args.compact_below <= 1:
        raise UsageError(f"--compact-below {args.compact_below} must be in (0, 1]")
    with workspace(args, exclusive=not args.dry_run, operation="prune",
                   read_only_ok=args.dry_run) as ws:
        plan = plan_prune(ws, policy, datetime.now(UTC), compact_below=args.compact_below)
        if args.json:
            done = None if args.dry_run else execute_prune(ws, plan)
            if done is not None:
                sweep(ws)
            print(image_json.dump(image_json.prune(plan, done, dry_run=args.dry_run)))
            return 0
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
    from appliance.cli.offline import address_of
    from appliance.repository.lock import acquire
    from appliance.repository.repo import repair_config

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
    if args.json:
        print(image_json.dump(image_json.repair_config(args.repo, list(notes), points)))
        return 0
    print(f"recreated {args.repo}/config: " + "; ".join(notes))
    print(f"{points} restore point(s) are readable again; check them with "
          f"`vmkeep image verify --repo {args.repo}`")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "backup": cmd_backup, "restore": cmd_restore, "verify": cmd_verify, "points": cmd_points,
    "rescan": cmd_rescan, "prune": cmd_prune, "repair-config": cmd_repair_config}


def run(args: argparse.Namespace) -> int:
    from appliance.cli.offline import cache_errors, folder_expected, private_cache

    if args.command != "repair-config":
        private_cache()  # before a repository is made: no folder for the cache is usage
    with cache_errors(), folder_expected(args):
        return COMMANDS[args.command](args)
