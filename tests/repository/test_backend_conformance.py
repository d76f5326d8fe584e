"""One conformance suite for every storage backend: local, memory, and SFTP to a real
OpenSSH server on 127.0.0.1 (tests/sshd.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.errors import NoSpaceError
from appliance.repository.backend import Backend, LocalBackend, MemoryBackend, ObjectNotFound
from appliance.repository.sftp import SftpBackend, parse_sftp_url
from appliance.ssh import SshAuth
from tests.helpers import skip_unless_ci
from tests.sshd import Sshd

Factory = Callable[[Path], Backend]
FACTORIES: dict[str, Factory] = {
    "local": lambda p: LocalBackend(p / "store"),
    "memory": lambda _p: MemoryBackend(),
}


def sftp_backend(sshd: Sshd, folder: str, **kw: Any) -> SftpBackend:
    return SftpBackend(parse_sftp_url(sshd.url(folder)), SshAuth(key_file=str(sshd.key_file)),
                       sshd.fingerprint, create=True, **kw)


@pytest.fixture(params=[*sorted(FACTORIES), "sftp"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param != "sftp":
        yield FACTORIES[request.param](tmp_path)
        return
    sshd: Sshd = request.getfixturevalue("sshd")
    b = sftp_backend(sshd, f"conformance-{tmp_path.name}")
    try:
        yield b
    finally:
        b.close()


def test_put_get_round_trip(backend: Backend) -> None:
    backend.put("packs/ab/abc.pack", b"hello")
    assert backend.get("packs/ab/abc.pack") == b"hello"
    assert backend.stat("packs/ab/abc.pack").size == 5


def test_put_replaces_atomically(backend: Backend) -> None:
    backend.put("locks/x", b"one")
    backend.put("locks/x", b"two!")
    assert backend.get("locks/x") == b"two!"


def test_get_range(backend: Backend) -> None:
    backend.put("f", bytes(range(100)))
    assert backend.get_range("f", 10, 5) == bytes(range(10, 15))
    assert backend.get_range("f", 95, 10) == bytes(range(95, 100))  # short only at the end
    assert backend.get_range("f", 200, 10) == b""


def test_list_is_recursive_sorted_and_excludes_other_folders(backend: Backend) -> None:
    for name in ("packs/b2/b", "packs/a1/a", "manifests/m", "config"):
        backend.put(name, b"x")
    assert backend.list("packs") == ["packs/a1/a", "packs/b2/b"]
    assert backend.list("nothing-here") == []


@pytest.mark.parametrize("op", ["get", "stat", "delete", "get_range"])
def test_missing_objects_raise_not_found(backend: Backend, op: str) -> None:
    with pytest.raises(ObjectNotFound):
        if op == "get_range":
            backend.get_range("nope", 0, 1)
        else:
            getattr(backend, op)("nope")


def test_delete_removes(backend: Backend) -> None:
    backend.put("manifests/a", b"1")
    backend.delete("manifests/a")
    assert backend.list("manifests") == []
    with pytest.raises(ObjectNotFound):
        backend.get("manifests/a")


def test_put_of_empty_and_large_objects(backend: Backend) -> None:
    big = os.urandom(5 << 20)
    backend.put("empty", b"")
    backend.put("big", big)
    assert backend.get("empty") == b""
    assert backend.get("big") == big


def test_local_put_leaves_no_temporary_file(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path / "s")
    b.put("packs/aa/x.pack", b"data")
    assert b.list("tmp") == []


def test_local_put_on_full_disk_raises_no_space_and_keeps_old_object(tmp_path: Path) -> None:
    """ENOSPC through a real small filesystem when we may mount one; else skipped."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or os.system(f"mount -t tmpfs -o size=1m tmpfs {mnt} 2>/dev/null"):
        skip_unless_ci("cannot mount a small tmpfs here (needs root)")
    try:
        b = LocalBackend(mnt / "s")
        b.put("obj", b"old")
        with pytest.raises(NoSpaceError) as err:
            b.put("obj", os.urandom(2 << 20))
        assert "no space" in str(err.value)
        assert b.get("obj") == b"old"
        assert b.list("tmp") == []
    finally:
        os.system(f"umount {mnt}")


def test_sftp_put_on_full_disk_raises_no_space_and_keeps_old_object(sshd: Sshd) -> None:
    """ENOSPC on the SSH host: a small tmpfs the account owns."""
    mnt = sshd.owned_folder("full")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        skip_unless_ci("cannot mount a small tmpfs here")
    try:
        os.chown(mnt, *sshd.ids())
        with sftp_backend(sshd, "full/s") as b:
            b.put("obj", b"old")
            with pytest.raises(NoSpaceError) as err:
                b.put("obj", os.urandom(2 << 20))
            assert "no space" in str(err.value) and "127.0.0.1" in str(err.value)
            assert b.get("obj") == b"old"
            assert b.list("tmp") == []
            space = b.space()
            assert space is not None and 0 < space[1] <= 1 << 20
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_sftp_put_is_durable_and_leaves_no_temporary_file(sshd: Sshd) -> None:
    with sftp_backend(sshd, "durable") as b:
        b.put("packs/aa/x.pack", b"data")
        assert b.list("tmp") == []
        assert (sshd.base / "durable" / "packs" / "aa" / "x.pack").read_bytes() == b"data"


def test_sftp_get_range_of_a_long_range_is_whole(sshd: Sshd) -> None:
    data = os.urandom(3 << 20)
    with sftp_backend(sshd, "ranges") as b:
        b.put("p", data)
        assert b.get_range("p", 12345, 2 << 20) == data[12345 : 12345 + (2 << 20)]
        assert b.get_range("p", (3 << 20) - 10, 1 << 20) == data[-10:]
        assert b.get_range("p", 5 << 20, 1 << 20) == b""
