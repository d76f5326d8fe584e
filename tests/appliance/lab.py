"""The appliance test lab: a running appliance with vcsim added as vCenter "vc" and a
repository "main", and DC0_H0_VM0's disk holding data. The ``lab`` fixture is in
conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyVim.task import WaitForTask
from pyVmomi import vim

from appliance.vsphere.cbt import flat_file_of, split_datastore_path
from appliance.vsphere.inventory import find_vm
from appliance.vsphere.session import connect
from tests.helpers import REPO_ROOT, CliResult
from tests.vcsim import Vcsim, start_vcsim, with_host_endpoints

VM = "DC0_H0_VM0"


def run_vmkeep(env: dict[str, str], *args: str, stdin: str = "",
               cwd: Path = REPO_ROOT) -> CliResult:
    """The real CLI in a subprocess, as an admin runs it, with ``env``."""
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", *args], cwd=cwd, env=env,
                          input=stdin, capture_output=True, text=True, timeout=300)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Lab:
    home: Path
    env: dict[str, str]
    sim: Vcsim
    tmp: Path

    def vmkeep(self, *args: str, stdin: str = "") -> CliResult:
        return run_vmkeep(self.env, *args, stdin=stdin)

    def flat(self, name: str = VM) -> Path:
        """The file holding VM ``name``'s (first) disk on vcsim's datastore."""
        with connect(self.sim.host, self.sim.port, self.sim.user, self.sim.password,
                     fingerprint=None, insecure=True) as s:
            vm = s.content.searchIndex.FindByUuid(None, find_vm(s, name).instance_uuid, True,
                                                  True)
            disk = next(d for d in vm.config.hardware.device if hasattr(d, "capacityInKB"))
            ds, path = split_datastore_path(disk.backing.fileName)
            return Path({d.name: d.info.url for d in vm.datastore}[ds]) / flat_file_of(path)

    def grow(self, size: int, name: str = VM) -> None:
        """Give the VM's disk ``size`` bytes of capacity (a reconfigure, as an admin does)."""
        with connect(self.sim.host, self.sim.port, self.sim.user, self.sim.password,
                     fingerprint=None, insecure=True) as s:
            vm = s.content.searchIndex.FindByUuid(None, find_vm(s, name).instance_uuid, True,
                                                  True)
            disk: Any = next(d for d in vm.config.hardware.device
                             if isinstance(d, vim.vm.device.VirtualDisk))
            disk.capacityInKB, disk.capacityInBytes = size // 1024, size
            WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
                deviceChange=[vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
                    operation="edit", device=disk)])))

    def write(self, offset: int, data: bytes, name: str = VM) -> None:
        with self.flat(name).open("r+b") as f:
            f.seek(offset)
            f.write(data)

    def content(self, name: str = VM, size: int = 1 << 20) -> bytes:
        """What a restore of VM ``name``'s disk (of ``size`` bytes) taken now must give."""
        data = self.flat(name).read_bytes()[:size]
        return data + bytes(size - len(data))


@contextmanager
def started_lab(vcsim_binary: Path, tmp_path: Path, extra: tuple[str, ...] = (),
                vcsim_env: dict[str, str] | None = None) -> Iterator[Lab]:
    """vcsim (with ``extra`` arguments and ``vcsim_env`` in its environment), an appliance
    with it as vCenter "vc" and a repository "main"; stopped on leaving."""
    proc, sim = start_vcsim(vcsim_binary, env=with_host_endpoints(vcsim_env), extra=extra)
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
        yield lab
    finally:
        lab.vmkeep("appliance", "stop")
        proc.terminate()
        proc.wait(timeout=30)
