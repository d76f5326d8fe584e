"""``vmkeep repo add|edit|list|remove|rescan``: the repositories the appliance writes to."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from appliance import api
from appliance.client import ApplianceClient
from appliance.errors import RemoteError, UsageError
from appliance.inputs import shown
from appliance.jobs.schedule import parse_period
from appliance.password import optional_password, password_from_file
from appliance.progress import human_bytes
from appliance.table import render


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
    """``call(fingerprint)``; when the appliance says no host key was pinned and this runs on
    a terminal, show the host's and ask whether to trust it (then call again with it)."""
    try:
        return call(fingerprint)
    except RemoteError as exc:
        offered = re.search(r"SHA256:[A-Za-z0-9+/]{43}", str(exc))
        if exc.code != "host_key_unknown" or offered is None or \
                not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise
        print(str(exc), file=sys.stderr)
        answer = input(f"Trust host key {offered.group()} and go on? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise UsageError("the host key was not trusted; nothing was done") from None
        return call(offered.group())


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
    print(_show(repo))
    return 0


def _seconds(period: str | None) -> float | None:
    return parse_period(period).total_seconds() if period else None


def cmd_edit(args: argparse.Namespace, client: ApplianceClient) -> int:
    key = _key_text(args)
    secret = optional_password(args, "VMKEEP_SSH_PASSWORD", "SSH password")
    if key is None and secret is None and args.host_key_fingerprint is None:
        raise UsageError("nothing to change: give --host-key-fingerprint, --ssh-key or a "
                         "password")
    print(_show(client.edit_repository(args.name, api.RepositoryEdit(
        ssh_key=key, ssh_password=secret, host_key_fingerprint=args.host_key_fingerprint))))
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
    print(_show(client.rescan_repository(args.name)))
    return 0


def cmd_remove(args: argparse.Namespace, client: ApplianceClient) -> int:
    print(client.remove_repository(args.name).message)
    return 0


def cmd_repair_key(args: argparse.Namespace, client: ApplianceClient) -> int:
    print(client.repair_repository_key(args.name).message)
    return 0


def cmd_harden(args: argparse.Namespace, client: ApplianceClient) -> int:
    repo = client.harden_repository(args.name, None if args.off else args.days,
                                    args.epoch_days)
    print(_show(repo))
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


COMMANDS = {"add": cmd_add, "edit": cmd_edit, "harden": cmd_harden, "audit": cmd_audit,
            "list": cmd_list, "rescan": cmd_rescan, "remove": cmd_remove,
            "repair-key": cmd_repair_key}


def run(args: argparse.Namespace) -> int:
    with ApplianceClient.from_environment() as client:
        return COMMANDS[args.command](args, client)
