"""The appliance's own catalog is precious (issue 10, failure 8): it is backed up by default
(daily, and soon after the configuration changes) into the first repository; a damaged
catalog stops `appliance start` with one line that says how to restore it; a missing one in
a used home is refused (exit 13) unless `--new-catalog` says to start empty on purpose.
Real processes, as an administrator runs them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import helpers
from tests.appliance.lab import Lab, run_vmkeep
from tests.helpers import CliResult, T

PASSWORD = "my-own-config-password-4711"
BLOCK = 262144  # DuckDB's block size; blocks start after a 12 KiB header
HEADER = 12288


def poll(what: str, probe: Callable[[], T | None], seconds: float = 90) -> T:
    """``probe()`` once it is truthy; fail after ``seconds``."""
    return helpers.poll(what, probe, seconds, every=0.2)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def flipped(data: bytes) -> bytes:
    out = bytearray(data)
    for at in [100, 4096 + 100, 8192 + 100, *range(HEADER + 1000, len(out), BLOCK)]:
        out[at] ^= 0xFF
    return bytes(out)


def garbage(data: bytes) -> bytes:
    return os.urandom(len(data))


DAMAGES: dict[str, Callable[[bytes], bytes]] = {
    "truncated": truncated, "flipped bytes": flipped, "garbage": garbage,
    "empty": lambda data: b""}


class Home:
    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "home"
        self.repo = tmp / "repo"
        self.env = {**os.environ, "VMKEEP_HOME": str(self.root),
                    "VMKEEP_CACHE_DIR": str(tmp / "cache")}
        self.env.pop("VMKEEP_SOCKET", None)

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.duckdb"

    def vmkeep(self, *args: str, stdin: str = "") -> CliResult:
        return run_vmkeep(self.env, *args, stdin=stdin)

    def schedule(self) -> dict[str, Any]:
        r = self.vmkeep("config", "schedule", "--json")
        assert r.code == 0, r
        view: dict[str, Any] = json.loads(r.out)
        return view

    def repos(self) -> list[str]:
        r = self.vmkeep("repo", "list", "--json")
        assert r.code == 0, r
        return [x["name"] for x in json.loads(r.out)]


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    h = Home(tmp_path)
    try:
        yield h
    finally:
        h.vmkeep("appliance", "stop")


def used_home(h: Home) -> str:
    """Start a brand-new home (it starts normally), add a repository, wait for the default
    configuration backup, stop; the backup's file."""
    r = h.vmkeep("appliance", "start")
    assert r.code == 0, r
    assert h.vmkeep("repo", "add", "main", "--path", str(h.repo)).code == 0
    view = poll("the default configuration backup",
                lambda: (v := h.schedule())["last_result"] == "success" and v)
    assert view["repository"] == "main" and view["schedule"]["kind"] == "daily", view
    assert h.vmkeep("appliance", "stop").code == 0
    return str(view["last_message"])


def one_line(r: CliResult) -> str:
    assert r.out == "", r
    line = r.err.strip()
    assert line and "\n" not in line, r
    assert "Traceback" not in line and 'File "' not in line, r
    return line


def test_a_damaged_catalog_stops_the_start_with_one_line(home: Home) -> None:
    h = home
    backup = used_home(h)
    r = h.vmkeep("appliance", "start", "--new-catalog")  # a healthy catalog is never replaced
    assert r.code == 2 and "reads in full" in one_line(r), r
    good = h.catalog.read_bytes()
    for kind, damage in DAMAGES.items():
        h.catalog.write_bytes(damage(good))
        r = h.vmkeep("appliance", "start")
        assert r.code == 13, (kind, r)
        line = one_line(r)
        assert f"catalog {h.catalog} is damaged" in line, (kind, line)
        assert "`vmkeep appliance start --new-catalog`" in line, (kind, line)
        assert f"`vmkeep config restore --from {backup}`" in line, (kind, line)
        assert h.vmkeep("appliance", "status").code == 3, kind  # nothing runs
    # Start empty on purpose (the damaged file is kept aside), then restore.
    r = h.vmkeep("appliance", "start", "--new-catalog")
    assert r.code == 0, r
    assert "damaged" in r.err and str(h.catalog) in r.err, r
    assert len(list(h.root.glob("catalog.duckdb.damaged-*"))) == 1
    assert h.repos() == []
    r = h.vmkeep("config", "restore", "--from", backup)  # the password in the secret store
    assert r.code == 0, r
    assert h.repos() == ["main"]


def test_a_missing_catalog_in_a_used_home_is_refused(home: Home) -> None:
    h = home
    backup = used_home(h)
    h.catalog.unlink()
    r = h.vmkeep("appliance", "start")
    assert r.code == 13, r
    line = one_line(r)
    assert f"catalog {h.catalog} is missing" in line, line
    assert "`vmkeep appliance start --new-catalog`" in line, line
    assert f"`vmkeep config restore --from {backup}`" in line, line
    assert h.vmkeep("appliance", "status").code == 3
    assert not h.catalog.exists()  # nothing was made up in its place
    assert h.vmkeep("appliance", "start", "--new-catalog").code == 0
    assert h.repos() == []
    r = h.vmkeep("config", "restore", "--from", str(h.repo))  # the repository's newest
    assert r.code == 0, r
    assert h.repos() == ["main"]


def config_alerts(lab: Lab) -> list[str]:
    r = lab.vmkeep("alerts", "--json")
    assert r.code == 0, r
    return [a["message"] for a in json.loads(r.out) if a["kind"] == "config"]


def test_the_configuration_is_backed_up_by_default_and_restores(lab: Lab) -> None:
    def schedule() -> dict[str, Any]:
        view: dict[str, Any] = json.loads(lab.vmkeep("config", "schedule", "--json").out)
        return view

    view = poll("the default configuration backup",
                lambda: (v := schedule())["last_result"] == "success" and v)
    assert view["repository"] == "main" and view["schedule"]["kind"] == "daily", view
    assert view["password_generated"] is True
    assert Path(view["last_message"]).parent == lab.tmp / "repo" / "appliance-config"
    assert lab.vmkeep("notify", "set", "--alert-every", "1s").code == 0
    alert = poll("the alert about the generated password", lambda: config_alerts(lab))
    assert "generated" in alert[0] and "vmkeep config schedule --password-stdin" in alert[0]

    # A change to the configuration is backed up soon, not only at the daily time.
    r = lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", "DC0_H0_VM0",
                   "--repo", "main")
    assert r.code == 0, r
    # (changed_since_backup is true until a backup holds the change: it may already have)
    poll("a configuration backup holding the change",
         lambda: (v := schedule())["last_result"] == "success" and not v["changed_since_backup"])

    # The catalog is lost; the appliance refuses to start without it, then starts empty on
    # purpose and the automatic backup brings the vCenter, the repository and the job back.
    assert lab.vmkeep("appliance", "stop").code == 0
    (lab.home / "catalog.duckdb").unlink()
    r = lab.vmkeep("appliance", "start")
    assert r.code == 13 and "vmkeep config restore" in r.err, r
    assert lab.vmkeep("appliance", "start", "--new-catalog").code == 0
    assert json.loads(lab.vmkeep("job", "list", "--json").out) == []
    r = lab.vmkeep("config", "restore", "--from", str(lab.tmp / "repo"))
    assert r.code == 0 and "1 vCenter(s), 1 repositories, 1 job(s)" in r.err, r
    assert [j["spec"]["name"] for j in json.loads(lab.vmkeep("job", "list", "--json").out)] == \
        ["nightly"]
    assert lab.vmkeep("vcenter", "test", "vc").code == 0  # its password came back too

    # The administrator sets a password of their own (kept elsewhere): the alert goes.
    poll("the alert about the generated password, restored", lambda: config_alerts(lab))
    r = lab.vmkeep("config", "schedule", "--password-stdin", stdin=PASSWORD)
    assert r.code == 0, r
    poll("the alert to clear", lambda: not config_alerts(lab))
    view = schedule()
    assert view["password_generated"] is False
    assert view["repository"] == "main" and view["schedule"]["kind"] == "daily", view
    # Backups from now on open with that password (the change itself is backed up). A backup's
    # time is when the scheduler looked, which may be before the change it saw: the view says
    # which password sealed it.
    view = poll("a backup sealed with the new password",
                lambda: (v := schedule())["last_result"] == "success"
                and v["last_sealed_with_current"] is True and v)
    assert lab.vmkeep("appliance", "stop").code == 0
    fresh = Lab(lab.tmp / "home2", {**lab.env, "VMKEEP_HOME": str(lab.tmp / "home2")},
                lab.sim, lab.tmp)
    assert fresh.vmkeep("appliance", "start").code == 0
    try:
        r = fresh.vmkeep("config", "restore", "--from", view["last_message"],
                         "--password-stdin", stdin=PASSWORD)
        assert r.code == 0, r
    finally:
        fresh.vmkeep("appliance", "stop")
