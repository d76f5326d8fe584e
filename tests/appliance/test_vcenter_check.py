"""`vmkeep vcenter check NAME`: the privileges the stored account lacks, per purpose, as
vCenter answers for its session on the root folder (issue 13 §5).

The simulator's restricted account (``VCSIM_RESTRICTED_USER``) is granted exactly
``GRANTED``; the lab's own account is granted everything. Through the appliance (CLI → API →
service → vSphere), as an administrator runs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.vsphere.privileges import PURPOSES, required
from tests.appliance.lab import Lab, started_lab

# A backup role short of two privileges, with none of the restore ones; the Hunter's complete.
GRANTED = ["System.Anonymous", "System.View", "System.Read",
           "VirtualMachine.State.CreateSnapshot", "VirtualMachine.State.RemoveSnapshot",
           "VirtualMachine.Config.ChangeTracking", "VirtualMachine.Provisioning.DiskRandomRead",
           "VirtualMachine.Provisioning.GetVmFiles", "Datastore.Browse",
           "Datastore.AllocateSpace", "Global.EnableMethods",
           "VirtualMachine.Config.AddExistingDisk", "VirtualMachine.Config.RemoveDisk"]
USER, PASSWORD = "backup", "b4ckup-secret"


@pytest.fixture(scope="module")
def lab(vcsim_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    env = {"VCSIM_RESTRICTED_USER": f"{USER}:{PASSWORD}",
           "VCSIM_RESTRICTED_PRIVILEGES": ",".join(GRANTED)}
    with started_lab(vcsim_binary, tmp_path_factory.mktemp("check"), vcsim_env=env) as lab:
        r = lab.vmkeep("vcenter", "add", "restricted", "--host", lab.sim.host, "--port",
                       str(lab.sim.port), "--user", USER, "--password-stdin", "--insecure",
                       stdin=PASSWORD)
        assert r.code == 0, r.err
        yield lab


def test_the_restricted_account_is_told_what_it_lacks(lab: Lab) -> None:
    r = lab.vmkeep("vcenter", "check", "restricted", "--json")
    assert r.code == 1, r.err
    doc = json.loads(r.out)
    assert doc["name"] == "restricted" and doc["user"] == USER and doc["ok"] is False
    assert doc["entity"].startswith("group-")  # the root folder
    got = {p["purpose"]: p for p in doc["purposes"]}
    assert list(got) == list(PURPOSES)
    for purpose in PURPOSES:
        assert got[purpose]["required"] == list(required(purpose))
        assert got[purpose]["missing"] == [p for p in required(purpose) if p not in GRANTED]
        assert got[purpose]["ok"] is (not got[purpose]["missing"])
    assert got["backup"]["missing"] == ["Datastore.FileManagement", "Global.DisableMethods"]
    assert "VirtualMachine.Inventory.Create" in got["restore"]["missing"]
    assert got["hunter"]["ok"] is True

    r = lab.vmkeep("vcenter", "check", "restricted")  # the table an administrator reads
    assert r.code == 1
    rows = [line.split() for line in r.out.splitlines()[1:]]
    assert ["backup", "Datastore.FileManagement"] in rows
    assert ["backup", "Global.DisableMethods"] in rows
    assert ["restore", "Network.Assign"] in rows
    assert ["hunter", "(none)"] in rows
    assert f"account {USER!r}" in r.err and "root folder" in r.err
    assert "backup lacks 2" in r.err and "hunter lacks 0" in r.err
    assert "docs/VSPHERE.md" in r.err


def test_the_full_account_lacks_nothing(lab: Lab) -> None:
    r = lab.vmkeep("vcenter", "check", "vc", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["ok"] is True and doc["user"] == lab.sim.user
    assert [p["missing"] for p in doc["purposes"]] == [[], [], []]
    r = lab.vmkeep("vcenter", "check", "vc")
    assert r.code == 0
    assert [line.split() for line in r.out.splitlines()[1:]] == [
        ["backup", "(none)"], ["restore", "(none)"], ["hunter", "(none)"]]
    assert "backup lacks 0, restore lacks 0, hunter lacks 0" in r.err


def test_an_unknown_vcenter_is_not_found(lab: Lab) -> None:
    r = lab.vmkeep("vcenter", "check", "nope")
    assert r.code == 3 and "no vCenter named 'nope'" in r.err
