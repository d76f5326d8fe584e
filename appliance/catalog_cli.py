"""``vmkeep catalog query "SQL"``: read-only SQL over the appliance's catalog."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from appliance.client import ApplianceClient
from appliance.table import render


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


def run(args: argparse.Namespace) -> int:
    with ApplianceClient.from_environment() as client:
        return cmd_query(args, client)
