"""``vmkeep notify set|show``: where the appliance reports sessions that end."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from appliance.cli import online
from appliance.cli.args import (
    RAW,
    Parser,
    Subparsers,
    add_json_option,
    number,
    port_arg,
)
from appliance.cli.online import Handler, dump
from appliance.inputs import parse_period

if TYPE_CHECKING:
    from appliance import api
    from appliance.client import ApplianceClient


EPILOG_NOTIFY = """examples:
  vmkeep notify set --on failed,warning --smtp-host mail.example.com --to admin@example.com
  vmkeep notify set --webhook https://hooks.example.com/vmkeep --free-space-alert 15
  vmkeep notify show --json
"""


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    np_ = sub.add_parser("notify", help="e-mail and webhook notifications",
                         description="Where the appliance reports sessions that end.",
                         epilog=EPILOG_NOTIFY, formatter_class=raw)
    nsub = np_.add_subparsers(dest="command", required=True, parser_class=Parser)
    p = nsub.add_parser("set", help="set the notification settings (all at once)",
                        epilog=EPILOG_NOTIFY, formatter_class=raw)
    p.add_argument("--on", default="failed,warning",
                   help="results to report: failed, warning, success (default failed,warning)")
    p.add_argument("--smtp-host", help="SMTP server for e-mail")
    p.add_argument("--smtp-port", type=port_arg, default=25, help="SMTP port (default 25)")
    p.add_argument("--starttls", action="store_true", help="use STARTTLS")
    p.add_argument("--from", dest="mail_from", default="vmkeep@localhost",
                   help="sender address")
    p.add_argument("--to", action="append", default=[], metavar="ADDRESS",
                   help="recipient (repeatable)")
    p.add_argument("--webhook", metavar="URL", help="POST a JSON report here")
    p.add_argument("--alert-every", default="5m", metavar="PERIOD",
                   help="how often to look for alerts such as a missed RPO (default 5m)")
    p.add_argument("--free-space-alert", type=number(0.0, 100.0), default=10.0,
                   metavar="PERCENT",
                   help="alert when a repository has less free space than this (default 10)")
    add_json_option(p, "a JSON object (the settings now)")
    p = nsub.add_parser("show", help="show the notification settings", epilog=EPILOG_NOTIFY,
                        formatter_class=raw)
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_set(args: argparse.Namespace, client: ApplianceClient) -> int:
    from appliance import api

    value = client.set_notifications(api.Notifications(
        on=[x.strip() for x in args.on.split(",") if x.strip()],
        smtp_host=args.smtp_host, smtp_port=args.smtp_port, smtp_starttls=args.starttls,
        mail_from=args.mail_from, mail_to=list(args.to), webhook_url=args.webhook,
        alert_every_seconds=parse_period(args.alert_every).total_seconds(),
        free_space_alert_percent=args.free_space_alert))
    return _print(args, value)


def cmd_show(args: argparse.Namespace, client: ApplianceClient) -> int:
    return _print(args, client.notifications())


def _print(args: argparse.Namespace, value: api.Notifications) -> int:
    print(dump(value.model_dump(mode="json")) if getattr(args, "json", False) else
          f"on {', '.join(value.on) or 'nothing'}: e-mail "
          f"{', '.join(value.mail_to) or '-'} via {value.smtp_host or '-'}:{value.smtp_port}; "
          f"webhook {value.webhook_url or '-'}")
    return 0


COMMANDS: dict[str, Handler] = {"set": cmd_set, "show": cmd_show}


def run(args: argparse.Namespace) -> int:
    return online.run(COMMANDS, args)
