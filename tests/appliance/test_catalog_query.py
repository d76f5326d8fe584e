"""`vmkeep catalog query`: read-only SQL over the appliance's catalog. Every class of statement
that could change the catalog or reach outside it is refused with the reason, and the catalog
file is byte-for-byte unchanged afterwards."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.appliance.lab import run_vmkeep
from tests.helpers import REPO_ROOT, CliResult, make_image, poll

REFUSED = {
    "insert": "INSERT INTO vcenters VALUES ('x', 'h', 1, 'u', NULL, true, now())",
    "update": "UPDATE points SET kind = 'full'",
    "delete": "DELETE FROM points",
    "drop": "DROP TABLE points",
    "create": "CREATE TABLE x AS SELECT 1",
    "with insert": "WITH x AS (SELECT 1 AS a) INSERT INTO schema_version SELECT a FROM x",
    "several statements": "SELECT 1; DELETE FROM points",
    "hidden after a comment": "SELECT 1 /* harmless */; DROP TABLE points -- end",
    "attach": "ATTACH '/tmp/vmkeep-other.duckdb' AS other",
    "copy": "COPY points TO '/tmp/vmkeep-points.csv'",
    "export": "EXPORT DATABASE '/tmp/vmkeep-export'",
    "checkpoint": "CHECKPOINT",
    "pragma": "PRAGMA database_size",
    "call": "CALL pragma_version()",
    "set": "SET threads = 8",
    "install": "INSTALL httpfs",
    "load": "LOAD httpfs",
    "read_csv": "SELECT * FROM read_csv('/etc/passwd')",
    "read_text": "SELECT * FROM read_text('/etc/hostname')",
    "glob": "SELECT * FROM glob('/etc/*')",
    "getenv": "SELECT getenv('HOME')",
    "set through a function": "SELECT set_config('threads', '8')",
    "delete in a CTE": "WITH d AS (DELETE FROM repository_names RETURNING *) SELECT name FROM d",
    "update in a CTE": "WITH d AS (UPDATE repository_names SET location = '/etc' RETURNING *) "
                       "SELECT name FROM d",
    "insert in a CTE": "WITH d AS (INSERT INTO settings SELECT * FROM settings RETURNING *) "
                       "SELECT 1 FROM d",
    "delete in a subquery's CTE": "SELECT * FROM (WITH d AS (DELETE FROM points RETURNING *) "
                                  "SELECT 1 FROM d)",
    "checkpoint()": "SELECT * FROM checkpoint()",
    "force_checkpoint()": "SELECT * FROM force_checkpoint()",
    "query()": "SELECT * FROM query('SELECT 1')",
    "nextval": "SELECT nextval('no_such_sequence')",
    "too long": "SELECT 1 " + " " * (64 * 1024),
}
ENDLESS = "SELECT sum(hash(i) % 7) FROM range(100000000000) t(i)"


@dataclass
class Appliance:
    home: Path
    env: dict[str, str]

    def vmkeep(self, *args: str) -> CliResult:
        return run_vmkeep(self.env, *args)

    def catalog_digest(self) -> str:
        h = hashlib.sha256()
        for name in ("catalog.duckdb", "catalog.duckdb.wal"):
            path = self.home / name
            h.update(path.read_bytes() if path.exists() else b"-")
        return h.hexdigest()


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    tmp = tmp_path_factory.mktemp("catalog-query")
    env = {**os.environ, "VMKEEP_HOME": str(tmp / "home"), "VMKEEP_CACHE_DIR": str(tmp / "c")}
    env.pop("VMKEEP_SOCKET", None)
    a = Appliance(tmp / "home", env)
    image = tmp / "disk.img"
    make_image(image, 8 << 20, seed=9)
    for name in ("db01", "db01", "web01"):
        assert a.vmkeep("image", "backup", "--repo", str(tmp / "repo"), "--name", name,
                        str(image)).code == 0
    assert a.vmkeep("appliance", "start").code == 0
    try:
        assert a.vmkeep("repo", "add", "main", "--path", str(tmp / "repo")).code == 0
        # The default configuration backup runs soon after a change and writes to the
        # catalog: let it settle before a test compares the catalog file.
        poll("the default configuration backup", lambda: json.loads(a.vmkeep(
            "config", "schedule", "--json").out).get("last_result") or None, timeout=60)
        yield a
    finally:
        a.vmkeep("appliance", "stop")


def test_views_answer_as_table_json_and_csv(appliance: Appliance) -> None:
    a = appliance
    r = a.vmkeep("catalog", "query", "SELECT vm, repository, points FROM points_per_vm "
                 "ORDER BY vm", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out) == [{"vm": "db01", "repository": "main", "points": 2},
                                 {"vm": "web01", "repository": "main", "points": 1}]
    r = a.vmkeep("catalog", "query", "SELECT repository, points FROM space_per_repository",
                 "--csv")
    assert list(csv.reader(io.StringIO(r.out))) == [["repository", "points"], ["main", "3"]]
    r = a.vmkeep("catalog", "query", "FROM changed_bytes_per_run ORDER BY created")
    assert r.code == 0 and r.out.splitlines()[0].split()[:4] == ["point_id", "vm", "created",
                                                                   "kind"]
    assert len(r.out.splitlines()) == 4 and "(3 rows" in r.err
    r = a.vmkeep("catalog", "query", "SELECT vm, dedup_ratio FROM stored_bytes_per_vm "
                 "WHERE vm = 'db01'", "--json")
    assert json.loads(r.out)[0]["dedup_ratio"] > 1.5  # the second point stored nothing new


def test_every_refused_class_leaves_the_catalog_unchanged(appliance: Appliance) -> None:
    a = appliance
    assert a.vmkeep("appliance", "stop").code == 0
    before = a.catalog_digest()
    assert a.vmkeep("appliance", "start").code == 0
    reasons = {}
    for label, sql in REFUSED.items():
        r = a.vmkeep("catalog", "query", sql)
        assert r.code == 4, (label, r.out, r.err)
        lines = r.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("vmkeep: error: query refused: "), \
            (label, r.err)
        reasons[label] = lines[0]
    assert "not INSERT" in reasons["with insert"]
    assert "2 statements" in reasons["hidden after a comment"]
    assert "table function read_csv() is not allowed" in reasons["read_csv"]
    for write in ("DELETE", "UPDATE", "INSERT"):
        assert f"holds {'a' if write == 'DELETE' else 'an'} {write}" in \
            reasons[f"{write.lower()} in a CTE"]
    assert "checkpoint() is not allowed" in reasons["checkpoint()"]
    assert "at most 64 KiB" in reasons["too long"]
    assert a.vmkeep("appliance", "stop").code == 0
    assert a.catalog_digest() == before
    assert a.vmkeep("appliance", "start").code == 0
    r = a.vmkeep("catalog", "query", "SELECT count(*) AS n FROM points", "--json")
    assert json.loads(r.out) == [{"n": 3}]


def test_rows_and_time_are_capped(appliance: Appliance) -> None:
    a = appliance
    r = a.vmkeep("catalog", "query", "SELECT * FROM range(5000)", "--max-rows", "10",
                 "--json")
    assert r.code == 0 and len(json.loads(r.out)) == 10
    assert "only the first 10 rows" in r.err
    r = a.vmkeep("catalog", "query", ENDLESS, "--timeout", "1")
    assert r.code == 4 and "ran longer than 1 s" in r.err, r.err
    r = a.vmkeep("catalog", "query", "SELECT 1", "--timeout", "61")
    assert r.code == 2 and "at most 60 seconds" in r.err, r.err
    r = a.vmkeep("catalog", "query", "SELECT 1", "--max-rows", "0")
    assert r.code == 2 and "max_rows must be 1" in r.err


def test_a_running_query_holds_no_one_up(appliance: Appliance) -> None:
    """While a query runs (up to its limit), the rest of the API answers on its own cursors,
    and stopping the appliance stops the query instead of waiting for it."""
    a = appliance
    log = a.home / "appliance.log"
    mark = log.stat().st_size
    query = subprocess.Popen([sys.executable, "-m", "appliance.cli", "catalog", "query",
                              ENDLESS, "--timeout", "60"], cwd=REPO_ROOT, env=a.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def started() -> bool | None:
            with log.open("rb") as f:
                f.seek(mark)
                return True if b"catalog query (limit 60 s" in f.read() else None

        poll("the appliance to start the endless query", started)
        r = a.vmkeep("repo", "list", "--json")
        assert r.code == 0 and [x["name"] for x in json.loads(r.out)] == ["main"], r.err
        r = a.vmkeep("catalog", "query", "SELECT count(*) AS n FROM points", "--json")
        assert r.code == 0 and json.loads(r.out) == [{"n": 3}], r.err
        assert query.poll() is None, "the endless query ended before the others answered"
        assert a.vmkeep("appliance", "stop").code == 0
        out, err = query.communicate(timeout=60)
        assert query.returncode != 0 and "the appliance is stopping" in err, (out, err)
    finally:
        if query.poll() is None:
            query.kill()
            query.wait()
        assert a.vmkeep("appliance", "start").code == 0
