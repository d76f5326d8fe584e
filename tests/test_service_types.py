"""The service layer's and the sessions' seams are typed: no ``Any`` (also not inside
``dict[str, Any]``) in the annotations of any public function or method of any module of the
``appliance.service`` or ``appliance.sessions`` packages, so ``mypy --strict`` checks every
call across them."""

from __future__ import annotations

import importlib
import pkgutil
import typing
from types import ModuleType

import pytest

import appliance.service
import appliance.sessions
from tests.signatures import has_any, public_functions

PACKAGES = (appliance.service, appliance.sessions)


def _modules() -> list[ModuleType]:
    """Each package and every module in it."""
    return [module for package in PACKAGES for module in [package] + [
        importlib.import_module(f"{package.__name__}.{m.name}")
        for m in pkgutil.iter_modules(package.__path__)]]


@pytest.mark.parametrize("module", _modules(), ids=lambda m: m.__name__)
def test_no_any_in_service_signatures(module: ModuleType) -> None:
    checked, bad = 0, []
    for name, fn in public_functions(module):
        hints = typing.get_type_hints(fn)  # fails when an annotation names no real type
        bad += [f"{module.__name__}.{name}: {param}: {hint}"
                for param, hint in hints.items() if has_any(hint)]
        checked += 1
    assert not bad
    assert checked or module in PACKAGES  # a package's __init__ may only re-export


def test_the_check_sees_any() -> None:
    assert has_any(dict[str, typing.Any])
    assert has_any(list[tuple[str, typing.Any]] | None)
    assert not has_any(dict[str, object])
