#!/usr/bin/env python3
# mypy: disable-error-code="no-untyped-call,attr-defined"
"""Manual smoke check of the locally built vcsim (not a pytest test).

Run:  .venv/bin/python scripts/vcsim/smoke.py   (after scripts/vcsim/build.sh)

Starts bin/vcsim on 127.0.0.1 port 0, reads the VCSIM_URL line, connects with
pyvmomi, lists VMs through a ContainerView, reads vm.snapshot of a VM without
snapshots (bug 1), creates and removes a snapshot with WaitForTask (bug 2),
then stops the process by PID. Exits non-zero on any failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(HERE, "bin", "vcsim")
USER, PWD = "vmkeep", "secret"


def start() -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [BIN, "-l", "127.0.0.1:0", "-username", USER, "-password", PWD,
         "-cluster", "1", "-host", "2", "-vm", "2", "-stdinexit"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the server listens
    if not line.startswith("VCSIM_URL="):
        proc.kill()
        raise SystemExit(f"unexpected first line from vcsim: {line!r}")
    info = dict(kv.split("=", 1) for kv in line.split())
    return proc, info


def main() -> int:
    t0 = time.monotonic()
    proc, info = start()
    print(f"started pid={proc.pid} in {time.monotonic() - t0:.2f}s: {info}")
    try:
        si = SmartConnect(host=info["VCSIM_HOST"], port=int(info["VCSIM_PORT"]),
                          user=USER, pwd=PWD, disableSslCertValidation=True)
        content = si.RetrieveContent()
        print("about:", content.about.fullName, "api", content.about.apiVersion)

        view = content.viewManager.CreateContainerView(
            content.rootFolder, [vim.VirtualMachine], True)
        vms = list(view.view)
        view.Destroy()
        print(f"{len(vms)} VMs:", ", ".join(sorted(vm.name for vm in vms)))
        assert vms, "no VMs"

        vm = sorted(vms, key=lambda v: v.name)[0]
        print(f"{vm.name}.snapshot before (bug 1):", vm.snapshot)
        assert vm.snapshot is None

        task = vm.CreateSnapshot_Task(name="smoke", description="vmkeep smoke",
                                      memory=False, quiesce=False)
        assert WaitForTask(task) == "success"
        print("create task entity:", task.info.entity, "result:", task.info.result)
        snap = vm.snapshot.currentSnapshot
        tree = vm.snapshot.rootSnapshotList
        print("after create: current", snap, "tree", [(s.name, s.snapshot) for s in tree])

        task = snap.RemoveSnapshot_Task(removeChildren=False)
        assert WaitForTask(task) == "success"  # bug 2: used to raise TypeError
        print("remove task entity:", task.info.entity, "state:", task.info.state)
        print(f"{vm.name}.snapshot after remove:", vm.snapshot)
        assert vm.snapshot is None

        # Bug 2 also hit VirtualDiskManager tasks (no entity at all now).
        dm = content.virtualDiskManager
        dc = content.rootFolder.childEntity[0]
        spec = vim.VirtualDiskManager.FileBackedVirtualDiskSpec(
            diskType="thin", adapterType="lsiLogic", capacityKb=1024)
        vmdir = vm.config.files.vmPathName.rsplit("/", 1)[0]  # "[ds] VMNAME"
        path = f"{vmdir}/smoke.vmdk"
        task = dm.CreateVirtualDisk_Task(name=path, datacenter=dc, spec=spec)
        assert WaitForTask(task) == "success"
        print("CreateVirtualDisk entity:", task.info.entity, "result:", task.info.result)
        task = dm.DeleteVirtualDisk_Task(name=path, datacenter=dc)
        assert WaitForTask(task) == "success"
        Disconnect(si)
        print("SMOKE OK")
        return 0
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=10)
        print(f"vcsim pid {proc.pid} stopped, exit code {rc}")


if __name__ == "__main__":
    sys.exit(main())
