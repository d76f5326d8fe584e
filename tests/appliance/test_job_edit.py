"""``vmkeep job edit`` changes every field ``job create`` can set (issue 15): the same options
but the creation-only ones, and a lab appliance keeps what is given and the rest."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from appliance.cli.commands import build_parser
from appliance.cli.job_options import CREATION_ONLY, EDIT_ONLY
from tests.appliance.lab import VM, Lab


def _options(*path: str) -> set[str]:
    parser: argparse.ArgumentParser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return {o for a in parser._actions for o in a.option_strings
            if o.startswith("--") and o != "--help"}


def test_job_edit_has_every_option_of_job_create_but_the_creation_only_ones() -> None:
    create, edit = _options("job", "create"), _options("job", "edit")
    assert len(create) > 40  # the real parsers: every option of a job
    assert create - CREATION_ONLY == edit - EDIT_ONLY
    assert create >= CREATION_ONLY and edit >= EDIT_ONLY
    assert not CREATION_ONLY & edit and not EDIT_ONLY & create


def test_job_edit_changes_cbt_rpo_disks_quiesce_notify_block_size_compression_and_schedule(
        lab: Lab) -> None:
    assert lab.vmkeep("job", "create", "edited", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--keep-last", "7", "--retries", "1").code == 0
    r = lab.vmkeep("job", "edit", "edited", "--enable-cbt", "--rpo", "26", "--exclude-disk",
                   f"{VM}:1", "--quiesce", "--quiesce-fallback", "fail", "--notify",
                   "ops@example.com", "--block-size", "4M", "--compression", "zstd-9",
                   "--monthly", "01:30", "--nth", "last", "--weekday", "sun", "--tz",
                   "Europe/Berlin", "--active-full", "sat", "--transport", "vcenter")
    assert r.code == 0, r.err
    spec = json.loads(lab.vmkeep("job", "show", "edited", "--json").out)["spec"]
    assert (spec["enable_cbt"], spec["rpo_hours"], spec["exclude_disks"], spec["quiesce"],
            spec["quiesce_fallback"], spec["notify_to"], spec["block_size"],
            spec["compression"], spec["active_full"], spec["transport"]) == (
        True, 26.0, [f"{VM}:1"], True, "fail", ["ops@example.com"], "4M", "zstd-9", "sat",
        "vcenter")
    sched = spec["schedule"]
    assert (sched["kind"], sched["at"], sched["nth"], sched["weekday"], sched["tz"]) == (
        "monthly", "01:30", -1, "sun", "Europe/Berlin")
    assert spec["keep_last"] == 7 and spec["retries"] == 1  # kept
    r = lab.vmkeep("job", "edit", "edited", "--no-enable-cbt", "--no-rpo", "--no-notify",
                   "--no-exclude-disk", "--no-quiesce", "--no-keep-last", "--keep-days", "30")
    assert r.code == 0, r.err
    spec = json.loads(lab.vmkeep("job", "show", "edited", "--json").out)["spec"]
    assert (spec["enable_cbt"], spec["rpo_hours"], spec["notify_to"], spec["exclude_disks"],
            spec["quiesce"], spec["keep_last"], spec["keep_days"]) == (
        False, None, [], [], False, None, 30.0)
    assert spec["schedule"]["tz"] == "Europe/Berlin" and spec["block_size"] == "4M"  # kept
    r = lab.vmkeep("job", "edit", "edited", "--rpo", "5", "--no-rpo")
    assert r.code == 2 and "not both" in r.err
    r = lab.vmkeep("job", "edit", "edited", "--tz", "Asia/Tokyo")
    assert r.code == 2 and "give the schedule whole" in r.err


def test_job_edit_changes_guest_processing_and_keeps_its_login(lab: Lab, tmp_path: Path
                                                               ) -> None:
    password, script = tmp_path / "pw", tmp_path / "pre.sh"
    password.write_text("secret\n")
    script.write_text("#!/bin/sh\nsync\n")
    fingerprint = "SHA256:" + "A" * 43
    assert lab.vmkeep("job", "create", "guested", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--guest-host", "10.0.0.5", "--guest-user", "backup",
                      "--guest-password-file", str(password), "--guest-host-key-fingerprint",
                      fingerprint).code == 0
    r = lab.vmkeep("job", "edit", "guested", "--pre-freeze", str(script), "--script-timeout",
                   "2m", "--guest-unreachable", "warn")
    assert r.code == 0, r.err
    guest = json.loads(lab.vmkeep("job", "show", "guested", "--json").out)["spec"]["guest"]
    assert (guest["host"], guest["user"], guest["pre_freeze"], guest["script_timeout_seconds"],
            guest["unreachable"]) == ("10.0.0.5", "backup", "#!/bin/sh\nsync\n", 120.0, "warn")
    assert lab.vmkeep("job", "edit", "guested", "--no-guest").code == 0
    spec = json.loads(lab.vmkeep("job", "show", "guested", "--json").out)["spec"]
    assert spec["guest"] is None
    r = lab.vmkeep("job", "edit", "guested", "--pre-freeze", str(script))
    assert r.code == 2 and "--guest-host" in r.err  # a new guest needs what create needs
