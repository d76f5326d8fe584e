"""Upload a disk's content to a datastore file: one HTTPS PUT to ``/folder/<path>``, streamed
from an iterable of byte strings (no temporary copy).

This is how a restore writes a disk that exists already (over the original VM, or a disk added
to a VM): vSphere creates the disk (and its ``-flat.vmdk``) and the upload replaces the flat
file's content. The body's length is the disk's capacity; ``/folder`` takes no ranges on
upload, so zeros are sent as well (a new VM's disks go through an NFC import instead, which
sends only allocated grains).

Two places take the PUT:

- ``upload_to_host``: the ESXi host that runs the VM, its certificate pinned by the SHA-1
  thumbprint the vCenter reports, let in by a single-use ``httpPut`` service ticket (as the
  host transport reads). The default: no vCenter relays the bytes.
- ``upload_file``: the vCenter's ``/folder`` with the session cookie and the datacenter's
  inventory path (``--transport vcenter``).
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Callable, Iterable

from appliance.errors import NoSpaceError, VSphereError
from appliance.vsphere.host_endpoint import TICKET_COOKIE, HostEndpoint, check_pinned
from appliance.vsphere.host_transport import host_url_path
from appliance.vsphere.transport import DatastoreEndpoint, datastore_url_path

Progress = Callable[[int], None]


class UploadError(VSphereError):
    """A file could not be written to the datastore."""

    code = "vsphere_upload"


def upload_file(endpoint: DatastoreEndpoint, datacenter_name: str, datastore_name: str,
                path: str, size: int, chunks: Iterable[bytes], *, timeout: float = 300.0,
                progress: Progress | None = None) -> int:
    """PUT exactly ``size`` bytes from ``chunks`` to ``[datastore_name] path`` through the
    vCenter; returns the bytes sent. Fails (and sends no more) if ``chunks`` gives more or
    fewer bytes."""
    ctx = endpoint.ssl_context or ssl.create_default_context()
    conn = http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=timeout,
                                       context=ctx)

    def opened() -> str:
        conn.connect()
        endpoint.check_peer(conn.sock)  # before the session cookie is sent
        return f"vmware_soap_session={endpoint.cookie}"

    return _put(conn, opened, datastore_url_path(datacenter_name, datastore_name, path),
                f"[{datastore_name}] {path}", f"{endpoint.host}:{endpoint.port}", size, chunks,
                progress)


def upload_to_host(host: HostEndpoint, ticket: Callable[[str], str], datastore_name: str,
                   path: str, size: int, chunks: Iterable[bytes], *, timeout: float = 300.0,
                   progress: Progress | None = None) -> int:
    """PUT exactly ``size`` bytes from ``chunks`` to ``[datastore_name] path`` on ``host``
    (``ticket(url)`` gives a single-use ``httpPut`` ticket for the URL); returns the bytes
    sent. The host's certificate is checked before the ticket is sent."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # verified in opened(): pinned by the vCenter's thumbprint
    conn = http.client.HTTPSConnection(host.address, host.port, timeout=timeout, context=ctx)
    url_path = host_url_path(datastore_name, path)

    def opened() -> str:
        conn.connect()
        check_pinned(conn.sock, host)
        return f"{TICKET_COOKIE}={ticket(f'https://{host.address}:{host.port}{url_path}')}"

    return _put(conn, opened, url_path, f"[{datastore_name}] {path} on {host.where}",
                f"{host.address}:{host.port}", size, chunks, progress)


def _put(conn: http.client.HTTPSConnection, opened: Callable[[], str], url_path: str,
         what: str, where: str, size: int, chunks: Iterable[bytes],
         progress: Progress | None) -> int:
    """Connect (``opened`` checks the peer and returns the Cookie header), PUT the body,
    read the answer."""
    sent = 0
    try:
        try:
            cookie = opened()
            conn.putrequest("PUT", url_path, skip_accept_encoding=True)
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Content-Length", str(size))
            conn.putheader("Cookie", cookie)
            conn.endheaders()
            for chunk in chunks:
                if sent + len(chunk) > size:
                    raise UploadError(f"uploading {what}: the data is longer than the disk's "
                                      f"{size} bytes; nothing more was sent")
                conn.send(chunk)
                sent += len(chunk)
                if progress is not None:
                    progress(sent)
            if sent != size:
                raise UploadError(f"uploading {what}: only {sent} of {size} bytes were "
                                  "available; the upload is incomplete")
            resp = conn.getresponse()
            body = resp.read(4096)
        except (OSError, http.client.HTTPException) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise UploadError(f"uploading {what} failed after {sent} of {size} bytes "
                              f"({reason}); check the connection to {where} and try "
                              "again") from None
    finally:
        conn.close()
    if resp.status in (200, 201, 204):
        return sent
    if resp.status in (401, 403):
        raise UploadError(f"uploading {what}: the server refused the session or ticket "
                          f"(HTTP {resp.status}); log in again with a user allowed to browse "
                          "and write datastores")
    if resp.status == 404:
        raise UploadError(f"uploading {what}: the datacenter, datastore or folder does not "
                          "exist (HTTP 404)")
    if resp.status == 507:
        raise NoSpaceError(f"uploading {what}: the datastore is full (HTTP 507); free space "
                           "or restore to another datastore")
    text = " ".join(body.decode("utf-8", "replace").split())[:200]
    raise UploadError(f"uploading {what} failed: HTTP {resp.status} {resp.reason}"
                      + (f" ({text})" if text else ""))
