"""A logged-in vSphere API session, with TLS pinned to the server's certificate fingerprint.

vCenters usually serve self-signed certificates, so verification means pinning: the SHA-256
fingerprint of the server's certificate (hex, colons optional, any case) is shown when a
vCenter is added and checked on every connection afterwards. ``insecure=True`` turns all
verification off. The ServiceInstance (``.si``) and anything ``vim.*`` stay inside
``appliance/vsphere``; callers outside get our own dataclasses and errors.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import socket
import ssl
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim
from pyVmomi.Security import ThumbprintMismatchException

from appliance.errors import PinDetail, VSphereError

log = logging.getLogger(__name__)

T = TypeVar("T")

COOKIE_NAME = "vmware_soap_session"


class VSphereUnreachableError(VSphereError):
    """The vCenter/ESXi host could not be reached."""

    code = "vsphere_unreachable"


class VSphereLoginError(VSphereError):
    """The vCenter/ESXi host refused the user name or password."""

    code = "vsphere_login"


class FingerprintMismatchError(VSphereError):
    """The server's certificate is not the one that was pinned."""

    code = "vsphere_fingerprint_mismatch"


class FingerprintRequiredError(VSphereError):
    """No fingerprint was given to pin and verification was not turned off."""

    code = "vsphere_fingerprint_required"


def normalize_fingerprint(fingerprint: str) -> str:
    """``AB:cd:...`` or ``abcd...`` → lower-case hex without colons; VSphereError if it is
    not a SHA-256 fingerprint."""
    hexed = fingerprint.strip().replace(":", "").lower()
    if len(hexed) != 64 or any(ch not in "0123456789abcdef" for ch in hexed):
        raise VSphereError(
            f"{fingerprint!r} is not a SHA-256 fingerprint: give 64 hex digits, colons optional")
    return hexed


def format_fingerprint(fingerprint: str) -> str:
    """Lower-case hex → ``AB:CD:…`` as shown to people."""
    hexed = normalize_fingerprint(fingerprint)
    return ":".join(hexed[i:i + 2] for i in range(0, len(hexed), 2)).upper()


def _unreachable(host: str, port: int, exc: BaseException) -> VSphereUnreachableError:
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        reason = "timed out"
    elif isinstance(exc, ConnectionRefusedError):
        reason = "connection refused"
    return VSphereUnreachableError(
        f"cannot reach vSphere at {host}:{port} ({reason}): check the host name, port and "
        "firewall")


def unverified_context() -> ssl.SSLContext:
    """A TLS context that checks nothing; pinning is done on the peer certificate instead."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def fingerprint_of(der_cert: bytes) -> str:
    """SHA-256 of a DER certificate as lower-case hex."""
    return hashlib.sha256(der_cert).hexdigest()


def fetch_fingerprint(host: str, port: int, *, timeout: float = 30) -> str:
    """The SHA-256 fingerprint (lower-case hex, no colons) of the server's TLS certificate."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                unverified_context().wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLError as exc:
        raise VSphereUnreachableError(
            f"TLS handshake with {host}:{port} failed ({exc.reason or exc}): is this the "
            "vCenter/ESXi HTTPS port?") from exc
    except OSError as exc:
        raise _unreachable(host, port, exc) from exc
    if not der:
        raise VSphereUnreachableError(
            f"{host}:{port} sent no TLS certificate: is this the vCenter/ESXi HTTPS port?")
    return fingerprint_of(der)


class VSphereSession:
    """A logged-in session. Use ``call(fn)`` for API calls that should survive expiry."""

    def __init__(self, si: Any, *, host: str, port: int, user: str, password: str,
                 fingerprint: str | None, ssl_context: ssl.SSLContext) -> None:
        self.si = si
        self.host = host
        self.port = port
        self.fingerprint = fingerprint
        self.ssl_context = ssl_context
        self._user = user
        self._password = password
        self._closed = False

    @property
    def content(self) -> Any:
        """The ServiceContent (``vim.ServiceInstanceContent``)."""
        return self.si.content

    @property
    def cookie(self) -> str:
        """The ``vmware_soap_session`` cookie value, for datastore HTTP access."""
        return str(self.si._stub.GetSessionId() or "")

    @property
    def cookie_header(self) -> str:
        """A ``Cookie:`` header value for datastore HTTP access."""
        return f'{COOKIE_NAME}="{self.cookie}"'

    def verify_peer(self, der_cert: bytes | None) -> None:
        """Check a certificate seen on another HTTPS connection against the pin."""
        if self.fingerprint is None:
            return
        got = fingerprint_of(der_cert or b"")
        if got != self.fingerprint:
            raise FingerprintMismatchError(
                f"{self.host}:{self.port} presented certificate {format_fingerprint(got)}, "
                f"expected {format_fingerprint(self.fingerprint)}: check the server, then "
                "re-pin with --fingerprint if the change is expected")

    def login(self) -> None:
        """Log in again on the same connection (after the session expired)."""
        try:
            self.si.RetrieveContent().sessionManager.Login(self._user, self._password)
        except vim.fault.InvalidLogin as exc:
            raise VSphereLoginError(
                f"vSphere at {self.host}:{self.port} refused user {self._user!r}: check the "
                "user name and password") from exc

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn``; if the session expired, log in once more and retry it once."""
        try:
            return fn()
        except vim.fault.NotAuthenticated:
            log.info("vSphere session at %s:%s expired; logging in again", self.host, self.port)
            self.login()
            return fn()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            Disconnect(self.si)  # type: ignore[no-untyped-call]
        except Exception as exc:  # logging out of a dead session must not mask real errors
            log.debug("vSphere logout failed: %s", exc)

    def __enter__(self) -> VSphereSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def connect(host: str, port: int, user: str, password: str, *, fingerprint: str | None,
            insecure: bool = False, timeout: float = 30) -> VSphereSession:
    """Log in to vCenter/ESXi. Pins ``fingerprint`` unless ``insecure``; one of them is needed."""
    pinned: str | None = None
    if not insecure:
        seen = fetch_fingerprint(host, port, timeout=timeout)
        if fingerprint is None:
            raise FingerprintRequiredError(
                f"{host}:{port} presents certificate fingerprint {format_fingerprint(seen)}: "
                "check it, then pass --fingerprint to pin it (or --insecure to skip "
                "verification)",
                detail=PinDetail(format_fingerprint(seen), "vcenter", "fingerprint"))
        pinned = normalize_fingerprint(fingerprint)
        if seen != pinned:
            raise FingerprintMismatchError(
                f"{host}:{port} presented certificate {format_fingerprint(seen)}, expected "
                f"{format_fingerprint(pinned)}: check the server, then re-pin with "
                "--fingerprint if the change is expected")
    else:
        log.warning("connecting to %s:%s with TLS verification off (--insecure)", host, port)
    ctx = unverified_context()
    try:
        # thumbprint makes pyVmomi check the pin on every connection it opens, not just ours.
        si = SmartConnect(  # type: ignore[no-untyped-call]
            host=host, port=port, user=user, pwd=password, sslContext=ctx,
            thumbprint=pinned, httpConnectionTimeout=timeout)
    except ThumbprintMismatchException as exc:
        raise FingerprintMismatchError(
            f"{host}:{port} changed its certificate during login (expected "
            f"{format_fingerprint(pinned or '0' * 64)}): check the server") from exc
    except vim.fault.InvalidLogin as exc:
        raise VSphereLoginError(
            f"vSphere at {host}:{port} refused user {user!r}: check the user name and "
            "password") from exc
    except vim.fault.VimFault as exc:
        why = getattr(exc, "msg", "") or type(exc).__name__
        raise VSphereError(f"vSphere at {host}:{port} refused the login: {why}") from exc
    except ssl.SSLError as exc:
        raise VSphereUnreachableError(
            f"TLS with {host}:{port} failed ({exc.reason or exc}): is this the vCenter/ESXi "
            "HTTPS port?") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _unreachable(host, port, exc) from exc
    return VSphereSession(si, host=host, port=port, user=user, password=password,
                          fingerprint=pinned, ssl_context=ctx)
