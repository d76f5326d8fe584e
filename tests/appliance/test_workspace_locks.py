"""The workspace rule in the appliance: a prune holds its repository's exclusive lock — never a
lock that stops the API — and cannot delete what a restore or a move is reading (docs/API.md).

Orderings are forced with hold points (``VMKEEP_HOLD_AT`` in the appliance's environment, or
``faults.hooked`` in this process); nothing waits on a clock.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import TypeVar

import pytest

from appliance import api, faults
from appliance.errors import LockedError
from appliance.home import Home
from appliance.jobs.backup import BackupOptions, DiskInput, run_backup
from appliance.jobs.log_backup import BytesSource, logs_object
from appliance.registry import Registry
from appliance.repository.backend import LocalBackend
from appliance.repository.lock import LockInfo, read_locks
from tests.appliance.lab import VM, Lab
from tests.helpers import REPO_ROOT, poll

T = TypeVar("T")
DEADLINE = 60.0


def lock_held(repo: Path, operation: str) -> LockInfo | None:
    return next((info for _n, info in read_locks(LocalBackend(repo))
                 if info is not None and info.operation == operation), None)


def held_appliance(lab: Lab, point: str) -> Path:
    """Restart the lab's appliance so that it stops at hold point ``point`` until the
    returned file exists."""
    release = lab.tmp / f"release-{point}"
    assert lab.vmkeep("appliance", "stop").code == 0
    lab.env.update(VMKEEP_HOLD_AT=point, VMKEEP_HOLD_RELEASE=str(release))
    assert lab.vmkeep("appliance", "start").code == 0
    return release


def in_background(lab: Lab, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "appliance.cli", *args], cwd=REPO_ROOT,
                            env=lab.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def two_points(lab: Lab) -> None:
    assert lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt", "--block-size", "256K").code == 0
    assert lab.vmkeep("job", "run", "nightly", "--wait").code == 0
    lab.write(100 << 10, b"changed")
    assert lab.vmkeep("job", "run", "nightly", "--wait").code == 0


def test_the_api_answers_while_a_prune_holds_its_repository(lab: Lab) -> None:
    two_points(lab)
    release = held_appliance(lab, "prune-checked")
    prune = in_background(lab, "prune", "--repo", "main", "--keep-last", "1")
    try:
        poll("the prune's exclusive lock", lambda: lock_held(lab.tmp / "repo", "prune"))
        listed = lab.vmkeep("job", "list", "--json")  # before the fix: waits for the prune
        assert listed.code == 0, listed.err
        assert [j["spec"]["name"] for j in json.loads(listed.out)] == ["nightly"]
        assert lab.vmkeep("points", "list", "--json").code == 0
        assert prune.poll() is None, "the prune must still be held"
    finally:
        release.touch()
        _out, err = prune.communicate(timeout=DEADLINE)
    assert prune.returncode == 0, err
    assert len(json.loads(lab.vmkeep("points", "list", "--json").out)) == 1


def test_a_prune_cannot_delete_what_a_move_is_reading(lab: Lab) -> None:
    two_points(lab)
    assert lab.vmkeep("repo", "add", "other", "--path", str(lab.tmp / "other")).code == 0
    release = held_appliance(lab, "move-locked")
    move = in_background(lab, "move", "--job", "nightly", "--to", "other")
    try:
        poll("the move's lock", lambda: lock_held(lab.tmp / "repo", "move"))
        for repo in ("main", "other"):
            refused = lab.vmkeep("prune", "--repo", repo, "--keep-last", "1")
            assert refused.code == 6, refused.err  # locked
            assert "lock of move" in refused.err, refused.err
        assert move.poll() is None
    finally:
        release.touch()
        _out, err = move.communicate(timeout=DEADLINE)
    assert move.returncode == 0, err
    points = json.loads(lab.vmkeep("points", "list", "--json").out)
    assert [p["repository"] for p in points] == ["other", "other"], points


def test_a_prune_cannot_delete_what_a_postgres_restore_is_reading(tmp_path: Path) -> None:
    """Registry level: `restore postgres` reads the VM's WAL points in a shared workspace;
    a prune meanwhile is refused (locked), and the WAL comes back whole."""
    reg = Registry(Home(tmp_path / "home", tmp_path / "home" / "sock"))
    try:
        reg.repositories.add("main", str(tmp_path / "repo"))
        repo = reg.repositories.open(reg.repositories.get("main"))
        wal = bytes(range(256)) * 4096
        label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"
        with reg.workspace(repo, "main", exclusive=False, operation="test") as ws:
            point = run_backup(ws, "db", [DiskInput(0, BytesSource("disk", b"x" * 4096))],
                               BackupOptions(), config={"guest_processing": {
                                   "postgres": {"backup_label": label}}}).point_id
            run_backup(ws, logs_object("db"), [DiskInput(0, BytesSource(
                "000000010000000000000002", wal))], BackupOptions())
        data = tmp_path / "pgdata"
        data.mkdir()
        (data / "PG_VERSION").write_text("15\n")
        held, go_on = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def hold(_detail: str) -> None:
            held.set()
            assert go_on.wait(DEADLINE)

        def restore() -> None:
            try:
                reg.restores.postgres(point, str(data), None)
            except BaseException as exc:
                errors.append(exc)
                held.set()

        with faults.hooked("restore-postgres-locked", hold):
            worker = threading.Thread(target=restore)
            worker.start()
            assert held.wait(DEADLINE)
            try:
                with pytest.raises(LockedError, match="shared lock of restore postgres"):
                    reg.maintenance.prune(api.PruneRequest(repository="main", keep_last=1))
                assert reg.jobs.all() == []  # and the registry answers meanwhile
            finally:
                go_on.set()
                worker.join(DEADLINE)
        assert not errors, errors
        assert (data / "vmkeep-wal" / "000000010000000000000002").read_bytes() == wal
        assert (data / "backup_label").read_text() == label
        repo.close()
    finally:
        reg.close()
