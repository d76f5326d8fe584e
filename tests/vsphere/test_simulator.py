"""The simulator the vSphere tests stand on: built here, with the overlay's fixes and CBT.

The scenario scripts in scripts/vcsim/ drive it through pyvmomi as vmkeep will: snapshot
reads of snapshot-less VMs and WaitForTask on snapshot tasks (the two 0.24.2 bugs fixed at
build time), QueryChangedDiskAreas with "*" and with a changeId, paged replies, vSphere's
faults, and snapshots that freeze their disks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT
from tests.vcsim import Vcsim


@pytest.mark.parametrize("script", ["smoke.py", "cbt_smoke.py"])
def test_simulator_scenarios(vcsim_binary: Path, script: str) -> None:
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "vcsim" / script)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SMOKE OK" in proc.stdout


def test_fixture_serves_the_vsphere_api(vcsim: Vcsim) -> None:
    from pyVim.connect import Disconnect, SmartConnect

    si = SmartConnect(host=vcsim.host, port=vcsim.port, user=vcsim.user,  # type: ignore[no-untyped-call]
                      pwd=vcsim.password, disableSslCertValidation=True)
    try:
        assert "govmomi simulator" in si.content.about.fullName
    finally:
        Disconnect(si)  # type: ignore[no-untyped-call]
