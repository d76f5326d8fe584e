"""Read-only SQL over the catalog, for administrators: one SELECT, checked by DuckDB's own
parser (not a keyword list), run with caps on rows and time and rolled back.

What keeps it read-only and contained, each a layer of its own:

1. the parser: exactly one statement, of type SELECT (``WITH … SELECT``, ``FROM t``,
   ``VALUES``, ``DESCRIBE``, ``SHOW``, ``SUMMARIZE`` are SELECTs; ``WITH … INSERT`` is an
   INSERT). Comments cannot hide a statement: the parser sees every one.
2. the connection: the appliance opens its catalog with external access disabled and the
   configuration locked, so file and network functions (``read_csv``, ``read_text``, ``glob``,
   ``COPY`` …) fail and no setting can be changed; threads and memory are capped there.
3. the run: inside a transaction that is always rolled back; at most ``max_rows`` rows are
   fetched; a query still running after ``timeout`` seconds is interrupted.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any

import duckdb


class QueryRefused(Exception):
    """The SQL is not one read-only SELECT, or it failed."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool  # more rows than max_rows existed
    seconds: float


def check_select(sql: str) -> None:
    """Raise QueryRefused unless ``sql`` is exactly one SELECT statement."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"the SQL does not parse: {_first_line(exc)}") from None
    if not statements:
        raise QueryRefused("no SQL statement given; write one SELECT")
    if len(statements) > 1:
        raise QueryRefused(f"{len(statements)} statements given; run exactly one SELECT")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        name = str(kind).rsplit(".", 1)[-1]
        raise QueryRefused(f"only SELECT (or WITH … SELECT) is allowed here, not {name}: the "
                           "catalog console is read-only")


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split("\n", 1)[0].split())


def run_select(con: duckdb.DuckDBPyConnection, sql: str, *, max_rows: int,
               timeout: float) -> QueryResult:
    """Check, then run ``sql`` on a cursor of ``con`` inside a rolled-back transaction."""
    check_select(sql)
    started = time.monotonic()
    cur = con.cursor()
    timer = threading.Timer(timeout, cur.interrupt)
    try:
        cur.execute("BEGIN TRANSACTION")
        timer.start()
        try:
            cur.execute(sql)
            columns = tuple(d[0] for d in (cur.description or []))
            rows = cur.fetchmany(max_rows + 1)
        except duckdb.InterruptException:
            raise QueryRefused(f"the query ran longer than {timeout:g} s and was stopped; "
                               "narrow it (WHERE, LIMIT) or raise the time limit") from None
        except duckdb.Error as exc:
            if not timer.is_alive() and time.monotonic() - started >= timeout:
                raise QueryRefused(f"the query ran longer than {timeout:g} s and was "
                                   "stopped") from None
            raise QueryRefused(f"the query failed: {_first_line(exc)}") from None
    finally:
        timer.cancel()
        with contextlib.suppress(duckdb.Error):  # an error may have ended the transaction
            cur.execute("ROLLBACK")
        cur.close()
    return QueryResult(columns, tuple(tuple(r) for r in rows[:max_rows]),
                       len(rows) > max_rows, time.monotonic() - started)
