"""How a backup reaches one VM's disks: the transport, resolved once per VM, and the disk
sources it opens (each disk's data file named by its descriptor).

Transports:

- ``host``: the ESXi host that runs the VM serves the files itself (``/folder`` on the host,
  no ``dcPath``), with single-use generic service tickets, its TLS certificate pinned by the
  SHA-1 thumbprint the vCenter reports for it (see :mod:`appliance.vsphere.host_endpoint`
  and :mod:`appliance.vsphere.host_transport`).
- ``vcenter``: through the vCenter's ``/folder`` (Range GETs with the session cookie and the
  datacenter's inventory path as ``dcPath``); the vCenter proxies to a host of its choosing,
  the slower path for large streams.
- ``direct``: the datastore's folder mounted on the appliance (an NFS export), named
  explicitly per datastore (``DS=DIR``); never guessed from ``info.url``.
- ``hotadd``: the snapshot's disks are attached to the appliance's own VM and read as its
  block devices (:mod:`appliance.vsphere.hotadd`); ``attached_for_reading`` attaches them
  once per VM and detaches them afterwards. Encrypted disks are read this way (the host
  decrypts them for the VM they are attached to, which must itself be encrypted).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Literal

from appliance.errors import UsageError
from appliance.source import Extent
from appliance.vsphere.cbt import split_datastore_path
from appliance.vsphere.descriptor import MAX_DESCRIPTOR_BYTES, data_file_of
from appliance.vsphere.host_endpoint import HostEndpoint, host_of_vm, service_ticket
from appliance.vsphere.host_transport import HostDiskSource
from appliance.vsphere.hotadd import (
    ApplianceVm,
    LogFn,
    attached,
    check_encrypted,
    find_appliance,
)
from appliance.vsphere.session import VSphereSession
from appliance.vsphere.transport import (
    DatastoreDiskSource,
    DatastoreEndpoint,
    DirectPathDiskSource,
    TransportError,
    datastore_url_path,
    fetch_small_file,
    read_local_head,
)

Transport = Literal["host", "vcenter", "direct", "hotadd"]
TRANSPORTS: tuple[Transport, ...] = ("host", "vcenter", "direct", "hotadd")
LOCAL_TRANSPORTS: tuple[Transport, ...] = ("direct", "hotadd")  # read here, not over HTTPS
DEFAULT_TRANSPORT: Transport = "host"

DiskSource = DatastoreDiskSource | DirectPathDiskSource | HostDiskSource


@dataclass(frozen=True, slots=True)
class DiskAccess:
    """How one VM's disks are read: the transport, the datacenter's inventory path (dcPath
    through the vCenter) and, for ``direct``, the local folder of each datastore."""

    transport: Transport
    datacenter_path: str
    datastore_paths: tuple[tuple[str, str], ...] = ()
    host: HostEndpoint | None = None  # the host that runs the VM (transport "host")
    appliance: ApplianceVm | None = None  # the appliance's own VM (transport "hotadd")
    devices: tuple[tuple[str, str], ...] = ()  # hotadd: (disk file, block device) attached

    @property
    def described(self) -> str:
        """For the log: where the disks are read from."""
        if self.transport == "host" and self.host is not None:
            return (f"reading disks from {self.host.where} with service tickets, its "
                    f"certificate pinned (SHA-1 as the vCenter reports it)")
        if self.transport == "hotadd" and self.appliance is not None:
            return (f"reading disks attached to the appliance VM {self.appliance.name!r} "
                    "(hot-add, independent non-persistent: the source is never changed)")
        if self.transport == "direct":
            return ("reading disks from the datastores mounted here ("
                    + ", ".join(f"{n}={r}" for n, r in self.datastore_paths) + ")")
        return ("reading disks through the vCenter (--transport vcenter): the vCenter relays "
                "every byte from a host, the slower path; --transport host reads from the "
                "host that runs the VM")

    def local_root(self, datastore: str) -> str:
        for name, root in self.datastore_paths:
            if name == datastore:
                return root
        named = ", ".join(n for n, _ in self.datastore_paths) or "none"
        raise TransportError(f"datastore {datastore!r} has no local folder for the direct "
                             f"transport (given: {named}): add --datastore-path "
                             f"{datastore}=DIR (its NFS export mounted here), or use "
                             "--transport host")


def parse_datastore_paths(items: Sequence[str]) -> dict[str, str]:
    """``["DS=DIR", …]`` → ``{DS: DIR}``; UsageError for a malformed or repeated one."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, root = item.partition("=")
        name, root = name.strip(), root.strip()
        if not sep or not name or not root:
            raise UsageError(f"--datastore-path {item!r}: write DATASTORE=DIR (the "
                                "datastore's folder mounted on this machine)")
        if not os.path.isabs(root):
            raise UsageError(f"--datastore-path {item!r}: {root!r} is not an absolute path")
        if name in out:
            raise UsageError(f"--datastore-path names datastore {name!r} twice")
        out[name] = root
    return out


def check_transport(transport: str, datastore_paths: Mapping[str, str]) -> Transport:
    """The transport named, checked: ``direct`` needs at least one datastore path."""
    for t in TRANSPORTS:
        if t == transport:
            if t == "direct" and not datastore_paths:
                raise UsageError("the direct transport reads datastores mounted on this "
                                    "machine: name each with --datastore-path DS=DIR")
            return t
    raise UsageError(f"unknown transport {transport!r}: choose host, vcenter, direct or "
                     "hotadd")


def resolve_access(session: VSphereSession, vm_moref: str, datacenter_path: str,
                transport: Transport, datastore_paths: Mapping[str, str] | None = None,
                *, encrypted: bool = False, appliance_vm: str = "") -> DiskAccess:
    """Resolve how one VM's disks are read (once per VM): for ``host``, the host that runs
    it now, with the thumbprint to pin; for ``hotadd``, the appliance's own VM (which must
    be encrypted itself when the VM's disks are: ``encrypted``), named by ``appliance_vm``
    (the vCenter's setting) or found as ``hotadd.find_appliance`` says."""
    paths = tuple(sorted((datastore_paths or {}).items()))
    check_transport(transport, dict(paths))
    host = host_of_vm(session, vm_moref) if transport == "host" else None
    appliance = find_appliance(session, appliance_vm or None) if transport == "hotadd" else None
    if appliance is not None:
        check_encrypted(appliance, encrypted, "the VM's disks are")
    return DiskAccess(transport, datacenter_path, paths, host, appliance)


@contextmanager
def attached_for_reading(session: VSphereSession, access: DiskAccess, files: Sequence[str],
                         log: LogFn) -> Iterator[DiskAccess]:
    """For ``hotadd``: attach ``files`` (the snapshot's disks to read) to the appliance VM
    read-only and yield the access that knows their devices; detach them afterwards, also
    on failure. Other transports: ``access`` as it is."""
    if access.transport != "hotadd" or not files:
        yield access
        return
    with attached(session, files, mode="independent_nonpersistent", log=log,
                  appliance=access.appliance) as devices:
        yield replace(access, devices=tuple(devices.items()))


def open_disk(session: VSphereSession, access: DiskAccess, file_name: str, size: int,
              label: str, allocated: Sequence[Extent], *, what: str,
              block_size: int = 1 << 20) -> DiskSource:
    """A Source for the flat disk whose descriptor is ``file_name`` (``[ds] folder/d.vmdk``):
    its descriptor is read first, and the data file it names is opened. A host source reads
    in streams once told what will be read (``HostDiskSource.expect``)."""
    if access.transport == "hotadd":
        device = dict(access.devices).get(file_name)
        if device is None:
            raise TransportError(f"{what}: not attached to the appliance VM for hot-add")
        return DirectPathDiskSource(device, size, label, allocated)
    ds_name, rel = split_datastore_path(file_name)
    if access.transport == "direct":
        root = access.local_root(ds_name).rstrip("/")
        head = read_local_head(f"{root}/{rel}", MAX_DESCRIPTOR_BYTES)
        data = data_file_of(rel, head, what=what)
        return DirectPathDiskSource(f"{root}/{data}", size, label, allocated)
    if access.transport == "host":
        host = access.host
        if host is None:
            raise TransportError(f"{what}: the host transport has no host to read from")

        def on_host(path: str, n: int) -> HostDiskSource:
            return HostDiskSource(host.address, host.port, host.thumbprint, host.name,
                                  ds_name, path, n, label, allocated,
                                  lambda url: service_ticket(session, url),
                                  block_size=block_size)

        descriptor = on_host(rel, 0)
        head = descriptor.fetch_whole(MAX_DESCRIPTOR_BYTES)
        source = on_host(data_file_of(rel, head, what=what), size)
        source.tickets += descriptor.tickets  # the disk's tickets, its descriptor's included
        return source
    endpoint = DatastoreEndpoint(session.host, session.port, session.cookie,
                                 session.ssl_context, session.fingerprint,
                                 renew=session.renewed_cookie)
    head = fetch_small_file(endpoint, datastore_url_path(access.datacenter_path, ds_name, rel),
                            MAX_DESCRIPTOR_BYTES, f"{file_name} (descriptor of {what})")
    data = data_file_of(rel, head, what=what)
    return DatastoreDiskSource(endpoint, access.datacenter_path, ds_name, data, size, label,
                               allocated)
