"""``vmkeep config backup|restore|schedule``: the appliance's configuration, sealed with a
password into a repository and brought back."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from appliance.cli import online
from appliance.cli.args import (
    RAW,
    Parser,
    Subparsers,
    add_json_option,
    add_password_options,
    add_schedule_options,
    read_path_arg,
    repo_name_arg,
)
from appliance.cli.online import Handler, dump, schedule_spec
from appliance.errors import UsageError
from appliance.password import optional_password, read_password

if TYPE_CHECKING:
    from appliance.client import ApplianceClient


EPILOG_CONFIG = """examples:
  vmkeep config schedule --repo main --daily 06:00 --config-password-stdin
  vmkeep config schedule                    # the schedule and the last backup
  vmkeep config backup --repo main --config-password-file ~/.vmkeep-config-pw
  vmkeep config restore --from /backups/main --config-password-file ~/.vmkeep-config-pw
"""


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    cfg = sub.add_parser("config", help="back up and restore the appliance's configuration",
                         description="Seal vCenters, repositories, jobs, settings and secrets "
                         "with a password into a repository, and bring them back on a fresh "
                         "appliance.", epilog=EPILOG_CONFIG, formatter_class=raw)
    csub = cfg.add_subparsers(dest="command", required=True, parser_class=Parser)

    def cfg_secret(p: argparse.ArgumentParser) -> None:
        add_password_options(p, secret="config")

    p = csub.add_parser("backup", help="write a configuration backup into a repository",
                        epilog=EPILOG_CONFIG, formatter_class=raw)
    p.add_argument("--repo", required=True, type=repo_name_arg, metavar="NAME",
                   help="the repository's name (`vmkeep repo list`)")
    cfg_secret(p)
    add_json_option(p)
    p = csub.add_parser("restore", help="restore a configuration backup (fresh appliance)",
                        epilog=EPILOG_CONFIG, formatter_class=raw)
    p.add_argument("--from", dest="source", required=True, metavar="PATH", type=read_path_arg,
                   help="a repository folder (its newest backup) or a backup file")
    cfg_secret(p)
    add_json_option(p)
    p = csub.add_parser("schedule", help="back the configuration up on a schedule",
                        description="Back the configuration up into a repository on a "
                        "schedule (the password is kept in the secret store; give it the "
                        "first time). Without a schedule option: show the schedule.",
                        epilog=EPILOG_CONFIG, formatter_class=raw)
    p.add_argument("--repo", type=repo_name_arg, metavar="NAME",
                   help="the repository's name (`vmkeep repo list`)")
    p.add_argument("--off", action="store_true", help="stop the scheduled backups")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_schedule_options(p)
    cfg_secret(p)


def cmd_backup(args: argparse.Namespace, client: ApplianceClient) -> int:
    password = read_password(args, "VMKEEP_CONFIG_PASSWORD", "configuration backup password")
    done = client.config_backup(args.repo, password)
    print(dump(done.model_dump(mode="json")) if args.json else done.path)
    return 0


def cmd_restore(args: argparse.Namespace, client: ApplianceClient) -> int:
    # Without a password: the one the appliance keeps for its own configuration backups.
    done = client.config_restore(os.path.abspath(args.source), optional_password(
        args, "VMKEEP_CONFIG_PASSWORD", "configuration backup password"))
    if args.json:
        print(dump(done.model_dump(mode="json")))
        return 0
    print(f"restored {done.vcenters} vCenter(s), {done.repositories} repositories, "
          f"{done.jobs} job(s) and {done.secrets} secret(s) from {done.path}"
          + (f" (the newest that opens with this password; {done.skipped_newer} newer one(s) "
             "there do not)" if done.skipped_newer else ""), file=sys.stderr)
    return 0


def cmd_schedule(args: argparse.Namespace, client: ApplianceClient) -> int:
    from appliance import api

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
        print(dump(view.model_dump(mode="json")))
        return 0
    s = view.schedule
    when = {"none": "not scheduled", "daily": f"daily at {s.at} ({s.days or 'every day'})",
            "monthly": f"monthly at {s.at}", "periodic": f"every {s.every}"}.get(s.kind, s.kind)
    print(f"configuration backup: {when}" + (f" into {view.repository}" if view.repository
                                              else ""))
    if view.password_generated:
        print("sealed with a password the appliance generated and keeps only in its own "
              "secret store; set one you keep elsewhere: `vmkeep config schedule "
              "--config-password-stdin`")
    if view.last_backup is not None:
        print(f"last: {view.last_backup:%Y-%m-%d %H:%M:%S} UTC, {view.last_result}: "
              f"{view.last_message}")
    if view.changed_since_backup:
        print("the configuration changed since; a backup runs within seconds")
    if view.last_sealed_with_current is False:
        print("the last successful backup is sealed with an earlier password (keep it until "
              "a backup with the current one has run)")
    return 0


COMMANDS: dict[str, Handler] = {"backup": cmd_backup, "restore": cmd_restore,
                               "schedule": cmd_schedule}


def run(args: argparse.Namespace) -> int:
    return online.run(COMMANDS, args)
