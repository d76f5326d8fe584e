"""``vmkeep vcenter add|edit|list|remove|test``: the vCenters the appliance backs up from."""

from __future__ import annotations

import argparse
import json

from appliance import api
from appliance.client import ApplianceClient
from appliance.password import read_password
from appliance.table import render


def _pin(args: argparse.Namespace) -> str | None:
    return str(args.fingerprint) if args.fingerprint else None


def _show(v: api.VCenter) -> str:
    pin = "not verified (--insecure)" if v.insecure else _colons(v.fingerprint or "")
    return f"vCenter {v.name!r}: {v.user}@{v.host}:{v.port}, certificate {pin}"


def _colons(hexed: str) -> str:
    return ":".join(hexed[i:i + 2] for i in range(0, len(hexed), 2)).upper()


def cmd_add(args: argparse.Namespace, client: ApplianceClient) -> int:
    spec = api.VCenterAdd(name=args.name, host=args.host, port=args.port, user=args.user,
                          password=read_password(args), fingerprint=_pin(args),
                          insecure=args.insecure)
    print(_show(client.add_vcenter(spec)))
    return 0


def cmd_edit(args: argparse.Namespace, client: ApplianceClient) -> int:
    given = args.password_stdin or args.password_file is not None
    spec = api.VCenterEdit(host=args.host, port=args.port, user=args.user,
                           password=read_password(args) if given else None,
                           fingerprint=_pin(args), insecure=True if args.insecure else None)
    print(_show(client.edit_vcenter(args.name, spec)))
    return 0


def cmd_list(args: argparse.Namespace, client: ApplianceClient) -> int:
    rows = client.vcenters()
    if args.json:
        print(json.dumps([v.model_dump(mode="json") for v in rows], indent=2))
    elif not rows:
        print("no vCenters; add one with `vmkeep vcenter add`")
    else:
        print(render(("NAME", "HOST", "PORT", "USER", "CERTIFICATE"),
                     [(v.name, v.host, v.port, v.user,
                       "insecure" if v.insecure else _colons(v.fingerprint or "")[:23] + "…")
                      for v in rows]))
    return 0


def cmd_test(args: argparse.Namespace, client: ApplianceClient) -> int:
    print(client.test_vcenter(args.name).message)
    return 0


def cmd_remove(args: argparse.Namespace, client: ApplianceClient) -> int:
    print(client.remove_vcenter(args.name).message)
    return 0


COMMANDS = {"add": cmd_add, "edit": cmd_edit, "list": cmd_list, "test": cmd_test,
            "remove": cmd_remove}


def run(args: argparse.Namespace) -> int:
    with ApplianceClient.from_environment() as client:
        return COMMANDS[args.command](args, client)
