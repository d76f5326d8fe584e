"""Jobs by inventory container (folder, cluster, host, resource pool), looked up at each run,
with their VMs backed up in parallel and a task per disk."""

from __future__ import annotations

import json
from typing import Any

from pyVmomi import vim

from appliance.vsphere.session import connect
from tests.appliance.lab import VM, Lab
from tests.helpers import poll

OTHER = "DC0_H0_VM1"


def _move_into_prod(lab: Lab, *names: str) -> None:
    """Put the named VMs into the VM folder /DC0/vm/prod (made when missing), as an admin
    does in the vSphere client."""
    s = lab.sim
    with connect(s.host, s.port, s.user, s.password, fingerprint=None, insecure=True) as si:
        content = si.content
        dc = content.rootFolder.childEntity[0]
        prod = content.searchIndex.FindByInventoryPath("/DC0/vm/prod")
        if prod is None:
            prod = dc.vmFolder.CreateFolder("prod")
        vms = [content.searchIndex.FindByInventoryPath(f"/DC0/vm/{n}") for n in names]
        task = prod.MoveIntoFolder_Task(vms)
        poll("moving the VMs", lambda: task.info.state in (vim.TaskInfo.State.success,
                                                           vim.TaskInfo.State.error),
             60, every=0.05)
        assert task.info.state == vim.TaskInfo.State.success, task.info.error


def _show(lab: Lab, sid: str) -> dict[str, Any]:
    r = lab.vmkeep("session", "show", sid, "--json")
    assert r.code == 0, r.err
    shown: dict[str, Any] = json.loads(r.out)
    return shown


def test_a_folder_job_follows_the_inventory_and_backs_up_vms_side_by_side(lab: Lab) -> None:
    _move_into_prod(lab, VM)
    r = lab.vmkeep("job", "create", "prod", "--vcenter", "vc", "--container", "/DC0/vm/prod",
                   "--repo", "main", "--enable-cbt", "--parallel-vms", "2")
    assert r.code == 0 and "every VM in /DC0/vm/prod" in r.out, r.err
    bad = lab.vmkeep("job", "create", "bad", "--vcenter", "vc", "--container", "/DC0/vm/nope",
                     "--repo", "main")
    assert bad.code == 3 and "nothing at inventory path '/DC0/vm/nope'" in bad.err, bad
    none = lab.vmkeep("job", "create", "empty", "--vcenter", "vc", "--repo", "main")
    assert none.code == 2 and "--container" in none.err, none

    containers = json.loads(lab.vmkeep("inventory", "--containers", "--json").out)
    prod = next(c for c in containers if c["path"] == "/DC0/vm/prod")
    assert (prod["kind"], prod["vms"]) == ("Folder", [VM])
    assert {"/DC0", "/DC0/host/DC0_C0", "/DC0/host/DC0_C0/Resources",
            "/DC0/host/DC0_H0/DC0_H0"} <= {c["path"] for c in containers}
    table = lab.vmkeep("inventory", "--containers").out
    assert "/DC0/vm/prod" in table and "Folder" in table
    protected = {v["name"]: v["jobs"] for v in json.loads(lab.vmkeep("inventory", "--json").out)}
    assert protected[VM] == ["prod"] and protected[OTHER] == []

    first = lab.vmkeep("job", "run", "prod", "--wait")
    assert first.code == 0, first.err
    tasks = _show(lab, first.out.strip())["tasks"]
    assert [(t["name"], t["vm"], t["disk"], t["result"]) for t in tasks] == [
        (VM, VM, None, "success"), (f"{VM} · disk 0", VM, 0, "success")]
    assert tasks[1]["bytes_done"] == tasks[1]["bytes_total"] > 0

    # A second VM joins the folder; the next run finds it by itself. It is held just after
    # its snapshot: the first VM finishes meanwhile, so the two ran side by side.
    _move_into_prod(lab, OTHER)
    release = lab.tmp / "release"
    assert lab.vmkeep("appliance", "stop").code == 0
    lab.env.update(VMKEEP_HOLD_AT=f"vm-snapshot-taken:{OTHER}",
                   VMKEEP_HOLD_RELEASE=str(release))
    assert lab.vmkeep("appliance", "start").code == 0
    r = lab.vmkeep("job", "run", "prod")
    assert r.code == 0, r.err
    sid = r.out.strip()

    def vm_done() -> dict[str, Any] | None:
        by_name = {t["name"]: t for t in _show(lab, sid)["tasks"]}
        return by_name if by_name.get(VM, {}).get("result") == "success" else None

    by_name = poll(f"{VM}'s task to succeed", vm_done, 120, every=0.1)
    assert by_name[OTHER]["state"] == "running", by_name
    release.touch()
    done = lab.vmkeep("session", "follow", sid)
    assert done.code == 0, done.err
    shown = _show(lab, sid)
    assert {t["name"]: t["result"] for t in shown["tasks"]} == {
        VM: "success", f"{VM} · disk 0": "success",
        OTHER: "success", f"{OTHER} · disk 0": "success"}
    assert any(f"container /DC0/vm/prod: 2 VM(s): {VM}, {OTHER}"
               in line["message"] for line in shown["log"])
    points = json.loads(lab.vmkeep("points", "list", "--json").out)
    assert [(p["vm"], p["kind"]) for p in points] == [
        (VM, "full"), (VM, "incremental"), (OTHER, "full")]
