"""``python -m tui`` (what ``vmkeep tui`` runs): the TUI of the appliance that
``--home`` / VMKEEP_HOME / VMKEEP_SOCKET name."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from appliance.client import ApplianceClient
from appliance.errors import VmkeepError
from tui.app import create_app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vmkeep tui", description="The vmkeep TUI.")
    parser.add_argument("--home", help="the appliance's home (default: VMKEEP_HOME)")
    args = parser.parse_args(argv)
    try:
        client = ApplianceClient.from_environment(args.home)
    except VmkeepError as exc:
        print(f"vmkeep: error: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        app = create_app(client)
        code = app.run()
    finally:
        client.close()
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
