"""Upload a disk's content to a datastore file: one HTTPS PUT to ``/folder/<path>`` with the
session cookie, streamed from an iterable of byte strings (no temporary copy).

This is how a restore writes a new VM's flat disk: vSphere creates the disk (and its
``-flat.vmdk``) and the upload replaces the flat file's content. The body's length is the
disk's capacity; the datastore API takes no ranges on upload, so zeros are sent as well.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Callable, Iterable

from appliance.errors import NoSpaceError, VSphereError
from appliance.vsphere.transport import DatastoreEndpoint, datastore_url_path


class UploadError(VSphereError):
    """A file could not be written to the datastore."""

    code = "vsphere_upload"


def upload_file(endpoint: DatastoreEndpoint, datacenter_name: str, datastore_name: str,
                path: str, size: int, chunks: Iterable[bytes], *, timeout: float = 300.0,
                progress: Callable[[int], None] | None = None) -> int:
    """PUT exactly ``size`` bytes from ``chunks`` to ``[datastore_name] path``; returns the
    bytes sent. Fails (and sends no more) if ``chunks`` gives more or fewer bytes."""
    what = f"[{datastore_name}] {path}"
    ctx = endpoint.ssl_context or ssl.create_default_context()
    conn = http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=timeout,
                                       context=ctx)
    sent = 0
    try:
        try:
            conn.connect()
            endpoint.check_peer(conn.sock)  # before the session cookie is sent
            conn.putrequest("PUT", datastore_url_path(datacenter_name, datastore_name, path),
                            skip_accept_encoding=True)
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Content-Length", str(size))
            conn.putheader("Cookie", f"vmware_soap_session={endpoint.cookie}")
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
                              f"({reason}); check the connection to "
                              f"{endpoint.host}:{endpoint.port} and try again") from None
    finally:
        conn.close()
    if resp.status in (200, 201, 204):
        return sent
    if resp.status in (401, 403):
        raise UploadError(f"uploading {what}: the datastore refused the session "
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
