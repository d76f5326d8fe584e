"""Nothing ``vim.*`` leaves the vSphere adapter, and the jobs walk no vSphere objects (issue 12).

(a) Every public function and method of every public module of ``appliance.vsphere`` takes
    and returns only our own values (frozen dataclasses, enums, errors, the few classes on
    ``OWN_CLASSES`` below), builtins and standard-library types: no ``Any``, no ``object``,
    nothing from pyVmomi. Private helpers (leading ``_``, and the private module
    ``appliance.vsphere._vim`` that holds the pyVmomi plumbing) are exempt.
(b) No ``Any`` in the public signatures of ``appliance.jobs``.
(c) No ``getattr(``/``hasattr(`` in ``appliance/jobs/*.py`` but the reviewed lines on
    ``JOBS_GETATTR``, and no module outside ``appliance/vsphere`` imports pyVmomi.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import pkgutil
import re
import typing
from collections.abc import Callable
from pathlib import Path
from types import GenericAlias, ModuleType

import pytest

import appliance.jobs
import appliance.vsphere
from tests.signatures import has_any, leaves, public_functions

ROOT = Path(__file__).resolve().parents[1]

#: Our classes that are not frozen values but may cross the adapter's public signatures.
OWN_CLASSES: dict[str, str] = {
    "appliance.vsphere.session.VSphereSession":
        "the logged-in connection itself: callers hold it and hand it back; its pyVmomi "
        "ServiceInstance is only reached inside appliance/vsphere (see ALLOWED below)",
    "appliance.vsphere.transport.DatastoreDiskSource":
        "a disk Source reading over HTTPS (an open connection, not a value)",
    "appliance.vsphere.transport.DirectPathDiskSource":
        "a disk Source reading a local file (an open file, not a value)",
    "appliance.vsphere.host_transport.HostDiskSource":
        "a disk Source reading from an ESXi host in ticketed streams (open connections)",
}

#: Public signatures that legitimately deal with pyVmomi, with the reason.
ALLOWED: dict[str, str] = {
    "appliance.vsphere.session.VSphereSession.__init__":
        "wraps the ServiceInstance pyVim's SmartConnect returned (connect() does; the tests "
        "wrap their own raw connection)",
    "appliance.vsphere.session.VSphereSession.content":
        "the raw ServiceContent, for appliance/vsphere's own modules and the tests that drive "
        "vcsim through the raw API; nothing outside appliance/vsphere in the product uses it "
        "(test_nothing_outside_the_adapter_imports_pyvmomi)",
}

#: Reviewed ``getattr(``/``hasattr(`` uses in appliance/jobs: (file, text on the line): reason.
JOBS_GETATTR: dict[tuple[str, str], str] = {
    ("backup.py", 'getattr(ws.repo.backend, "parallel_writes", 1)'):
        "a repository backend's optional capability (how many writes it takes at once), not a "
        "vSphere object",
}


def _public_modules(package: ModuleType) -> list[ModuleType]:
    return [importlib.import_module(f"{package.__name__}.{m.name}")
            for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")]


def _foreign(hint: object) -> list[str]:
    """What in ``hint`` is not our own value, a builtin or the standard library's."""
    bad = []
    for h in leaves(hint):
        if h is typing.Any or h is object:
            bad.append(repr(h))
            continue
        if not isinstance(h, type):
            continue
        module = h.__module__ or ""
        qual = f"{module}.{h.__qualname__}"
        if module.split(".")[0] in ("pyVmomi", "pyVim", "vmodl"):
            bad.append(f"{qual} (pyVmomi)")
        elif module.split(".")[0] in ("appliance", "catalog") and not (
                _frozen(h) or issubclass(h, enum.Enum | BaseException) or qual in OWN_CLASSES):
            bad.append(f"{qual} (ours, but not a frozen value)")
    return bad


def _frozen(cls: type) -> bool:
    params = getattr(cls, "__dataclass_params__", None)
    return dataclasses.is_dataclass(cls) and bool(params and params.frozen)


def _violations(module: ModuleType, check: Callable[[object], list[str]]
                ) -> tuple[int, list[str]]:
    checked, bad = 0, []
    for name, fn in public_functions(module):
        where = f"{module.__name__}.{name}"
        hints = typing.get_type_hints(fn)  # fails when an annotation names no real type
        checked += 1
        if where in ALLOWED:
            continue
        bad += [f"{where}: {param}: {why}"
                for param, hint in hints.items() for why in check(hint)]
    return checked, bad


@pytest.mark.parametrize("module", _public_modules(appliance.vsphere),
                         ids=lambda m: m.__name__)
def test_vsphere_public_signatures_take_and_return_our_own_values(module: ModuleType) -> None:
    checked, bad = _violations(module, _foreign)
    assert not bad
    assert checked


@pytest.mark.parametrize("module", _public_modules(appliance.jobs), ids=lambda m: m.__name__)
def test_no_any_in_jobs_signatures(module: ModuleType) -> None:
    _checked, bad = _violations(module, lambda h: ["Any"] if has_any(h) else [])
    assert not bad


def test_allow_lists_are_not_stale() -> None:
    """A stale entry would hide nothing but mislead: every allowed signature still exists
    and still needs the exemption."""
    needed = {f"{m.__name__}.{n}" for m in _public_modules(appliance.vsphere)
              for n, fn in public_functions(m)
              if any(_foreign(h) for h in typing.get_type_hints(fn).values())}
    assert set(ALLOWED) == needed
    for qual in OWN_CLASSES:
        module, _, cls = qual.rpartition(".")
        assert inspect.isclass(getattr(importlib.import_module(module), cls))


def _getattr_lines() -> list[tuple[str, str]]:
    return [(path.name, line.strip())
            for path in sorted((ROOT / "appliance" / "jobs").glob("*.py"))
            for line in path.read_text().splitlines()
            if re.search(r"\b(getattr|hasattr)\(", line)]


def test_jobs_walk_no_objects_with_getattr() -> None:
    bad = [f"{name}: {line}" for name, line in _getattr_lines()
           if not any(name == f and text in line for f, text in JOBS_GETATTR)]
    assert not bad
    for f, text in JOBS_GETATTR:  # no stale entries
        assert any(name == f and text in line for name, line in _getattr_lines())


def test_nothing_outside_the_adapter_imports_pyvmomi() -> None:
    bad = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "appliance").rglob("*.py"))
           if "vsphere" not in path.relative_to(ROOT / "appliance").parts[:1]
           and re.search(r"^\s*(from|import) (pyVmomi|pyVim)\b", path.read_text(), re.M)]
    assert not bad


def test_the_checks_see_what_they_reject() -> None:
    from appliance.vsphere.inventory import VmInfo
    from appliance.vsphere.session import VSphereSession

    assert _foreign(dict[str, typing.Any]) and _foreign(list[object] | None)
    assert _foreign(Callable[[int], typing.Any])
    assert not _foreign(tuple[VmInfo, ...] | None)
    assert not _foreign(Callable[[VSphereSession], dict[str, int]])
    from pyVmomi import vim

    vm_class: type = vim.VirtualMachine
    assert _foreign(vm_class)
    assert _foreign(GenericAlias(list, (vm_class,)) | None)
    assert _foreign(_CountingSourceLike)  # ours, not frozen, not on the list


class _CountingSourceLike:
    """A stand-in for one of our own mutable classes."""

    __module__ = "appliance.jobs.example"
