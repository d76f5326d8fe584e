"""A finished backup session's summary against vcsim, by the CLI contract (`job run --wait`,
`session show [--json]`): duration, processing rate, processed / read / transferred, the
deduplication and compression ratios and the bottleneck over the whole run, per VM too."""

from __future__ import annotations

import json

import pytest

from tests.appliance.lab import VM, Lab

BLOCK = 256 << 10  # the job's block size


def test_a_finished_session_shows_its_summary(lab: Lab) -> None:
    # Two blocks alike (deduplicated) of text that compresses, two of zeros.
    text = b"".join(b"line %06d of a log that compresses well\n" % i for i in range(8000))
    lab.write(0, text[:BLOCK])
    lab.write(BLOCK, text[:BLOCK])
    r = lab.vmkeep("job", "create", "stats", "--vcenter", "vc", "--vm", VM, "--repo", "main",
                   "--block-size", "256K", "--enable-cbt")
    assert r.code == 0, r.err
    run = lab.vmkeep("job", "run", "stats", "--wait")
    assert run.code == 0, run.err
    sid = run.out.strip()

    st = json.loads(lab.vmkeep("session", "show", sid, "--json").out)["stats"]
    assert st["duration_seconds"] > 0 and st["rate"] > 0
    assert st["processed"] >= st["read"] > 0
    assert 0 < st["new"] < st["read"]  # the two text blocks are one block stored
    assert 0 < st["transferred"] < st["new"]
    assert st["dedup_ratio"] == pytest.approx(st["read"] / st["new"]) and \
        st["dedup_ratio"] > 1
    assert st["compression_ratio"] == pytest.approx(st["new"] / st["transferred"]) and \
        st["compression_ratio"] > 1
    stages = {x["stage"]: x for x in st["stages"]}
    assert set(stages) == {"source read", "hashing/compression", "repository write"}
    assert sum(x["share"] for x in stages.values()) == pytest.approx(1.0)
    assert all(0 <= x["share"] <= 1 and x["seconds"] >= 0 for x in stages.values())
    assert st["bottleneck"] == max(stages, key=lambda k: stages[k]["seconds"])
    [vm] = st["vms"]
    assert vm["vm"] == VM and 0 < vm["duration_seconds"] <= st["duration_seconds"]
    assert (vm["read"], vm["transferred"]) == (st["read"], st["transferred"])
    assert vm["bottleneck"] == st["bottleneck"]

    text_out = lab.vmkeep("session", "show", sid).out
    assert "processing rate" in text_out and "transferred" in text_out
    assert f"dedup {st['dedup_ratio']:.1f}x, compression {st['compression_ratio']:.1f}x" \
        in text_out
    assert f"bottleneck: {st['bottleneck']} (source read " in text_out
    # The log speaks in human sizes; the exact numbers stay in --json.
    assert "bytes read" not in text_out and "KiB read, " in text_out

    # Kept with the session in the catalog: the same after a restart.
    assert lab.vmkeep("appliance", "stop").code == 0
    assert lab.vmkeep("appliance", "start").code == 0
    assert json.loads(lab.vmkeep("session", "show", sid, "--json").out)["stats"] == st
