"""``vmkeep vcenter add|edit|list|remove|test|check``: the vCenters the appliance backs up
from."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from appliance.cli import online
from appliance.cli.args import (
    RAW,
    Parser,
    Subparsers,
    add_json_option,
    add_password_options,
    add_pin_options,
    name_arg,
    port_arg,
    text_arg,
)
from appliance.cli.online import NO_VCENTER, Handler, dump
from appliance.errors import PinDetail, RemoteError
from appliance.password import read_password
from appliance.table import render

if TYPE_CHECKING:
    from appliance import api
    from appliance.client import ApplianceClient


EPILOG_VCENTER = """examples:
  vmkeep vsphere fingerprint --host vc01.example.com      # check it against vCenter's own
  vmkeep vcenter add vc01 --host vc01.example.com --user backup@vsphere.local \\
      --vcenter-password-file ~/.vc01-pw --fingerprint AB:CD:…:EF
  vmkeep vcenter list --json
  vmkeep vcenter test vc01
  vmkeep vcenter check vc01                         # exit 1: the account lacks privileges
  vmkeep vcenter edit vc01 --fingerprint 12:34:…:78      # re-pin a renewed certificate
  vmkeep vcenter edit vc01 --appliance-vm vmkeep-appliance  # hot-add: the appliance's VM
  vmkeep vcenter remove vc01

Without --fingerprint or --insecure, `add` fails and shows the server's fingerprint. The
password goes to the appliance's secret store, never to the catalog, logs or answers.
"""


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    vc = sub.add_parser("vcenter", help="vCenters the appliance backs up from",
                        description="Add, change, list, test and remove the vCenter servers "
                        "(or ESXi hosts) the appliance uses.", epilog=EPILOG_VCENTER,
                        formatter_class=raw)
    vsub = vc.add_subparsers(dest="command", required=True, parser_class=Parser)

    def secret(p: argparse.ArgumentParser) -> None:
        add_password_options(p)
        add_pin_options(p)
        p.add_argument("--appliance-vm", metavar="VM", type=text_arg,
                       help="hot-add (--transport hotadd): the VM the appliance runs in, by "
                       "name or BIOS UUID, when it cannot read its own BIOS UUID (root "
                       "only: /sys/class/dmi/id/product_uuid); with edit, \"\" forgets it")
        add_json_option(p)

    p = vsub.add_parser("add", help="add a vCenter (logs in once to check)",
                        epilog=EPILOG_VCENTER, formatter_class=raw)
    p.add_argument("name", metavar="NAME", type=name_arg)
    p.add_argument("--host", required=True, type=text_arg, help="host name or address")
    p.add_argument("--port", type=port_arg, default=443, help="HTTPS port (default 443)")
    p.add_argument("--user", required=True, type=text_arg,
                   help="user name, e.g. backup@vsphere.local")
    secret(p)
    p = vsub.add_parser("edit", help="change a vCenter (re-pin, new password, …)",
                        epilog=EPILOG_VCENTER, formatter_class=raw)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--host", help="new host name or address")
    p.add_argument("--port", type=port_arg, help="new HTTPS port")
    p.add_argument("--user", help="new user name")
    secret(p)
    p = vsub.add_parser("list", help="list the vCenters", epilog=EPILOG_VCENTER,
                        formatter_class=raw)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    for name, text in (("test", "log in with the stored settings and count the VMs"),
                       ("remove", "forget a vCenter and its stored password")):
        p = vsub.add_parser(name, help=text, epilog=EPILOG_VCENTER, formatter_class=raw)
        p.add_argument("name", metavar="NAME")
        add_json_option(p)
    p = vsub.add_parser("check", help="which privileges the account lacks (backup, restore, "
                        "Snapshot Hunter)", epilog=EPILOG_VCENTER, formatter_class=raw,
                        description="Ask vCenter which of the privileges docs/VSPHERE.md "
                        "lists the stored account lacks, per purpose, on the inventory's "
                        "root folder. Exit 0: none missing; 1: some missing.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="print a JSON object")


def _pin(args: argparse.Namespace) -> str | None:
    return str(args.fingerprint) if args.fingerprint else None


def _show(v: api.VCenter) -> str:
    pin = "not verified (--insecure)" if v.insecure else _colons(v.fingerprint or "")
    vm = f", appliance VM {v.appliance_vm!r} (hot-add)" if v.appliance_vm else ""
    return f"vCenter {v.name!r}: {v.user}@{v.host}:{v.port}, certificate {pin}{vm}"


def _colons(hexed: str) -> str:
    return ":".join(hexed[i:i + 2] for i in range(0, len(hexed), 2)).upper()


def _in_flags(name: str, exc: RemoteError) -> RemoteError:
    """The appliance's refusal for want of a pin, in this command's flags (its message names
    the API's fields); any other error as it is."""
    pin = exc.detail
    if not isinstance(pin, PinDetail) or pin.what != "vcenter":
        return exc
    return RemoteError(f"vCenter {name!r} presents certificate fingerprint {pin.fingerprint}: "
                       f"check it, then pass --fingerprint {pin.fingerprint} to pin it (or "
                       "--insecure to skip verification)", code=exc.code,
                       exit_code=exc.exit_code, detail=pin)


def cmd_add(args: argparse.Namespace, client: ApplianceClient) -> int:
    from appliance import api

    spec = api.VCenterAdd(name=args.name, host=args.host, port=args.port, user=args.user,
                          password=read_password(args), fingerprint=_pin(args),
                          insecure=args.insecure, appliance_vm=args.appliance_vm or "")
    try:
        added = client.add_vcenter(spec)
    except RemoteError as exc:
        raise _in_flags(args.name, exc) from None
    print(dump(added.model_dump(mode="json")) if args.json else _show(added))
    return 0


def cmd_edit(args: argparse.Namespace, client: ApplianceClient) -> int:
    from appliance import api

    given = args.password_stdin or args.password_file is not None
    spec = api.VCenterEdit(host=args.host, port=args.port, user=args.user,
                           password=read_password(args) if given else None,
                           fingerprint=_pin(args), insecure=True if args.insecure else None,
                           appliance_vm=args.appliance_vm)
    try:
        edited = client.edit_vcenter(args.name, spec)
    except RemoteError as exc:
        raise _in_flags(args.name, exc) from None
    print(dump(edited.model_dump(mode="json")) if args.json else _show(edited))
    return 0


def cmd_list(args: argparse.Namespace, client: ApplianceClient) -> int:
    rows = client.vcenters()
    if args.json:
        print(json.dumps([v.model_dump(mode="json") for v in rows], indent=2))
    elif not rows:
        print(NO_VCENTER)
    else:
        print(render(("NAME", "HOST", "PORT", "USER", "CERTIFICATE"),
                     [(v.name, v.host, v.port, v.user,
                       "insecure" if v.insecure else _colons(v.fingerprint or "")[:23] + "…")
                      for v in rows]))
    return 0


def cmd_test(args: argparse.Namespace, client: ApplianceClient) -> int:
    tested = client.test_vcenter(args.name)
    print(dump(tested.model_dump(mode="json")) if args.json else tested.message)
    return 0


CHECK_EXIT = {True: 0, False: 1}  # nothing missing / some privilege missing


def cmd_check(args: argparse.Namespace, client: ApplianceClient) -> int:
    check = client.check_vcenter(args.name)
    if args.json:
        print(json.dumps(check.model_dump(mode="json"), indent=2))
        return CHECK_EXIT[check.ok]
    rows: list[tuple[object, ...]] = []
    for p in check.purposes:
        rows += [(p.purpose, m) for m in p.missing] or [(p.purpose, "(none)")]
    print(render(("PURPOSE", "MISSING PRIVILEGE"), rows))
    lacks = ", ".join(f"{p.purpose} lacks {len(p.missing)}" for p in check.purposes)
    print(f"vCenter {check.name!r}, account {check.user!r}, privileges checked on the root "
          f"folder ({check.entity}): {lacks}"
          + ("" if check.ok else "; docs/VSPHERE.md says what each is for"), file=sys.stderr)
    return CHECK_EXIT[check.ok]


def cmd_remove(args: argparse.Namespace, client: ApplianceClient) -> int:
    done = client.remove_vcenter(args.name)
    print(dump(done.model_dump(mode="json")) if args.json else done.message)
    return 0


COMMANDS: dict[str, Handler] = {"add": cmd_add, "edit": cmd_edit, "list": cmd_list,
                               "test": cmd_test, "check": cmd_check, "remove": cmd_remove}


def run(args: argparse.Namespace) -> int:
    return online.run(COMMANDS, args)
