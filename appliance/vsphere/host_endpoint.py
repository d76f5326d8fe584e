"""The ESXi host that runs a VM, as a place to read its files from: address, port, pinned
certificate, and the generic service tickets that let a client in.

As govmomi does (``object/datastore_file.go``, ``Datastore.ServiceTicket``): the host's
address is its management vmknic's IP (``config.virtualNicManagerInfo``, else
``config.network.vnic``; else its name), the port ``summary.config.port``, and its
certificate is pinned by ``summary.config.sslThumbprint`` (SHA-1), which the vCenter reports.
A ticket from ``SessionManager.AcquireGenericServiceTicket`` is bound to one URL and method and
used once (cookie ``vmware_cgi_ticket``).
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim, vmodl

from appliance.errors import VSphereError
from appliance.vsphere._vim import fault_text, vm_object
from appliance.vsphere.session import VSphereSession

TICKET_COOKIE = "vmware_cgi_ticket"


class HostEndpointError(VSphereError):
    """The host that runs the VM cannot be read from directly."""

    code = "vsphere_host_endpoint"


@dataclass(frozen=True, slots=True)
class HostEndpoint:
    """Where the ESXi host serves ``/folder``: its name (as the vCenter shows it), address,
    HTTPS port and certificate SHA-1 (lower-case hex, no colons) as the vCenter reports it."""

    name: str
    moref: str
    address: str
    port: int
    thumbprint: str

    @property
    def where(self) -> str:
        return f"host {self.name} ({self.address}:{self.port})"


def normalize_sha1(thumbprint: str) -> str:
    """``AA:BB:…`` → ``aabb…``; "" when it is not a SHA-1 thumbprint."""
    hexed = thumbprint.strip().replace(":", "").lower()
    if len(hexed) != 40 or any(c not in "0123456789abcdef" for c in hexed):
        return ""
    return hexed


def pin_mismatch(sock: socket.socket | None, thumbprint: str, where: str) -> str:
    """Why the peer on ``sock`` is not the host pinned by ``thumbprint`` (SHA-1 hex as the
    vCenter reports it), or "" when it is."""
    der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
    got = hashlib.sha1(der or b"").hexdigest()
    if got == thumbprint:
        return ""
    return (f"{where} presented a certificate with SHA-1 {_colons(got)}, but the vCenter "
            f"reports {_colons(thumbprint)} for it: refusing to send it a ticket; check the "
            "host (or reconnect it in vCenter if its certificate was renewed)")


def check_pinned(sock: socket.socket | None, host: HostEndpoint) -> None:
    """Refuse a connection to ``host`` whose certificate is not the one the vCenter reports
    (before a ticket is sent)."""
    why = pin_mismatch(sock, host.thumbprint, host.where)
    if why:
        raise HostEndpointError(why)


def _colons(hexed: str) -> str:
    return ":".join(hexed[i:i + 2] for i in range(0, len(hexed), 2)).upper()


def _management_address(host: Any) -> str:
    config = host.config
    info = getattr(config, "virtualNicManagerInfo", None) if config is not None else None
    for nc in getattr(info, "netConfig", None) or []:
        if nc.nicType != "management":
            continue
        selected = set(nc.selectedVnic or [])
        for nic in nc.candidateVnic or []:
            ip = getattr(getattr(nic.spec, "ip", None), "ipAddress", None)
            if nic.key in selected and ip:
                return str(ip)
    network = getattr(config, "network", None) if config is not None else None
    for nic in getattr(network, "vnic", None) or []:
        ip = getattr(getattr(nic.spec, "ip", None), "ipAddress", None)
        if ip:
            return str(ip)
    return ""


def host_of_vm(session: VSphereSession, vm_moref: str) -> HostEndpoint:
    """The endpoint of the host that runs VM ``vm_moref`` now (``runtime.host``)."""

    def run() -> HostEndpoint:
        vm = vm_object(session, vm_moref)
        host = vm.runtime.host
        if host is None:
            raise HostEndpointError(f"VM {vm_moref} has no host (runtime.host is unset): read "
                                    "it with --transport vcenter")
        name = str(host.name)
        cfg = host.summary.config
        port = int(getattr(cfg, "port", 0) or 443)
        thumb = normalize_sha1(str(getattr(cfg, "sslThumbprint", "") or ""))
        if not thumb:
            raise HostEndpointError(
                f"the vCenter reports no SHA-1 certificate thumbprint for host {name} "
                "(summary.config.sslThumbprint), so its certificate cannot be pinned: "
                "reconnect the host in vCenter, or read with --transport vcenter")
        address = _management_address(host) or name
        return HostEndpoint(name, str(host._moId), address, port, thumb)

    try:
        return session.call(run)
    except vmodl.MethodFault as exc:
        raise HostEndpointError(f"finding the host of VM {vm_moref} failed "
                                f"({fault_text(exc)})") from exc


def service_ticket(session: VSphereSession, url: str, method: str = "GET") -> str:
    """A single-use ticket for one HTTP request (``method`` on exactly ``url``)."""
    spec = vim.SessionManager.HttpServiceRequestSpec(  # type: ignore[no-untyped-call]
        url=url, method={"GET": "httpGet", "PUT": "httpPut", "HEAD": "httpHead"}[method])
    try:
        ticket = session.call(
            lambda: session.content.sessionManager.AcquireGenericServiceTicket(spec))
    except vmodl.MethodFault as exc:
        raise HostEndpointError(f"the vCenter refused a service ticket for {url} "
                                f"({fault_text(exc)}): the account needs the privilege to "
                                "read datastore files; or use --transport vcenter") from exc
    return str(ticket.id)
