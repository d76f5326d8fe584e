"""``vmkeep tui``: the keyboard-driven TUI, run as its own program (``python -m tui``): the
appliance package never imports ``tui`` (import-linter)."""

from __future__ import annotations

import argparse
import os
import sys

from appliance.cli.args import RAW, Subparsers

EPILOG_TUI = """examples:
  vmkeep tui                                # the appliance of VMKEEP_HOME (or your own)
  sudo -u vmkeep -H env VMKEEP_HOME=/var/lib/vmkeep vmkeep tui   # the one systemd runs
  vmkeep tui --home .demo/home              # the one `make demo` started
"""


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("tui", help="the keyboard-driven TUI (dashboard, jobs, restores, …)",
                       description="Open the TUI of the appliance that --home / VMKEEP_HOME / "
                       "VMKEEP_SOCKET name.\nctrl+q quits; ctrl+p lists every action.",
                       epilog=EPILOG_TUI, formatter_class=RAW)
    p.add_argument("--home", help="the appliance's home (default: VMKEEP_HOME)")


def run(args: argparse.Namespace) -> int:
    sys.stdout.flush()
    tui_args = ["--home", args.home] if args.home else []
    os.execv(sys.executable, [sys.executable, "-m", "tui", *tui_args])
