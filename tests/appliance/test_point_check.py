"""`vmkeep verify` holds the appliance's catalog against the repository's manifests: a point
whose catalog rows disagree with its manifest is named, with the command that repairs it."""

from __future__ import annotations

import json

import duckdb

from tests.appliance.lab import VM, Lab


def test_verify_names_a_point_whose_catalog_rows_disagree(lab: Lab) -> None:
    assert lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt", "--block-size", "256K").code == 0
    assert lab.vmkeep("job", "run", "nightly", "--wait").code == 0
    point = json.loads(lab.vmkeep("points", "list", "--json").out)[0]["id"]
    assert lab.vmkeep("appliance", "stop").code == 0
    con = duckdb.connect(str(lab.home / "catalog.duckdb"))
    con.execute("DELETE FROM block_map WHERE point_id = ? AND block_index = "
                "(SELECT min(block_index) FROM block_map WHERE point_id = ?)", [point, point])
    con.close()
    assert lab.vmkeep("appliance", "start").code == 0
    verify = lab.vmkeep("verify", "--repo", "main")
    assert verify.code == 1, verify.out + verify.err
    line = next(ln for ln in verify.out.splitlines() if ln.startswith("DAMAGED"))
    assert point in line and "disagrees with its manifest" in line, verify.out
    assert "`vmkeep repo rescan main`" in line, line
    # the damaged point by VM and job, and what to do next
    assert f"point {point} of VM {VM} (job nightly):" in verify.out, verify.out
    assert "next: run job nightly" in verify.out, verify.out
    assert lab.vmkeep("repo", "rescan", "main").code == 0
    assert lab.vmkeep("verify", "--repo", "main").code == 0
