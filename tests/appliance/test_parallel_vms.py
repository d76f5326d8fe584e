"""Every point a parallel-VM session calls good restores (issue 10, failure 1).

Six VMs whose disks differ in size, backed up three at a time, so that a VM starts — and
brings its catalog cursor up to date — while others are still writing packs. Four sessions
with about 2 % of each disk changed between them; right after each session every new point is
restored (no rescan) and must equal the disk as it was, and the catalog holds no pack, block
or point twice. The slow suite runs the whole thing 20 times in a row.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.appliance.lab import Lab, started_lab

MiB = 1 << 20
# vcsim with -vm 3: three VMs on the standalone host and three in the cluster.
VMS = ("DC0_H0_VM0", "DC0_H0_VM1", "DC0_H0_VM2", "DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1",
       "DC0_C0_RP0_VM2")
SIZES = (6 * MiB, 18 * MiB, 30 * MiB, 10 * MiB, 24 * MiB, 36 * MiB)
SESSIONS = 4
DUPLICATES = """SELECT
    (SELECT count(*) - count(DISTINCT (repo_id, pack_id)) FROM packs) AS packs,
    (SELECT count(*) - count(DISTINCT (repo_id, pack_id, "offset")) FROM blocks) AS blocks,
    (SELECT count(*) - count(DISTINCT point_id) FROM points) AS points"""


@pytest.fixture
def six(vcsim_binary: Path, tmp_path: Path) -> Iterator[Lab]:
    with started_lab(vcsim_binary, tmp_path, extra=("-vm", "3")) as lab:
        yield lab


def _sessions(lab: Lab, rng: random.Random) -> None:
    for vm, size in zip(VMS, SIZES, strict=True):
        lab.grow(size, vm)
        lab.write(0, rng.randbytes(size), vm)
    vms = [a for vm in VMS for a in ("--vm", vm)]
    r = lab.vmkeep("job", "create", "par", "--vcenter", "vc", *vms, "--repo", "main",
                   "--enable-cbt", "--block-size", "256K", "--parallel-vms", "3")
    assert r.code == 0, r.err
    for n in range(SESSIONS):
        if n:
            for vm, size in zip(VMS, SIZES, strict=True):
                for _ in range(max(1, size // 50 // (64 << 10))):  # about 2 % in 64 KiB runs
                    lab.write(rng.randrange(0, size - (64 << 10)), rng.randbytes(64 << 10), vm)
        want = {vm: lab.content(vm, size) for vm, size in zip(VMS, SIZES, strict=True)}
        run = lab.vmkeep("job", "run", "par", "--wait")
        assert run.code == 0, run.err
        shown = json.loads(lab.vmkeep("session", "show", run.out.strip(), "--json").out)
        assert shown["result"] == "success", shown
        points = json.loads(lab.vmkeep("points", "list", "--json").out)
        assert len(points) == len(VMS) * (n + 1)
        for vm in VMS:
            newest = [p for p in points if p["vm"] == vm][-1]
            target = lab.tmp / f"{vm}-{n}.img"
            r = lab.vmkeep("restore", "disk", newest["id"], "--disk", "0", "--to",
                           str(target))
            assert r.code == 0, f"session {n + 1}, {vm}: {r.err}"
            assert target.read_bytes() == want[vm], f"session {n + 1}, {vm}: not the disk"
            target.unlink()
        dup = lab.vmkeep("catalog", "query", DUPLICATES, "--json")
        assert dup.code == 0, dup.err
        assert json.loads(dup.out) == [{"packs": 0, "blocks": 0, "points": 0}]
    assert lab.vmkeep("verify", "--repo", "main").code == 0


def test_every_point_of_a_parallel_session_restores_right_after_it(six: Lab) -> None:
    _sessions(six, random.Random(10))


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(20))
def test_every_point_of_a_parallel_session_restores_twenty_times(six: Lab, round_: int) -> None:
    _sessions(six, random.Random(100 + round_))
