"""Read-only SQL over the catalog, for administrators: one statement whose every part only
reads, checked on DuckDB's own parse tree (not a keyword list), run with caps on size, rows
and time and rolled back.

What keeps it read-only and contained, each a layer of its own:

1. the statement: exactly one, of type SELECT (``WITH … SELECT``, ``FROM t``, ``VALUES``,
   ``DESCRIBE``, ``SHOW``, ``SUMMARIZE`` are SELECTs; ``WITH … INSERT`` is an INSERT), at most
   ``MAX_SQL_BYTES`` long. Comments cannot hide a statement: the parser sees every one.
2. the parse tree (``json_serialize_sql``): every query node in it, also inside a CTE or a
   subquery, is a SELECT, a set operation or a recursive CTE (a ``WITH d AS (DELETE …
   RETURNING *) SELECT …`` is a SELECT statement with a DELETE inside, and is refused); every
   table function is one that only reads (``range``, ``unnest``, ``duckdb_*``, ``pragma_*`` …;
   not ``checkpoint()``, ``query()``, ``read_csv()``); no scalar function with side effects
   (``nextval``, ``setseed`` …).
3. the connection: the appliance opens its catalog with external access disabled and the
   configuration locked, so file and network functions fail and no setting can be changed;
   threads and memory are capped there.
4. the run: on a cursor of its own, inside a transaction that is always rolled back; at most
   ``max_rows`` rows are fetched; a query still running after ``timeout`` seconds is
   interrupted, and so is every running query when the ``Stopper`` it runs under is stopped.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import duckdb

MAX_SQL_BYTES = 64 * 1024

# Query nodes that only read. Every other kind (DELETE_QUERY_NODE, UPDATE_QUERY_NODE,
# INSERT_QUERY_NODE, …) is refused wherever it appears.
_READ_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE",
                         "CTE_NODE"})
# Table functions that only read what the database already holds or make values.
_READ_TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree",
    "summary", "pg_timezone_names", "icu_calendar_names", "histogram", "histogram_values",
    "test_all_types"})
_READ_TABLE_PREFIXES = ("duckdb_", "pragma_")
# Scalar functions DuckDB marks as having side effects that change nothing: they only make
# values (randomness, ids) or describe the running query.
_HARMLESS_EFFECTS = frozenset({
    "random", "uuid", "uuidv4", "uuidv7", "gen_random_uuid", "current_query",
    "current_query_id", "current_transaction_id", "current_connection_id", "error", "stats",
    "vector_type", "currval"})


class QueryRefused(Exception):
    """The SQL is not one read-only SELECT, or it failed."""


class QueryStopped(QueryRefused):
    """The query was stopped because its ``Stopper`` was (the appliance is stopping)."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool  # more rows than max_rows existed
    seconds: float


class Stopper:
    """Interrupts the queries that run under it, from any thread (an appliance stopping), and
    refuses new ones once stopped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[duckdb.DuckDBPyConnection] = set()
        self._stopped = False

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            for cur in self._running:
                cur.interrupt()

    @contextlib.contextmanager
    def watch(self, cur: duckdb.DuckDBPyConnection) -> Iterator[None]:
        with self._lock:
            if self._stopped:
                raise QueryStopped("the appliance is stopping; the query was not run")
            self._running.add(cur)
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(cur)


def check_select(sql: str) -> None:
    """Raise QueryRefused unless ``sql`` is exactly one statement that only reads."""
    size = len(sql.encode("utf-8", "surrogatepass"))
    if size > MAX_SQL_BYTES:
        raise QueryRefused(f"the SQL is {size} bytes; at most {MAX_SQL_BYTES // 1024} KiB is "
                           "accepted: shorten it (a view or a CTE names a part once)")
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
    _check_tree(_parse_tree(sql))


def _parse_tree(sql: str) -> Any:
    with duckdb.connect(":memory:") as con:
        row = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()
    doc = json.loads(row[0]) if row else {"error": True, "error_message": "no answer"}
    if doc.get("error"):
        raise QueryRefused(f"the SQL cannot be checked: {doc.get('error_message', '?')}; "
                           "write one plain SELECT")
    return doc["statements"]


def _check_tree(tree: Any) -> None:
    """Refuse the first part of the parse tree that could change something."""
    effects = _side_effect_functions()
    stack: list[tuple[Any, bool]] = [(tree, False)]
    while stack:
        node, in_table_ref = stack.pop()
        if isinstance(node, list):
            stack.extend((x, False) for x in node)
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        if isinstance(kind, str) and kind.endswith("_NODE") and "class" not in node \
                and kind not in _READ_NODES:
            what = kind.removesuffix("_NODE").removesuffix("_QUERY")
            article = "an" if what[:1] in "AEIOU" else "a"
            raise QueryRefused(f"only reads are allowed here, and the query holds {article} "
                               f"{what} "
                               "(also inside WITH or a subquery): the catalog console is "
                               "read-only")
        if node.get("class") == "FUNCTION" and isinstance(node.get("function_name"), str):
            name = node["function_name"].lower()
            if in_table_ref and not (name in _READ_TABLE_FUNCTIONS
                                     or name.startswith(_READ_TABLE_PREFIXES)):
                raise QueryRefused(f"table function {name}() is not allowed here: the catalog "
                                   "console reads only the catalog's tables and views")
            if not in_table_ref and name in effects:
                raise QueryRefused(f"function {name}() changes state and is not allowed here: "
                                   "the catalog console is read-only")
        table_function = kind == "TABLE_FUNCTION"
        for key, value in node.items():
            stack.append((value, table_function and key == "function"))


@cache
def _side_effect_functions() -> frozenset[str]:
    with duckdb.connect(":memory:") as con:
        rows = con.execute("SELECT DISTINCT function_name FROM duckdb_functions() "
                           "WHERE has_side_effects").fetchall()
    return frozenset(str(r[0]).lower() for r in rows) - _HARMLESS_EFFECTS


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split("\n", 1)[0].split())


def run_select(con: duckdb.DuckDBPyConnection, sql: str, *, max_rows: int,
               timeout: float, stopper: Stopper | None = None) -> QueryResult:
    """Check, then run ``sql`` on a new cursor of ``con`` inside a rolled-back transaction;
    interrupted after ``timeout`` seconds or when ``stopper`` is stopped."""
    check_select(sql)
    started = time.monotonic()
    cur = con.cursor()
    timer = threading.Timer(timeout, cur.interrupt)
    try:
        with stopper.watch(cur) if stopper is not None else contextlib.nullcontext():
            cur.execute("BEGIN TRANSACTION")
            timer.start()
            try:
                cur.execute(sql)
                columns = tuple(d[0] for d in (cur.description or []))
                rows = cur.fetchmany(max_rows + 1)
            except duckdb.Error as exc:
                if stopper is not None and stopper.stopped:
                    raise QueryStopped("the appliance is stopping; the query was stopped "
                                       "before it ended") from None
                if isinstance(exc, duckdb.InterruptException) or (
                        not timer.is_alive() and time.monotonic() - started >= timeout):
                    raise QueryRefused(f"the query ran longer than {timeout:g} s and was "
                                       "stopped; narrow it (WHERE, LIMIT) or raise the time "
                                       "limit") from None
                raise QueryRefused(f"the query failed: {_first_line(exc)}") from None
    finally:
        timer.cancel()
        with contextlib.suppress(duckdb.Error):  # an error may have ended the transaction
            cur.execute("ROLLBACK")
        cur.close()
    return QueryResult(columns, tuple(tuple(r) for r in rows[:max_rows]),
                       len(rows) > max_rows, time.monotonic() - started)
