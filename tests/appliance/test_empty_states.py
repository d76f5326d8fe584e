"""An appliance with nothing yet (no vCenter, no job, no point): each listing says there is
nothing and what to do next instead of printing nothing, and `--json` still prints the empty
list (issue 15, item 9)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.appliance.lab import run_vmkeep, started_lab


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {**os.environ, "VMKEEP_HOME": str(tmp_path / "home"),
           "VMKEEP_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("VMKEEP_SOCKET", None)
    try:
        assert run_vmkeep(env, "appliance", "start").code == 0
        yield env
    finally:
        run_vmkeep(env, "appliance", "stop")


ADD_VCENTER = ("no vCenter is configured: add one with `vmkeep vcenter add NAME --host HOST "
               "--user USER --vcenter-password-stdin`")


@pytest.mark.parametrize(("command", "said"), [
    (("hunter",), ADD_VCENTER + "; the Snapshot Hunter looks at the appliance's vCenters"),
    (("hunter", "--dry-run"), ADD_VCENTER + "; the Snapshot Hunter looks at the appliance's "
     "vCenters"),
    (("inventory",), ADD_VCENTER),
    (("inventory", "--containers"), ADD_VCENTER),
    (("vcenter", "list"), ADD_VCENTER),
    (("session", "list"), "no sessions yet: `vmkeep job run NAME` starts one (`vmkeep job "
     "list` shows the jobs)"),
    (("points", "list"), "no restore points yet: a job makes them (`vmkeep job run NAME`; "
     "`vmkeep job list` shows the jobs)"),
    (("points", "list", "--vm", "db01"), "no restore points of VM 'db01' (`vmkeep points "
     "list` lists them all)"),
    (("job", "list"), "no jobs; create one with `vmkeep job create`"),
    (("repo", "list"), "no repositories; add one with `vmkeep repo add NAME --path DIR`"),
    (("alerts",), "no alerts"),
])
def test_an_empty_listing_says_so_and_what_to_do(empty: dict[str, str],
                                                 command: tuple[str, ...], said: str) -> None:
    r = run_vmkeep(empty, *command)
    assert r.code == 0, r.err
    assert r.out == said + "\n"
    as_json = run_vmkeep(empty, *command, "--json")
    assert as_json.code == 0, as_json.err
    assert json.loads(as_json.out) == []


def test_an_inventory_without_vms_names_its_vcenters(vcsim_binary: Path,
                                                      tmp_path: Path) -> None:
    with started_lab(vcsim_binary, tmp_path, extra=("-vm", "0")) as lab:
        for args, where in (((), "the appliance's vCenters"), (("--vcenter", "vc"),
                                                             "vCenter 'vc'")):
            r = lab.vmkeep("inventory", *args)
            assert r.code == 0, r.err
            assert r.out == (f"no VMs in {where}: check the account's view with `vmkeep "
                             "vcenter check NAME`\n")
            assert json.loads(lab.vmkeep("inventory", *args, "--json").out) == []
