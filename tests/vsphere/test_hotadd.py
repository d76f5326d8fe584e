"""Hot-add transport (issue 14 item 1): the snapshot's disks are attached to the appliance's
own VM (here DC0_H0_VM1, named by ``$VMKEEP_APPLIANCE_VM``) and read as block devices.

Everything up to the device lookup runs against the simulator: the ReconfigVM that attaches
the frozen base files as existing disks on free SCSI units, the disks' ``backing.uuid``, the
detach. The device lookup is mapped to the simulator's disk file: vcsim runs with
``VCSIM_BY_ID_DIR`` (overlay vmkeep_hotadd.go) and plays udev, making
``<dir>/wwn-0x<uuid>`` a symlink to the attached disk's flat file while it is attached;
``$VMKEEP_HOTADD_BY_ID`` points the appliance's ``/dev/disk/by-id`` lookup at that folder.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from appliance.errors import VmkeepError
from appliance.jobs.vm_backup import VmBackupError, VmRefusedError
from appliance.jobs.vm_restore import plan_restore_original, restore_original_vm
from appliance.vsphere import hotadd
from appliance.vsphere.hunter import FindingKind, execute_hunt, plan_hunt
from appliance.vsphere.inventory import find_vm
from tests.helpers import in_ws, session_first
from tests.vcsim import Vcsim
from tests.vsphere.killed import killed_backup
from tests.vsphere.vmenv import VM, Env, write

APPLIANCE = "DC0_H0_VM1"
BY_ID = Path(f"/tmp/vmkeep-test-by-id-{os.getpid()}")  # vcsim's env is fixed per test
SIM = {"VCSIM_BY_ID_DIR": str(BY_ID)}
ENCRYPTED = {**SIM, "VCSIM_ENCRYPTED_VMS": f"{VM},{APPLIANCE}"}

sim = pytest.mark.parametrize("vcsim", [SIM], indirect=True)


@pytest.fixture(autouse=True)
def appliance_vm(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    BY_ID.mkdir(exist_ok=True)
    for p in BY_ID.iterdir():
        p.unlink()
    monkeypatch.setenv(hotadd.APPLIANCE_VM_ENV, APPLIANCE)
    monkeypatch.setenv(hotadd.BY_ID_ENV, str(BY_ID))
    yield
    for p in BY_ID.iterdir():
        p.unlink()


def appliance_disks(e: Env) -> list[str]:
    info = find_vm(e.session, APPLIANCE)
    return [d.file_name for d in info.disks]


def foreign(e: Env) -> list[str]:
    """The appliance VM's disks whose file is not in its own folder."""
    return [f for f in appliance_disks(e) if f"] {APPLIANCE}/" not in f]


@sim
def test_backup_through_hotadd_is_byte_identical_and_detaches(env: Env) -> None:
    e = env
    seen: list[list[str]] = []
    r = e.backup(transport="hotadd",
                 progress=lambda done, total: seen.append(sorted(os.listdir(BY_ID))))
    assert r.point_id and r.status == "success", (r.warnings, e.logs)
    for i in (0, 1):
        assert e.restored(r.point_id, i) == e.content(i)
    assert seen and len(seen[0]) == 2 and all(n.startswith("wwn-0x6000c29") for n in seen[0])
    assert foreign(e) == [] and list(BY_ID.iterdir()) == []
    logs = "\n".join(m for _, m in e.logs)
    assert f"attached 2 disk(s) to the appliance VM {APPLIANCE!r}" in logs
    assert "SCSI 0:1" in logs and "detached 2 disk(s)" in logs
    assert e.snapshots() == 0
    # The source was attached non-persistent and never written: an incremental finds nothing.
    r2 = e.backup(transport="hotadd")
    assert r2.point_id and [d.read_kind for d in r2.disks] == ["incremental"] * 2


@sim
def test_attach_spec_existing_file_nonpersistent_free_unit(env: Env) -> None:
    e = env
    snap_files: list[list[Any]] = []

    def look() -> None:
        devices = find_vm(e.session, APPLIANCE).disks
        snap_files.append([(d.file_name, d.disk_mode, d.controller_bus, d.unit_number)
                           for d in devices])

    e.backup(transport="hotadd", progress=lambda done, total: look() if not snap_files else None)
    attached = [d for d in snap_files[0] if f"] {APPLIANCE}/" not in d[0]]
    assert len(attached) == 2
    for name, mode, bus, unit in attached:
        assert f"] {VM}/" in name and "-snap" in name  # the snapshot's frozen base
        assert mode == "independent_nonpersistent" and bus == 0 and unit not in (0, 7)
    assert e.vm.config is not None and foreign(e) == []


@sim
def test_a_failing_backup_still_detaches(env: Env) -> None:
    e = env

    def fail(done: int, total: int) -> None:
        raise OSError(5, "injected read failure")

    with pytest.raises(OSError, match="injected"):
        e.backup(transport="hotadd", progress=fail)
    assert foreign(e) == [] and list(BY_ID.iterdir()) == [] and e.snapshots() == 0


@sim
def test_a_device_that_never_appears_fails_and_detaches(env: Env, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    e = env
    empty = tmp_path / "no-udev"
    empty.mkdir()
    monkeypatch.setenv(hotadd.BY_ID_ENV, str(empty))  # the links appear where no one looks
    monkeypatch.setattr(hotadd, "DEVICE_WAIT", 0.3)
    with pytest.raises(hotadd.HotaddError, match="did not appear"):
        e.backup(transport="hotadd")
    assert foreign(e) == [] and list(BY_ID.iterdir()) == [] and e.snapshots() == 0


@sim
def test_no_appliance_vm_is_a_clear_error(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hotadd.APPLIANCE_VM_ENV, "no-such-vm")
    with pytest.raises(VmBackupError, match=r"no-such-vm.*VMKEEP_APPLIANCE_VM"):
        env.backup(transport="hotadd")
    assert env.snapshots() == 0


@sim
def test_sigkill_mid_read_the_hunter_detaches_and_removes_the_snapshot(
        vcsim: Vcsim, env: Env, tmp_path: Path) -> None:
    e = env
    proc = killed_backup(vcsim, tmp_path / "crashrepo", VM, kill_at="progress",
                         transport="hotadd")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = foreign(e)
    assert len(left) == 2 and len(list(BY_ID.iterdir())) == 2 and e.snapshots() == 1

    plan = plan_hunt(e.session)
    kinds = [f.kind for f in plan.findings]
    assert kinds[:2] == [FindingKind.ATTACHED_DISK] * 2, kinds
    assert FindingKind.LEFTOVER_SNAPSHOT in kinds
    assert {f.file_name for f in plan.findings if f.file_name} >= set(left)
    result = execute_hunt(e.session, plan)
    assert result.ok, result.outcomes
    assert foreign(e) == [] and list(BY_ID.iterdir()) == [] and e.snapshots() == 0
    # The appliance's own disk stays, and its file too.
    assert appliance_disks(e) and all(f"] {APPLIANCE}/" in f for f in appliance_disks(e))
    assert plan_hunt(e.session).empty


@pytest.mark.parametrize("vcsim", [ENCRYPTED], indirect=True)
def test_an_encrypted_vm_backs_up_through_hotadd_not_the_host(env: Env) -> None:
    e = env
    assert e.vm.config.keyId is not None
    with pytest.raises(VmRefusedError, match=r"encrypted \(config.keyId"):
        e.backup(transport="host")
    assert e.snapshots() == 0
    r = e.backup(transport="hotadd")
    assert r.point_id and r.status == "success", (r.warnings, e.logs)
    for i in (0, 1):
        assert e.restored(r.point_id, i) == e.content(i)
    assert foreign(e) == [] and list(BY_ID.iterdir()) == []


@pytest.mark.parametrize("vcsim", [{**SIM, "VCSIM_ENCRYPTED_VMS": VM}], indirect=True)
def test_an_encrypted_vm_needs_an_encrypted_appliance_vm(env: Env) -> None:
    with pytest.raises(VmBackupError, match=f"appliance VM {APPLIANCE!r} has no config.keyId"):
        env.backup(transport="hotadd")
    assert env.snapshots() == 0


@sim
def test_restore_over_the_original_through_hotadd_zeroes_what_the_point_has_not(
        env: Env) -> None:
    """The VM's own disks are attached to the appliance VM persistent (the lookup mapped to
    their flat files by the simulator's by-id links) and written through the link."""
    e = env
    r = e.backup()
    assert r.point_id, e.logs
    want = [e.content(0), e.content(1)]
    hole = 3 * (1 << 20) + (800 << 10)  # disk 1: zero in the point (a whole 256 KiB block)
    assert want[1][hole:hole + 10000] == bytes(10000)
    write(e.live(1), hole, b"ransomware" * 1000)
    write(e.live(0), 0, b"ransomware" * 1000)  # over stored blocks
    plan = in_ws(e.repo, e.cat, session_first(plan_restore_original, e.session), r.point_id)
    e.logs.clear()
    result = in_ws(e.repo, e.cat, session_first(restore_original_vm, e.session), plan,
                   confirm=True, log=e.log, transport="hotadd")
    assert result.cbt_reset and e.vm.runtime.powerState == "poweredOff"
    assert [e.content(0), e.content(1)] == want
    logs = "\n".join(m for _, m in e.logs)
    assert "(persistent)" in logs and "through hot-add" in logs
    # CBT reports allocation in 64 KiB areas: the one the write touched is zeroed, no more.
    assert re.search(r"disk 1: .* zeroed 65536 bytes .* \(1 area\(s\)\)", logs), logs
    assert re.search(r"disk 0: .* zeroed 0 bytes", logs), logs
    assert foreign(e) == [] and list(BY_ID.iterdir()) == []


@sim
def test_restore_through_hotadd_with_cbt_off_zeroes_every_area_zero_in_the_point(
        env: Env) -> None:
    """As above (the lookup mapped to the simulator's flat files), with CBT turned off on the
    VM after the backup: what is allocated now is unknown, so every area zero in the point
    is zeroed."""
    e = env
    r = e.backup()
    assert r.point_id, e.logs
    want = [e.content(0), e.content(1)]
    WaitForTask(e.vm.ReconfigVM_Task(vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
        changeTrackingEnabled=False)))
    hole = 3 * (1 << 20) + (800 << 10)
    write(e.live(1), hole, b"ransomware" * 1000)
    plan = in_ws(e.repo, e.cat, session_first(plan_restore_original, e.session), r.point_id)
    e.logs.clear()
    in_ws(e.repo, e.cat, session_first(restore_original_vm, e.session), plan,
          confirm=True, log=e.log, transport="hotadd")
    assert [e.content(0), e.content(1)] == want
    logs = "\n".join(m for _, m in e.logs)
    assert "allocated now is unknown" in logs and "Changed Block Tracking is not enabled" in logs
    assert foreign(e) == [] and list(BY_ID.iterdir()) == []


@pytest.mark.parametrize("vcsim", [ENCRYPTED], indirect=True)
def test_an_encrypted_vm_is_restored_over_through_hotadd_not_the_host(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """An encrypted VM's disks cannot take plain bytes as files (host, vcenter), but through
    hot-add the host encrypts what the (encrypted) appliance VM writes; an appliance VM that
    is not encrypted is refused before anything is attached. The lookup is mapped to the
    simulator's flat files by its by-id links."""
    e = env
    r = e.backup(transport="hotadd")
    assert r.point_id, e.logs
    want = [e.content(0), e.content(1)]
    write(e.live(0), 0, b"ransomware" * 1000)
    with pytest.raises(VmkeepError, match="encrypted"):
        in_ws(e.repo, e.cat, session_first(plan_restore_original, e.session), r.point_id)
    plan = in_ws(e.repo, e.cat, session_first(plan_restore_original, e.session), r.point_id,
                 transport="hotadd")
    with pytest.raises(VmkeepError, match="encrypted"):  # the plan is checked again
        in_ws(e.repo, e.cat, session_first(restore_original_vm, e.session), plan,
              confirm=True, log=e.log, transport="host")
    monkeypatch.setenv(hotadd.APPLIANCE_VM_ENV, "DC0_C0_RP0_VM0")  # not encrypted
    with pytest.raises(VmkeepError, match=r"DC0_C0_RP0_VM0.*keyId"):
        in_ws(e.repo, e.cat, session_first(restore_original_vm, e.session), plan,
              confirm=True, log=e.log, transport="hotadd")
    assert e.content(0) != want[0] and foreign(e) == []
    monkeypatch.setenv(hotadd.APPLIANCE_VM_ENV, APPLIANCE)
    in_ws(e.repo, e.cat, session_first(restore_original_vm, e.session), plan,
          confirm=True, log=e.log, transport="hotadd")
    assert [e.content(0), e.content(1)] == want
    assert foreign(e) == [] and list(BY_ID.iterdir()) == []

