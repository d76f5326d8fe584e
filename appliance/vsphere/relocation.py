"""A VM's relocation kept off for its backup: ``RelocateVM_Task`` disabled on the VM with
``AuthorizationManager.DisableMethods`` under vmkeep's source, so neither a Storage vMotion nor
Storage DRS moves its disks while they are read, and enabled again afterwards (what VDDK's
``PrepareForAccess``/``EndAccess`` do).

DisableMethods and EnableMethods are vCenter's internal API (``urn:internalvim25``), unknown
to pyVmomi: they are sent here as raw SOAP in the session (its cookie, over a connection
checked against the pinned certificate). ``VirtualMachine.disabledMethod`` lists what is
disabled, whoever disabled it; enabling with vmkeep's source leaves another source's
disabling in place, so it is harmless where vmkeep did not disable.
"""

from __future__ import annotations

import http.client
import logging
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from xml.sax.saxutils import escape

from pyVmomi import vim, vmodl

from appliance.errors import VSphereError
from appliance.vsphere._vim import fault_text
from appliance.vsphere.session import VSphereSession

log = logging.getLogger(__name__)

SOURCE = "vmkeep"
METHOD = "RelocateVM_Task"
REASON = "vmkeep.backup"
# Faults of a server without vCenter's internal API (an ESXi host answers so; vcsim too).
_ABSENT = frozenset({"MethodNotFound", "InvalidRequest", "NotImplemented", "NotSupported"})


class MethodsError(VSphereError):
    """vSphere refused to disable or enable a method (no such method: not a vCenter; or the
    account lacks Global.DisableMethods / Global.EnableMethods)."""

    code = "vsphere_methods"

    def __init__(self, message: str, *, absent: bool = False) -> None:
        super().__init__(message)
        self.absent = absent  # the server has no such method (an ESXi host, a simulator)


def _envelope(body: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
            f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>").encode()


def _fault(payload: bytes) -> tuple[str, str]:
    """(fault type, message) of a SOAP fault answer."""
    try:
        root = ET.fromstring(payload)
    except ET.ParseError:
        return "", payload[:200].decode(errors="replace")
    text = ""
    kind = ""
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if tag == "faultstring":
            text = (el.text or "").strip()
        elif tag == "detail" and len(el):
            kind = el[0].tag.rsplit("}", 1)[-1].removesuffix("Fault")
    return kind, text


def _post(session: VSphereSession, body: str) -> None:
    """POST one internal-API call in the session; MethodsError on a fault (NotAuthenticated
    is raised as pyVmomi's, so ``session.call`` logs in again)."""
    version = str(getattr(session.si._stub, "versionId", "") or '"urn:vim25/6.7"').strip('"')
    conn = http.client.HTTPSConnection(session.host, session.port, timeout=60,
                                       context=session.ssl_context)
    try:
        conn.connect()
        sock = conn.sock
        session.verify_peer(sock.getpeercert(binary_form=True)
                            if isinstance(sock, ssl.SSLSocket) else None)
        conn.request("POST", "/sdk", body=_envelope(body), headers={
            "Content-Type": "text/xml; charset=utf-8", "Cookie": session.cookie_header,
            "SOAPAction": version.replace("urn:vim25", "urn:internalvim25")})
        resp = conn.getresponse()
        payload = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise MethodsError(f"the call failed ({exc or type(exc).__name__})") from exc
    finally:
        conn.close()
    if resp.status == 200:
        return
    kind, text = _fault(payload)
    if kind == "NotAuthenticated":
        raise vim.fault.NotAuthenticated()  # type: ignore[no-untyped-call]
    raise MethodsError(f"{kind or f'HTTP {resp.status}'}: {text or 'no reason given'}",
                       absent=kind in _ABSENT)


def _call(session: VSphereSession, name: str, vm_moref: str, methods: str) -> None:
    def run() -> None:
        am = escape(str(session.content.authorizationManager._moId))
        _post(session, f'<{name} xmlns="urn:internalvim25"><_this type="AuthorizationManager">'
                       f'{am}</_this><entity type="VirtualMachine">{escape(vm_moref)}</entity>'
                       f"{methods}<sourceId>{SOURCE}</sourceId></{name}>")

    try:
        session.call(run)
    except vmodl.MethodFault as exc:
        raise MethodsError(fault_text(exc)) from exc


def disable_relocation(session: VSphereSession, vm_moref: str) -> None:
    """Disable ``RelocateVM_Task`` on the VM under vmkeep's source."""
    _call(session, "DisableMethods", vm_moref,
          f"<method><method>{METHOD}</method><reasonId>{REASON}</reasonId></method>")


def enable_relocation(session: VSphereSession, vm_moref: str) -> None:
    """Enable ``RelocateVM_Task`` on the VM for vmkeep's source (another source's disabling
    stays)."""
    _call(session, "EnableMethods", vm_moref, f"<method>{METHOD}</method>")


@contextmanager
def relocation_disabled(session: VSphereSession, vm_moref: str, vm_name: str,
                        log_line: Callable[[str, str], None],
                        warn: Callable[[str], None]) -> Iterator[bool]:
    """Relocation of the VM disabled for the body (yields whether it is). When it cannot be
    disabled, ``log_line`` says so and the body runs all the same: as a warning when it was
    refused (a missing privilege), as info when the server has no such method (an ESXi host:
    nothing relocates a VM there); when it cannot be enabled again, ``warn`` says so (a
    warning of the backup: the Snapshot Hunter enables it)."""
    try:
        disable_relocation(session, vm_moref)
    except MethodsError as exc:
        if exc.absent:  # no vCenter: no Storage vMotion or Storage DRS either
            log_line("info", f"relocation of VM {vm_name!r} not disabled: "
                             f"{session.host} has no DisableMethods ({exc})")
        else:
            log_line("warning", f"could not disable relocation of VM {vm_name!r} ({exc}): a "
                                "Storage vMotion or Storage DRS could move its disks during "
                                "the backup (DisableMethods needs the privilege "
                                "Global.DisableMethods)")
        yield False
        return
    log_line("info", f"relocation of VM {vm_name!r} disabled for the backup "
                     f"({METHOD}, source {SOURCE})")
    try:
        yield True
    finally:
        try:
            enable_relocation(session, vm_moref)
        except MethodsError as exc:
            warn(f"could not enable relocation of VM {vm_name!r} again ({exc}): run the "
                 "Snapshot Hunter to enable it")
        else:
            log_line("info", f"relocation of VM {vm_name!r} enabled again")
