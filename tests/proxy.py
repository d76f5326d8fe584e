"""A loopback TCP proxy that can cut its connections: between vmkeep and sshd in the resume
tests. It counts the bytes it forwards towards the server and cuts every connection open when
that count passes each of the given marks."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterable


class CuttingProxy:
    def __init__(self, target_port: int, cut_at: Iterable[int] = ()) -> None:
        self.target_port = target_port
        self.marks = sorted(cut_at)
        self.upstream_bytes = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = False
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                dst.sendall(data)
                if upstream:
                    self._count(len(data))
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _count(self, n: int) -> None:
        with self._lock:
            self.upstream_bytes += n
            due = bool(self.marks) and self.upstream_bytes >= self.marks[0]
            if due:
                self.marks.pop(0)
        if due:
            self.cut()

    def cut(self) -> None:
        """Break every open connection, as a network failure does."""
        with self._lock:
            conns, self._conns = self._conns, []
            self.cuts += 1
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self._stop = True
        self._listener.close()
        self.cut()
