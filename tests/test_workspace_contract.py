"""The workspace rule as a type (docs/API.md): every engine entry point in ``appliance.jobs``
that reads or writes a repository takes a ``Workspace`` — the repository locked, with a
catalog cursor brought up to date under that lock — never a bare ``Repository`` or
``Catalog``. Only ``appliance.jobs.workspace`` itself, which makes workspaces, may take them.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable, Iterator

import appliance.jobs

BARE = re.compile(r"\b(Repository|Catalog)\b")
MAKERS = {"appliance.jobs.workspace"}


def _public_callables() -> Iterator[tuple[str, Callable[..., object]]]:
    for info in pkgutil.iter_modules(appliance.jobs.__path__, "appliance.jobs."):
        if info.name in MAKERS:
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != info.name:
                continue
            if inspect.isclass(obj):
                yield f"{info.name}.{name}", obj.__init__
                for mname, meth in vars(obj).items():
                    if inspect.isfunction(meth) and not mname.startswith("_"):
                        yield f"{info.name}.{name}.{mname}", meth
            elif inspect.isfunction(obj):
                yield f"{info.name}.{name}", obj


def bare_parameters() -> list[str]:
    out = []
    for where, fn in _public_callables():
        for pname, param in inspect.signature(fn).parameters.items():
            note = param.annotation
            text = note if isinstance(note, str) else getattr(note, "__name__", str(note))
            if BARE.search(str(text)):
                out.append(f"{where}({pname}: {text})")
    return out


def test_no_engine_entry_point_takes_a_bare_repository_or_catalog() -> None:
    found = bare_parameters()
    assert not found, "take a Workspace instead: " + ", ".join(found)


def test_the_contract_sees_the_entry_points() -> None:
    """The check looks where it should: it inspects the entry points that touch repositories
    (so an empty scan cannot pass it), and every one of them takes a Workspace."""
    names = dict(_public_callables())
    for entry in ("appliance.jobs.backup.run_backup", "appliance.jobs.restore.restore_disk",
                  "appliance.jobs.verify.verify_repository", "appliance.jobs.prune.execute_prune",
                  "appliance.jobs.copy.copy_points", "appliance.jobs.vm_backup.backup_vm",
                  "appliance.jobs.log_backup.collect_logs"):
        params = inspect.signature(names[entry]).parameters.values()
        assert any("Workspace" in str(p.annotation) for p in params), entry
