"""A VM's name comes from vCenter, where anyone with rename rights may put a newline, a tab or
a terminal control code in it (SOAP's XML carries no ESC, but it does carry the 8-bit CSI,
U+009B, that many terminals obey): every listing of the appliance's CLI shows it escaped (one
row per VM, no control code reaching the terminal), and JSON keeps it exact."""

from __future__ import annotations

import json

from pyVim.task import WaitForTask

from appliance.vsphere.session import connect
from tests.appliance.lab import VM, Lab
from tests.vsphere.vmenv import vm_object

EVIL = "db01\n\t\x9b31mEVIL"
SHOWN = "db01\\n\\t\\x9b31mEVIL"


def test_a_vm_named_with_control_characters_is_shown_escaped(lab: Lab) -> None:
    r = lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo", "main",
                   "--enable-cbt")
    assert r.code == 0, r.err
    with connect(lab.sim.host, lab.sim.port, lab.sim.user, lab.sim.password,
                 fingerprint=None, insecure=True) as s:
        WaitForTask(vm_object(s, VM).Rename_Task(EVIL))  # type: ignore[no-untyped-call]
    run = lab.vmkeep("job", "run", "nightly", "--wait")
    assert run.code == 0, run.err
    sid = run.out.strip()

    inventory = json.loads(lab.vmkeep("inventory", "--json").out)
    assert EVIL in {v["name"] for v in inventory}  # JSON: exact
    outputs = {
        "inventory": lab.vmkeep("inventory"),
        "points list": lab.vmkeep("points", "list"),
        "session show": lab.vmkeep("session", "show", sid),
    }
    for what, r in outputs.items():
        assert r.code == 0, (what, r.err)
        text = r.out + r.err
        assert not {"\x9b", "\t"} & set(text), (what, text)
        rows = [line for line in r.out.splitlines() if "EVIL" in line]
        assert rows and all(SHOWN in line for line in rows), (what, r.out)
        assert not any(line.startswith(("\x9b31mEVIL", "31mEVIL"))
                       for line in r.out.splitlines()), (what, r.out)
