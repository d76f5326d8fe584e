"""The appliance reads a full or read-only repository (issue 10, failure 7): `points list`,
`restore disk`, `verify` and `prune --dry-run` need no writes there."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.appliance.lab import VM, Lab
from tests.helpers import fill_up, remount_ro, tree_digest


def test_the_appliance_reads_a_full_then_read_only_repository(
        lab: Lab, tmpfs: Callable[[str], Path]) -> None:
    fs = tmpfs("16m")
    folder = fs / "repo"
    assert lab.vmkeep("repo", "add", "small", "--path", str(folder)).code == 0
    assert lab.vmkeep("job", "create", "j", "--vcenter", "vc", "--vm", VM, "--repo",
                      "small", "--enable-cbt").code == 0
    r = lab.vmkeep("job", "run", "j", "--wait")
    assert r.code == 0, r.out + r.err
    want = lab.content()
    fill_up(fs)
    for state in ("full", "read-only"):
        if state == "read-only":
            remount_ro(fs)
        before = tree_digest(folder)
        r = lab.vmkeep("points", "list", "--json")
        assert r.code == 0, r.err
        point = json.loads(r.out)[0]["id"]
        target = lab.tmp / f"disk0-{state}.img"
        r = lab.vmkeep("restore", "disk", point, "--disk", "0", "--to", str(target))
        assert r.code == 0, f"{state}: {r.err}"
        assert target.read_bytes()[:1 << 20] == want
        r = lab.vmkeep("verify", "--repo", "small")
        assert r.code == 0, f"{state}: {r.out} {r.err}"
        r = lab.vmkeep("prune", "--repo", "small", "--keep-last", "1", "--dry-run")
        assert r.code == 0, f"{state}: {r.out} {r.err}"
        assert tree_digest(folder) == before
