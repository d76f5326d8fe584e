"""The fake client's data comes from a real appliance: recorded here against vcsim.

Run with ``VMKEEP_RECORD=1`` to rewrite tests/tui/recorded.json; otherwise the replies of
today's appliance must have the shape of the recorded ones (so the fake cannot drift)."""

from __future__ import annotations

import json
import os

import pytest

from appliance import api
from appliance.client import ApplianceClient
from tests.appliance.lab import VM, Lab
from tests.helpers import poll
from tests.tui.record import RECORDED, load, record, shape

pytestmark = pytest.mark.slow


def test_a_real_appliance_answers_as_recorded(lab: Lab) -> None:
    r = lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo", "main",
                   "--enable-cbt", "--block-size", "256K", "--keep-last", "7")
    assert r.code == 0, r.err
    assert lab.vmkeep("job", "run", "nightly", "--wait").code == 0
    lab.write(300 << 10, b"changed")
    assert lab.vmkeep("job", "run", "nightly", "--wait").code == 0
    unpinned = api.VCenterAdd(name="vc2", host=lab.sim.host, port=lab.sim.port,
                              user=lab.sim.user, password=lab.sim.password)
    with ApplianceClient(lab.home / "appliance.sock") as client:
        # An alert to record: every repository is "short of space" at a 100 % threshold.
        client.set_notifications(api.Notifications(alert_every_seconds=0.2,
                                                   free_space_alert_percent=100.0))
        poll("an alert", client.alerts, 60, every=0.2)
        fresh = record(client, vcenter=unpinned)
    if os.environ.get("VMKEEP_RECORD"):
        RECORDED.write_text(json.dumps(fresh, indent=1, sort_keys=True) + "\n")
    stored = load()
    assert set(fresh) == set(stored)
    for key in fresh:
        if key == "queries":
            assert {q: shape(a) for q, a in fresh[key].items()} == \
                {q: shape(a) for q, a in stored[key].items()}
        elif key == "errors":
            assert {k: (v["code"], shape(v["detail"])) for k, v in fresh[key].items()} == \
                {k: (v["code"], shape(v["detail"])) for k, v in stored[key].items()}
        else:
            assert shape(fresh[key]) == shape(stored[key]), key
