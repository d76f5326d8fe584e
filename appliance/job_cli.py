"""``vmkeep job …``, ``vmkeep session …``, ``vmkeep points list`` and ``vmkeep restore disk``:
jobs and what they produce, through the appliance."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path

from appliance import api
from appliance.client import ApplianceClient
from appliance.errors import ApplianceError, UsageError
from appliance.inputs import shown
from appliance.jobs.schedule import parse_period
from appliance.password import optional_password, password_from_file, read_password
from appliance.progress import human_bytes
from appliance.table import render

# `job run --wait`: 0 success, 1 warning, 2 failed, stopped or interrupted.
EXIT_BY_RESULT = {"success": 0, "warning": 1}
EXIT_FAILED = 2


def exit_code(s: api.SessionSummary | api.Session) -> int:
    return EXIT_BY_RESULT.get(s.result or "", EXIT_FAILED) if s.state == "ended" else \
        EXIT_FAILED


def _dump(x: object) -> str:
    return json.dumps(x, indent=2, default=str)


def _summary_json(s: api.SessionSummary) -> dict[str, object]:
    return s.model_dump(mode="json")


def cmd_job(args: argparse.Namespace, client: ApplianceClient) -> int:
    c = args.command
    if c == "create":
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
            active_full=args.active_full, rpo_hours=args.rpo))
        what = [f"{v.name} ({v.instance_uuid})" for v in job.spec.vms]
        what += [f"every VM in {c}" for c in job.spec.containers]
        what += [f"copies of job {j}'s points" for j in job.spec.copy_of]
        source = f" from {job.spec.vcenter!r}" if job.spec.vcenter else ""
        print(f"created job {job.spec.name!r}: {', '.join(what)}{source} to "
              f"{job.spec.repository!r}")
        return 0
    if c == "edit":
        changes: dict[str, object] = {}
        for key, value in (("vms", args.vm), ("containers", args.container),
                           ("parallel_vms", args.parallel_vms), ("repository", args.repo),
                           ("keep_last", args.keep_last), ("keep_days", args.keep_days),
                           ("retries", args.retries)):
            if value is not None:
                changes[key] = value
        if args.retry_wait is not None:
            changes["retry_wait_seconds"] = parse_period(args.retry_wait).total_seconds()
        if args.no_schedule or args.daily or args.monthly or args.every or args.after:
            changes["schedule"] = schedule_spec(args)
        if not changes:
            raise UsageError("nothing to change: give an option such as --vm or --daily")
        job = client.edit_job(args.name, api.JobEdit.model_validate(changes))
        print(f"job {job.spec.name!r} changed", file=sys.stderr)
        return 0
    if c == "list":
        jobs = client.jobs()
        if args.json:
            print(_dump([j.model_dump(mode="json") for j in jobs]))
        elif not jobs:
            print("no jobs; create one with `vmkeep job create`")
        else:
            print(render(("NAME", "VMS", "REPOSITORY", "ENABLED", "LAST RUN", "RESULT"),
                         [(j.spec.name, len(j.spec.vms) if not j.spec.containers
                           else f"{len(j.spec.vms)}+{len(j.spec.containers)} containers",
                           j.spec.repository,
                           "yes" if j.enabled else "no",
                           j.last_session.started.strftime("%Y-%m-%d %H:%M")
                           if j.last_session else "-",
                           (j.last_session.result or j.last_session.state)
                           if j.last_session else "-") for j in jobs]))
        return 0
    if c == "show":
        job = client.job(args.name)
        if args.json:
            print(_dump(job.model_dump(mode="json")))
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
    if c == "run":
        started = client.run_job(args.name, full=args.full)
        print(started.id)
        if not args.wait:
            return 0
        return follow(client, started.id)
    if c == "stop":
        print(client.stop_job(args.name).message, file=sys.stderr)
        return 0
    if c in ("enable", "disable"):
        client.set_job_enabled(args.name, c == "enable")
        print(f"job {args.name!r} {c}d", file=sys.stderr)
        return 0
    print(client.delete_job(args.name).message, file=sys.stderr)
    return 0


NTH = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}


def schedule_spec(args: argparse.Namespace) -> api.ScheduleSpec:
    """The schedule the options give; a log backup job without one runs every 15 minutes."""
    spec = _schedule_spec(args)
    if spec.kind == "none" and getattr(args, "logs_of", None):
        return spec.model_copy(update={"kind": "periodic", "every": "15m"})
    return spec


def _schedule_spec(args: argparse.Namespace) -> api.ScheduleSpec:
    """The schedule options of `job create` as the wire form (checked by the appliance)."""
    if args.daily:
        kind, at = "daily", args.daily
    elif args.monthly:
        kind, at = "monthly", args.monthly
    elif args.every:
        kind, at = "periodic", None
    elif args.after:
        kind, at = "after", None
    else:
        kind, at = "none", None
    return api.ScheduleSpec(kind=kind, at=at, days=args.days, day_of_month=args.day,
                            nth=NTH[args.nth] if args.nth else None, weekday=args.weekday,
                            every=args.every, after=args.after, tz=args.tz,
                            window=list(args.window))


def follow(client: ApplianceClient, session_id: str) -> int:
    """Print the session's log as it comes (its event stream) and a progress line on a
    terminal; return the exit code of its result."""
    tty = sys.stderr.isatty()
    for event in client.events(session_id):
        if event.line is not None:
            line = event.line
            if tty:
                print("\r\033[K", end="", file=sys.stderr)
            print(f"{line.time:%H:%M:%S} {line.level:7} {shown(line.message)}",
                  file=sys.stderr)
        elif event.tasks is not None and tty:
            parts = [f"{shown(t.name)} {100 * t.bytes_done / t.bytes_total:.0f}% "
                     f"{human_bytes(t.rate)}/s" for t in event.tasks
                     if t.state == "running" and t.bytes_total and t.disk is None]
            print("\r\033[K" + "; ".join(parts), end="", file=sys.stderr, flush=True)
        elif event.summary is not None:
            if tty:
                print("\r\033[K", end="", file=sys.stderr)
            return exit_code(event.summary)
    raise ApplianceError(f"session {session_id}'s events ended before its end")


def cmd_session(args: argparse.Namespace, client: ApplianceClient) -> int:
    if args.command == "list":
        rows = client.sessions()
        if args.json:
            print(_dump([_summary_json(s) for s in rows]))
        else:
            print(render(("ID", "JOB", "STATE", "RESULT", "STARTED", "ENDED"),
                         [(s.id, s.job, s.state, s.result or "-",
                           f"{s.started:%Y-%m-%d %H:%M:%S}",
                           f"{s.ended:%H:%M:%S}" if s.ended else "-") for s in rows]))
        return 0
    if args.command == "follow":
        return follow(client, args.id)
    s = client.session(args.id)
    if args.json:
        print(_dump(s.model_dump(mode="json")))
        return 0
    print(f"session {s.id} of job {s.job!r}: {s.state}, {s.result or 'running'}")
    for t in s.tasks:
        print(f"  {shown(t.name)}: {t.state} {t.result or ''} {human_bytes(t.bytes_done)} of "
              f"{human_bytes(t.bytes_total)}" + (f", point {t.point_id}" if t.point_id else ""))
    for line in s.log:
        print(f"  {line.time:%H:%M:%S} {line.level:7} {shown(line.message)}")
    return 0


def cmd_points(args: argparse.Namespace, client: ApplianceClient) -> int:
    rows = client.points(args.vm)
    if args.json:
        print(_dump([p.model_dump(mode="json") for p in rows]))
    else:
        print(render(("ID", "VM", "CREATED (UTC)", "KIND", "READ", "STORED", "REPOSITORY"),
                     [(p.id, p.vm, f"{p.created:%Y-%m-%d %H:%M:%S}", p.kind,
                       human_bytes(p.bytes_read), human_bytes(p.bytes_stored), p.repository)
                      for p in rows]))
    return 0


def cmd_restore(args: argparse.Namespace, client: ApplianceClient) -> int:
    if args.command == "vm":
        done = client.restore_vm(api.VmRestore(
            point=args.point, name=args.name, confirm=args.yes, datastore=args.datastore,
            host=args.target_host, power_on=args.power_on))
    elif args.command == "postgres":
        until = None
        if args.until:
            try:
                until = datetime.fromisoformat(args.until)
            except ValueError:
                raise UsageError(f"--until {args.until!r} is not a time; give e.g. "
                                 "'2026-12-02 07:15:00+00:00'") from None
            if until.tzinfo is None:
                raise UsageError("--until needs its time zone, e.g. +00:00 for UTC")
        done = client.restore_postgres(api.PostgresRestore(
            point=args.point, data_dir=os.path.abspath(args.data_dir), until=until))
    else:
        done = client.restore_disk(args.point, args.disk, os.path.abspath(args.to))
    print(done.message, file=sys.stderr)
    return 0


def cmd_inventory(args: argparse.Namespace, client: ApplianceClient) -> int:
    if args.containers:
        found = client.containers(args.vcenter)
        if args.json:
            print(_dump([c.model_dump(mode="json") for c in found]))
            return 0
        print(render(("VCENTER", "KIND", "PATH", "VMS"),
                     [(c.vcenter, c.kind, c.path, ",".join(c.vms) or "-") for c in found]))
        return 0
    vms = client.inventory(args.vcenter)
    if args.json:
        print(_dump([v.model_dump(mode="json") for v in vms]))
        return 0
    print(render(("VCENTER", "VM", "POWER", "CBT", "SNAPSHOTS", "JOBS", "LAST POINT"),
                 [(v.vcenter, v.name, v.power_state.removeprefix("powered").lower(),
                   "on" if v.cbt_enabled else "off", len(v.snapshots),
                   ",".join(v.jobs) or "-", v.last_point or "-") for v in vms]))
    return 0


def cmd_verify(args: argparse.Namespace, client: ApplianceClient) -> int:
    answer = client.verify(args.repo, args.point)
    for line in answer.damage:
        print(f"DAMAGED {shown(line)}")
    print(("ok: " if answer.ok else "damage found: ") + shown(answer.summary))
    return 0 if answer.ok else 1


def cmd_prune(args: argparse.Namespace, client: ApplianceClient) -> int:
    answer = client.prune(api.PruneRequest(repository=args.repo, keep_last=args.keep_last,
                                           keep_days=args.keep_days, dry_run=args.dry_run))
    for line in answer.lines:
        print(shown(line))
    return 0


def cmd_hunter(args: argparse.Namespace, client: ApplianceClient) -> int:
    for report in client.hunter(vcenter=args.vcenter, dry_run=args.dry_run,
                                include_foreign=args.include_foreign):
        print(f"vCenter {shown(report.vcenter)}:")
        for line in report.lines:
            print(f"  {shown(line)}")
    return 0


def cmd_notify(args: argparse.Namespace, client: ApplianceClient) -> int:
    if args.command == "set":
        value = client.set_notifications(api.Notifications(
            on=[x.strip() for x in args.on.split(",") if x.strip()],
            smtp_host=args.smtp_host, smtp_port=args.smtp_port, smtp_starttls=args.starttls,
            mail_from=args.mail_from, mail_to=list(args.to), webhook_url=args.webhook,
            alert_every_seconds=parse_period(args.alert_every).total_seconds(),
            free_space_alert_percent=args.free_space_alert))
    else:
        value = client.notifications()
    print(_dump(value.model_dump(mode="json")) if getattr(args, "json", False) else
          f"on {', '.join(value.on) or 'nothing'}: e-mail "
          f"{', '.join(value.mail_to) or '-'} via {value.smtp_host or '-'}:{value.smtp_port}; "
          f"webhook {value.webhook_url or '-'}")
    return 0


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} {path}: {exc}") from None


def logs_of(args: argparse.Namespace) -> api.LogBackupSpec | None:
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


def cmd_move(args: argparse.Namespace, client: ApplianceClient) -> int:
    answer = client.move(api.MoveRequest(to=args.to, job=args.job, vm=args.vm,
                                         source=args.source))
    for line in answer.lines:
        print(shown(line))
    return 0


def cmd_alerts(args: argparse.Namespace, client: ApplianceClient) -> int:
    found = client.alerts()
    if args.json:
        print(_dump([a.model_dump(mode="json") for a in found]))
    elif not found:
        print("no alerts")
    else:
        print(render(("SINCE", "KIND", "MESSAGE"),
                     [(f"{a.since:%Y-%m-%d %H:%M}", a.kind, a.message) for a in found]))
    return 0


def cmd_config(args: argparse.Namespace, client: ApplianceClient) -> int:
    if args.command == "schedule":
        return _config_schedule(args, client)
    if args.command == "backup":
        password = read_password(args, "VMKEEP_CONFIG_PASSWORD",
                                 "configuration backup password")
        print(client.config_backup(args.repo, password).path)
        return 0
    # Without a password: the one the appliance keeps for its own configuration backups.
    done = client.config_restore(os.path.abspath(args.source), optional_password(
        args, "VMKEEP_CONFIG_PASSWORD", "configuration backup password"))
    print(f"restored {done.vcenters} vCenter(s), {done.repositories} repositories, "
          f"{done.jobs} job(s) and {done.secrets} secret(s) from {done.path}"
          + (f" (the newest that opens with this password; {done.skipped_newer} newer one(s) "
             "there do not)" if done.skipped_newer else ""), file=sys.stderr)
    return 0


def _config_schedule(args: argparse.Namespace, client: ApplianceClient) -> int:
    timed = args.daily or args.monthly or args.every
    if args.after:
        raise UsageError("a configuration backup runs on a time schedule (--daily, --monthly "
                         "or --every), not after a job")
    given = (args.password_stdin or args.password_file is not None
             or bool(os.environ.get("VMKEEP_CONFIG_PASSWORD")))
    if given and not (args.off or timed):
        # Only a new password: it seals the backups from now on, on the same schedule.
        current = client.config_schedule()
        if current.repository is None:
            raise UsageError("no configuration backup is scheduled; give a schedule "
                             "(--daily, --monthly or --every) and --repo with the password")
        view = client.set_config_schedule(api.ConfigSchedule(
            repository=args.repo or current.repository, schedule=current.schedule,
            password=read_password(args, "VMKEEP_CONFIG_PASSWORD",
                                   "configuration backup password")))
    elif args.off or timed:
        password = (read_password(args, "VMKEEP_CONFIG_PASSWORD",
                                  "configuration backup password") if given else None)
        view = client.set_config_schedule(api.ConfigSchedule(
            repository=args.repo if not args.off else None,
            schedule=schedule_spec(args) if not args.off else api.ScheduleSpec(),
            password=password))
    else:
        view = client.config_schedule()
    if args.json:
        print(_dump(view.model_dump(mode="json")))
        return 0
    s = view.schedule
    when = {"none": "not scheduled", "daily": f"daily at {s.at} ({s.days or 'every day'})",
            "monthly": f"monthly at {s.at}", "periodic": f"every {s.every}"}.get(s.kind, s.kind)
    print(f"configuration backup: {when}" + (f" into {view.repository}" if view.repository
                                              else ""))
    if view.password_generated:
        print("sealed with a password the appliance generated and keeps only in its own "
              "secret store; set one you keep elsewhere: `vmkeep config schedule "
              "--password-stdin`")
    if view.last_backup is not None:
        print(f"last: {view.last_backup:%Y-%m-%d %H:%M:%S} UTC, {view.last_result}: "
              f"{view.last_message}")
    return 0


def run(args: argparse.Namespace) -> int:
    handler = {"job": cmd_job, "session": cmd_session, "points": cmd_points,
               "restore": cmd_restore, "hunter": cmd_hunter, "notify": cmd_notify,
               "config": cmd_config, "alerts": cmd_alerts, "inventory": cmd_inventory,
               "move": cmd_move,
               "verify": cmd_verify, "prune": cmd_prune}[args.group]
    with ApplianceClient.from_environment() as client:
        return handler(args, client)
