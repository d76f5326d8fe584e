"""One conformance suite for every storage backend (the SFTP backend joins it later)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.errors import NoSpaceError
from appliance.repository.backend import Backend, LocalBackend, MemoryBackend, ObjectNotFound

Factory = Callable[[Path], Backend]
FACTORIES: dict[str, Factory] = {
    "local": lambda p: LocalBackend(p / "store"),
    "memory": lambda _p: MemoryBackend(),
}


@pytest.fixture(params=sorted(FACTORIES))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield FACTORIES[request.param](tmp_path)


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
        pytest.skip("cannot mount a small tmpfs here (needs root)")
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
