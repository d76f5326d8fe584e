"""The service layer's and the sessions' seams are typed: no ``Any`` (also not inside
``dict[str, Any]``) in the annotations of any public function or method of any module of the
``appliance.service`` or ``appliance.sessions`` packages, so ``mypy --strict`` checks every
call across them."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

import appliance.service
import appliance.sessions

PACKAGES = (appliance.service, appliance.sessions)


def _modules() -> list[ModuleType]:
    """Each package and every module in it."""
    return [module for package in PACKAGES for module in [package] + [
        importlib.import_module(f"{package.__name__}.{m.name}")
        for m in pkgutil.iter_modules(package.__path__)]]


def _functions(module: ModuleType) -> Iterator[tuple[str, Callable[..., object]]]:
    """The module's own public functions, and the public methods (and ``__init__``) of its
    own classes (properties' getters included)."""
    for name, value in vars(module).items():
        if getattr(value, "__module__", None) != module.__name__ or name.startswith("_"):
            continue
        if inspect.isfunction(value):
            yield name, value
        elif inspect.isclass(value):
            for attr, member in vars(value).items():
                if isinstance(member, property) and member.fget is not None:
                    member = member.fget
                if inspect.isfunction(member) and (attr == "__init__"
                                                   or not attr.startswith("_")):
                    yield f"{name}.{attr}", member


def _has_any(hint: object) -> bool:
    return hint is typing.Any or any(_has_any(a) for a in typing.get_args(hint))


@pytest.mark.parametrize("module", _modules(), ids=lambda m: m.__name__)
def test_no_any_in_service_signatures(module: ModuleType) -> None:
    checked, bad = 0, []
    for name, fn in _functions(module):
        hints = typing.get_type_hints(fn)  # fails when an annotation names no real type
        bad += [f"{module.__name__}.{name}: {param}: {hint}"
                for param, hint in hints.items() if _has_any(hint)]
        checked += 1
    assert not bad
    assert checked or module in PACKAGES  # a package's __init__ may only re-export


def test_the_check_sees_any() -> None:
    assert _has_any(dict[str, typing.Any])
    assert _has_any(list[tuple[str, typing.Any]] | None)
    assert not _has_any(dict[str, object])
