"""Where a VM is, read through the vCenter's API (the restore-placement tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from appliance.vsphere.inventory import find_vm, list_vms
from appliance.vsphere.session import connect
from tests.appliance.lab import Lab

Where = tuple[str, str, str, str, list[str]]


@contextmanager
def placements(lab: Lab) -> Iterator[tuple[Callable[[str], Where], Callable[[], list[str]]]]:
    """A session to the lab's vCenter: (the host, resource pool, folder, datastore and
    networks of the VM with a name; the names of every VM)."""
    with connect(lab.sim.host, lab.sim.port, lab.sim.user, lab.sim.password,
                 fingerprint=None, insecure=True) as s:
        def where(name: str) -> Where:
            vm: Any = s.content.searchIndex.FindByUuid(None, find_vm(s, name).instance_uuid,
                                                       True, True)
            return (vm.runtime.host.name, vm.resourcePool.name, vm.parent.name,
                    vm.config.files.vmPathName.split("]")[0].lstrip("["),
                    sorted(n.name for n in vm.network))

        yield where, lambda: [v.name for v in list_vms(s)]
