"""SSH connections with a pinned host key — the one helper the SFTP repository and the guest
code share.

A host's key is pinned by its SHA-256 fingerprint in the form ``ssh-keygen -l -E sha256``
prints (``SHA256:`` and unpadded base64). A connection whose key has another fingerprint is
refused (a policy that rejects like paramiko's ``RejectPolicy`` unless the key has the pinned
fingerprint; never ``AutoAddPolicy``; no known_hosts file is read or written), and the error
shows both fingerprints so the administrator can compare them with the host's own
(``ssh-keygen -l -f /etc/ssh/ssh_host_ed25519_key.pub``). Without a pinned fingerprint the
connection is refused too, and the error shows the one to pin.
"""

from __future__ import annotations

import base64
import hashlib
import io
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from appliance.errors import PinDetail, SshError, UsageError

__all__ = [
    "SshAuth",
    "SshError",
    "SshTarget",
    "connect",
    "fingerprint_of",
    "normalize_fingerprint",
    "read_key",
]

CONNECT_TIMEOUT = 30.0
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


class SshUnreachableError(SshError):
    code = "ssh_unreachable"


class SshAuthError(SshError):
    code = "ssh_auth"


class HostKeyMismatchError(SshError):
    """The host answered with another key than the pinned one."""

    code = "host_key_changed"

    def __init__(self, message: str, *, offered: str) -> None:
        super().__init__(message)
        self.offered = offered


class HostKeyUnpinnedError(SshError):
    """No fingerprint was pinned; the message shows the host's, the detail holds it (to pin
    in the request field ``host_key_fingerprint``)."""

    code = "host_key_unknown"

    def __init__(self, message: str, *, offered: str) -> None:
        super().__init__(message, detail=PinDetail(offered, "ssh_host", "host_key_fingerprint"))
        self.offered = offered


def fingerprint_of(key: paramiko.PKey) -> str:
    """``SHA256:…`` as ``ssh-keygen -l -E sha256`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def normalize_fingerprint(text: str) -> str:
    """A fingerprint as given (``SHA256:…``, with or without padding) in canonical form;
    anything else is a usage error that says what is expected."""
    t = text.strip()
    body = t[7:] if t.upper().startswith("SHA256:") else ""
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise UsageError(f"{text!r} is not an SSH host key fingerprint; give it as "
                         "`ssh-keygen -l -E sha256 -f KEY.pub` prints it: SHA256:<43 characters>")
    return "SHA256:" + base64.b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class SshAuth:
    """How to log in: a private key (a file, or its text) with an optional passphrase, or a
    password."""

    key_file: str | None = None
    password: str | None = None  # the key's passphrase with a key, else the password
    key_data: str | None = field(default=None, repr=False)  # the key file's text

    def __post_init__(self) -> None:
        if not self.key_file and not self.key_data and self.password is None:
            raise UsageError("an SSH login needs --ssh-key FILE or a password "
                             "(--password-stdin / --password-file)")


@dataclass(frozen=True, slots=True)
class SshTarget:
    host: str
    port: int
    user: str

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


class _Pinned(paramiko.MissingHostKeyPolicy):
    """Accept exactly the pinned key; refuse every other, as ``RejectPolicy`` does, and say
    which it was. No known_hosts file is consulted, so every key reaches this check."""

    def __init__(self, target: SshTarget, fingerprint: str | None) -> None:
        self.target = target
        self.fingerprint = fingerprint

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        offered = fingerprint_of(key)
        if self.fingerprint is None:
            raise HostKeyUnpinnedError(
                f"the SSH host {self.target} offers host key {offered} "
                f"({key.get_name()}); check it against the host's own "
                "(`ssh-keygen -l -E sha256 -f /etc/ssh/ssh_host_*_key.pub` there) and give it "
                f"with --host-key-fingerprint {offered}", offered=offered)
        if offered != self.fingerprint:
            raise HostKeyMismatchError(
                f"the SSH host {self.target} offers host key {offered}, not the pinned "
                f"{self.fingerprint}: the host was reinstalled, or someone is in between. "
                "Check the key on the host; if the change is expected, trust the new key with "
                "`vmkeep repo edit NAME --host-key-fingerprint NEW`", offered=offered)


def read_key(path: str, passphrase: str | None) -> str:
    """The text of a private key file, checked to be one (and opened with ``passphrase``)."""
    _load_key(path, passphrase)
    return Path(path).read_text()


def _key_from_text(text: str, passphrase: str | None) -> paramiko.PKey:
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            key: paramiko.PKey = kind.from_private_key(io.StringIO(text), passphrase)
            return key
        except paramiko.PasswordRequiredException:
            raise UsageError("the stored SSH key is encrypted and no passphrase is stored: add "
                             "the repository again with its passphrase") from None
        except (paramiko.SSHException, ValueError):
            continue
    raise UsageError("the stored SSH key cannot be read: add the repository again with "
                     "--ssh-key FILE")


def _load_key(path: str, passphrase: str | None) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(Path(path), passphrase)
    except FileNotFoundError:
        raise UsageError(f"SSH key file {path} does not exist") from None
    except paramiko.PasswordRequiredException:
        raise UsageError(f"SSH key {path} is encrypted: give its passphrase with "
                         "--password-stdin or --password-file") from None
    except (paramiko.SSHException, ValueError, OSError) as exc:
        raise UsageError(f"cannot read SSH key {path}: {exc}") from None


def _transport(sock: Any, **kw: Any) -> paramiko.Transport:
    """Paramiko's transport with AES-GCM preferred (an AEAD cipher costs Paramiko one pass
    over the data, not a cipher pass and a MAC pass) and CBC / 3DES left out."""
    t = paramiko.Transport(sock, **kw)
    options = t.get_security_options()
    known = tuple(options.ciphers)
    options.ciphers = (*[c for c in FAST_CIPHERS if c in known],
                       *[c for c in known if c.endswith("-ctr")])
    return t


def connect(target: SshTarget, auth: SshAuth, fingerprint: str | None, *,
            timeout: float = CONNECT_TIMEOUT) -> paramiko.SSHClient:
    """A logged-in client whose host key has the pinned ``fingerprint`` (see the module)."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(_Pinned(target, fingerprint))
    kw: dict[str, Any] = {"look_for_keys": False, "allow_agent": False,
                          "timeout": timeout, "banner_timeout": timeout,
                          "auth_timeout": timeout, "transport_factory": _transport}
    if auth.key_data:
        kw["pkey"] = _key_from_text(auth.key_data, auth.password)
    elif auth.key_file:
        kw["pkey"] = _load_key(auth.key_file, auth.password)
    else:
        kw["password"] = auth.password
    try:
        client.connect(target.host, target.port, target.user, **kw)
    except SshError:
        client.close()
        raise
    except paramiko.AuthenticationException as exc:
        client.close()
        raise SshAuthError(f"the SSH host {target} refused the login of {target.user!r} "
                           f"({exc}); check the user, the key or the password") from None
    except (OSError, paramiko.SSHException, EOFError) as exc:
        client.close()
        raise SshUnreachableError(f"cannot reach the SSH host {target}: {exc}; check the host, "
                                  "the port and that sshd runs there") from None
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(15)
        sock = transport.sock
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client
