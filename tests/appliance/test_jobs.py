"""Jobs through the appliance against vcsim, by the CLI contract: `job create`, `job run
--wait` (exit 0/1/2), `session list|show --json`, `points list --json`, `restore disk`; all
kept across a restart."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.vsphere.cbt import flat_file_of, split_datastore_path
from appliance.vsphere.inventory import find_vm
from appliance.vsphere.session import connect
from tests.helpers import REPO_ROOT
from tests.vcsim import Vcsim, start_vcsim

VM = "DC0_H0_VM0"


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class Lab:
    home: Path
    env: dict[str, str]
    sim: Vcsim
    tmp: Path

    def vmkeep(self, *args: str, stdin: str = "") -> Run:
        proc = subprocess.run([sys.executable, "-m", "appliance.cli", *args], cwd=REPO_ROOT,
                              env=self.env, input=stdin, capture_output=True, text=True,
                              timeout=300)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def flat(self) -> Path:
        with connect(self.sim.host, self.sim.port, self.sim.user, self.sim.password,
                     fingerprint=None, insecure=True) as s:
            vm = s.content.searchIndex.FindByUuid(None, find_vm(s, VM).instance_uuid, True,
                                                  True)
            disk = next(d for d in vm.config.hardware.device if hasattr(d, "capacityInKB"))
            ds, path = split_datastore_path(disk.backing.fileName)
            return Path({d.name: d.info.url for d in vm.datastore}[ds]) / flat_file_of(path)

    def write(self, offset: int, data: bytes) -> None:
        with self.flat().open("r+b") as f:
            f.seek(offset)
            f.write(data)

    def content(self) -> bytes:
        data = self.flat().read_bytes()[:1 << 20]
        return data + bytes((1 << 20) - len(data))


@pytest.fixture
def lab(vcsim_binary: Path, tmp_path: Path) -> Iterator[Lab]:
    proc, sim = start_vcsim(vcsim_binary)
    env = {**os.environ, "VMKEEP_HOME": str(tmp_path / "home"),
           "VMKEEP_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("VMKEEP_SOCKET", None)
    lab = Lab(tmp_path / "home", env, sim, tmp_path)
    try:
        assert lab.vmkeep("appliance", "start").code == 0
        r = lab.vmkeep("vcenter", "add", "vc", "--host", sim.host, "--port", str(sim.port),
                       "--user", sim.user, "--password-stdin", "--insecure",
                       stdin=sim.password)
        assert r.code == 0, r.err
        assert lab.vmkeep("repo", "add", "main", "--path", str(tmp_path / "repo")).code == 0
        lab.write(0, random.Random(4).randbytes(700 << 10))
        yield lab
    finally:
        lab.vmkeep("appliance", "stop")
        proc.terminate()
        proc.wait(timeout=30)


def test_job_run_sessions_points_and_a_disk_restore(lab: Lab) -> None:
    r = lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo", "main",
                   "--enable-cbt", "--block-size", "256K")
    assert r.code == 0 and VM in r.out, r.err
    assert "exists already" in lab.vmkeep("job", "create", "nightly", "--vcenter", "vc",
                                          "--vm", VM, "--repo", "main").err
    assert lab.vmkeep("job", "create", "x", "--vcenter", "vc", "--vm", "no-such-vm",
                      "--repo", "main").code == 3

    first = lab.vmkeep("job", "run", "nightly", "--wait")
    assert first.code == 0, first.err
    want_full = lab.content()
    lab.write(300 << 10, b"changed between the runs")
    second = lab.vmkeep("job", "run", "nightly", "--wait")
    assert second.code == 0, second.err
    sid1, sid2 = first.out.strip(), second.out.strip()

    sessions = json.loads(lab.vmkeep("session", "list", "--json").out)
    assert [s["id"] for s in sessions] == [sid1, sid2]
    for s in sessions:
        assert {"id", "job", "state", "result", "started", "ended"} <= set(s)
        assert (s["job"], s["state"], s["result"]) == ("nightly", "ended", "success")
    shown = json.loads(lab.vmkeep("session", "show", sid2, "--json").out)
    assert shown["id"] == sid2 and shown["tasks"][0]["name"] == VM
    assert shown["tasks"][0]["point_id"]
    assert all(set(line) == {"time", "level", "message"} for line in shown["log"])
    assert any("CBT sanity check passed" in line["message"] for line in shown["log"])

    points = json.loads(lab.vmkeep("points", "list", "--vm", VM, "--json").out)
    assert [(p["vm"], p["kind"]) for p in points] == [(VM, "full"), (VM, "incremental")]
    assert points[1]["bytes_read"] <= 256 << 10
    assert {"id", "vm", "created", "kind", "bytes_read", "bytes_stored"} <= set(points[0])

    # An active full reads everything again.
    r = lab.vmkeep("job", "run", "nightly", "--full", "--wait")
    assert r.code == 0, r.err
    points = json.loads(lab.vmkeep("points", "list", "--json").out)
    assert points[-1]["kind"] == "full"

    # Everything is still there after a restart; a disk restores byte for byte.
    assert lab.vmkeep("appliance", "stop").code == 0
    assert lab.vmkeep("appliance", "start").code == 0
    assert [s["id"] for s in json.loads(lab.vmkeep("session", "list", "--json").out)][:2] == \
        [sid1, sid2]
    assert json.loads(lab.vmkeep("job", "list", "--json").out)[0]["spec"]["name"] == "nightly"
    target = lab.tmp / "disk0.img"
    r = lab.vmkeep("restore", "disk", points[0]["id"], "--disk", "0", "--to", str(target))
    assert r.code == 0, r.err
    assert target.read_bytes() == want_full
    r = lab.vmkeep("restore", "disk", points[0]["id"], "--disk", "0", "--to", str(target))
    assert r.code == 4 and "already exists" in r.err


def test_a_failing_vm_fails_the_session_with_exit_2(lab: Lab) -> None:
    r = lab.vmkeep("job", "create", "broken", "--vcenter", "vc", "--vm", VM, "--repo", "main")
    assert r.code == 0, r.err
    # The repository disappears under the job: the VM fails, the session says why.
    os.rename(lab.tmp / "repo", lab.tmp / "repo-moved")
    r = lab.vmkeep("job", "run", "broken", "--wait")
    assert r.code == 2, (r.out, r.err)
    s = json.loads(lab.vmkeep("session", "show", r.out.strip(), "--json").out)
    assert s["result"] == "failed"
    assert any(line["level"] == "error" for line in s["log"])


def test_a_killed_appliance_leaves_an_interrupted_session_the_next_run_repairs(
        lab: Lab) -> None:
    """SIGKILL of the appliance after a pack is written and before the point's manifest
    (vmkeep's crash point): the session shows as interrupted after a restart, the Snapshot
    Hunter removes the snapshot it left, and the next run sweeps the orphan pack and
    succeeds."""
    assert lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt").code == 0
    assert lab.vmkeep("appliance", "stop").code == 0
    crashing = Lab(lab.home, {**lab.env, "VMKEEP_CRASH_AT": "backup-pack-written"}, lab.sim,
                   lab.tmp)
    assert crashing.vmkeep("appliance", "start").code == 0
    r = lab.vmkeep("job", "run", "nightly", "--wait")
    assert r.code == 13 and "no appliance answers" in r.err, (r.code, r.err)
    sid = r.out.strip()
    orphans = set((lab.tmp / "repo" / "packs").rglob("*.pack"))
    assert orphans  # written, never referenced

    assert lab.vmkeep("appliance", "start").code == 0
    s = json.loads(lab.vmkeep("session", "show", sid, "--json").out)
    assert (s["state"], s["result"]) == ("interrupted", "failed")
    assert "appliance stopped while this session ran" in s["log"][-1]["message"]

    dry = lab.vmkeep("hunter", "--dry-run")
    assert dry.code == 0 and "'vmkeep-" in dry.out.splitlines()[2], dry.out
    assert lab.vmkeep("hunter").code == 0
    with connect(lab.sim.host, lab.sim.port, lab.sim.user, lab.sim.password,
                 fingerprint=None, insecure=True) as session:
        assert find_vm(session, VM).snapshots == ()

    r = lab.vmkeep("job", "run", "nightly", "--wait")
    assert r.code == 0, r.err
    assert not orphans & set((lab.tmp / "repo" / "packs").rglob("*.pack"))
    points = json.loads(lab.vmkeep("points", "list", "--json").out)
    assert [p["kind"] for p in points] == ["full"]
    target = lab.tmp / "after-crash.img"
    assert lab.vmkeep("restore", "disk", points[0]["id"], "--to", str(target)).code == 0
    assert target.read_bytes() == lab.content()
