"""``vmkeep repo add|edit|list|remove|rescan|harden|audit|repair-key``: the repositories the
appliance writes to."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.cli import online
from appliance.cli.args import (
    RAW,
    Parser,
    Subparsers,
    add_json_option,
    add_ssh_login,
    folder_arg,
    name_arg,
    whole,
)
from appliance.cli.online import Handler, dump
from appliance.errors import PinDetail, RemoteError, UsageError
from appliance.inputs import parse_period, shown
from appliance.password import optional_password, password_from_file
from appliance.progress import human_bytes
from appliance.table import render

if TYPE_CHECKING:
    from appliance import api
    from appliance.client import ApplianceClient


EPILOG_REPO = """examples:
  vmkeep repo add main --path /backups/main      # creates the folder, or imports a repository
  vmkeep repo add offsite --path sftp://vmkeep@backup01/srv/vmkeep --ssh-key ~/.ssh/id_ed25519 \\
      --host-key-fingerprint SHA256:...          # as `ssh-keygen -l -E sha256` prints it
  vmkeep repo edit offsite --host-key-fingerprint SHA256:...   # trust a host's new key
  vmkeep repo list --json
  vmkeep repo rescan main                        # re-index it from its files
  vmkeep repo remove main                        # forget it; its files stay
"""


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    rp = sub.add_parser("repo", help="repositories the appliance writes to",
                        description="Add, list, rescan and remove the appliance's "
                        "repositories.", epilog=EPILOG_REPO, formatter_class=raw)
    rsub = rp.add_subparsers(dest="command", required=True, parser_class=Parser)
    p = rsub.add_parser("add", help="add a repository (a missing folder is created)",
                        epilog=EPILOG_REPO, formatter_class=raw)
    p.add_argument("name", metavar="NAME", type=name_arg)
    p.add_argument("--path", required=True, metavar="DIR|URL", type=folder_arg,
                   help="the repository's folder, or sftp://USER@HOST[:PORT]/ABSOLUTE/PATH")
    add_ssh_login(p)
    p.add_argument("--encryption-password-file", metavar="FILE",
                   help="opens an encrypted repository; a new one is made encrypted with it "
                   "(first line of FILE, or VMKEEP_ENCRYPTION_PASSWORD). A lost password "
                   "cannot be recovered")
    p.add_argument("--reconnect-every", metavar="PERIOD",
                   help="SSH: when the connection drops, try again this often (default 15s)")
    p.add_argument("--reconnect-for", metavar="PERIOD",
                   help="SSH: and give up after this long (default 30m)")
    add_json_option(p)
    p = rsub.add_parser("edit", help="an SSH repository's login or trusted host key",
                        epilog=EPILOG_REPO, formatter_class=raw)
    p.add_argument("name", metavar="NAME")
    add_ssh_login(p)
    add_json_option(p)
    p = rsub.add_parser("harden", help="make an SSH repository's files immutable",
                        description="After each session the files a new point needs become "
                        "immutable on the repository host (chattr +i) for --days after the end "
                        "of their epoch, through the root-owned helper "
                        "(scripts/install-immutable-helper.sh on the host).",
                        epilog=EPILOG_REPO, formatter_class=raw)
    p.add_argument("name", metavar="NAME")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--days", type=whole(7, 9999), metavar="N", help="7 … 9999")
    g.add_argument("--off", action="store_true",
                   help="no new locks (those set stay until they expire)")
    p.add_argument("--epoch-days", type=whole(1, 9999), metavar="N",
                   help="epoch length (default: 30, or --days if shorter)")
    add_json_option(p)
    p = rsub.add_parser("audit", help="compare a hardened repository's ledger with the host",
                        epilog=EPILOG_REPO, formatter_class=raw)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = rsub.add_parser("list", help="list the repositories", epilog=EPILOG_REPO,
                        formatter_class=raw)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    for name, text in (("rescan", "rebuild the index of a repository from its files"),
                       ("remove", "forget a repository (its files stay)"),
                       ("repair-key", "put a damaged or lost block-id key file back from the "
                        "appliance's copy")):
        p = rsub.add_parser(name, help=text, epilog=EPILOG_REPO, formatter_class=raw)
        p.add_argument("name", metavar="NAME")
        add_json_option(p)


def _print(args: argparse.Namespace, answer: api.Repository | api.Done) -> None:
    """The answer as JSON (``--json``), else a repository's line or a message."""
    from appliance import api

    if args.json:
        print(dump(answer.model_dump(mode="json")))
    else:
        print(answer.message if isinstance(answer, api.Done) else _show(answer))


def _show(r: api.Repository) -> str:
    return (f"repository {r.name!r} at {r.location}: {r.points} restore point(s), "
            f"{human_bytes(r.stored_bytes)} stored" + (", encrypted" if r.encrypted else "")
            + (f", hardened ({r.immutable_days} days" + (
                f", locked until {r.immutable_until:%Y-%m-%d}" if r.immutable_until else "")
               + ")" if r.immutable_days else ""))


def _key_text(args: argparse.Namespace) -> str | None:
    if not args.ssh_key:
        return None
    try:
        return Path(args.ssh_key).read_text()
    except FileNotFoundError:
        raise UsageError(f"SSH key file {args.ssh_key} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read SSH key file {args.ssh_key}: {exc}") from None


def trusting(fingerprint: str | None, call: Callable[[str | None], api.Repository]
             ) -> api.Repository:
    """``call(fingerprint)``; when the appliance says no host key was pinned (its error's
    ``PinDetail``) and this runs on a terminal, show the host's and ask whether to trust it
    (then call again with it); without a terminal, say which flag takes it."""
    try:
        return call(fingerprint)
    except RemoteError as exc:
        pin = exc.detail
        if not isinstance(pin, PinDetail) or pin.what != "ssh_host":
            raise
        # The appliance's message names its API field; this one names the flag.
        unpinned = RemoteError(f"the SSH host offers host key {pin.fingerprint}: check it "
                               "against the host's own (`ssh-keygen -l -E sha256 -f "
                               "/etc/ssh/ssh_host_*_key.pub` there) and give it with "
                               f"--host-key-fingerprint {pin.fingerprint}", code=exc.code,
                               exit_code=exc.exit_code, detail=pin)
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise unpinned from None
        print(str(unpinned), file=sys.stderr)
        answer = input(f"Trust host key {pin.fingerprint} and go on? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise UsageError("the host key was not trusted; nothing was done") from None
        return call(pin.fingerprint)


def cmd_add(args: argparse.Namespace, client: ApplianceClient) -> int:
    path = args.path if args.path.startswith("sftp://") else os.path.abspath(args.path)
    key = _key_text(args)
    secret = optional_password(args, "VMKEEP_SSH_PASSWORD", "SSH password")
    encryption = (password_from_file(args.encryption_password_file)
                  if args.encryption_password_file
                  else os.environ.get("VMKEEP_ENCRYPTION_PASSWORD") or None)
    repo = trusting(args.host_key_fingerprint, lambda fp: client.add_repository(
        args.name, path, ssh_key=key, ssh_password=secret, host_key_fingerprint=fp,
        encryption_password=encryption,
        reconnect_every=_seconds(args.reconnect_every),
        reconnect_for=_seconds(args.reconnect_for)))
    _print(args, repo)
    return 0


def _seconds(period: str | None) -> float | None:
    return parse_period(period).total_seconds() if period else None


def cmd_edit(args: argparse.Namespace, client: ApplianceClient) -> int:
    from appliance import api

    key = _key_text(args)
    secret = optional_password(args, "VMKEEP_SSH_PASSWORD", "SSH password")
    if key is None and secret is None and args.host_key_fingerprint is None:
        raise UsageError("nothing to change: give --host-key-fingerprint, --ssh-key or a "
                         "password")
    _print(args, client.edit_repository(args.name, api.RepositoryEdit(
        ssh_key=key, ssh_password=secret, host_key_fingerprint=args.host_key_fingerprint)))
    return 0


def cmd_list(args: argparse.Namespace, client: ApplianceClient) -> int:
    rows = client.repositories()
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
    elif not rows:
        print("no repositories; add one with `vmkeep repo add NAME --path DIR`")
    else:
        print(render(("NAME", "KIND", "LOCATION", "POINTS", "STORED", "FREE"),
                     [(r.name, r.kind, r.location, r.points, human_bytes(r.stored_bytes),
                       human_bytes(r.free_bytes) if r.free_bytes is not None else "-")
                      for r in rows]))
    return 0


def cmd_rescan(args: argparse.Namespace, client: ApplianceClient) -> int:
    _print(args, client.rescan_repository(args.name))
    return 0


def cmd_remove(args: argparse.Namespace, client: ApplianceClient) -> int:
    _print(args, client.remove_repository(args.name))
    return 0


def cmd_repair_key(args: argparse.Namespace, client: ApplianceClient) -> int:
    _print(args, client.repair_repository_key(args.name))
    return 0


def cmd_harden(args: argparse.Namespace, client: ApplianceClient) -> int:
    repo = client.harden_repository(args.name, None if args.off else args.days,
                                    args.epoch_days)
    _print(args, repo)
    return 0


def cmd_audit(args: argparse.Namespace, client: ApplianceClient) -> int:
    answer = client.audit_repository(args.name)
    if args.json:
        print(json.dumps(answer.model_dump(mode="json"), indent=2))
    else:
        for line in answer.lines:
            print(shown(line))
        print("ok: the host holds every lock the ledger names" if answer.ok
              else f"{len(answer.lines)} disagreement(s)")
    return 0 if answer.ok else 1


COMMANDS: dict[str, Handler] = {"add": cmd_add, "edit": cmd_edit, "harden": cmd_harden,
                               "audit": cmd_audit, "list": cmd_list, "rescan": cmd_rescan,
                               "remove": cmd_remove, "repair-key": cmd_repair_key}


def run(args: argparse.Namespace) -> int:
    return online.run(COMMANDS, args)
