"""Against a real appliance: a job made with `vmkeep job create` and every option, opened in
the wizard with ``e`` and saved with ctrl+s unchanged, is stored as it was (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

from appliance.client import ApplianceClient
from tests.appliance.lab import VM, Lab
from tests.tui.helpers import screen_text, until
from tui.app import create_app
from tui.screens.jobs import JobsScreen
from tui.screens.wizard import JobWizard


async def test_a_cli_job_saved_unchanged_in_the_wizard_stays_as_it_was(lab: Lab,
                                                                       tmp_path: Path) -> None:
    password, script = tmp_path / "pw", tmp_path / "pre.sh"
    password.write_text("secret\n")
    script.write_text("#!/bin/sh\nsync\n")
    r = lab.vmkeep(
        "job", "create", "every", "--vcenter", "vc", "--vm", VM, "--container",
        "/DC0/host/DC0_C0", "--repo", "main", "--parallel-vms", "3", "--block-size", "4M",
        "--compression", "zstd-9", "--enable-cbt", "--quiesce", "--quiesce-fallback", "fail",
        "--keep-last", "9", "--keep-days", "45.5", "--monthly", "01:30", "--nth", "last",
        "--weekday", "sun", "--tz", "Europe/Berlin", "--window", "22:00-06:00",
        "--retries", "5", "--retry-wait", "2m", "--notify", "ops@example.com",
        "--exclude-disk", f"{VM}:1", "--active-full", "sat", "--rpo", "26",
        "--transport", "vcenter", "--guest-host", "10.0.0.5:2222", "--guest-user", "backup",
        "--guest-password-file", str(password), "--guest-host-key-fingerprint",
        "SHA256:" + "A" * 43, "--pre-freeze", str(script), "--script-timeout", "2m",
        "--on-script-failure", "warn", "--guest-unreachable", "warn", "--postgres",
        "localhost:5432:postgres")
    assert r.code == 0, r.err
    before = json.loads(lab.vmkeep("job", "show", "every", "--json").out)
    client = ApplianceClient(lab.home / "appliance.sock")
    app = create_app(client)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            def shows(text: str) -> bool:
                return text in screen_text(app)

            await until(pilot, lambda: shows("main"), timeout=30, why="the dashboard")
            await pilot.press("2")
            await until(pilot, lambda: isinstance(app.screen, JobsScreen) and shows("every"),
                        timeout=30)
            await pilot.press("e")
            await until(pilot, lambda: isinstance(app.screen, JobWizard) and shows(
                "Edit job every"), timeout=30)
            wizard = app.screen
            assert isinstance(wizard, JobWizard)
            await until(pilot, lambda: wizard.inventory, timeout=60, why="the inventory")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, JobsScreen), timeout=60,
                        why="the job saved")
    finally:
        client.close()
    after = json.loads(lab.vmkeep("job", "show", "every", "--json").out)
    assert after == before
