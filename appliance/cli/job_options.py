"""The options of ``vmkeep job create`` and ``job edit``: one list, so ``job edit`` can change
every field ``job create`` can set. Creating, they have their defaults; editing, none (what is
not given stays), and ``--no-…`` options take a setting back (``EDIT_ONLY``)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING

from appliance import inputs
from appliance.cli.args import (
    DAYS,
    KEEP_LAST,
    add_schedule_options,
    name_arg,
    number,
    text_arg,
    whole,
)
from appliance.errors import UsageError
from appliance.inputs import parse_period
from appliance.password import password_from_file

if TYPE_CHECKING:
    from appliance import api

#: What only ``job create`` sets: the job's vCenter stays (its VMs are resolved there).
CREATION_ONLY = frozenset({"--vcenter"})
#: What only ``job edit`` has: a setting taken back.
EDIT_ONLY = frozenset({"--no-schedule", "--no-enable-cbt", "--no-quiesce", "--no-keep-last",
                       "--no-keep-days", "--no-rpo", "--no-active-full", "--no-notify",
                       "--no-exclude-disk", "--no-guest"})
GUEST_FLAGS = ("guest_host", "guest_user", "guest_key", "guest_password_file",
               "guest_host_key_fingerprint", "pre_freeze", "post_thaw", "script_timeout",
               "on_script_failure", "guest_unreachable", "postgres")
LOG_FLAGS = ("logs_of", "log_folder", "log_pattern", "log_command", "log_settle")


def add_job_options(p: argparse.ArgumentParser, *, edit: bool) -> None:
    """Every option of a job; ``edit``: without defaults, and with the ``--no-…`` ones."""

    def d(default: object) -> object:
        return None if edit else default

    many = "from now on, " if edit else ""
    if not edit:
        p.add_argument("--vcenter", type=name_arg,
                       help="the vCenter's name (vmkeep vcenter list)")
    p.add_argument("--copy-of", action="append", default=d([]), metavar="JOB", type=name_arg,
                   help=f"{many}a backup copy job: copy this backup job's points to --repo "
                   "(repeat for more; its own schedule and retention)")
    p.add_argument("--vm", action="append", default=d([]), metavar="VM", type=text_arg,
                   help=f"{many}a VM by name or instance UUID (repeat for more); resolved to "
                   "its instance UUID now, so a rename keeps it in the job")
    p.add_argument("--container", action="append", default=d([]), metavar="PATH",
                   type=text_arg,
                   help=f"{many}every VM in this folder, cluster, host or resource pool, "
                   "looked up at each run, by inventory path such as /DC0/host/DC0_C0 "
                   "(repeatable; `vmkeep inventory --containers` lists them)")
    p.add_argument("--parallel-vms", type=whole(1, 16), default=d(2), metavar="N",
                   help="back up N VMs at once (default 2)")
    p.add_argument("--repo", required=not edit, type=name_arg,
                   help="the repository's name (vmkeep repo list)"
                   + ("; another one: its next run is a full read there" if edit else ""))
    p.add_argument("--block-size", default=d("1M"), help="256K, 512K, 1M (default) or 4M")
    p.add_argument("--compression", default=d("zstd-fast"),
                   help="none, zstd-fast (default), zstd-3 or zstd-9")
    p.add_argument("--enable-cbt", action="store_true", default=d(False),
                   help="allow turning Changed Block Tracking on where it is off")
    p.add_argument("--quiesce", action="store_true", default=d(False),
                   help="quiesced snapshots (VMware Tools)")
    p.add_argument("--quiesce-fallback", choices=("fail", "warn"), default=d("warn"),
                   help="when VMware Tools are not running: fail the VM, or warn and take a "
                   "crash-consistent snapshot (default)")
    p.add_argument("--keep-last", type=KEEP_LAST, metavar="N", help="retention: points per VM")
    p.add_argument("--keep-days", type=DAYS, metavar="D", help="retention: days")
    add_transport_options(p, default=None if edit else "host")
    add_schedule_options(p)
    g = p.add_argument_group("guest processing over SSH (Linux guests)")
    g.add_argument("--guest-host", metavar="HOST[:PORT]",
                   help="the guest's SSH address; tools[:PORT]: the IP address VMware Tools "
                   "report at each backup")
    g.add_argument("--guest-user", metavar="USER", help="the guest account")
    g.add_argument("--guest-key", metavar="FILE", help="private key of the guest account")
    g.add_argument("--guest-password-file", metavar="FILE",
                   help="its password (or the key's passphrase), first line of FILE")
    g.add_argument("--guest-host-key-fingerprint", metavar="SHA256:…",
                   help="the guest's host key as `ssh-keygen -l -E sha256` prints it")
    g.add_argument("--pre-freeze", metavar="LOCAL_SCRIPT",
                   help="run this script in the guest before the snapshot")
    g.add_argument("--post-thaw", metavar="LOCAL_SCRIPT",
                   help="run this script in the guest right after the snapshot")
    g.add_argument("--script-timeout", default=d("10m"), metavar="PERIOD",
                   help="kill a script (and its children) after this long (default 10m)")
    g.add_argument("--on-script-failure", choices=("fail", "warn"), default=d("fail"),
                   help="a failing pre-freeze script fails the VM (default) or warns")
    g.add_argument("--guest-unreachable", choices=("fail", "warn"), default=d("fail"),
                   help="a guest that cannot be reached fails the VM (default) or warns")
    g.add_argument("--postgres", metavar="HOST:PORT:USER[:DB]",
                   help="PostgreSQL in the guest, as psql there reaches it: held in backup "
                   "mode (pg_backup_start/stop) across the snapshot")
    lg = p.add_argument_group("log backup jobs (database logs from a guest folder)")
    lg.add_argument("--logs-of", metavar="VM",
                    help="make this a log backup job for VM's database logs (with --guest-…)")
    lg.add_argument("--log-folder", metavar="DIR",
                    help="the guest folder the logs are written to (PostgreSQL: the "
                    "archive_command's target)")
    lg.add_argument("--log-pattern", default=d("*"), metavar="GLOB",
                    help="which file names to collect (default: all)")
    lg.add_argument("--log-command", metavar="CMD",
                    help="run this in the guest first (e.g. sqlcmd … BACKUP LOG …)")
    lg.add_argument("--log-settle", default=d("10s"), metavar="PERIOD",
                    help="leave files changed more recently than this (default 10s)")
    p.add_argument("--exclude-disk", action="append", default=d([]), metavar="N|VM:N",
                   help=f"{many}leave out disk N of every VM, or of one VM (repeatable)")
    p.add_argument("--rpo", type=number(0.0, inputs.DAYS_MAX * 24, low_open=True),
                   metavar="HOURS",
                   help="alert when a VM has had no good point for longer than this")
    p.add_argument("--active-full", metavar="DAY",
                   help="read everything on this day: a weekday (sat) or a day of the month")
    p.add_argument("--notify", action="append", default=d([]), metavar="ADDRESS",
                   help=f"{many}also e-mail this address about this job (repeatable)")
    p.add_argument("--retries", type=whole(0, 100), default=d(3), metavar="N",
                   help="retry failed VMs N times (default 3)")
    p.add_argument("--retry-wait", default=d("10m"), metavar="PERIOD",
                   help="between retries: 90s, 10m, 1h (default 10m)")
    if edit:  # a default says what create takes; editing, what is not given stays
        for action in p._actions:
            if action.help and action.dest not in ("transport", "tz"):  # still so
                action.help = re.sub(r" \(default[^)]*\)", "", action.help)
        p.add_argument("--no-schedule", action="store_true", help="run only when asked")
        for flag, text in (("enable-cbt", "no consent to turn CBT on"),
                           ("quiesce", "crash-consistent snapshots"),
                           ("keep-last", "no limit of points per VM"),
                           ("keep-days", "no limit of days"), ("rpo", "no RPO alert"),
                           ("active-full", "no active full day"),
                           ("notify", "no e-mail addresses of the job's own"),
                           ("exclude-disk", "read every disk"),
                           ("guest", "no guest processing (its login is forgotten)")):
            p.add_argument(f"--no-{flag}", action="store_true", help=text)


def add_transport_options(p: argparse.ArgumentParser, *, default: str | None) -> None:
    p.add_argument("--transport", choices=("host", "vcenter", "direct", "hotadd"),
                   default=default,
                   help="where disks are read: host (the ESXi host that runs the VM, the "
                   "default), vcenter (through the vCenter, slower), direct (datastores "
                   "mounted here, each named with --datastore-path) or hotadd (attached to "
                   "the appliance's own VM)")
    p.add_argument("--datastore-path", action="append", default=[], metavar="DS=DIR",
                   type=text_arg, help="with --transport direct: datastore DS is mounted at "
                   "DIR on the appliance (repeat for each datastore)")


def datastore_paths_of(args: argparse.Namespace) -> dict[str, str]:
    """``--datastore-path DS=DIR`` (repeated) → ``{DS: DIR}`` (the appliance checks them)."""
    out: dict[str, str] = {}
    for item in args.datastore_path:
        name, sep, root = item.partition("=")
        if not sep or not name.strip() or not root.strip() or name.strip() in out:
            raise UsageError(f"--datastore-path {item!r}: write DATASTORE=DIR, once per "
                             "datastore")
        out[name.strip()] = root.strip()
    return out


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} {path}: {exc}") from None


def logs_of(args: argparse.Namespace) -> api.LogBackupSpec | None:
    from appliance import api

    if not args.logs_of:
        if args.log_folder or args.log_command:
            raise UsageError("--log-folder and --log-command need --logs-of VM")
        return None
    if not args.log_folder:
        raise UsageError("a log backup job needs --log-folder DIR (in the guest)")
    return api.LogBackupSpec(vm=args.logs_of, folder=args.log_folder,
                             pattern=args.log_pattern, command=args.log_command,
                             settle_seconds=parse_period(args.log_settle).total_seconds())


def guest_of(args: argparse.Namespace) -> api.GuestCreate | None:
    """The job's guest processing from the --guest-… options (None without --guest-host)."""
    from appliance import api

    if not args.guest_host:
        for flag in ("guest_user", "guest_key", "guest_password_file", "pre_freeze",
                     "post_thaw", "guest_host_key_fingerprint"):
            if getattr(args, flag):
                raise UsageError(f"--{flag.replace('_', '-')} needs --guest-host HOST[:PORT]")
        return None
    if not args.guest_user or not args.guest_host_key_fingerprint:
        raise UsageError("guest processing needs --guest-user and "
                         "--guest-host-key-fingerprint (as `ssh-keygen -l -E sha256` prints "
                         "the guest's host key)")
    return api.GuestCreate(
        host=args.guest_host, user=args.guest_user,
        host_key_fingerprint=args.guest_host_key_fingerprint,
        key=_read(args.guest_key, "guest key file") if args.guest_key else None,
        password=(password_from_file(args.guest_password_file)
                  if args.guest_password_file else None),
        pre_freeze=_read(args.pre_freeze, "pre-freeze script") if args.pre_freeze else None,
        post_thaw=_read(args.post_thaw, "post-thaw script") if args.post_thaw else None,
        script_timeout_seconds=parse_period(args.script_timeout).total_seconds(),
        on_script_failure=args.on_script_failure, unreachable=args.guest_unreachable,
        postgres=args.postgres)


def edited_guest(args: argparse.Namespace, stored: api.GuestSpec | None
                 ) -> api.GuestCreate | None:
    """``job edit``'s guest: the stored one with what the --guest-… options change (a new
    one needs what ``job create`` needs)."""
    if stored is None:
        for flag, default in (("script_timeout", "10m"), ("on_script_failure", "fail"),
                              ("guest_unreachable", "fail")):
            if getattr(args, flag) is None:
                setattr(args, flag, default)
        return guest_of(args)
    from appliance import api

    fields = stored.model_dump()
    for flag, key in (("guest_host", "host"), ("guest_user", "user"),
                      ("guest_host_key_fingerprint", "host_key_fingerprint"),
                      ("on_script_failure", "on_script_failure"),
                      ("guest_unreachable", "unreachable"), ("postgres", "postgres")):
        if getattr(args, flag) is not None:
            fields[key] = getattr(args, flag)
    if args.pre_freeze:
        fields["pre_freeze"] = _read(args.pre_freeze, "pre-freeze script")
    if args.post_thaw:
        fields["post_thaw"] = _read(args.post_thaw, "post-thaw script")
    if args.script_timeout is not None:
        fields["script_timeout_seconds"] = parse_period(args.script_timeout).total_seconds()
    if args.guest_key:
        fields["key"] = _read(args.guest_key, "guest key file")
    if args.guest_password_file:
        fields["password"] = password_from_file(args.guest_password_file)
    return api.GuestCreate.model_validate(fields)


def edited_logs(args: argparse.Namespace, stored: api.LogBackupSpec | None
                ) -> api.LogBackupSpec | None:
    """``job edit``'s log backup source: the stored one with what the --log… options change."""
    from appliance import api

    if stored is None:
        args.log_pattern = args.log_pattern or "*"
        args.log_settle = args.log_settle or "10s"
        return logs_of(args)
    fields = stored.model_dump()
    for flag, key in (("logs_of", "vm"), ("log_folder", "folder"), ("log_pattern", "pattern"),
                      ("log_command", "command")):
        if getattr(args, flag) is not None:
            fields[key] = getattr(args, flag)
    if args.log_settle is not None:
        fields["settle_seconds"] = parse_period(args.log_settle).total_seconds()
    return api.LogBackupSpec.model_validate(fields)
