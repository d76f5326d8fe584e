"""Import a new VM through an NFC lease: ``ResourcePool.ImportVApp`` with a
``VirtualMachineImportSpec`` made from the restore point's recorded configuration, then one
HTTPS POST per disk of a streamOptimized VMDK (``stream_vmdk``) to the host, so only the
point's stored blocks travel (zeros the point does not store are not sent).

The steps, as vSphere's own tools do them:

1. ``ImportVApp(spec, folder, host)`` on the placement's resource pool: vSphere creates the
   VM (empty disks of the recorded sizes) and returns an ``HttpNfcLease``.
2. Wait for the lease to be ``ready`` (``error``: its fault is reported, nothing is left).
3. Each ``info.deviceUrl`` that is a disk is matched to a disk of the spec: vCenter names a
   device by its controller and unit, ``/<vm>/<controller type><bus>:<unit>`` (for instance
   ``/vm-57/VirtualLsiLogicController0:1``), in ``importKey`` and ``key``; the spec's disk
   on a controller of that type and bus number, at that unit, is the one. A key of another
   form, ``/<vm>/<kind>:<n>`` (older simulators), names the n-th disk of the created VM in
   its device list. Every disk of the spec needs exactly one URL.
4. Per disk, a POST (``Content-Type: application/x-vnd.vmware-streamVmdk``, as ovftool and
   govc send a disk; PUT is theirs for other files) with a ``Content-Length``, which every
   NFC client sends: the stream is written in ``stream_vmdk``'s stored mode (grains at
   deflate level 0), whose length is known from the disk's block extents before a byte is
   read. Host ``*`` in the URL means the server this session talks to. A URL with
   ``sslThumbprint`` is the ESXi host's: its certificate is pinned by that SHA-1 (as
   ``host_transport`` does) and the vCenter's session cookie is not sent to it; otherwise
   the vCenter's own TLS settings (CA or pinned SHA-256) apply and the cookie is sent.
5. ``HttpNfcLeaseProgress`` every few seconds from a helper thread (it keeps the lease
   alive while disks are read from the repository).
6. A disk whose upload fails on the way (dropped connection, 5xx) is sent again from its
   start, a bounded number of times with a doubling pause; disks already sent are not sent
   again. Anything else ends the import: ``HttpNfcLeaseAbort`` with the reason, and the VM
   the import created is made sure to be gone (vCenter deletes it on abort; if it is still
   there it is destroyed here).
7. ``HttpNfcLeaseComplete``.

Nothing ``vim.*`` leaves this module: callers get the new VM's moref and what was sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim, vmodl

from appliance.errors import VSphereError
from appliance.vsphere import restore_target as rt
from appliance.vsphere._vim import fault_text
from appliance.vsphere.session import VSphereSession
from appliance.vsphere.stream_vmdk import CONTENT_TYPE, StreamVmdk, stream_length
from appliance.vsphere.vm_config import DiskConfig, VmConfig
from appliance.vsphere.vm_settings import PlacementNetworks

log = logging.getLogger(__name__)

RETRIES = 3  # more attempts per disk after a failure on the way
BACKOFF = 2.0  # seconds before the first retry, doubling
PROGRESS_EVERY = 5.0  # seconds between HttpNfcLeaseProgress calls

BlocksFn = Callable[[], Iterable[tuple[int, bytes]]]
DiskProgressFn = Callable[[int, int, int], None]  # bus, unit, bytes of the disk's capacity done

_SLOT = re.compile(r"^([A-Za-z]+Controller)(\d+):(\d+)$")
_ORDINAL = re.compile(r"^[A-Za-z]+:(\d+)$")
_IDE_BUS = {key: bus for bus, key in rt.IDE_KEYS.items()}


class NfcImportError(VSphereError):
    """A VM could not be imported through an NFC lease."""

    code = "vsphere_nfc_import"


class _Retryable(Exception):
    """An upload answer worth sending the disk again for (5xx)."""


@dataclass(frozen=True, slots=True)
class ImportDisk:
    """One disk to import: where it hangs (controller bus, unit), its size, the byte
    extents ``(offset, length)`` its data covers, and a callable giving that data as
    ``(byte offset, bytes)``, ascending, 64 KiB-aligned, exactly those extents; it is called
    again for each attempt."""

    bus: int
    unit: int
    capacity: int
    extents: tuple[tuple[int, int], ...]
    blocks: BlocksFn


@dataclass(frozen=True, slots=True)
class DiskSent:
    bus: int
    unit: int
    bytes_sent: int  # of the attempt that succeeded
    attempts: int


@dataclass(frozen=True, slots=True)
class ImportResult:
    vm_moref: str
    disks: tuple[DiskSent, ...]

    @property
    def bytes_sent(self) -> int:
        return sum(d.bytes_sent for d in self.disks)


@dataclass(frozen=True, slots=True)
class _Target:
    url: str
    thumbprint: str  # SHA-1 hex, lower case, no colons ("" when none)


def import_new_vm(session: VSphereSession, placement: rt.Placement, config: VmConfig,
                  disks: Sequence[DiskConfig], name: str, *, keep_macs: bool,
                  sources: Sequence[ImportDisk], networks: PlacementNetworks | None = None,
                  progress: DiskProgressFn | None = None, retries: int | None = None,
                  backoff: float | None = None) -> ImportResult:
    """``_import_vm`` with the spec ``restore_target`` builds for a VM like the recorded
    ``config`` (``disks`` at their controller bus and unit, of their ``capacity_bytes``;
    ``networks``: those at the placement, see ``restore_target._new_vm_spec``)."""
    spec = rt._new_vm_spec(config, disks, name, placement.datastore, keep_macs=keep_macs,
                           networks=networks)
    return _import_vm(session, placement, spec, sources, progress=progress, retries=retries,
                     backoff=backoff)


def _import_vm(session: VSphereSession, placement: rt.Placement, spec: Any,
              sources: Sequence[ImportDisk], *, progress: DiskProgressFn | None = None,
              retries: int | None = None, backoff: float | None = None,
              ready_timeout: float = 600.0, progress_every: float | None = None,
              timeout: float = 300.0) -> ImportResult:
    """Create the VM of ``spec`` (a ``vim.vm.ConfigSpec``) at ``placement`` through
    ``ImportVApp`` and send each disk of ``sources`` (by bus and unit) as a streamOptimized
    VMDK. ``retries`` more attempts per disk after a dropped upload. On failure the lease is
    aborted and the created VM is gone; the error says why. ``retries`` and ``backoff``
    default to RETRIES and BACKOFF, ``progress_every`` to PROGRESS_EVERY."""
    retries = RETRIES if retries is None else retries
    backoff = BACKOFF if backoff is None else backoff
    stub = session.si._stub
    pool = vim.ResourcePool(placement.pool_moref, stub)  # type: ignore[no-untyped-call]
    folder = vim.Folder(placement.folder_moref, stub)  # type: ignore[no-untyped-call]
    host = (vim.HostSystem(placement.host_moref, stub)  # type: ignore[no-untyped-call]
            if placement.host_moref else None)
    import_spec = vim.vm.VmImportSpec(configSpec=spec)  # type: ignore[no-untyped-call]
    what = f"importing VM {spec.name!r} on datastore {placement.datastore!r}"
    try:
        lease = session.call(lambda: pool.ImportVApp(spec=import_spec, folder=folder,
                                                     host=host))
    except vmodl.MethodFault as exc:
        raise NfcImportError(f"{what}: vSphere refused the import ({fault_text(exc)}); "
                             "check the name, the placement and the privileges "
                             "(VApp.Import)") from exc
    vm_moref = ""
    try:
        info = _wait_ready(session, lease, what, ready_timeout)
        vm_moref = str(info.entity._moId) if info.entity is not None else ""
        targets = _targets(session, info, spec, what)
        by_slot = {(s.bus, s.unit): s for s in sources}
        if set(by_slot) != set(targets):
            raise NfcImportError(f"{what}: the lease lists disks at "
                                 f"{sorted(targets)}, the restore has {sorted(by_slot)}")
        total = sum(s.capacity for s in sources) or 1
        done: dict[tuple[int, int], int] = {}
        keeper = _LeaseKeeper(session, lease, lambda: int(100 * sum(done.values()) / total),
                              PROGRESS_EVERY if progress_every is None else progress_every)
        sent: list[DiskSent] = []
        with keeper:
            for source in sources:
                slot = (source.bus, source.unit)

                def report(n: int, slot: tuple[int, int] = slot) -> None:
                    done[slot] = n
                    if progress is not None:
                        progress(slot[0], slot[1], n)

                sent.append(_send_disk(session, targets[slot], source, report, what=what,
                                       retries=retries, backoff=backoff, timeout=timeout))
        keeper.error()
        session.call(lambda: lease.HttpNfcLeaseProgress(percent=100))
        session.call(lambda: lease.HttpNfcLeaseComplete())
    except BaseException as exc:
        _abort(session, lease, vm_moref, f"{exc}" or type(exc).__name__)
        if isinstance(exc, vmodl.MethodFault):
            raise NfcImportError(f"{what} failed ({fault_text(exc)}); the import was "
                                 "aborted and no VM was left") from exc
        raise
    return ImportResult(vm_moref, tuple(sent))


def _wait_ready(session: VSphereSession, lease: Any, what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        state = str(session.call(lambda: lease.state))
        if state == "ready":
            return session.call(lambda: lease.info)
        if state == "error":
            fault = session.call(lambda: lease.error)
            text = fault_text(getattr(fault, "fault", None) or fault) if fault else "no reason"
            raise NfcImportError(f"{what}: the import lease failed ({text}); check the "
                                 "datastore's free space and the host, then try again")
        if state == "done":
            raise NfcImportError(f"{what}: the import lease ended before any disk was sent")
        if time.monotonic() > deadline:
            raise NfcImportError(f"{what}: the import lease was not ready after {timeout:.0f} s "
                                 f"(state {state!r}); check the vCenter's tasks")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _spec_disks(spec: Any) -> dict[tuple[str, int, int], tuple[int, int]]:
    """(controller type, bus, unit) → (bus, unit) of each disk the spec creates."""
    controllers: dict[int, tuple[str, int]] = {key: ("VirtualIDEController", bus)
                                               for key, bus in _IDE_BUS.items()}
    devices: list[Any] = [c.device for c in spec.deviceChange or []]
    for d in devices:
        if isinstance(d, vim.vm.device.VirtualController):
            controllers[int(d.key)] = (type(d).__name__.rsplit(".", 1)[-1], int(d.busNumber))
    out: dict[tuple[str, int, int], tuple[int, int]] = {}
    for d in devices:
        if isinstance(d, vim.vm.device.VirtualDisk):
            kind, bus = controllers.get(int(d.controllerKey or 0), ("", -1))
            unit = int(d.unitNumber or 0)
            out[(kind, bus, unit)] = (bus, unit)
    return out


def _vm_disk_slots(session: VSphereSession, vm: Any) -> list[tuple[int, int]]:
    """(bus, unit) of the created VM's disks, in its device list's order."""
    devices: list[Any] = session.call(lambda: list(vm.config.hardware.device))
    buses = {int(d.key): int(d.busNumber) for d in devices
             if isinstance(d, vim.vm.device.VirtualController)}
    return [(buses.get(int(d.controllerKey or 0), -1), int(d.unitNumber or 0))
            for d in devices if isinstance(d, vim.vm.device.VirtualDisk)]


def _targets(session: VSphereSession, info: Any, spec: Any,
             what: str) -> dict[tuple[int, int], _Target]:
    """(bus, unit) → where to send that disk (see the module's comment, step 3)."""
    by_slot = _spec_disks(spec)
    ordinal: list[tuple[int, int]] | None = None
    out: dict[tuple[int, int], _Target] = {}
    for du in info.deviceUrl or []:
        if du.disk is False:
            continue
        keys = [str(k).rstrip("/").rsplit("/", 1)[-1] for k in (du.importKey, du.key) if k]
        slot: tuple[int, int] | None = None
        for k in keys:
            m = _SLOT.match(k)
            if m and (m[1], int(m[2]), int(m[3])) in by_slot:
                slot = by_slot[(m[1], int(m[2]), int(m[3]))]
                break
            n = _ORDINAL.match(k)
            if n:
                if ordinal is None:
                    ordinal = _vm_disk_slots(session, info.entity)
                if int(n[1]) < len(ordinal):
                    slot = ordinal[int(n[1])]
                    break
        if slot is None:
            raise NfcImportError(f"{what}: the lease's device {du.importKey or du.key!r} "
                                 "matches no disk of the VM's spec")
        if slot in out:
            raise NfcImportError(f"{what}: the lease lists the disk at bus {slot[0]} unit "
                                 f"{slot[1]} twice")
        thumb = str(du.sslThumbprint or "").replace(":", "").lower()
        out[slot] = _Target(str(du.url), thumb)
    return out


def _send_disk(session: VSphereSession, target: _Target, source: ImportDisk,
               report: Callable[[int], None], *, what: str, retries: int, backoff: float,
               timeout: float) -> DiskSent:
    """Send one disk, again from its start after a failure on the way."""
    disk = f"{what}: the disk at bus {source.bus} unit {source.unit}"
    last = ""
    for attempt in range(1, retries + 2):
        try:
            sent = _put(session, target, source, report, what=disk, timeout=timeout)
            return DiskSent(source.bus, source.unit, sent, attempt)
        except ssl.SSLCertVerificationError as exc:
            raise NfcImportError(f"{disk}: the server's certificate was refused ({exc}); "
                                 "check the vCenter's certificate or pin it") from exc
        except (_Retryable, OSError, http.client.HTTPException) as exc:
            last = " ".join(str(exc).split()) or type(exc).__name__
            report(0)
            if attempt <= retries:
                time.sleep(backoff * (2 ** (attempt - 1)))
    raise NfcImportError(f"{disk} could not be sent in {retries + 1} attempts (last: {last}); "
                         "check the connection to the ESXi host and try again")


def _put(session: VSphereSession, target: _Target, source: ImportDisk,
         report: Callable[[int], None], *, what: str, timeout: float) -> int:
    url = urllib.parse.urlsplit(target.url)
    to_vcenter = url.hostname in (None, "*")
    address = session.host if to_vcenter else str(url.hostname)
    port = url.port or (session.port if to_vcenter else 443)
    if target.thumbprint:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # verified below: pinned by the lease's SHA-1
    else:
        ctx = session.ssl_context or ssl.create_default_context()
    conn = http.client.HTTPSConnection(address, port, timeout=timeout, context=ctx)
    end = 0

    promised = iter(source.extents)

    def blocks() -> Iterator[tuple[int, bytes]]:
        nonlocal end
        for offset, data in source.blocks():
            if next(promised, None) != (offset, len(data)):
                raise NfcImportError(f"{what}: the repository gave {len(data)} bytes at "
                                     f"{offset}, not the block the upload's length counts; "
                                     "nothing more was sent")
            yield offset, data
            end = offset + len(data)
        if next(promised, None) is not None:
            raise NfcImportError(f"{what}: the repository gave fewer blocks than the upload's "
                                 "length counts; nothing more was sent")

    name = f"disk-{source.bus}-{source.unit}.vmdk"
    stream = StreamVmdk(source.capacity, blocks(), name=name, stored=True)
    length = stream_length(source.capacity, source.extents, name=name)
    try:
        conn.connect()
        _check_peer(session, target, conn.sock, what)
        conn.putrequest("POST", url.path + (f"?{url.query}" if url.query else ""),
                        skip_accept_encoding=True)
        conn.putheader("Content-Type", CONTENT_TYPE)
        conn.putheader("Content-Length", str(length))
        if to_vcenter and not target.thumbprint:
            conn.putheader("Cookie", f"vmware_soap_session={session.cookie}")
        conn.endheaders()
        told = 0
        try:
            for chunk in stream:
                conn.send(chunk)
                if end - told >= (4 << 20):
                    told = end
                    report(end)
            if stream.bytes_out != length:  # stream_length and the writer disagree: a bug
                raise NfcImportError(f"{what}: {stream.bytes_out} bytes were written where "
                                     f"{length} were announced")
        except OSError:
            # the server may have answered (and closed) before taking the whole body: its
            # answer says why; without one, the dropped connection is the error
            resp = _early_answer(conn)
            if resp is None:
                raise
        else:
            resp = conn.getresponse()
        body = resp.read(4096)
    finally:
        conn.close()
    if resp.status in (200, 201, 204):
        report(source.capacity)
        return stream.bytes_out
    text = " ".join(body.decode("utf-8", "replace").split())[:300]
    answer = f"HTTP {resp.status} {resp.reason}" + (f" ({text})" if text else "")
    if resp.status >= 500:
        raise _Retryable(answer)
    raise NfcImportError(f"{what} was refused: {answer}; the import was aborted")


def _early_answer(conn: http.client.HTTPSConnection) -> http.client.HTTPResponse | None:
    try:
        return conn.getresponse()
    except (OSError, http.client.HTTPException):
        return None


def _check_peer(session: VSphereSession, target: _Target, sock: socket.socket | None,
                what: str) -> None:
    der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
    if target.thumbprint:
        got = hashlib.sha1(der or b"").hexdigest()
        if got != target.thumbprint:
            raise NfcImportError(f"{what}: the host presented a certificate with SHA-1 {got}, "
                                 f"but the lease names {target.thumbprint}: refusing to send "
                                 "it the disk; check the host")
        return
    session.verify_peer(der)


class _LeaseKeeper:
    """Reports the import's percentage with HttpNfcLeaseProgress every ``every`` seconds
    while the disks are sent (a lease nobody reports on times out)."""

    def __init__(self, session: VSphereSession, lease: Any, percent: Callable[[], int],
                 every: float) -> None:
        self._session, self._lease, self._percent, self._every = session, lease, percent, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nfc-lease", daemon=True)
        self._failed = ""

    def __enter__(self) -> _LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._report(max(0, min(99, self._percent())))
            except (vmodl.MethodFault, OSError, VSphereError) as exc:
                self._failed = fault_text(exc) if isinstance(exc, vmodl.MethodFault) else str(exc)

    def _report(self, percent: int) -> None:
        self._session.call(lambda: self._lease.HttpNfcLeaseProgress(percent=percent))

    def error(self) -> None:
        """Raise if reporting progress failed (the lease may have timed out)."""
        if self._failed:
            raise NfcImportError(f"reporting the import's progress failed ({self._failed}); "
                                 "the lease may have expired: try again")


def _abort(session: VSphereSession, lease: Any, vm_moref: str, reason: str) -> None:
    """Abort the lease and make sure the VM it created is gone (best effort: the error
    that led here is what the caller reports)."""
    fault = vmodl.fault.SystemError(msg=reason, reason=reason)  # type: ignore[no-untyped-call]
    with contextlib.suppress(vmodl.MethodFault, OSError, VSphereError):
        session.call(lambda: lease.HttpNfcLeaseAbort(fault=fault))
    if not vm_moref:
        try:
            info = session.call(lambda: lease.info)
            vm_moref = str(info.entity._moId) if info is not None and info.entity else ""
        except (vmodl.MethodFault, OSError, VSphereError):
            return
    if vm_moref and vm_exists(session, vm_moref):
        try:
            rt.destroy_vm(session, vm_moref)
        except VSphereError as exc:
            log.warning("the VM %s of an aborted import could not be deleted (%s): delete it "
                        "by hand", vm_moref, exc)


def vm_exists(session: VSphereSession, moref: str) -> bool:
    vm = vim.VirtualMachine(moref, session.si._stub)  # type: ignore[no-untyped-call]
    try:
        session.call(lambda: vm.name)
    except vmodl.fault.ManagedObjectNotFound:
        return False
    except (vmodl.MethodFault, OSError, VSphereError):
        return True  # unknown: try to delete it
    return True
