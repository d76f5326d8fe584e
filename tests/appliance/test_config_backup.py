"""Configuration backup → a fresh appliance (new home) → restore → the job's next run is
incremental and succeeds; a wrong password opens nothing; the backup holds no secret in
clear."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.appliance.lab import VM, Lab
from tests.helpers import poll

PASSWORD = "config-backup-password-0815"


def test_configuration_backup_to_a_fresh_appliance(lab: Lab) -> None:
    assert lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt").code == 0
    assert lab.vmkeep("job", "run", "nightly", "--wait").code == 0
    r = lab.vmkeep("config", "backup", "--repo", "main", "--password-stdin", stdin=PASSWORD)
    assert r.code == 0, r.err
    backup = r.out.strip()
    assert backup.startswith(str(lab.tmp / "repo" / "appliance-config"))
    raw = Path(backup).read_bytes()
    assert lab.sim.password.encode() not in raw and b"nightly" not in raw
    # The repository's own tools leave the folder alone.
    assert lab.vmkeep("image", "verify", "--repo", str(lab.tmp / "repo")).code == 0

    # The appliance is lost; a new one starts from an empty home.
    assert lab.vmkeep("appliance", "stop").code == 0
    fresh = Lab(lab.tmp / "home2", {**lab.env, "VMKEEP_HOME": str(lab.tmp / "home2")},
                lab.sim, lab.tmp)
    assert fresh.vmkeep("appliance", "start").code == 0
    try:
        r = fresh.vmkeep("config", "restore", "--from", str(lab.tmp / "repo"),
                         "--password-stdin", stdin="not the password")
        assert r.code == 4 and "does not open with this password" in r.err
        assert json.loads(fresh.vmkeep("job", "list", "--json").out) == []
        r = fresh.vmkeep("config", "restore", "--from", str(lab.tmp / "repo"),
                         "--password-stdin", stdin=PASSWORD)
        assert r.code == 0 and "1 vCenter(s), 1 repositories, 1 job(s)" in r.err, r.err
        assert fresh.vmkeep("vcenter", "test", "vc").code == 0  # the password came back
        lab.write(100 << 10, b"written after the configuration backup")
        r = fresh.vmkeep("job", "run", "nightly", "--wait")
        assert r.code == 0, r.err
        points = json.loads(fresh.vmkeep("points", "list", "--vm", VM, "--json").out)
        assert [p["kind"] for p in points] == ["full", "incremental"]
        assert points[1]["bytes_read"] <= 1 << 20
        # Restoring again would duplicate: refused, nothing changed.
        r = fresh.vmkeep("config", "restore", "--from", backup, "--password-stdin",
                         stdin=PASSWORD)
        assert r.code == 2 and "fresh appliance" in r.err
    finally:
        fresh.vmkeep("appliance", "stop")
    assert os.path.exists(backup)


def test_the_configuration_is_backed_up_on_a_schedule(lab: Lab) -> None:
    """`config schedule --every 2s` writes configuration backups by itself (real clock);
    the password is kept sealed, never in the catalog. (The default schedule, daily with a
    generated password, is in test_catalog_loss.py.)"""
    r = lab.vmkeep("config", "schedule", "--repo", "main", "--every", "2s", "--after", "x")
    assert r.code == 2, r
    set_at = datetime.now(UTC)
    r = lab.vmkeep("config", "schedule", "--repo", "main", "--every", "2s",
                   "--password-stdin", stdin=PASSWORD)
    assert r.code == 0 and "every 2s into main" in r.out, r
    assert "generated" not in r.out  # a password of the administrator's own
    folder = lab.tmp / "repo" / "appliance-config"

    def scheduled_backup() -> dict[str, Any] | None:
        view: dict[str, Any] = json.loads(lab.vmkeep("config", "schedule", "--json").out)
        done = view["last_result"] is not None and \
            datetime.fromisoformat(view["last_backup"]) > set_at
        return view if done else None

    view = poll("a scheduled configuration backup", scheduled_backup, 60, every=0.2)
    assert view["last_result"] == "success", view
    assert Path(view["last_message"]).parent == folder and Path(view["last_message"]).exists()
    assert PASSWORD.encode() not in (lab.home / "catalog.duckdb").read_bytes()
    assert "last: " in lab.vmkeep("config", "schedule").out
    assert lab.vmkeep("config", "schedule", "--off").code == 0
    assert json.loads(lab.vmkeep("config", "schedule", "--json").out)["repository"] is None


def test_backups_in_the_same_second_are_all_kept_and_the_newest_that_opens_restores(
        tmp_path: Path) -> None:
    """An administrator's backup and a scheduled one (another password) written at once:
    neither replaces the other, and a restore from the folder takes the newest that opens
    with the password it is given, saying how many newer ones did not."""
    from appliance import config_backup as cb

    mine = cb.write(tmp_path, cb.seal({"which": "mine"}, PASSWORD))
    auto = cb.write(tmp_path, cb.seal({"which": "auto"}, "generated-by-the-appliance"))
    assert mine != auto and mine.exists() and auto.exists()
    assert sorted((tmp_path / cb.FOLDER).iterdir()) == [mine, auto]
    assert cb.open_newest(tmp_path, PASSWORD) == (mine, {"which": "mine"}, 1)
    assert cb.open_newest(tmp_path, "generated-by-the-appliance")[1] == {"which": "auto"}


def test_the_schedule_says_whether_the_last_backup_is_sealed_with_the_current_password(
        tmp_path: Path) -> None:
    """A scheduled backup's time is when the scheduler looked, which may be before a password
    change it already saw: the view says which password sealed it, not its time."""
    from appliance import api
    from appliance import config_backup as cb
    from appliance.home import Home
    from appliance.registry import Registry

    reg = Registry(Home(tmp_path / "home", tmp_path / "home" / "sock"))
    try:
        reg.repositories.add("main", str(tmp_path / "repo"))
        daily = api.ScheduleSpec(kind="daily", at="01:30")
        reg.config.set_schedule(api.ConfigSchedule(repository="main", schedule=daily,
                                                   password="first-password"))
        looked = datetime.now(UTC)
        view = reg.config.set_schedule(api.ConfigSchedule(repository="main", schedule=daily,
                                                          password=PASSWORD))
        assert view.last_sealed_with_current is None  # none yet
        assert reg.config.view().changed_since_backup is True
        done = reg.config.scheduled_backup(looked)
        assert done.last_backup == looked and done.last_sealed_with_current is True
        assert reg.config.view().changed_since_backup is False  # it holds the state as it is
        cb.unseal(Path(str(done.last_message)).read_bytes(), PASSWORD, "the backup")

        view = reg.config.set_schedule(api.ConfigSchedule(repository="main", schedule=daily,
                                                          password="third-password"))
        assert view.last_sealed_with_current is False  # the last one needs the earlier one
        assert view.changed_since_backup is True  # so a backup with the new one runs soon
    finally:
        reg.close()
