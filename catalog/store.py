"""The catalog: one DuckDB database, typed functions in, frozen dataclasses out.

Rows are always written in bulk (``unnest`` of lists), never one ``execute`` per block.
A restore point's block map is stored as a *delta* against its ``base_point`` (the point the
backup was based on): an incremental adds rows in proportion to the blocks it changed. A NULL
``block_id`` in ``block_map`` means the block became all-zero.
"""

from __future__ import annotations

import json
import os
import threading
import time
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import duckdb

from catalog.migrations import MIGRATIONS, SCHEMA_VERSION
from catalog.models import (
    BlockLocation,
    DiskRow,
    JobRow,
    LogRow,
    NewBlock,
    NewDisk,
    PackUsage,
    PointRow,
    RepositoryName,
    SessionRow,
    TaskRow,
    VCenterRow,
)
from catalog.query import QueryResult, Stopper, run_select

# A copy of a block (``blocks b``) that no read has found damaged.
_GOOD_COPY: Final = ("NOT EXISTS (SELECT 1 FROM damaged_blocks d WHERE d.repo_id = b.repo_id "
                     "AND d.pack_id = b.pack_id AND d.block_id = b.block_id)")
# Of a block's copies (grouped by block id): the one reads use and prune keeps — the smallest
# pack id among the good copies, or among all when every copy was found damaged (the last copy
# of a block is never dropped: a check can still name what it affects).
_KEEPER: Final = ("coalesce(min(b.pack_id) FILTER (WHERE " + _GOOD_COPY + "), min(b.pack_id))")

_POINT_COLS: Final = (
    "point_id, repo_id, object_name, object_kind, created, kind, parent_id, compression, "
    "reason, bytes_read, bytes_stored, manifest_bytes"
)


class CatalogError(Exception):
    """The catalog database could not be used."""


class CatalogBusy(CatalogError):
    """Another process has the catalog database open."""


class CatalogVersionError(CatalogError):
    """The catalog was written by a newer vmkeep."""


class CatalogDamaged(CatalogError):
    """The catalog's file is damaged: not a DuckDB database, truncated, or a block fails its
    checksum. ``detail``: DuckDB's word for it (one line)."""

    def __init__(self, path: Path | None, exc: BaseException) -> None:
        self.detail = _first_line(exc)
        super().__init__(f"catalog {path} is damaged: {self.detail}")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


class CatalogNoSpace(CatalogError):
    """The catalog's file system is full: the catalog is fine, it cannot grow."""


_NO_SPACE = ("No space left on device", "Disk quota exceeded")


def is_damaged(exc: BaseException) -> bool:
    """Did a catalog call meet a damaged block (one that fails DuckDB's checksum)?"""
    return isinstance(exc, CatalogDamaged) or (
        isinstance(exc, duckdb.Error) and "Corrupt database file" in str(exc))


def is_no_space(exc: BaseException) -> bool:
    """Did a catalog call fail because the catalog's file system is full? (DuckDB says so in
    an IOException at open, a TransactionException at commit, and others on a checkpoint.)"""
    return isinstance(exc, CatalogNoSpace) or (
        isinstance(exc, duckdb.Error) and any(s in str(exc) for s in _NO_SPACE))


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _naive_utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def _point(row: tuple[Any, ...]) -> PointRow:
    return PointRow(row[0], row[1], row[2], row[3], _utc(row[4]), row[5], row[6], row[7],
                    row[8], int(row[9]), int(row[10]), int(row[11]))


class _IndexLocks:
    """One lock per repository, shared by every cursor of a database: the index of one
    repository is written by one cursor at a time, so concurrent writers never meet DuckDB's
    write-write conflicts, and "is this pack (point) recorded yet?" and recording it are one
    step: each is recorded exactly once, whoever sees it first. (Only one process opens a
    catalog file at a time, so this is all the writers there are. There are no unique indexes
    on purpose: DuckDB reads an index block only when a lookup needs it, so a damaged one
    would escape ``check``.)"""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}

    def of(self, repo_id: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(repo_id, threading.RLock())


class Catalog:
    """A catalog database. Not thread-safe: one thread uses a Catalog at a time; a thread of
    its own gets a ``cursor()``. Writes to a repository's index are serialised across all
    cursors (``index_lock``)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path | None,
                 locks: _IndexLocks | None = None) -> None:
        self._con = con
        self.path = path
        self._locks = locks or _IndexLocks()

    def index_lock(self, repo_id: str) -> threading.RLock:
        """Held while one repository's index is written (by any cursor of this database)."""
        return self._locks.of(repo_id)

    # -- lifecycle ------------------------------------------------------------------------------
    @staticmethod
    def open(path: Path | None, *, wait: float = 0.0, memory_limit: str = "128MB",
             sealed: bool = False) -> Catalog:
        """Open (creating and migrating) the catalog at ``path``; None opens one in memory.

        ``sealed``: external access (files, network, extensions) is disabled and, after the
        migrations, the configuration locked, for the whole database instance: what an
        appliance whose catalog answers administrators' SQL needs (see ``catalog.query``)."""
        deadline = time.monotonic() + wait
        new = path is not None and not path.exists()
        while True:
            try:
                if path is not None:
                    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                config: dict[str, Any] = {"threads": 2, "memory_limit": memory_limit}
                if sealed:
                    config["enable_external_access"] = False
                con = duckdb.connect(str(path) if path is not None else ":memory:",
                                     config=config)
                if new and path is not None:
                    # DuckDB makes the file as the umask says: a new catalog is its owner's
                    # alone (its WAL, made and removed by DuckDB, by the umask and the folder).
                    os.chmod(path, 0o600)
                break
            except duckdb.IOException as exc:
                if is_no_space(exc):
                    raise CatalogNoSpace(f"cannot open catalog {path}: {exc}") from None
                if "lock" not in str(exc).lower():
                    raise CatalogDamaged(path, exc) from None
                if time.monotonic() >= deadline:
                    raise CatalogBusy(
                        f"catalog {path} is in use by another vmkeep process; wait for it to "
                        "finish (or pass a longer --lock-wait)"
                    ) from None
                time.sleep(0.1)
            except duckdb.Error as exc:  # a block of the header fails its checksum, say
                raise CatalogDamaged(path, exc) from None
        cat = Catalog(con, path)
        try:
            cat._migrate()
        except duckdb.Error as exc:
            con.close()
            if is_no_space(exc):
                raise CatalogNoSpace(f"cannot update catalog {path}: {exc}") from None
            raise CatalogDamaged(path, exc) from None
        if sealed:
            con.execute("SET lock_configuration = true")
        return cat

    def check(self) -> None:
        """Read every column of every table in full, so that DuckDB checks each block against
        its checksum and that every block is there (it checks a block only when it reads it:
        a truncated or damaged file opens, and fails only when a query reaches the block).
        Raises CatalogDamaged. One scan of the data, hashed, nothing materialised; indexes are
        not read (DuckDB loads an index block when a lookup needs it)."""
        con = self._con
        try:
            tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                                 "WHERE database_name = current_database()").fetchall()
            for schema, table in tables:
                con.execute(f'SELECT bit_xor(hash(COLUMNS(*))) FROM "{schema}"."{table}"'
                            ).fetchall()
        except duckdb.Error as exc:
            raise CatalogDamaged(self.path, exc) from None

    def select(self, sql: str, *, max_rows: int = 1000, timeout: float = 10.0,
               stopper: Stopper | None = None) -> QueryResult:
        """Run an administrator's read-only SELECT (see ``catalog.query``)."""
        return run_select(self._con, sql, max_rows=max_rows, timeout=timeout, stopper=stopper)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        con = self._con
        con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = con.execute("SELECT max(version) FROM schema_version").fetchone()
        current = int(row[0]) if row and row[0] is not None else 0
        if current > SCHEMA_VERSION:
            raise CatalogVersionError(
                f"catalog {self.path} has schema version {current}; this vmkeep knows up to "
                f"{SCHEMA_VERSION}: upgrade vmkeep or remove the cache to rebuild it"
            )
        for version, sql in MIGRATIONS:
            if version > current:
                with self.transaction():
                    con.execute(sql)
                    con.execute("INSERT INTO schema_version VALUES (?)", [version])

    @property
    def schema_version(self) -> int:
        row = self._con.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    # -- repositories ---------------------------------------------------------------------------
    def ensure_repository(self, repo_id: str, location: str, key_id: str) -> None:
        with self.index_lock(repo_id):
            self._ensure_repository(repo_id, location, key_id)

    def _ensure_repository(self, repo_id: str, location: str, key_id: str) -> None:
        con = self._con
        row = con.execute("SELECT count(*) FROM repositories WHERE repo_id = ?",
                          [repo_id]).fetchone()
        if row and row[0]:
            con.execute("UPDATE repositories SET location = ?, key_id = ? WHERE repo_id = ?",
                        [location, key_id, repo_id])
        else:
            con.execute("INSERT INTO repositories VALUES (?, ?, ?, NULL)",
                        [repo_id, location, key_id])

    def mark_synced(self, repo_id: str) -> None:
        with self.index_lock(repo_id):
            self._con.execute("UPDATE repositories SET synced = ? WHERE repo_id = ?",
                              [_naive_utc(datetime.now(UTC)), repo_id])

    def clear_index(self, repo_id: str, *, keep_ledger: bool = False) -> None:
        """Forget every indexed pack, block and point of a repository (before a rescan), and
        the points noticed vanished (a rescan is the administrator's word that what the
        repository holds now is right). Damaged copies stay known."""
        con = self._con
        with self.index_lock(repo_id), self.transaction():
            pts = "SELECT point_id FROM points WHERE repo_id = ?"
            con.execute(f"DELETE FROM block_map WHERE point_id IN ({pts})", [repo_id])
            con.execute(f"DELETE FROM point_disks WHERE point_id IN ({pts})", [repo_id])
            con.execute("DELETE FROM points WHERE repo_id = ?", [repo_id])
            con.execute("DELETE FROM blocks WHERE repo_id = ?", [repo_id])
            con.execute("DELETE FROM packs WHERE repo_id = ?", [repo_id])
            if not keep_ledger:  # (a rescan of the registry rebuilds it from immutable/)
                con.execute("DELETE FROM immutable_ledger WHERE repo_id = ?", [repo_id])
            con.execute("DELETE FROM vanished_points WHERE repo_id = ?", [repo_id])

    # -- authoritative state: vCenters and repository names -------------------------------------
    def add_vcenter(self, row: VCenterRow) -> None:
        self._con.execute('INSERT INTO vcenters (name, host, port, "user", fingerprint, '
                          "insecure, added, appliance_vm) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          [row.name, row.host, row.port, row.user, row.fingerprint,
                           row.insecure, _naive_utc(row.added), row.appliance_vm or None])

    def update_vcenter(self, row: VCenterRow) -> None:
        self._con.execute('UPDATE vcenters SET host = ?, port = ?, "user" = ?, fingerprint = ?, '
                          "insecure = ?, appliance_vm = ? WHERE name = ?",
                          [row.host, row.port, row.user, row.fingerprint, row.insecure,
                           row.appliance_vm or None, row.name])

    def vcenters(self) -> list[VCenterRow]:
        rows = self._con.execute('SELECT name, host, port, "user", fingerprint, insecure, added, '
                                 "appliance_vm FROM vcenters ORDER BY name").fetchall()
        return [VCenterRow(r[0], r[1], int(r[2]), r[3], r[4], bool(r[5]), _utc(r[6]),
                           r[7] or "") for r in rows]

    def vcenter(self, name: str) -> VCenterRow | None:
        return next((v for v in self.vcenters() if v.name == name), None)

    def remove_vcenter(self, name: str) -> None:
        self._con.execute("DELETE FROM vcenters WHERE name = ?", [name])

    def add_repository_name(self, row: RepositoryName) -> None:
        self._con.execute("INSERT INTO repository_names VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          [row.name, row.location, row.repo_id, _naive_utc(row.added),
                           row.host_key_fingerprint, row.reconnect_every, row.reconnect_for,
                           row.immutable_days, row.epoch_days])

    def repository_names(self) -> list[RepositoryName]:
        rows = self._con.execute("SELECT name, location, repo_id, added, host_key_fingerprint, "
                                 "reconnect_every, reconnect_for, immutable_days, epoch_days "
                                 "FROM repository_names ORDER BY name").fetchall()
        return [RepositoryName(r[0], r[1], r[2], _utc(r[3]), *r[4:9]) for r in rows]

    def set_hardening(self, name: str, days: int | None, epoch_days: int | None) -> None:
        self._con.execute("UPDATE repository_names SET immutable_days = ?, epoch_days = ? "
                          "WHERE name = ?", [days, epoch_days, name])

    # -- the lock ledger of hardened repositories (an index: rebuilt from immutable/) ------------
    def ledger(self, repo_id: str) -> dict[str, datetime]:
        rows = self._con.execute("SELECT name, max(until) FROM immutable_ledger WHERE "
                                 "repo_id = ? GROUP BY name", [repo_id]).fetchall()
        return {r[0]: _utc(r[1]) for r in rows}

    def record_locks(self, repo_id: str, names: Sequence[str], until: datetime) -> None:
        """``names`` are locked until ``until`` (or later, if so recorded already)."""
        if not names:
            return
        with self.transaction():
            self._con.execute(
                "DELETE FROM immutable_ledger WHERE repo_id = ? AND until <= ? AND name IN "
                "(SELECT unnest(?::VARCHAR[]))", [repo_id, _naive_utc(until), list(names)])
            self._con.execute(
                "INSERT INTO immutable_ledger SELECT ?, n, ? FROM unnest(?::VARCHAR[]) t(n) "
                "WHERE n NOT IN (SELECT name FROM immutable_ledger WHERE repo_id = ?)",
                [repo_id, _naive_utc(until), list(names), repo_id])

    def forget_locks(self, repo_id: str, names: Sequence[str] | None = None) -> None:
        """Lifted locks (``None``: all of the repository's)."""
        if names is None:
            self._con.execute("DELETE FROM immutable_ledger WHERE repo_id = ?", [repo_id])
        elif names:
            self._con.execute("DELETE FROM immutable_ledger WHERE repo_id = ? AND name IN "
                              "(SELECT unnest(?::VARCHAR[]))", [repo_id, list(names)])

    def blocks_locked_until(self, repo_id: str, ids: Sequence[bytes], until: datetime,
                            also_packs: Sequence[str] = ()) -> set[bytes]:
        """Which of ``ids`` a pack holds that is locked until ``until`` or later (or is one
        of ``also_packs``): what a hardened repository's new point may deduplicate against."""
        if not ids:
            return set()
        rows = self._con.execute(
            """SELECT DISTINCT b.block_id FROM blocks b
               WHERE b.repo_id = ? AND b.block_id IN (SELECT unnest(?::BLOB[])) AND (
                   b.pack_id IN (SELECT unnest(?::VARCHAR[])) OR EXISTS (
                   SELECT 1 FROM immutable_ledger l WHERE l.repo_id = b.repo_id
                   AND l.name = 'packs/' || substr(b.pack_id, 1, 2) || '/' || b.pack_id
                                || '.pack' AND l.until >= ?))""",
            [repo_id, list(ids), list(also_packs), _naive_utc(until)]).fetchall()
        return {bytes(r[0]) for r in rows}

    def repository_name(self, name: str) -> RepositoryName | None:
        return next((r for r in self.repository_names() if r.name == name), None)

    def remove_repository_name(self, name: str) -> None:
        self._con.execute("DELETE FROM repository_names WHERE name = ?", [name])

    def set_host_key(self, name: str, fingerprint: str) -> None:
        self._con.execute("UPDATE repository_names SET host_key_fingerprint = ? WHERE name = ?",
                          [fingerprint, name])

    # -- authoritative state: jobs and sessions -------------------------------------------------
    def cursor(self) -> Catalog:
        """Another connection to the same database, for another thread (DuckDB connections
        are not shared between threads)."""
        return Catalog(self._con.cursor(), self.path, self._locks)

    def put_job(self, row: JobRow) -> None:
        with self.transaction():
            self._con.execute("DELETE FROM jobs WHERE name = ?", [row.name])
            self._con.execute("INSERT INTO jobs VALUES (?, ?, ?, ?)",
                              [row.name, row.spec_json, row.enabled, _naive_utc(row.created)])

    def jobs(self) -> list[JobRow]:
        rows = self._con.execute("SELECT name, spec::VARCHAR, enabled, created FROM jobs "
                                 "ORDER BY name").fetchall()
        return [JobRow(r[0], r[1], bool(r[2]), _utc(r[3])) for r in rows]

    def job(self, name: str) -> JobRow | None:
        return next((j for j in self.jobs() if j.name == name), None)

    def remove_job(self, name: str) -> None:
        self._con.execute("DELETE FROM jobs WHERE name = ?", [name])

    def put_session(self, row: SessionRow) -> None:
        with self.transaction():
            self._con.execute("DELETE FROM sessions WHERE id = ?", [row.id])
            self._con.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                              [row.id, row.job, row.kind, row.state, row.result,
                               _naive_utc(row.started),
                               _naive_utc(row.ended) if row.ended else None, row.detail_json])

    def sessions(self, job: str | None = None) -> list[SessionRow]:
        sql = ("SELECT id, job, kind, state, result, started, ended, detail::VARCHAR "
               "FROM sessions")
        args: list[Any] = []
        if job is not None:
            sql += " WHERE job = ?"
            args.append(job)
        rows = self._con.execute(sql + " ORDER BY started, id", args).fetchall()
        return [SessionRow(r[0], r[1], r[2], r[3], r[4], _utc(r[5]),
                           _utc(r[6]) if r[6] else None, r[7] or "{}") for r in rows]

    def put_tasks(self, rows: Sequence[TaskRow]) -> None:
        """Replace the given tasks' rows (one statement per batch, not per task)."""
        if not rows:
            return
        with self.transaction():
            for sid in {r.session_id for r in rows}:
                names = [r.task for r in rows if r.session_id == sid]
                self._con.execute("DELETE FROM session_tasks WHERE session_id = ? AND task IN "
                                  "(SELECT unnest(?::VARCHAR[]))", [sid, names])
            self._con.execute(
                "INSERT INTO session_tasks SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
                "unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::BIGINT[]), "
                "unnest(?::BIGINT[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
                "unnest(?::TIMESTAMP[]), unnest(?::VARCHAR[]), unnest(?::INTEGER[])",
                [[r.session_id for r in rows], [r.task for r in rows], [r.state for r in rows],
                 [r.result for r in rows], [r.bytes_done for r in rows],
                 [r.bytes_total for r in rows], [r.stage for r in rows],
                 [r.point_id for r in rows], [_naive_utc(r.updated) for r in rows],
                 [r.vm for r in rows], [r.disk for r in rows]])

    def job_task_vms(self, job: str) -> set[str]:
        """Every VM the sessions of ``job`` had a task for."""
        rows = self._con.execute(
            "SELECT DISTINCT t.vm FROM session_tasks t JOIN sessions s ON s.id = t.session_id "
            "WHERE s.job = ? AND t.vm IS NOT NULL", [job]).fetchall()
        return {r[0] for r in rows}

    def tasks(self, session_id: str) -> list[TaskRow]:
        rows = self._con.execute(
            "SELECT session_id, task, state, result, bytes_done, bytes_total, stage, point_id, "
            "updated, vm, disk FROM session_tasks WHERE session_id = ? "
            "ORDER BY coalesce(vm, task), disk NULLS FIRST, task", [session_id]).fetchall()
        return [TaskRow(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), r[6], r[7], _utc(r[8]),
                        r[9], r[10]) for r in rows]

    def add_log(self, rows: Sequence[LogRow]) -> None:
        if not rows:
            return
        self._con.execute(
            "INSERT INTO session_log SELECT unnest(?::VARCHAR[]), unnest(?::INTEGER[]), "
            "unnest(?::TIMESTAMP[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[])",
            [[r.session_id for r in rows], [r.seq for r in rows],
             [_naive_utc(r.time) for r in rows], [r.level for r in rows],
             [r.message for r in rows]])

    def log(self, session_id: str) -> list[LogRow]:
        rows = self._con.execute("SELECT session_id, seq, \"time\", level, message FROM "
                                 "session_log WHERE session_id = ? ORDER BY seq",
                                 [session_id]).fetchall()
        return [LogRow(r[0], int(r[1]), _utc(r[2]), r[3], r[4]) for r in rows]

    def setting(self, name: str) -> str | None:
        """A stored setting's JSON text, or None."""
        row = self._con.execute("SELECT value::VARCHAR FROM settings WHERE name = ?",
                                [name]).fetchone()
        return str(row[0]) if row else None

    def put_setting(self, name: str, value_json: str) -> None:
        with self.transaction():
            self._con.execute("DELETE FROM settings WHERE name = ?", [name])
            self._con.execute("INSERT INTO settings VALUES (?, ?)", [name, value_json])

    # -- packs and blocks -----------------------------------------------------------------------
    def pack_ids(self, repo_id: str) -> set[str]:
        rows = self._con.execute("SELECT pack_id FROM packs WHERE repo_id = ?",
                                 [repo_id]).fetchall()
        return {r[0] for r in rows}

    def add_pack(self, repo_id: str, pack_id: str, size: int,
                 entries: Sequence[NewBlock]) -> bool:
        """Record a durable pack and its blocks, once: False if it was recorded already (by a
        sync of another worker that saw the file first)."""
        con = self._con
        with self.index_lock(repo_id), self.transaction():
            if con.execute("SELECT count(*) FROM packs WHERE repo_id = ? AND pack_id = ?",
                           [repo_id, pack_id]).fetchall()[0][0]:
                return False
            con.execute("INSERT INTO packs VALUES (?, ?, ?, ?)",
                        [repo_id, pack_id, size, len(entries)])
            if entries:
                con.execute(
                    """INSERT INTO blocks SELECT ?, unnest(?::BLOB[]), ?, unnest(?::UTINYINT[]),
                       unnest(?::UTINYINT[]), unnest(?::UINTEGER[]), unnest(?::BIGINT[]),
                       unnest(?::INTEGER[]), unnest(?::INTEGER[])""",
                    [repo_id, [e.block_id for e in entries], pack_id,
                     [e.kind for e in entries], [e.codec for e in entries],
                     [e.key_id for e in entries], [e.offset for e in entries],
                     [e.stored_len for e in entries], [e.plain_len for e in entries]],
                )
        return True

    def remove_packs(self, repo_id: str, pack_ids: Sequence[str]) -> None:
        if not pack_ids:
            return
        con = self._con
        with self.index_lock(repo_id), self.transaction():
            con.execute("DELETE FROM blocks WHERE repo_id = ? AND pack_id IN "
                        "(SELECT unnest(?::VARCHAR[]))", [repo_id, list(pack_ids)])
            con.execute("DELETE FROM damaged_blocks WHERE repo_id = ? AND pack_id IN "
                        "(SELECT unnest(?::VARCHAR[]))", [repo_id, list(pack_ids)])
            con.execute("DELETE FROM packs WHERE repo_id = ? AND pack_id IN "
                        "(SELECT unnest(?::VARCHAR[]))", [repo_id, list(pack_ids)])

    def existing_block_ids(self, repo_id: str, ids: Sequence[bytes]) -> set[bytes]:
        """Which of ``ids`` some pack of the repository holds in a copy not found damaged (one
        batched query): what a new point may reference without storing it again."""
        if not ids:
            return set()
        rows = self._con.execute(
            "SELECT DISTINCT block_id FROM blocks b WHERE repo_id = ? AND block_id IN "
            "(SELECT unnest(?::BLOB[])) AND " + _GOOD_COPY, [repo_id, list(ids)]).fetchall()
        return {bytes(r[0]) for r in rows}

    # -- damage found by reads ------------------------------------------------------------------
    def mark_damaged(self, repo_id: str, copies: Sequence[tuple[str, bytes, str]]) -> None:
        """Copies (pack, block id, problem) found bad by a restore or a check: never
        referenced again by deduplication, never read while another copy exists."""
        if not copies:
            return
        con = self._con
        with self.index_lock(repo_id), self.transaction():
            con.execute(
                """INSERT INTO damaged_blocks
                   SELECT ?, t.p, t.b, t.w, ? FROM (SELECT unnest(?::VARCHAR[]) AS p,
                       unnest(?::BLOB[]) AS b, unnest(?::VARCHAR[]) AS w) t
                   WHERE NOT EXISTS (SELECT 1 FROM damaged_blocks d WHERE d.repo_id = ?
                                     AND d.pack_id = t.p AND d.block_id = t.b)""",
                [repo_id, _naive_utc(datetime.now(UTC)), [c[0] for c in copies],
                 [c[1] for c in copies], [c[2] for c in copies], repo_id])

    def damaged_copies(self, repo_id: str) -> list[tuple[str, bytes, str]]:
        rows = self._con.execute("SELECT pack_id, block_id, problem FROM damaged_blocks "
                                 "WHERE repo_id = ? ORDER BY pack_id, block_id",
                                 [repo_id]).fetchall()
        return [(r[0], bytes(r[1]), r[2]) for r in rows]

    def good_copies(self, repo_id: str, block_id: bytes) -> list[BlockLocation]:
        """Every copy of a block not found damaged, by pack id (a reader's fallbacks)."""
        rows = self._con.execute(
            'SELECT pack_id, "offset", stored_len, plain_len, codec, key_id FROM blocks b '
            "WHERE repo_id = ? AND block_id = ? AND " + _GOOD_COPY + " ORDER BY pack_id",
            [repo_id, block_id]).fetchall()
        return [BlockLocation(-1, block_id, r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]),
                              int(r[5])) for r in rows]

    def unavailable_blocks(self, repo_id: str, point_id: str, disk_index: int) -> list[int]:
        """Block indices of a point's disk whose block has no good copy in any indexed pack
        (its pack is gone, or every copy was found damaged): a backup based on this point
        reads them again instead of inheriting them."""
        rows = self._con.execute(
            self._CHAIN + "SELECT r.block_index FROM resolved r WHERE r.block_id IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.repo_id = ? AND b.block_id = "
            "r.block_id AND " + _GOOD_COPY + ") ORDER BY r.block_index",
            [point_id, disk_index, disk_index, repo_id]).fetchall()
        return [int(r[0]) for r in rows]

    def duplicate_index_rows(self, repo_id: str) -> int:
        """Packs, blocks or points recorded more than once (a broken index; zero always)."""
        row = self._con.execute(
            """SELECT (SELECT count(*) - count(DISTINCT pack_id) FROM packs WHERE repo_id = ?)
                    + (SELECT count(*) - count(DISTINCT (pack_id, "offset")) FROM blocks
                       WHERE repo_id = ?)
                    + (SELECT count(*) - count(DISTINCT point_id) FROM points
                       WHERE repo_id = ?)""", [repo_id, repo_id, repo_id]).fetchone()
        return int(row[0]) if row else 0

    # -- points whose manifest vanished ---------------------------------------------------------
    def note_vanished(self, repo_id: str, rows: Sequence[PointRow]) -> None:
        if not rows:
            return
        now = _naive_utc(datetime.now(UTC))
        with self.index_lock(repo_id):
            self._con.execute(
                "INSERT INTO vanished_points SELECT ?, unnest(?::VARCHAR[]), "
                "unnest(?::VARCHAR[]), unnest(?::TIMESTAMP[]), ?",
                [repo_id, [r.point_id for r in rows], [r.object_name for r in rows],
                 [_naive_utc(r.created) for r in rows], now])

    def vanished(self, repo_id: str) -> list[tuple[str, str, datetime]]:
        """(point id, object name, created) of points whose manifest vanished from the
        repository though no prune of this catalog removed them, until a rescan."""
        rows = self._con.execute("SELECT DISTINCT point_id, object_name, created FROM "
                                 "vanished_points WHERE repo_id = ? ORDER BY created",
                                 [repo_id]).fetchall()
        return [(r[0], r[1], _utc(r[2])) for r in rows]

    def block_ids_in_pack(self, repo_id: str, pack_id: str) -> list[bytes]:
        rows = self._con.execute("SELECT block_id FROM blocks WHERE repo_id = ? AND pack_id = ?",
                                 [repo_id, pack_id]).fetchall()
        return [bytes(r[0]) for r in rows]

    def pack_of_block(self, repo_id: str, block_id: bytes) -> str | None:
        row = self._con.execute("SELECT min(pack_id) FROM blocks WHERE repo_id = ? AND "
                                "block_id = ?", [repo_id, block_id]).fetchone()
        return str(row[0]) if row and row[0] is not None else None

    def block_count(self, repo_id: str) -> int:
        row = self._con.execute("SELECT count(*) FROM blocks WHERE repo_id = ?",
                                [repo_id]).fetchone()
        return int(row[0]) if row else 0

    # -- points ---------------------------------------------------------------------------------
    def point_ids(self, repo_id: str) -> set[str]:
        rows = self._con.execute("SELECT point_id FROM points WHERE repo_id = ?",
                                 [repo_id]).fetchall()
        return {r[0] for r in rows}

    def point_states(self, repo_id: str) -> dict[str, PointRow | None]:
        """Every point of the repository in one read: complete ones with their row, those
        not complete (a prune is removing them) with None. One statement, so that a point
        another cursor records meanwhile is wholly in or wholly out (two reads could see it
        as not complete, i.e. as being removed)."""
        rows = self._con.execute(
            f"SELECT {_POINT_COLS}, complete FROM points WHERE repo_id = ?",
            [repo_id]).fetchall()
        return {r[0]: (_point(r[:-1]) if r[-1] else None) for r in rows}

    def add_point(self, repo_id: str, point: PointRow, config: dict[str, Any],
                  disks: Sequence[NewDisk]) -> bool:
        """Record a point whose manifest is already durable in the repository; all or nothing,
        and once: False if it was recorded already (by another worker's sync)."""
        con = self._con
        with self.index_lock(repo_id), self.transaction():
            if con.execute("SELECT count(*) FROM points WHERE point_id = ?",
                           [point.point_id]).fetchall()[0][0]:
                return False
            con.execute(
                f"INSERT INTO points ({_POINT_COLS}, config, complete) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, false)",
                [point.point_id, repo_id, point.object_name, point.object_kind,
                 _naive_utc(point.created), point.kind, point.parent_id, point.compression,
                 point.reason, point.bytes_read, point.bytes_stored, point.manifest_bytes,
                 json.dumps(config)],
            )
            for d in disks:
                con.execute(
                    "INSERT INTO point_disks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [point.point_id, d.disk_index, d.label, d.size, d.block_size, d.change_id,
                     d.meta_json, d.base_point, d.blocks],
                )
                if d.delta_indices:
                    con.execute(
                        "INSERT INTO block_map SELECT ?, ?, unnest(?::BIGINT[]), "
                        "unnest(?::BLOB[])",
                        [point.point_id, d.disk_index, d.delta_indices, d.delta_ids],
                    )
            con.execute("UPDATE points SET complete = true WHERE point_id = ?",
                        [point.point_id])
        return True

    def points(self, repo_id: str | None = None, object_name: str | None = None
               ) -> list[PointRow]:
        """Complete points, oldest first."""
        sql = f"SELECT {_POINT_COLS} FROM points WHERE complete"
        args: list[Any] = []
        if repo_id is not None:
            sql += " AND repo_id = ?"
            args.append(repo_id)
        if object_name is not None:
            sql += " AND object_name = ?"
            args.append(object_name)
        sql += " ORDER BY created, point_id"
        return [_point(r) for r in self._con.execute(sql, args).fetchall()]

    def point_jobs(self) -> dict[str, str]:
        """Per point: the job whose session made it (the first session that recorded it in
        a task; points imported from elsewhere or older than their sessions have none)."""
        rows = self._con.execute(
            "SELECT t.point_id, s.job FROM session_tasks t JOIN sessions s "
            "ON s.id = t.session_id WHERE t.point_id IS NOT NULL "
            "ORDER BY s.started DESC, s.id DESC").fetchall()
        return {r[0]: r[1] for r in rows}  # the oldest session's comes last and stays

    def guest_processing(self) -> dict[str, dict[str, Any]]:
        """Per point: the guest processing its backup recorded (quiesced, scripts)."""
        rows = self._con.execute(
            "SELECT point_id, CAST(json_extract(config, '$.guest_processing') AS VARCHAR) "
            "FROM points WHERE json_extract(config, '$.guest_processing') IS NOT NULL"
        ).fetchall()
        return {r[0]: json.loads(r[1]) for r in rows if r[1] and r[1] != "null"}

    def point(self, point_id: str) -> PointRow | None:
        row = self._con.execute(
            f"SELECT {_POINT_COLS} FROM points WHERE complete AND point_id = ?", [point_id]
        ).fetchone()
        return _point(row) if row else None

    def latest_point(self, repo_id: str, object_name: str) -> PointRow | None:
        pts = self.points(repo_id, object_name)
        return pts[-1] if pts else None

    def disks(self, point_id: str) -> list[DiskRow]:
        rows = self._con.execute(
            "SELECT point_id, disk_index, label, size, block_size, change_id, base_point, "
            "blocks, coalesce(CAST(meta AS VARCHAR), '{}') FROM point_disks WHERE point_id = ? "
            "ORDER BY disk_index", [point_id]).fetchall()
        return [DiskRow(r[0], int(r[1]), r[2], int(r[3]), int(r[4]), r[5], r[6], int(r[7]),
                        r[8]) for r in rows]

    _CHAIN: Final = """
        WITH RECURSIVE chain(point_id, depth) AS (
            SELECT CAST(? AS VARCHAR), 0
            UNION ALL
            SELECT pd.base_point, c.depth + 1 FROM chain c
            JOIN point_disks pd ON pd.point_id = c.point_id AND pd.disk_index = ?
            WHERE pd.base_point IS NOT NULL
        ),
        resolved AS (
            SELECT m.block_index, m.block_id FROM block_map m JOIN chain c USING (point_id)
            WHERE m.disk_index = ?
            QUALIFY row_number() OVER (PARTITION BY m.block_index ORDER BY c.depth) = 1
        )
    """

    def resolved_map(self, point_id: str, disk_index: int) -> tuple[array[int], bytes]:
        """The whole block map of a point's disk: (ascending indices, concatenated ids)."""
        rows = self._con.execute(
            self._CHAIN + "SELECT block_index, block_id FROM resolved "
            "WHERE block_id IS NOT NULL ORDER BY block_index",
            [point_id, disk_index, disk_index]).fetchall()
        return array("Q", (int(r[0]) for r in rows)), b"".join(bytes(r[1]) for r in rows)

    def restore_plan(self, repo_id: str, point_id: str, disk_index: int
                     ) -> list[BlockLocation]:
        """Every non-zero block of a point's disk with one location, by block index."""
        rows = self._con.execute(
            self._CHAIN + """,
            loc AS (
                SELECT block_id, """ + _KEEPER + """ AS pack_id FROM blocks b
                WHERE repo_id = ? AND block_id IN (SELECT block_id FROM resolved)
                GROUP BY block_id
            )
            SELECT r.block_index, r.block_id, b.pack_id, b."offset", b.stored_len, b.plain_len,
                   b.codec, b.key_id
            FROM resolved r
            LEFT JOIN loc l ON l.block_id = r.block_id
            LEFT JOIN blocks b ON b.repo_id = ? AND b.block_id = l.block_id
                               AND b.pack_id = l.pack_id
            WHERE r.block_id IS NOT NULL ORDER BY r.block_index""",
            [point_id, disk_index, disk_index, repo_id, repo_id]).fetchall()
        return [BlockLocation(int(r[0]), bytes(r[1]), r[2], int(r[3] or 0), int(r[4] or 0),
                              int(r[5] or 0), int(r[6] or 0), int(r[7] or 0)) for r in rows]

    def mark_removing(self, repo_id: str, point_ids: Sequence[str]) -> None:
        """Points a prune is about to remove: no longer complete (so their manifests'
        going is expected, not a vanishing to report)."""
        if point_ids:
            with self.index_lock(repo_id):
                self._con.execute("UPDATE points SET complete = false WHERE repo_id = ? AND "
                                  "point_id IN (SELECT unnest(?::VARCHAR[]))",
                                  [repo_id, list(point_ids)])

    def remove_point(self, point_id: str) -> None:
        """Forget a point; points based on it absorb its rows so their maps do not change."""
        con = self._con
        row = con.execute("SELECT repo_id FROM points WHERE point_id = ?", [point_id]).fetchone()
        if row is None:
            return
        with self.index_lock(str(row[0])), self.transaction():
            own = con.execute("SELECT disk_index, base_point FROM point_disks WHERE point_id = ?",
                              [point_id]).fetchall()
            for disk_index, base in own:
                children = con.execute(
                    "SELECT point_id FROM point_disks WHERE base_point = ? AND disk_index = ?",
                    [point_id, disk_index]).fetchall()
                for (child,) in children:
                    con.execute(
                        """INSERT INTO block_map
                           SELECT ?, disk_index, block_index, block_id FROM block_map
                           WHERE point_id = ? AND disk_index = ? AND block_index NOT IN
                             (SELECT block_index FROM block_map
                              WHERE point_id = ? AND disk_index = ?)""",
                        [child, point_id, disk_index, child, disk_index])
                    con.execute("UPDATE point_disks SET base_point = ? WHERE point_id = ? "
                                "AND disk_index = ?", [base, child, disk_index])
                    if base is None:
                        con.execute("DELETE FROM block_map WHERE point_id = ? AND disk_index = ? "
                                    "AND block_id IS NULL", [child, disk_index])
            con.execute("DELETE FROM block_map WHERE point_id = ?", [point_id])
            con.execute("DELETE FROM point_disks WHERE point_id = ?", [point_id])
            con.execute("DELETE FROM points WHERE point_id = ?", [point_id])

    def map_rows(self, point_id: str) -> int:
        row = self._con.execute("SELECT count(*) FROM block_map WHERE point_id = ?",
                                [point_id]).fetchone()
        return int(row[0]) if row else 0

    # -- space accounting for prune -------------------------------------------------------------
    def _fill_live_ids(self, live_points: Sequence[str]) -> None:
        con = self._con
        con.execute("CREATE OR REPLACE TEMP TABLE live_ids (block_id BLOB)")
        for pid in live_points:
            for (disk_index,) in con.execute(
                    "SELECT disk_index FROM point_disks WHERE point_id = ?", [pid]).fetchall():
                con.execute("INSERT INTO live_ids " + self._CHAIN +
                            "SELECT block_id FROM resolved WHERE block_id IS NOT NULL",
                            [pid, disk_index, disk_index])

    def pack_usage(self, repo_id: str, live_points: Sequence[str]) -> list[PackUsage]:
        """Per pack: entries and bytes still referenced by ``live_points``.

        A block held by several packs counts as live in one of them only (the smallest pack id,
        the same one restores read), so a pack that only duplicates blocks kept elsewhere is dead.
        """
        con = self._con
        self._fill_live_ids(live_points)
        rows = con.execute(
            """WITH live AS (SELECT DISTINCT block_id FROM live_ids),
               keeper AS (SELECT b.block_id, """ + _KEEPER + """ AS pack_id FROM blocks b
                          JOIN live USING (block_id) WHERE b.repo_id = ? GROUP BY b.block_id)
               SELECT p.pack_id, p.size, p.entries,
                      count(k.block_id) AS live_entries,
                      coalesce(sum(CASE WHEN k.block_id IS NOT NULL THEN b.stored_len END), 0),
                      coalesce(sum(b.stored_len), 0)
               FROM packs p
               LEFT JOIN blocks b ON b.repo_id = p.repo_id AND b.pack_id = p.pack_id
               LEFT JOIN keeper k ON k.block_id = b.block_id AND k.pack_id = b.pack_id
               WHERE p.repo_id = ? GROUP BY p.pack_id, p.size, p.entries ORDER BY p.pack_id""",
            [repo_id, repo_id]).fetchall()
        con.execute("DROP TABLE live_ids")
        return [PackUsage(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]))
                for r in rows]

    def live_entries(self, repo_id: str, live_points: Sequence[str], pack_ids: Sequence[str]
                     ) -> dict[str, list[bytes]]:
        """Per pack of ``pack_ids``: the block ids it must keep for ``live_points`` (keepers)."""
        con = self._con
        self._fill_live_ids(live_points)
        rows = con.execute(
            """WITH live AS (SELECT DISTINCT block_id FROM live_ids),
               keeper AS (SELECT b.block_id, """ + _KEEPER + """ AS pack_id FROM blocks b
                          JOIN live USING (block_id) WHERE b.repo_id = ? GROUP BY b.block_id)
               SELECT pack_id, block_id FROM keeper
               WHERE pack_id IN (SELECT unnest(?::VARCHAR[]))""",
            [repo_id, list(pack_ids)]).fetchall()
        con.execute("DROP TABLE live_ids")
        out: dict[str, list[bytes]] = {}
        for pack_id, block_id in rows:
            out.setdefault(pack_id, []).append(bytes(block_id))
        return out

    def unreferenced_packs(self, repo_id: str) -> list[str]:
        """Packs none of whose blocks any point's block map names (crash leftovers)."""
        rows = self._con.execute(
            """SELECT p.pack_id FROM packs p WHERE p.repo_id = ? AND NOT EXISTS (
                   SELECT 1 FROM blocks b JOIN block_map m ON m.block_id = b.block_id
                   JOIN points pt ON pt.point_id = m.point_id AND pt.repo_id = b.repo_id
                   WHERE b.repo_id = p.repo_id AND b.pack_id = p.pack_id)
               ORDER BY p.pack_id""", [repo_id]).fetchall()
        return [r[0] for r in rows]

    def total_pack_bytes(self, repo_id: str) -> int:
        row = self._con.execute("SELECT coalesce(sum(size), 0) FROM packs WHERE repo_id = ?",
                                [repo_id]).fetchone()
        return int(row[0]) if row else 0

    # -- a canonical dump, to compare catalogs -----------------------------------------------
    def canonical_dump(self, repo_id: str) -> list[str]:
        """Points and their resolved block maps as sorted text lines (representation-free)."""
        out: list[str] = []
        for p in self.points(repo_id):
            out.append(f"point {p.point_id} {p.object_name} {p.created.isoformat()} {p.kind} "
                       f"read={p.bytes_read} stored={p.bytes_stored}")
            for d in self.disks(p.point_id):
                out.append(f"  disk {d.disk_index} size={d.size} bs={d.block_size} "
                           f"change={d.change_id} blocks={d.blocks}")
                idx, ids = self.resolved_map(p.point_id, d.disk_index)
                for i, bi in enumerate(idx):
                    out.append(f"    {bi} {ids[i * 32:(i + 1) * 32].hex()}")
        return out

    # -- scratch sets of block ids (bounded memory for checks over whole repositories) ---------
    def id_set(self) -> IdSet:
        return IdSet(self._con)


class IdSet:
    """A set of block ids kept in a DuckDB temporary table rather than in Python memory."""

    _counter = 0

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        IdSet._counter += 1
        self._con = con
        self._table = f"idset_{IdSet._counter}"
        con.execute(f"CREATE TEMP TABLE {self._table} (block_id BLOB)")

    def add(self, ids: Sequence[bytes]) -> None:
        if ids:
            self._con.execute(f"INSERT INTO {self._table} SELECT unnest(?::BLOB[])", [list(ids)])

    def missing(self, ids: Sequence[bytes]) -> list[bytes]:
        """The ids of ``ids`` not in the set, in their first order, without repeats."""
        if not ids:
            return []
        rows = self._con.execute(
            f"""SELECT q.block_id FROM (SELECT unnest(?::BLOB[]) AS block_id,
                                              generate_subscripts(?::BLOB[], 1) AS pos) q
                ANTI JOIN {self._table} s USING (block_id) ORDER BY q.pos""",
            [list(ids), list(ids)]).fetchall()
        seen: set[bytes] = set()
        out: list[bytes] = []
        for (bid,) in rows:
            b = bytes(bid)
            if b not in seen:
                seen.add(b)
                out.append(b)
        return out

    def drop(self) -> None:
        self._con.execute(f"DROP TABLE IF EXISTS {self._table}")
