"""``vmkeep job create|edit|list|show|check|run|stop|enable|disable|delete``: backup jobs."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from appliance.cli import online
from appliance.cli.args import RAW, Parser, Subparsers, add_json_option, name_arg
from appliance.cli.job_options import (
    GUEST_FLAGS,
    LOG_FLAGS,
    add_job_options,
    datastore_paths_of,
    edited_guest,
    edited_logs,
    guest_of,
    logs_of,
)
from appliance.cli.online import EPILOG_JOB, Handler, dump, schedule_spec
from appliance.cli.session_cmd import follow
from appliance.errors import UsageError
from appliance.inputs import parse_period, shown
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
    add_job_options(p, edit=False)
    add_json_option(p, "a JSON object (the job)")
    p = jsub.add_parser("edit", help="change a job (what is given; the rest stays)",
                        epilog=EPILOG_JOB, formatter_class=raw,
                        description="Every option of `job create` but --vcenter: what is "
                        "given replaces the job's (repeatable ones: the whole list); "
                        "--no-… takes a setting back.")
    p.add_argument("name", metavar="NAME")
    add_job_options(p, edit=True)
    add_json_option(p, "a JSON object (the job)")
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
    add_json_option(p, "a JSON object (the session started; with --wait, the session "
                    "ended)")
    for name, text in (("stop", "stop a running job (it ends after cleaning up)"),
                       ("enable", "enable a job"), ("disable", "disable a job"),
                       ("delete", "delete a job (its restore points stay)")):
        p = jsub.add_parser(name, help=text, epilog=EPILOG_JOB, formatter_class=raw)
        p.add_argument("name", metavar="NAME")
        add_json_option(p, "a JSON object ({\"message\"}" if name in ("stop", "delete")
                        else "a JSON object (the job)")


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
    if args.json:
        print(dump(job.model_dump(mode="json")))
        return 0
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
                       ("copy_of", args.copy_of), ("parallel_vms", args.parallel_vms),
                       ("repository", args.repo), ("block_size", args.block_size),
                       ("compression", args.compression), ("enable_cbt", args.enable_cbt),
                       ("quiesce", args.quiesce), ("quiesce_fallback", args.quiesce_fallback),
                       ("keep_last", args.keep_last), ("keep_days", args.keep_days),
                       ("retries", args.retries), ("notify_to", args.notify),
                       ("exclude_disks", args.exclude_disk),
                       ("active_full", args.active_full), ("rpo_hours", args.rpo),
                       ("transport", args.transport)):
        if value is not None:
            changes[key] = value
    for flag, key, off in (("enable_cbt", "enable_cbt", False), ("quiesce", "quiesce", False),
                           ("keep_last", "keep_last", None), ("keep_days", "keep_days", None),
                           ("rpo", "rpo_hours", None), ("active_full", "active_full", None),
                           ("notify", "notify_to", []), ("exclude_disk", "exclude_disks", []),
                           ("guest", "guest", None)):
        if getattr(args, f"no_{flag}"):
            if key in changes:
                raise UsageError(f"give --{flag.replace('_', '-')} or --no-"
                                 f"{flag.replace('_', '-')}, not both")
            changes[key] = off
    if args.retry_wait is not None:
        changes["retry_wait_seconds"] = parse_period(args.retry_wait).total_seconds()
    if args.datastore_path:
        changes["datastore_paths"] = datastore_paths_of(args)
    if args.no_schedule or args.daily or args.monthly or args.every or args.after:
        changes["schedule"] = schedule_spec(args)
    elif any(getattr(args, f) for f in ("days", "day", "nth", "weekday", "window")) or (
            args.tz != "UTC"):
        raise UsageError("give the schedule whole: --daily, --monthly, --every or --after "
                         "with its options (--tz, --window, …)")
    guest = any(getattr(args, f) is not None for f in GUEST_FLAGS)
    logs = any(getattr(args, f) is not None for f in LOG_FLAGS)
    if guest or logs:
        stored = client.job(args.name).spec
        if guest:
            if args.no_guest:
                raise UsageError("give --guest-… options or --no-guest, not both")
            changes["guest"] = edited_guest(args, stored.guest)
        if logs:
            changes["logs"] = edited_logs(args, stored.logs)
    if not changes:
        raise UsageError("nothing to change: give an option such as --vm or --daily")
    job = client.edit_job(args.name, api.JobEdit.model_validate(changes))
    if args.json:
        print(dump(job.model_dump(mode="json")))
        return 0
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
    if not args.wait:
        print(dump(started.model_dump(mode="json")) if args.json else started.id)
        return 0
    if not args.json:
        print(started.id, flush=True)
    code = follow(client, started.id)
    if args.json:
        print(dump(client.session(started.id).model_dump(mode="json")))
    return code


def said(args: argparse.Namespace, done: api.Done) -> int:
    """``stop``/``delete``: the appliance's message, as JSON on stdout or as text on stderr."""
    if args.json:
        print(dump(done.model_dump(mode="json")))
    else:
        print(done.message, file=sys.stderr)
    return 0


def cmd_stop(args: argparse.Namespace, client: ApplianceClient) -> int:
    return said(args, client.stop_job(args.name))


def set_enabled(args: argparse.Namespace, client: ApplianceClient, enabled: bool) -> int:
    job = client.set_job_enabled(args.name, enabled)
    if args.json:
        print(dump(job.model_dump(mode="json")))
    else:
        print(f"job {args.name!r} {'enabled' if enabled else 'disabled'}", file=sys.stderr)
    return 0


def cmd_enable(args: argparse.Namespace, client: ApplianceClient) -> int:
    return set_enabled(args, client, True)


def cmd_disable(args: argparse.Namespace, client: ApplianceClient) -> int:
    return set_enabled(args, client, False)


def cmd_delete(args: argparse.Namespace, client: ApplianceClient) -> int:
    return said(args, client.delete_job(args.name))


COMMANDS: dict[str, Handler] = {"create": cmd_create, "edit": cmd_edit, "list": cmd_list,
                               "show": cmd_show, "run": cmd_run, "stop": cmd_stop,
                               "enable": cmd_enable, "disable": cmd_disable,
                               "delete": cmd_delete, "check": cmd_check}


def run(args: argparse.Namespace) -> int:
    return online.run(COMMANDS, args)
