"""Hot-add through the appliance (issue 14 item 1): the vCenter's `--appliance-vm` setting
names the VM the appliance runs in (here vcsim's DC0_H0_VM1), a job with `--transport
hotadd` reads the VM's disks attached to it, a restore over the original VM writes through
them, and the Snapshot Hunter knows the appliance's VM from the same setting.

Everything up to the device lookup runs against the simulator (the attach and detach
reconfigures, the disks' UUIDs); the lookup is mapped to the simulator's disk file: vcsim
plays udev with ``VCSIM_BY_ID_DIR`` (a ``wwn-0x<uuid>`` link to the attached disk's flat
file), and the appliance looks there (``VMKEEP_HOTADD_BY_ID`` in its environment)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.vsphere import hotadd
from appliance.vsphere.inventory import find_vm
from appliance.vsphere.session import connect
from tests.appliance.lab import Lab, started_lab

ME = "DC0_H0_VM1"  # the VM the appliance runs in, as the vCenter's setting names it


@pytest.fixture
def lab(vcsim_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    monkeypatch.setenv(hotadd.BY_ID_ENV, str(by_id))  # the appliance's environment
    monkeypatch.delenv(hotadd.APPLIANCE_VM_ENV, raising=False)
    with started_lab(vcsim_binary, tmp_path, vcsim_env={"VCSIM_BY_ID_DIR": str(by_id)}) as lab:
        lab.write(0, random.Random(4).randbytes(700 << 10))
        yield lab


def _log(lab: Lab, sid: str) -> list[str]:
    shown = json.loads(lab.vmkeep("session", "show", sid, "--json").out)
    return [line["message"] for line in shown["log"]]


def _appliance_disks(lab: Lab) -> list[str]:
    with connect(lab.sim.host, lab.sim.port, lab.sim.user, lab.sim.password,
                 fingerprint=None, insecure=True) as s:
        return [d.file_name for d in find_vm(s, ME).disks]


def test_a_hotadd_job_and_restore_through_the_vcenters_appliance_vm(lab: Lab) -> None:
    by_id = lab.tmp / "by-id"
    base = ("--vcenter", "vc", "--vm", "DC0_H0_VM0", "--repo", "main", "--enable-cbt",
            "--transport", "hotadd")
    assert lab.vmkeep("job", "create", "hot", *base).code == 0
    run = lab.vmkeep("job", "run", "hot", "--wait")
    assert run.code != 0  # neither DMI nor a setting names the appliance's VM
    log = _log(lab, run.out.strip())
    assert any("VMKEEP_APPLIANCE_VM" in m and "product_uuid" in m for m in log), log

    r = lab.vmkeep("vcenter", "edit", "vc", "--appliance-vm", ME)
    assert r.code == 0 and f"appliance VM {ME!r}" in r.out, r.err
    listed = json.loads(lab.vmkeep("vcenter", "list", "--json").out)
    assert listed[0]["appliance_vm"] == ME
    want = lab.content()
    run = lab.vmkeep("job", "run", "hot", "--wait")
    assert run.code == 0, run.err
    log = _log(lab, run.out.strip())
    assert any(f"attached to the appliance VM {ME!r}" in m for m in log), log
    assert any("hot-add: detached 1 disk(s)" in m for m in log), log
    assert list(by_id.iterdir()) == []
    assert all(f"] {ME}/" in f for f in _appliance_disks(lab))

    point = json.loads(lab.vmkeep("points", "list", "--json").out)[0]["id"]
    lab.write(900 << 10, b"ransomware" * 100)  # zero in the point
    lab.write(0, b"ransomware" * 100)
    r = lab.vmkeep("restore", "vm", point, "--original", "--yes", "--transport", "hotadd")
    assert r.code == 0, r.err
    assert lab.content() == want
    assert list(by_id.iterdir()) == []
    assert all(f"] {ME}/" in f for f in _appliance_disks(lab))
