"""The simulator's strict switches (scripts/vcsim/overlay/simulator/vmkeep_strict.go), checked
directly with pyVmomi and httpx: /folder authentication, single-use URL-bound service tickets,
the hosts' own endpoints and the counters, Range ignored, disks locked while their VM runs,
dcPath as an inventory path, datastore types and URLs, encryption key ids. Each test starts a
simulator with its switches (and, where it matters, one without them)."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim

from tests.vcsim import Vcsim, start_vcsim

VM = "DC0_H0_VM0"
DS = "LocalDS_0"
FILE = f"{VM}/{VM}.vmx"


@dataclass
class Sim:
    """A running simulator with a logged-in pyVmomi connection."""

    sim: Vcsim
    si: Any

    @property
    def base(self) -> str:
        return f"https://{self.sim.host}:{self.sim.port}"

    def cookie(self) -> str:
        """The value of the session's vmware_soap_session cookie."""
        raw: str = self.si._stub.cookie
        return raw.split("=", 1)[1].split(";", 1)[0].strip('"')

    def url(self, path: str = FILE, *, ds: str = DS, dc: str | None = "DC0",
            port: int | None = None) -> str:
        q = f"dsName={ds}" + (f"&dcPath={dc}" if dc is not None else "")
        return f"https://127.0.0.1:{port or self.sim.port}/folder/{path}?{q}"

    def get(self, url: str, *, cookies: dict[str, str] | None = None,
            headers: dict[str, str] | None = None, method: str = "GET",
            content: bytes | None = None) -> httpx.Response:
        with httpx.Client(verify=False, cookies=cookies) as c:
            return c.request(method, url, headers=headers, content=content)

    def session(self, url: str, **kw: Any) -> httpx.Response:
        return self.get(url, cookies={"vmware_soap_session": self.cookie()}, **kw)

    def ticket(self, url: str, method: str = "httpGet") -> Any:
        spec = vim.SessionManager.HttpServiceRequestSpec(  # type: ignore[no-untyped-call]
            url=url, method=method)
        return self.si.content.sessionManager.AcquireGenericServiceTicket(spec)

    def with_ticket(self, url: str, ticket_id: str, **kw: Any) -> httpx.Response:
        return self.get(url, cookies={"vmware_cgi_ticket": ticket_id}, **kw)

    def counters(self) -> dict[str, Any]:
        with httpx.Client(verify=False) as c:
            data: dict[str, Any] = c.get(f"{self.base}/vmkeep/counters").json()
        return data

    def obj(self, kind: Any, name: str) -> Any:
        view = self.si.content.viewManager.CreateContainerView(
            self.si.content.rootFolder, [kind], True)
        try:
            found = [o for o in view.view if o.name == name]
        finally:
            view.Destroy()
        assert found, name
        return found[0]

    def all(self, kind: Any) -> list[Any]:
        view = self.si.content.viewManager.CreateContainerView(
            self.si.content.rootFolder, [kind], True)
        try:
            return list(view.view)
        finally:
            view.Destroy()


Start = Callable[..., Sim]


@pytest.fixture
def start(vcsim_binary: Path) -> Iterator[Start]:
    """Start simulators with the given environment / flags; all are stopped at the end."""
    running: list[tuple[subprocess.Popen[str], Sim]] = []

    def _start(env: dict[str, str] | None = None, extra: tuple[str, ...] = ()) -> Sim:
        proc, sim = start_vcsim(vcsim_binary, env=env, extra=extra)
        si = SmartConnect(host=sim.host, port=sim.port, user=sim.user,  # type: ignore[no-untyped-call]
                          pwd=sim.password, disableSslCertValidation=True)
        s = Sim(sim, si)
        running.append((proc, s))
        return s

    try:
        yield _start
    finally:
        for proc, s in running:
            Disconnect(s.si)  # type: ignore[no-untyped-call]
            os.kill(s.sim.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _disks(vm: Any) -> list[Any]:
    return [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]


# --- 1. /folder authentication, tickets, counters, host endpoints ---------------------------

def test_folder_is_open_without_switches(start: Start) -> None:
    s = start()
    assert s.get(s.url()).status_code == 200  # no cookie at all: upstream's leniency
    assert s.counters()["vcenter"] == {"requests": 1, "served": 1}
    assert s.counters()["hosts"] == {}


def test_folder_auth_needs_the_session_cookie(start: Start) -> None:
    s = start({"VCSIM_FOLDER_AUTH": "1"})
    assert s.get(s.url()).status_code == 401
    assert s.get(s.url(), cookies={"vmware_soap_session": "not-a-session"}).status_code == 401
    assert s.session(s.url("data.bin"), method="PUT", content=b"xyz").status_code == 200
    r = s.session(s.url("data.bin"))
    assert (r.status_code, r.content) == (200, b"xyz")
    assert s.counters()["vcenter"] == {"requests": 4, "served": 2}


def test_a_ticket_works_once_and_only_at_its_url_and_method(start: Start) -> None:
    s = start({"VCSIM_FOLDER_AUTH": "1"})
    url = s.url()
    t = s.ticket(url)
    assert t.id
    assert s.with_ticket(s.url(f"{VM}/{VM}.nvram"), t.id).status_code == 401  # another URL
    assert s.with_ticket(url, t.id, method="HEAD").status_code == 401  # another method
    assert s.with_ticket(url, t.id).status_code == 200
    assert s.with_ticket(url, t.id).status_code == 401  # used up
    assert s.with_ticket(url, "made-up").status_code == 401
    put = s.ticket(s.url(f"{VM}/new.bin"), "httpPut")
    assert s.with_ticket(s.url(f"{VM}/new.bin"), put.id, method="PUT",
                         content=b"abc").status_code == 200
    assert s.session(s.url(f"{VM}/new.bin")).content == b"abc"


def _host_endpoint(s: Sim, name: str) -> tuple[int, str | None]:
    host = s.obj(vim.HostSystem, name)
    cfg = host.summary.config
    return int(cfg.port), cfg.sslThumbprint


def _management_ip(host: Any) -> str:
    """What a client reads for a host's address: the management vmknic's IP."""
    for nc in host.config.virtualNicManagerInfo.netConfig:
        if nc.nicType == "management":
            for nic in nc.candidateVnic:
                if nic.key in (nc.selectedVnic or []):
                    return str(nic.spec.ip.ipAddress)
    raise AssertionError("no management vmknic")


def _served_thumbprint(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return ":".join(f"{b:02X}" for b in hashlib.sha1(der).digest())


def test_each_host_has_an_endpoint_found_through_the_inventory(start: Start) -> None:
    s = start({"VCSIM_HOST_ENDPOINTS": "1"})
    names = sorted(h.name for h in s.all(vim.HostSystem))
    assert names == ["DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2", "DC0_H0"]  # names unchanged
    ports = set()
    for name in names:
        host = s.obj(vim.HostSystem, name)
        port, thumb = _host_endpoint(s, name)
        assert _management_ip(host) == "127.0.0.1"
        assert host.config.network.vnic[0].spec.ip.ipAddress == "127.0.0.1"
        assert _served_thumbprint(port) == thumb
        assert s.counters()["hosts"][name]["port"] == port
        ports.add(port)
    assert len(ports) == 4 and s.sim.port not in ports

    assert s.session(s.url("data.bin"), method="PUT", content=b"xyz").status_code == 200
    port, thumb = _host_endpoint(s, "DC0_H0")
    url = s.url("data.bin", port=port, dc=None)
    assert s.session(url).status_code == 401  # the vCenter's session cookie is not for hosts
    t = s.ticket(url)
    assert t.sslThumbprint == thumb and t.hostName == "DC0_H0"
    other = s.url("data.bin", port=_host_endpoint(s, "DC0_C0_H0")[0], dc=None)
    assert s.with_ticket(other, t.id).status_code == 401  # the same file on another host
    r = s.with_ticket(url, t.id)
    assert (r.status_code, r.content) == (200, b"xyz")
    assert s.with_ticket(url, t.id).status_code == 401  # used up
    missing = s.url(port=port, dc=None, ds="NoSuchDS")
    assert s.with_ticket(missing, s.ticket(missing).id).status_code == 404
    c = s.counters()
    assert c["hosts"]["DC0_H0"]["served"] == 1
    assert c["hosts"]["DC0_H0"]["requests"] == 4
    assert c["hosts"]["DC0_C0_H0"] == {**c["hosts"]["DC0_C0_H0"], "requests": 1, "served": 0}
    assert c["vcenter"] == {"requests": 1, "served": 1}


def test_without_host_endpoints_hosts_keep_the_models_port(start: Start) -> None:
    s = start()
    port, thumb = _host_endpoint(s, "DC0_H0")
    assert port == 902 and thumb is None


def test_the_vcenter_can_refuse_data_requests(start: Start) -> None:
    s = start({"VCSIM_VC_FOLDER_REFUSE": "1", "VCSIM_HOST_ENDPOINTS": "1"})
    assert s.session(s.url()).status_code == 403
    assert s.with_ticket(s.url(), s.ticket(s.url()).id).status_code == 403
    port, _ = _host_endpoint(s, "DC0_C0_H1")
    url = s.url(port=port, dc=None)
    assert s.with_ticket(url, s.ticket(url).id).status_code == 200
    c = s.counters()
    assert c["vcenter"] == {"requests": 2, "served": 0}
    assert c["hosts"]["DC0_C0_H1"]["served"] == 1


# --- 2. Range ignored, running VMs' disks locked --------------------------------------------

def test_range_is_honoured_by_default_and_ignored_on_demand(start: Start) -> None:
    body = bytes(range(256)) * 16
    for env, status, want in (({}, 206, body[100:200]),
                              ({"VCSIM_FOLDER_IGNORE_RANGE": "1"}, 200, body)):
        s = start(env)
        assert s.session(s.url("data.bin"), method="PUT", content=body).status_code == 200
        r = s.session(s.url("data.bin"), headers={"Range": "bytes=100-199"})
        assert (r.status_code, r.content) == (status, want)


def test_a_running_vms_current_disk_is_locked(start: Start) -> None:
    default = start()
    vm = default.obj(vim.VirtualMachine, VM)
    assert vm.runtime.powerState == "poweredOn"
    assert default.session(default.url(f"{VM}/disk1-flat.vmdk")).status_code == 200

    s = start({"VCSIM_FOLDER_LOCK_RUNNING": "1"})
    vm = s.obj(vim.VirtualMachine, VM)
    for name in ("disk1.vmdk", "disk1-flat.vmdk"):
        r = s.session(s.url(f"{VM}/{name}"))
        assert r.status_code == 500 and b"locked" in r.content
    assert s.session(s.url()).status_code == 200  # the .vmx is not a disk
    WaitForTask(vm.CreateSnapshot_Task(  # type: ignore[no-untyped-call]
        name="s1", description="", memory=False, quiesce=False))
    files = [d.backing.fileName for d in _disks(vm.snapshot.currentSnapshot)]
    assert files and all("-snap" in f for f in files)
    for f in files:
        rel = f.split("] ", 1)[1]
        assert s.session(s.url(rel)).status_code == 200  # the snapshot's frozen copy
        assert s.session(s.url(rel.replace(".vmdk", "-flat.vmdk"))).status_code == 200
    WaitForTask(vm.PowerOffVM_Task())  # type: ignore[no-untyped-call]
    assert s.session(s.url(f"{VM}/disk1-flat.vmdk")).status_code == 200


# --- 3. dcPath is the datacenter's inventory path -------------------------------------------

def test_dcpath_is_an_inventory_path_in_strict_mode(start: Start) -> None:
    lenient = start(extra=("-folder", "1"))
    assert lenient.session(lenient.url(dc="DC0")).status_code == 200  # upstream finds it
    assert lenient.session(lenient.url(dc=None)).status_code == 200  # the only DC

    s = start({"VCSIM_STRICT_DCPATH": "1"}, extra=("-folder", "1"))
    assert s.obj(vim.Datacenter, "DC0").parent.name == "F0"
    assert s.session(s.url(dc="F0/DC0")).status_code == 200
    assert s.session(s.url(dc="/F0/DC0")).status_code == 200
    for dc in ("DC0", "F*/DC0", "F0", "F0/DC0/extra", None):
        assert s.session(s.url(dc=dc)).status_code == 404, dc
    assert s.session(s.url(dc="F0/DC0", ds="LocalDS_*")).status_code == 404

    flat = start({"VCSIM_STRICT_DCPATH": "1"})  # DC0 in the root folder: its name is its path
    assert flat.session(flat.url(dc="DC0")).status_code == 200


# --- 4. Datastore types and URLs, encryption key ids ----------------------------------------

def test_datastore_types_and_vmfs_urls(start: Start) -> None:
    default = start()
    ds = default.obj(vim.Datastore, DS)
    assert ds.summary.type == "OTHER" and Path(ds.info.url).is_dir()

    types = {"LocalDS_0": "VMFS", "LocalDS_1": "NFS", "LocalDS_2": "vsan", "LocalDS_3": "VVOL"}
    s = start({"VCSIM_DS_TYPES": ",".join(f"{k}={v}" for k, v in types.items()),
               "VCSIM_DS_URL": "vmfs"}, extra=("-ds", "4"))
    urls = set()
    for name, kind in types.items():
        ds = s.obj(vim.Datastore, name)
        assert ds.summary.type == kind
        assert ds.info.url == ds.summary.url
        assert ds.info.url.startswith("ds:///vmfs/volumes/") and ds.info.url.endswith("/")
        urls.add(ds.info.url)
    assert len(urls) == 4
    assert "vsan:" in s.obj(vim.Datastore, "LocalDS_2").info.url
    assert s.session(s.url()).status_code == 200  # the simulator still finds its files


def test_bad_datastore_types_stop_the_simulator(start: Start) -> None:
    with pytest.raises(AssertionError, match="did not start"):
        start({"VCSIM_DS_TYPES": "LocalDS_0=ext4"})


def test_encrypted_vms_have_key_ids(start: Start) -> None:
    s = start({"VCSIM_ENCRYPTED_VMS": VM})
    vm = s.obj(vim.VirtualMachine, VM)
    key = vm.config.keyId
    assert key.keyId and key.providerId.id == "vmkeep-kms"
    disks = _disks(vm)
    assert disks and all(d.backing.keyId.keyId == key.keyId for d in disks)

    backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(  # type: ignore[no-untyped-call]
        diskMode="persistent", fileName="")
    disk = vim.vm.device.VirtualDisk(  # type: ignore[no-untyped-call]
        key=-1, controllerKey=disks[0].controllerKey, unitNumber=1, capacityInKB=1024,
        backing=backing)
    change = vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
        operation="add", fileOperation="create", device=disk)
    WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
        deviceChange=[change])))
    disks = _disks(vm)
    assert len(disks) == 2 and all(d.backing.keyId.keyId == key.keyId for d in disks)

    other = s.obj(vim.VirtualMachine, "DC0_H0_VM1")
    assert other.config.keyId is None
    assert all(d.backing.keyId is None for d in _disks(other))
