"""The ``vmkeep`` command line (``appliance.cli:main``): one module per command group, each
owning its parser and its handlers, dispatched through the table in ``commands``."""

from __future__ import annotations

from appliance.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
