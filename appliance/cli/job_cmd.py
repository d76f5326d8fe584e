"""``vmkeep job create|edit|list|show|check|run|stop|enable|disable|delete``: backup jobs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from appliance import inputs
from appliance.cli import online
from appliance.cli.args import (
    DAYS,
    KEEP_LAST,
    RAW,
    Parser,
    Subparsers,
    add_schedule_options,
    name_arg,
    number,
    text_arg,
    whole,
)
from appliance.cli.online import EPILOG_JOB, Handler, dump, schedule_spec
from appliance.cli.session_cmd import follow
from appliance.errors import UsageError
from appliance.inputs import parse_period, shown
from appliance.password import password_from_file
from appliance.table import render

if TYPE_CHECKING:
    from appliance import api
    from appliance.client import ApplianceClient


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    jp = sub.add_parser("job", help="backup jobs: what, where, how", epilog=EPILOG_JOB,
                        description="Create, run, stop and change backup jobs.",
                        formatter_class=raw)
    jsub = jp.add_subparsers(dest="command", required=True, parser_class=Parser)
    p = jsub.add_parser("create", help="create a backup job", epilog=EPILOG_JOB,
                        formatter_class=raw)
    p.add_argument("name", metavar="NAME", type=name_arg)
    p.add_argument("--vcenter", type=name_arg, help="the vCenter's name (vmkeep vcenter list)")
    p.add_argument("--copy-of", action="append", default=[], metavar="JOB", type=name_arg,
                   help="a backup copy job: copy this backup job's points to --repo (repeat "
                   "for more; its own schedule and retention)")
    p.add_argument("--vm", action="append", default=[], metavar="VM", type=text_arg,
                   help="a VM by name or instance UUID (repeat for more); resolved to its "
                   "instance UUID now, so a rename keeps it in the job")
    p.add_argument("--container", action="append", default=[], metavar="PATH", type=text_arg,
                   help="every VM in this folder, cluster, host or resource pool, looked up "
                   "at each run, by inventory path such as /DC0/host/DC0_C0 (repeatable; "
                   "`vmkeep inventory --containers` lists them)")
    p.add_argument("--parallel-vms", type=whole(1, 16), default=2, metavar="N",
                   help="back up N VMs at once (default 2)")
    p.add_argument("--repo", required=True, type=name_arg,
                   help="the repository's name (vmkeep repo list)")
    p.add_argument("--block-size", default="1M", help="256K, 512K, 1M (default) or 4M")
    p.add_argument("--compression", default="zstd-fast",
                   help="none, zstd-fast (default), zstd-3 or zstd-9")
    p.add_argument("--enable-cbt", action="store_true",
                   help="allow turning Changed Block Tracking on where it is off")
    p.add_argument("--quiesce", action="store_true", help="quiesced snapshots (VMware Tools)")
    p.add_argument("--quiesce-fallback", choices=("fail", "warn"), default="warn",
                   help="when VMware Tools are not running: fail the VM, or warn and take a "
                   "crash-consistent snapshot (default)")
    p.add_argument("--keep-last", type=KEEP_LAST, metavar="N", help="retention: points per VM")
    p.add_argument("--keep-days", type=DAYS, metavar="D", help="retention: days")
    add_transport_options(p, default="host")
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
    g.add_argument("--script-timeout", default="10m", metavar="PERIOD",
                   help="kill a script (and its children) after this long (default 10m)")
    g.add_argument("--on-script-failure", choices=("fail", "warn"), default="fail",
                   help="a failing pre-freeze script fails the VM (default) or warns")
    g.add_argument("--guest-unreachable", choices=("fail", "warn"), default="fail",
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
    lg.add_argument("--log-pattern", default="*", metavar="GLOB",
                    help="which file names to collect (default: all)")
    lg.add_argument("--log-command", metavar="CMD",
                    help="run this in the guest first (e.g. sqlcmd … BACKUP LOG …)")
    lg.add_argument("--log-settle", default="10s", metavar="PERIOD",
                    help="leave files changed more recently than this (default 10s)")
    p.add_argument("--exclude-disk", action="append", default=[], metavar="N|VM:N",
                   help="leave out disk N of every VM, or of one VM (repeatable)")
    p.add_argument("--rpo", type=number(0.0, inputs.DAYS_MAX * 24, low_open=True),
                   metavar="HOURS",
                   help="alert when a VM has had no good point for longer than this")
    p.add_argument("--active-full", metavar="DAY",
                   help="read everything on this day: a weekday (sat) or a day of the month")
    p.add_argument("--notify", action="append", default=[], metavar="ADDRESS",
                   help="also e-mail this address about this job (repeatable)")
    p.add_argument("--retries", type=whole(0, 100), default=3, metavar="N",
                   help="retry failed VMs N times (default 3)")
    p.add_argument("--retry-wait", default="10m", metavar="PERIOD",
                   help="between retries: 90s, 10m, 1h (default 10m)")
    p = jsub.add_parser("edit", help="change a job (what is given; the rest stays)",
                        epilog=EPILOG_JOB, formatter_class=raw)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--vm", action="append", metavar="VM", type=text_arg,
                   help="the job's VMs from now on (repeat for more)")
    p.add_argument("--container", action="append", metavar="PATH", type=text_arg,
                   help="the job's inventory containers from now on (repeat for more)")
    p.add_argument("--parallel-vms", type=whole(1, 16), metavar="N",
                   help="back up N VMs at once")
    p.add_argument("--repo", type=name_arg,
                   help="another repository (its next run is a full read there)")
    p.add_argument("--keep-last", type=KEEP_LAST, metavar="N", help="retention: points per VM")
    p.add_argument("--keep-days", type=DAYS, metavar="D", help="retention: days")
    p.add_argument("--retries", type=whole(0, 100), metavar="N",
                   help="retry failed VMs N times")
    p.add_argument("--retry-wait", metavar="PERIOD", help="between retries: 90s, 10m, 1h")
    p.add_argument("--no-schedule", action="store_true", help="run only when asked")
    add_transport_options(p, default=None)
    add_schedule_options(p)
    for name, text in (("list", "list the jobs"), ("show", "show one job")):
        p = jsub.add_parser(name, help=text, epilog=EPILOG_JOB, formatter_class=raw)
        if name == "show":
            p.add_argument("name", metavar="NAME")
        p.add_argument("--json", action="store_true", help="print JSON")
    p = jsub.add_parser("check", help="what the next run will do with each VM and disk",
                        epilog=EPILOG_JOB, formatter_class=raw,
                        description="Reads the inventory only (no snapshot, nothing written). "
                        "Exit 0: every disk will be read; 1: some will be skipped with a "
                        "warning; 2: a VM will fail (a disk refused, a VM not found).")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = jsub.add_parser("run", help="run a job now", epilog=EPILOG_JOB, formatter_class=raw)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--full", action="store_true", help="active full: read every allocated area")
    p.add_argument("--wait", action="store_true",
                   help="follow the session to its end; exit 0 success, 1 warning, 2 failed")
    for name, text in (("stop", "stop a running job (it ends after cleaning up)"),
                       ("enable", "enable a job"), ("disable", "disable a job"),
                       ("delete", "delete a job (its restore points stay)")):
        p = jsub.add_parser(name, help=text, epilog=EPILOG_JOB, formatter_class=raw)
        p.add_argument("name", metavar="NAME")


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


def cmd_create(args: argparse.Namespace, client: ApplianceClient) -> int:
    from appliance import api

    job = client.create_job(api.JobCreate(
        name=args.name, vcenter=args.vcenter or "", vms=args.vm, containers=args.container,
        copy_of=args.copy_of, guest=guest_of(args), quiesce_fallback=args.quiesce_fallback,
        logs=logs_of(args),
        parallel_vms=args.parallel_vms, repository=args.repo,
        block_size=args.block_size, compression=args.compression,
        enable_cbt=args.enable_cbt, quiesce=args.quiesce, keep_last=args.keep_last,
        keep_days=args.keep_days, schedule=schedule_spec(args), retries=args.retries,
        retry_wait_seconds=parse_period(args.retry_wait).total_seconds(),
        notify_to=list(args.notify), exclude_disks=list(args.exclude_disk),
        active_full=args.active_full, rpo_hours=args.rpo, transport=args.transport,
        datastore_paths=datastore_paths_of(args)))
    what = [f"{v.name} ({v.instance_uuid})" for v in job.spec.vms]
    what += [f"every VM in {c}" for c in job.spec.containers]
    what += [f"copies of job {j}'s points" for j in job.spec.copy_of]
    source = f" from {job.spec.vcenter!r}" if job.spec.vcenter else ""
    print(f"created job {job.spec.name!r}: {', '.join(what)}{source} to "
          f"{job.spec.repository!r}")
    return 0


def cmd_edit(args: argparse.Namespace, client: ApplianceClient) -> int:
    from appliance import api

    changes: dict[str, object] = {}
    for key, value in (("vms", args.vm), ("containers", args.container),
                       ("parallel_vms", args.parallel_vms), ("repository", args.repo),
                       ("keep_last", args.keep_last), ("keep_days", args.keep_days),
                       ("retries", args.retries)):
        if value is not None:
            changes[key] = value
    if args.retry_wait is not None:
        changes["retry_wait_seconds"] = parse_period(args.retry_wait).total_seconds()
    if args.transport is not None:
        changes["transport"] = args.transport
    if args.datastore_path:
        changes["datastore_paths"] = datastore_paths_of(args)
    if args.no_schedule or args.daily or args.monthly or args.every or args.after:
        changes["schedule"] = schedule_spec(args)
    if not changes:
        raise UsageError("nothing to change: give an option such as --vm or --daily")
    job = client.edit_job(args.name, api.JobEdit.model_validate(changes))
    print(f"job {job.spec.name!r} changed", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace, client: ApplianceClient) -> int:
    from appliance.api import next_run_text  # the client loaded it already

    jobs = client.jobs()
    if args.json:
        print(dump([j.model_dump(mode="json") for j in jobs]))
    elif not jobs:
        print("no jobs; create one with `vmkeep job create`")
    else:
        print(render(("NAME", "VMS", "REPOSITORY", "ENABLED", "LAST RUN", "RESULT",
                      "NEXT RUN"),
                     [(j.spec.name, len(j.spec.vms) if not j.spec.containers
                       else f"{len(j.spec.vms)}+{len(j.spec.containers)} containers",
                       j.spec.repository,
                       "yes" if j.enabled else "no",
                       j.last_session.started.strftime("%Y-%m-%d %H:%M")
                       if j.last_session else "-",
                       (j.last_session.result or j.last_session.state)
                       if j.last_session else "-", next_run_text(j)) for j in jobs]))
    return 0


def cmd_show(args: argparse.Namespace, client: ApplianceClient) -> int:
    job = client.job(args.name)
    if args.json:
        print(dump(job.model_dump(mode="json")))
    else:
        s = job.spec
        print(f"job {s.name!r} ({'enabled' if job.enabled else 'disabled'})\n"
              f"  VMs: {shown(', '.join(v.name for v in s.vms)) or '-'}\n"
              f"  containers: {shown(', '.join(s.containers)) or '-'}\n"
              f"  vCenter: {s.vcenter}\n"
              f"  {s.parallel_vms} VM(s) at a time\n"
              f"  repository: {s.repository}\n  block size {s.block_size}, compression "
              f"{s.compression}, CBT consent {'yes' if s.enable_cbt else 'no'}, quiesce "
              f"{'yes' if s.quiesce else 'no'}\n  retention: keep last "
              f"{s.keep_last or '-'}, days {s.keep_days or '-'}")
    return 0


CHECK_EXIT = {"ok": 0, "warning": 1, "refused": 2}  # as `job run --wait` would end


def cmd_check(args: argparse.Namespace, client: ApplianceClient) -> int:
    check = client.check_job(args.name)
    if args.json:
        print(dump(check.model_dump(mode="json")))
        return CHECK_EXIT[check.result]
    rows: list[tuple[object, ...]] = []
    for vm in check.vms:
        if not vm.disks:
            rows.append((vm.name, "-", "-", vm.status, vm.reason))
        for d in vm.disks:
            rows.append((vm.name, d.index, f"{d.datastore} ({d.datastore_type or '?'})",
                         d.status, d.reason))
    if rows:
        print(render(("VM", "DISK", "DATASTORE", "STATUS", "REASON"), rows))
    counts = {s: sum(1 for vm in check.vms if vm.status == s) for s in CHECK_EXIT}
    print(f"job {check.job!r}: {len(check.vms)} VM(s): {counts['ok']} will back up, "
          f"{counts['warning']} with warnings (disks skipped), {counts['refused']} will fail",
          file=sys.stderr)
    return CHECK_EXIT[check.result]


def cmd_run(args: argparse.Namespace, client: ApplianceClient) -> int:
    started = client.run_job(args.name, full=args.full)
    print(started.id)
    if not args.wait:
        return 0
    return follow(client, started.id)


def cmd_stop(args: argparse.Namespace, client: ApplianceClient) -> int:
    print(client.stop_job(args.name).message, file=sys.stderr)
    return 0


def cmd_enable(args: argparse.Namespace, client: ApplianceClient) -> int:
    client.set_job_enabled(args.name, True)
    print(f"job {args.name!r} enabled", file=sys.stderr)
    return 0


def cmd_disable(args: argparse.Namespace, client: ApplianceClient) -> int:
    client.set_job_enabled(args.name, False)
    print(f"job {args.name!r} disabled", file=sys.stderr)
    return 0


def cmd_delete(args: argparse.Namespace, client: ApplianceClient) -> int:
    print(client.delete_job(args.name).message, file=sys.stderr)
    return 0


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


COMMANDS: dict[str, Handler] = {"create": cmd_create, "edit": cmd_edit, "list": cmd_list,
                               "show": cmd_show, "run": cmd_run, "stop": cmd_stop,
                               "enable": cmd_enable, "disable": cmd_disable,
                               "delete": cmd_delete, "check": cmd_check}


def run(args: argparse.Namespace) -> int:
    return online.run(COMMANDS, args)
