"""A VM restored to a new VM through the appliance goes where the original VM was (issue 15:
"the CLI then put the VM on another host than the original"): its host, resource pool,
folder, datastore and networks, checked through the vCenter's API; `--dry-run` says where
first and changes nothing; `--network FROM=TO` puts the NICs on another network there."""

from __future__ import annotations

import json

from tests.appliance.lab import VM, Lab
from tests.appliance.placement import placements


def test_a_new_vm_restored_through_the_appliance_goes_where_the_original_was(lab: Lab) -> None:
    assert lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt").code == 0
    assert lab.vmkeep("job", "run", "nightly", "--wait").code == 0
    point = json.loads(lab.vmkeep("points", "list", "--vm", VM, "--json").out)[-1]["id"]
    with placements(lab) as (where, vm_names):
        original = where(VM)
        dry = lab.vmkeep("restore", "vm", point, "--name", "copy", "--dry-run")
        assert dry.code == 0, dry.err
        assert f"placed on host {original[0]!r}" in dry.out, dry.out
        assert "as the original VM: datacenter, host, resource pool, datastore, folder" \
            in dry.out, dry.out
        assert "copy" not in vm_names()  # nothing was created
        done = lab.vmkeep("restore", "vm", point, "--name", "copy")
        assert done.code == 0, done.err
        assert where("copy") == original
        # The network map: the NICs of the original's network go on another one there.
        source = original[4][0]
        wrong = lab.vmkeep("restore", "vm", point, "--name", "copy2", "--network",
                           f"{source}=no-such-net")
        assert wrong.code == 2, wrong.err
        assert f"network 'no-such-net' (for the NICs on {source!r}) is not at the new VM's " \
               "placement; the networks there: DC0_DVPG0" in wrong.err, wrong.err
        assert "copy2" not in vm_names()
        moved = lab.vmkeep("restore", "vm", point, "--name", "copy2", "--network",
                           f"{source}=DC0_DVPG0", "--dry-run")
        assert f"on 'DC0_DVPG0' (mapped from {source!r})" in moved.out, moved.out
        done = lab.vmkeep("restore", "vm", point, "--name", "copy2", "--network",
                          f"{source}=DC0_DVPG0")
        assert done.code == 0, done.err
        assert where("copy2")[4] == ["DC0_DVPG0"]
