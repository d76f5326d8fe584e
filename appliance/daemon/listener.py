"""The appliance's listening socket: bound private, and every connection's peer uid checked
(``SO_PEERCRED``) before a byte is read."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from pathlib import Path

log = logging.getLogger("appliance.daemon")

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (None if unknown)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except OSError:
        return None
    _pid, uid, _gid = _PEERCRED.unpack(raw)
    return int(uid)


def bind_socket(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 from the moment it exists."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(os.fspath(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    sock.listen(64)
    sock.setblocking(False)
    return sock


def protocol_class() -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class PeerCheckedProtocol(H11Protocol):
        """uvicorn's HTTP/1.1 protocol that closes connections from another uid."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            sock = transport.get_extra_info("socket")
            uid = peer_uid(sock) if sock is not None else None
            if uid != os.getuid():
                log.warning("refused a connection from uid %s: only uid %s may use the "
                            "appliance", uid, os.getuid())
                transport.abort()

    return PeerCheckedProtocol
