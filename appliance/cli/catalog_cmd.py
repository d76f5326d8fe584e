"""``vmkeep catalog query "SQL"``: read-only SQL over the appliance's catalog."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import TYPE_CHECKING

from appliance.cli import online
from appliance.cli.args import (
    RAW,
    SECONDS,
    Parser,
    Subparsers,
)
from appliance.cli.online import Handler
from appliance.table import render

if TYPE_CHECKING:
    from appliance.client import ApplianceClient


EPILOG_CATALOG = """examples:
  vmkeep catalog query "SELECT * FROM points_per_vm"
  vmkeep catalog query "SELECT vm, dedup_ratio FROM stored_bytes_per_vm ORDER BY 2" --json
  vmkeep catalog query "FROM changed_bytes_per_run WHERE created > now() - INTERVAL 7 DAY" --csv
  vmkeep catalog query "SHOW TABLES"

Exactly one SELECT (WITH … SELECT, FROM …, SHOW, DESCRIBE, SUMMARIZE) as DuckDB's own parser
classifies it; anything else (writes, several statements, ATTACH, COPY, PRAGMA, SET, file
functions, …) is refused with the reason, and the catalog is never changed. Views:
points_per_vm, changed_bytes_per_run, stored_bytes_per_vm, space_per_repository.
"""


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    cp = sub.add_parser("catalog", help="read-only SQL over the appliance's catalog",
                        description="Query the appliance's DuckDB catalog of restore points, "
                        "blocks and repositories.", epilog=EPILOG_CATALOG, formatter_class=raw)
    csub = cp.add_subparsers(dest="command", required=True, parser_class=Parser)
    p = csub.add_parser("query", help="run one read-only SELECT", epilog=EPILOG_CATALOG,
                        formatter_class=raw)
    p.add_argument("sql", metavar="SQL")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print a JSON list of row objects")
    fmt.add_argument("--csv", action="store_true", help="print CSV with a header row")
    p.add_argument("--max-rows", type=int, default=1000, metavar="N",
                   help="at most N rows (default 1000)")
    p.add_argument("--timeout", type=SECONDS, default=10.0, metavar="SECONDS",
                   help="stop the query after this long (default 10)")


def _cell(x: object) -> str:
    return "" if x is None else str(x)


def cmd_query(args: argparse.Namespace, client: ApplianceClient) -> int:
    answer = client.query(args.sql, max_rows=args.max_rows, timeout=args.timeout)
    if args.json:
        print(json.dumps([dict(zip(answer.columns, row, strict=True)) for row in answer.rows],
                         indent=2))
    elif args.csv:
        out = csv.writer(sys.stdout)
        out.writerow(answer.columns)
        out.writerows([[_cell(x) for x in row] for row in answer.rows])
    else:
        print(render(answer.columns, [[_cell(x) for x in row] for row in answer.rows]))
        print(f"({len(answer.rows)} row{'s' if len(answer.rows) != 1 else ''}, "
              f"{answer.seconds:.2f} s)", file=sys.stderr)
    if answer.truncated:
        print(f"vmkeep: warning: only the first {args.max_rows} rows are shown; narrow the "
              "query or pass --max-rows", file=sys.stderr)
    return 0


COMMANDS: dict[str, Handler] = {"query": cmd_query}


def run(args: argparse.Namespace) -> int:
    return online.run(COMMANDS, args)
