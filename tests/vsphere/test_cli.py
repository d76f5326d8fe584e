"""`vmkeep vsphere …` against vcsim: one-line errors with exit code 12, the password kept out of
arguments and output, the VM listing, backup exit codes and points that `vmkeep image` sees
and restores, and the Snapshot Hunter."""

from __future__ import annotations

import io
import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from appliance.errors import VSphereError
from appliance.vsphere import inventory
from appliance.vsphere.cbt import flat_file_of, split_datastore_path
from appliance.vsphere.session import (
    VSphereSession,
    connect,
    fetch_fingerprint,
    format_fingerprint,
)
from tests.helpers import REPO_ROOT, CliResult, fill_up, run_inproc, tree_digest
from tests.vcsim import Vcsim

VM = "DC0_H0_VM0"
KiB = 1 << 10
VMKEEP = Path(sys.executable).parent / "vmkeep"


def conn(sim: Vcsim, *, pin: str | None = None) -> list[str]:
    """Connection options for ``sim``, pinned to its fingerprint (or to ``pin``)."""
    return ["--host", sim.host, "--port", str(sim.port), "--user", sim.user,
            "--fingerprint", pin or fetch_fingerprint(sim.host, sim.port)]


def vmkeep(args: list[str], cache: Path, monkeypatch: pytest.MonkeyPatch,
           stdin: str = "") -> CliResult:
    """``cli.main(args)`` in this process with ``stdin`` as standard input."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return run_inproc(args, cache)


def vmkeep_process(args: list[str], cache: Path, stdin: str = "",
                   env: dict[str, str] | None = None) -> CliResult:
    """The installed ``vmkeep`` script in a subprocess (what a user runs)."""
    full_env = {k: v for k, v in os.environ.items() if k != "VMKEEP_VSPHERE_PASSWORD"}
    full_env.update({"VMKEEP_CACHE_DIR": str(cache), **(env or {})})
    proc = subprocess.run([str(VMKEEP), *args], input=stdin, env=full_env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(autouse=True)
def _no_password_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VMKEEP_VSPHERE_PASSWORD", raising=False)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def one_error_line(r: CliResult) -> str:
    assert "Traceback" not in r.err and "Traceback" not in r.out
    lines = r.err.splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("vmkeep: error: ")
    return lines[0]


def closed_port() -> int:
    with socket.socket() as probe:  # nobody listens on it once closed
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- connection errors and the password -------------------------------------------------------

@pytest.mark.parametrize("case", ["wrong_password", "closed_port", "fingerprint_mismatch",
                                  "no_fingerprint"])
def test_connection_errors_are_one_line_with_exit_code_12(
        case: str, vcsim: Vcsim, cache: Path) -> None:
    served = format_fingerprint(fetch_fingerprint(vcsim.host, vcsim.port))
    password = vcsim.password
    args = conn(vcsim)
    if case == "wrong_password":
        password = "not-the-password-4711"
    elif case == "closed_port":
        args[3] = str(closed_port())
    elif case == "fingerprint_mismatch":
        args = conn(vcsim, pin="00" * 32)
    else:
        args = args[:-2]  # neither --fingerprint nor --insecure
    r = vmkeep_process(["vsphere", "vms", *args, "--password-stdin"], cache,
                       stdin=password + "\n")
    assert r.code == VSphereError.exit_code == 12
    line = one_error_line(r)
    assert r.out == ""
    assert password not in r.out + r.err
    if case == "wrong_password":
        assert f"refused user {vcsim.user!r}" in line and "check the user name and password" in line
    elif case == "closed_port":
        assert f"127.0.0.1:{args[3]}" in line and "connection refused" in line
        assert "check the host name, port and firewall" in line
    elif case == "fingerprint_mismatch":
        assert served in line and format_fingerprint("00" * 32) in line
        assert "re-pin with --fingerprint" in line
    else:
        assert served in line and "--fingerprint" in line and "--insecure" in line


def test_password_from_stdin_appears_in_no_output(
        vcsim: Vcsim, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for extra in ([], ["--json"], ["-v"]):
        r = vmkeep(["vsphere", "vms", *conn(vcsim), "--password-stdin", *extra], cache,
                   monkeypatch, stdin=vcsim.password + "\n")
        assert r.code == 0, r.err
        assert VM in r.out
        assert vcsim.password not in r.out + r.err


@pytest.mark.parametrize("flag", [["--password", "s3cr3t-value"], ["--password=s3cr3t-value"],
                                  ["--password"]])
def test_there_is_no_plain_password_option(
        flag: list[str], vcsim: Vcsim, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = vmkeep(["vsphere", "vms", *conn(vcsim), *flag], cache, monkeypatch)
    assert r.code == 2
    line = one_error_line(r)
    assert "there is no --password option" in line and "--password-stdin" in line
    assert "s3cr3t-value" not in r.out + r.err
    r = vmkeep(["vsphere", "vms", "--help"], cache, monkeypatch)
    assert r.code == 0
    assert "--password-stdin" in r.out and "--password-file" in r.out
    assert "--password " not in r.out and "--password=" not in r.out


def test_each_secret_has_its_own_flag_and_the_old_one_stays_its_alias(
        vcsim: Vcsim, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--vcenter-password-file / --vcenter-password-stdin name the secret; --password-file and
    --password-stdin give the same one; help and errors say which secret."""
    base = ["vsphere", "vms", *conn(vcsim)]
    secret = tmp_path / "password"
    secret.write_text(vcsim.password + "\n")
    secret.chmod(0o600)
    for spelling in ("--vcenter-password-file", "--password-file"):
        r = vmkeep([*base, spelling, str(secret)], cache, monkeypatch)
        assert r.code == 0 and VM in r.out, (spelling, r.err)
    for spelling in ("--vcenter-password-stdin", "--password-stdin"):
        r = vmkeep([*base, spelling], cache, monkeypatch, stdin=vcsim.password + "\n")
        assert r.code == 0 and VM in r.out, (spelling, r.err)
    r = vmkeep(base, cache, monkeypatch)
    assert r.code == 2
    assert "pass --vcenter-password-stdin" in one_error_line(r)
    monkeypatch.setenv("VMKEEP_VSPHERE_PASSWORD", vcsim.password)
    r = vmkeep([*base, "--vcenter-password-file", str(secret)], cache, monkeypatch)
    assert "--vcenter-password-file and VMKEEP_VSPHERE_PASSWORD" in one_error_line(r)
    monkeypatch.delenv("VMKEEP_VSPHERE_PASSWORD")
    helps = {g: vmkeep([*g.split(), "--help"], cache, monkeypatch).out for g in
             ("vsphere vms", "image points", "config backup", "repo add", "vcenter add")}
    assert "--vcenter-password-file FILE, --password-file FILE" in helps["vsphere vms"]
    assert "the vCenter (or ESXi) password" in helps["vsphere vms"]
    assert "--ssh-password-file FILE, --password-file FILE" in helps["image points"]
    assert "--ssh-password-file FILE, --password-file FILE" in helps["repo add"]
    assert "--config-password-file FILE, --password-file FILE" in helps["config backup"]
    assert "--vcenter-password-file FILE, --password-file FILE" in helps["vcenter add"]


def test_password_comes_from_exactly_one_source(
        vcsim: Vcsim, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["vsphere", "vms", *conn(vcsim)]
    secret = tmp_path / "password"
    secret.write_text(vcsim.password + "\nignored second line\n")
    secret.chmod(0o600)

    r = vmkeep([*base, "--password-file", str(secret)], cache, monkeypatch)
    assert r.code == 0 and r.err == "" and VM in r.out
    secret.chmod(0o644)
    r = vmkeep([*base, "--password-file", str(secret)], cache, monkeypatch)
    assert r.code == 0 and f"vmkeep: warning: password file {secret}" in r.err
    r = vmkeep([*base, "--password-file", str(tmp_path / "missing")], cache, monkeypatch)
    assert r.code == 3 and "does not exist" in one_error_line(r)

    r = vmkeep(base, cache, monkeypatch)
    assert r.code == 2 and "no vSphere password given" in one_error_line(r)
    r = vmkeep([*base, "--password-stdin"], cache, monkeypatch, stdin="\n")
    assert r.code == 2 and "is empty" in one_error_line(r)
    r = vmkeep([*base, "--password-stdin", "--password-file", str(secret)], cache, monkeypatch,
               stdin=vcsim.password)
    assert r.code == 2 and "not allowed with" in one_error_line(r)

    monkeypatch.setenv("VMKEEP_VSPHERE_PASSWORD", vcsim.password)
    r = vmkeep(base, cache, monkeypatch)
    assert r.code == 0 and VM in r.out
    r = vmkeep([*base, "--password-stdin"], cache, monkeypatch, stdin=vcsim.password)
    assert r.code == 2
    line = one_error_line(r)
    assert "--password-stdin and VMKEEP_VSPHERE_PASSWORD" in line and "exactly one" in line
    assert vcsim.password not in r.out + r.err


def test_a_malformed_fingerprint_is_a_usage_error(
        vcsim: Vcsim, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = vmkeep(["vsphere", "vms", *conn(vcsim, pin="AB:CD"), "--password-stdin"], cache,
               monkeypatch, stdin=vcsim.password)
    assert r.code == 2 and "64 hex digits" in one_error_line(r)


# -- fingerprint and vms ----------------------------------------------------------------------

def test_fingerprint_prints_the_servers_in_colon_form(
        vcsim: Vcsim, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = vmkeep(["vsphere", "fingerprint", "--host", vcsim.host, "--port", str(vcsim.port)],
               cache, monkeypatch)
    assert r.code == 0 and r.err == ""
    assert r.out == format_fingerprint(fetch_fingerprint(vcsim.host, vcsim.port)) + "\n"
    # What it prints pins a connection as it is, colons and all.
    r2 = vmkeep(["vsphere", "vms", *conn(vcsim, pin=r.out.strip()), "--password-stdin"],
                cache, monkeypatch, stdin=vcsim.password)
    assert r2.code == 0, r2.err
    r3 = vmkeep_process(["vsphere", "fingerprint", "--host", "127.0.0.1", "--port",
                         str(closed_port())], cache)
    assert r3.code == 12 and "connection refused" in one_error_line(r3)


def test_vms_lists_vms_with_their_disks(
        vcsim: Vcsim, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = vmkeep(["vsphere", "vms", *conn(vcsim), "--password-stdin", "--json"], cache,
               monkeypatch, stdin=vcsim.password)
    assert r.code == 0 and r.err == ""
    listing = json.loads(r.out)
    assert [v["name"] for v in listing] == sorted(v["name"] for v in listing)
    vm = next(v for v in listing if v["name"] == VM)
    assert vm["instance_uuid"] and vm["moref"].startswith("vm-")
    assert vm["power_state"] == "poweredOn"
    assert vm["cbt_enabled"] is False and vm["consolidation_needed"] is False
    assert vm["snapshots"] == []
    assert vm["disks"] == [{
        "index": 0, "key": vm["disks"][0]["key"], "label": vm["disks"][0]["label"],
        "capacity_bytes": 1 << 20, "file_name": f"[LocalDS_0] {VM}/disk1.vmdk",
        "backing_type": "FlatVer2", "bus": 0, "unit": 0}]
    assert isinstance(vm["disks"][0]["key"], int) and vm["disks"][0]["label"]

    r = vmkeep(["vsphere", "vms", *conn(vcsim), "--password-stdin"], cache, monkeypatch,
               stdin=vcsim.password)
    assert r.code == 0
    header, *rows = r.out.splitlines()
    assert header.split() == ["NAME", "POWER", "CBT", "SNAPSHOTS", "CONSOLIDATE", "DISKS"]
    row = next(line for line in rows if line.startswith(VM + " "))
    assert row.split()[:5] == [VM, "on", "off", "0", "no"]
    assert row.endswith(f"0: 1.0 MiB [LocalDS_0] {VM}/disk1.vmdk")


# -- backup -----------------------------------------------------------------------------------

@dataclass
class Lab:
    """A logged-in pyVmomi view on the simulator, to change VMs and their disks by hand."""

    session: VSphereSession

    def vm(self, name: str = VM) -> Any:
        info = inventory.find_vm(self.session, name)
        return self.session.content.searchIndex.FindByUuid(None, info.instance_uuid, True, True)

    def disk(self, name: str = VM) -> Any:
        return next(d for d in self.vm(name).config.hardware.device
                    if isinstance(d, vim.vm.device.VirtualDisk))

    def flat(self, name: str = VM) -> Path:
        vm = self.vm(name)
        ds, path = split_datastore_path(self.disk(name).backing.fileName)
        urls = {d.name: d.info.url for d in vm.datastore}
        return Path(urls[ds]) / flat_file_of(path)

    def content(self, name: str = VM) -> bytes:
        size = int(self.disk(name).capacityInKB) * KiB
        data = self.flat(name).read_bytes()[:size]
        return data + bytes(size - len(data))

    def snapshot_names(self, name: str = VM) -> list[str]:
        out: list[str] = []

        def walk(nodes: Any) -> None:
            for n in nodes or []:
                out.append(str(n.name))
                walk(n.childSnapshotList)

        snap = self.vm(name).snapshot
        walk(snap.rootSnapshotList if snap else [])
        return out

    def take_snapshot(self, snapshot_name: str, name: str = VM) -> None:
        WaitForTask(self.vm(name).CreateSnapshot_Task(  # type: ignore[no-untyped-call]
            name=snapshot_name, description="by hand", memory=False, quiesce=False))


@pytest.fixture
def lab(vcsim: Vcsim) -> Iterator[Lab]:
    with connect(vcsim.host, vcsim.port, vcsim.user, vcsim.password,
                 fingerprint=fetch_fingerprint(vcsim.host, vcsim.port)) as session:
        yield Lab(session)


def write(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def test_backup_full_then_incremental_restores_through_image(
        vcsim: Vcsim, lab: Lab, cache: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    write(lab.flat(), 0, random.Random(5).randbytes(384 * KiB))
    repo = tmp_path / "repo"
    backup = ["vsphere", "backup", *conn(vcsim), "--password-stdin", "--repo", str(repo),
              "--block-size", "256K"]

    r1 = vmkeep([*backup, "--enable-cbt", VM], cache, monkeypatch, stdin=vcsim.password)
    assert r1.code == 0, r1.err
    first = r1.out.strip()
    assert r1.out == first + "\n" and first
    assert "vmkeep: warning" not in r1.err and "vmkeep: info" not in r1.err  # info needs -v
    assert f"full backup of VM {VM!r}" in r1.err
    want1 = lab.content()

    write(lab.flat(), 300 * KiB, b"changed since the first point")
    r2 = vmkeep([*backup, "-v", VM], cache, monkeypatch, stdin=vcsim.password)
    assert r2.code == 0, r2.err
    second = r2.out.strip()
    assert second and second != first
    assert "vmkeep: info: " in r2.err and "CBT sanity check passed" in r2.err
    assert f"incremental backup of VM {VM!r}" in r2.err
    assert lab.snapshot_names() == []
    assert vcsim.password not in r1.out + r1.err + r2.out + r2.err

    r = vmkeep(["image", "points", "--repo", str(repo), "--json"], cache, monkeypatch)
    assert r.code == 0, r.err
    points = json.loads(r.out)
    assert [(p["id"], p["vm"], p["kind"]) for p in points] == [
        (first, VM, "full"), (second, VM, "incremental")]
    assert points[1]["parent"] == first
    assert points[1]["bytes_read"] <= 256 * KiB  # one block changed

    for point, want in ((first, want1), (second, lab.content())):
        out = tmp_path / f"{point}.img"
        r = vmkeep(["image", "restore", "--repo", str(repo), point, str(out)], cache,
                   monkeypatch)
        assert r.code == 0, r.err
        assert out.read_bytes() == want


def test_backup_exit_codes_follow_the_vm_status(
        vcsim: Vcsim, lab: Lab, cache: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    write(lab.flat(), 0, b"\x01" * (64 * KiB))
    repo = tmp_path / "repo"
    backup = ["vsphere", "backup", *conn(vcsim), "--password-stdin", "--repo", str(repo)]

    # An unknown VM fails before the repository is created.
    r = vmkeep([*backup, "no-such-vm"], cache, monkeypatch, stdin=vcsim.password)
    assert r.code == 3 and "no VM named 'no-such-vm'" in one_error_line(r)
    assert not repo.exists()

    # CBT off and not allowed to enable it: backed up with a warning → 1.
    r = vmkeep([*backup, VM], cache, monkeypatch, stdin=vcsim.password)
    assert r.code == 1, r.err
    assert r.out.strip()
    assert "vmkeep: warning: Changed Block Tracking is off" in r.err

    # The only disk is independent, so nothing can be backed up: the VM failed → 2.
    disk = lab.disk()
    disk.backing.diskMode = "independent_persistent"
    WaitForTask(lab.vm().ReconfigVM_Task(vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
        deviceChange=[vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
            operation="edit", device=disk)])))
    r = vmkeep([*backup, "--enable-cbt", VM], cache, monkeypatch, stdin=vcsim.password)
    assert r.code == 2, r.err
    assert r.out == ""
    lines = r.err.splitlines()
    assert [line for line in lines if line.startswith("vmkeep: error: ")] == [
        f"vmkeep: error: no disk of VM {VM!r} could be backed up: see the reason given for "
        "each disk above"]
    assert any(line.startswith("vmkeep: warning: skipping disk 0") and "independent" in line
               for line in lines)
    assert "Traceback" not in r.err
    assert lab.snapshot_names() == []
    r = vmkeep(["image", "points", "--repo", str(repo), "--json"], cache, monkeypatch)
    assert len(json.loads(r.out)) == 1


# -- hunter -----------------------------------------------------------------------------------

def test_hunter_lists_a_leftover_first_then_removes_it(
        vcsim: Vcsim, lab: Lab, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab.take_snapshot("before-upgrade")
    lab.take_snapshot("vmkeep-20260101T000000Z")  # what a crashed run leaves
    hunter = ["vsphere", "hunter", *conn(vcsim), "--password-stdin"]

    r = vmkeep([*hunter, "--dry-run"], cache, monkeypatch, stdin=vcsim.password)
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].startswith("Snapshot Hunter: ")
    assert lines[1].startswith(f"1. VM {VM!r}")
    assert "'vmkeep-20260101T000000Z'" in lines[1] and "-> remove snapshot" in lines[1]
    assert "before-upgrade" not in r.out
    assert lab.snapshot_names() == ["before-upgrade", "vmkeep-20260101T000000Z"]

    r = vmkeep(hunter, cache, monkeypatch, stdin=vcsim.password)
    assert r.code == 0, r.err
    assert f"1. fixed: VM {VM!r}" in r.out
    assert "removed snapshot 'vmkeep-20260101T000000Z'" in r.out
    assert "0 failed" in r.out.splitlines()[-1]
    assert lab.snapshot_names() == ["before-upgrade"]

    r = vmkeep([*hunter, "--dry-run"], cache, monkeypatch, stdin=vcsim.password)
    assert r.code == 0 and "'vmkeep-" not in r.out


# -- restore ----------------------------------------------------------------------------------

def test_restore_vm_to_a_new_vm_over_the_original_and_a_disk_into_a_vm(
        vcsim: Vcsim, lab: Lab, cache: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    write(lab.flat(), 0, random.Random(7).randbytes(300 * KiB))
    want = lab.content()
    repo = tmp_path / "repo"
    common = [*conn(vcsim), "--password-stdin", "--repo", str(repo)]
    r = vmkeep(["vsphere", "backup", *common, "--enable-cbt", VM], cache, monkeypatch,
               stdin=vcsim.password)
    assert r.code == 0, r.err
    point = r.out.strip()

    # To a new VM: a dry run first, then the restore; the new VM's disk holds the bytes.
    restore = ["vsphere", "restore-vm", *common, point]
    r = vmkeep([*restore, "--name", "copy", "--dry-run"], cache, monkeypatch,
               stdin=vcsim.password)
    assert r.code == 0, r.err
    assert "to a new VM 'copy'" in r.out and "disk 0: create 1048576 bytes" in r.out
    assert "  set hardware version: vmx-" in r.out and "  set NIC 0: " in r.out
    assert "  cannot apply the VM's storage policy: the VM configuration does not carry" in r.out
    assert "copy" not in [v.name for v in inventory.list_vms(lab.session)]
    r = vmkeep([*restore, "--name", "copy"], cache, monkeypatch, stdin=vcsim.password)
    assert r.code == 0, r.err
    assert r.out.strip().startswith("vm-") and "restored point" in r.err
    assert lab.content("copy") == want

    # Over the original: refused without --yes (no terminal to ask on), then done with it.
    write(lab.flat(), 0, b"encrypted by ransomware" * 100)
    r = vmkeep([*restore, "--original"], cache, monkeypatch, stdin=vcsim.password)
    assert r.code == 2 and "pass --yes" in one_error_line(r)
    assert lab.content() != want
    r = vmkeep([*restore, "--original", "--dry-run"], cache, monkeypatch, stdin=vcsim.password)
    assert r.code == 0 and "OVERWRITES" in r.out and "powered off" in r.out
    r = vmkeep([*restore, "--original", "--yes"], cache, monkeypatch, stdin=vcsim.password)
    assert r.code == 0, r.err
    assert "CBT reset" in r.err
    assert lab.content() == want
    assert lab.vm().runtime.powerState == "poweredOff"

    # One disk into another VM.
    other = "DC0_H0_VM1"
    disks_before = len([d for d in lab.vm(other).config.hardware.device
                        if isinstance(d, vim.vm.device.VirtualDisk)])
    r = vmkeep(["vsphere", "restore-disk", *common, "--disk", "0", "--vm", other, point],
               cache, monkeypatch, stdin=vcsim.password)
    assert r.code == 0, r.err
    added = r.out.strip()
    disks = [d for d in lab.vm(other).config.hardware.device
             if isinstance(d, vim.vm.device.VirtualDisk)]
    assert len(disks) == disks_before + 1
    ds, path = split_datastore_path(added)
    urls = {d.name: d.info.url for d in lab.vm(other).datastore}
    data = (Path(urls[ds]) / flat_file_of(path)).read_bytes()
    assert data[:len(want)] + bytes(len(want) - len(data)) == want

    # An image point is not a VM: a clear error, nothing created.
    image = tmp_path / "disk.img"
    image.write_bytes(b"x" * 4096)
    r = vmkeep(["image", "backup", "--repo", str(repo), "--name", "img", str(image)], cache,
               monkeypatch)
    assert r.code == 0, r.err
    r = vmkeep([*restore[:-1], r.out.strip(), "--name", "nope"], cache, monkeypatch,
               stdin=vcsim.password)
    assert r.code == 4 and "not of a VM" in one_error_line(r)


def test_restore_vm_from_a_full_repository_reads_without_a_lock(
        vcsim: Vcsim, lab: Lab, cache: Path, tmp_path: Path, tmpfs: Callable[[str], Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading needs no writes (issue 10, failure 7): a VM restores from a full repository,
    saying on stderr that it reads without a lock."""
    write(lab.flat(), 0, random.Random(8).randbytes(300 * KiB))
    want = lab.content()
    fs = tmpfs("8m")
    repo = fs / "repo"
    common = [*conn(vcsim), "--password-stdin", "--repo", str(repo)]
    r = vmkeep(["vsphere", "backup", *common, "--enable-cbt", VM], cache, monkeypatch,
               stdin=vcsim.password)
    assert r.code == 0, r.err
    point = r.out.strip()
    fill_up(fs)
    before = tree_digest(repo)
    r = vmkeep(["vsphere", "restore-vm", *common, point, "--name", "from-full"], cache,
               monkeypatch, stdin=vcsim.password)
    assert r.code == 0, r.err
    assert "read-only here" in r.err and "reading without a lock" in r.err, r.err
    assert lab.content("from-full") == want
    assert tree_digest(repo) == before


# -- help -------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [[], ["fingerprint"], ["vms"], ["backup"], ["hunter"],
                                     ["restore-vm"], ["restore-disk"]])
def test_help_has_examples(command: list[str], cache: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    r = vmkeep(["vsphere", *command, "--help"], cache, monkeypatch)
    assert r.code == 0 and r.err == ""
    assert "examples:" in r.out
    assert f"vmkeep vsphere {command[0] if command else 'backup'}" in r.out


def test_vsphere_help_imports_neither_pyvmomi_nor_duckdb() -> None:
    code = ("import sys\nfrom appliance import cli\n"
            "try:\n    cli.build_parser().parse_args(['vsphere', 'backup', '--help'])\n"
            "except SystemExit:\n    pass\n"
            "print([m for m in ('pyVmomi', 'duckdb') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.strip().endswith("[]")


def test_backup_reads_through_the_transport_given(
        vcsim: Vcsim, lab: Lab, cache: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """host (default), vcenter, direct (only with --datastore-path; never guessed)."""
    backup = ["vsphere", "backup", *conn(vcsim), "--password-stdin", "--repo",
              str(tmp_path / "repo"), "--enable-cbt", "-v"]
    r = vmkeep([*backup, "--transport", "direct", VM], cache, monkeypatch, stdin=vcsim.password)
    assert r.code == 2 and "--datastore-path" in r.err, r.err
    r = vmkeep([*backup, VM], cache, monkeypatch, stdin=vcsim.password)
    assert r.code == 0 and "reading disks from host DC0_H0" in r.err, r.err
    r = vmkeep([*backup, "--transport", "vcenter", VM], cache, monkeypatch,
               stdin=vcsim.password)
    assert r.code == 0 and "through the vCenter" in r.err, r.err
    root = lab.flat().parent.parent
    r = vmkeep([*backup, "--transport", "direct", "--datastore-path", f"LocalDS_0={root}", VM],
               cache, monkeypatch, stdin=vcsim.password)
    assert r.code == 0 and "mounted here" in r.err, r.err
    assert lab.snapshot_names() == []
