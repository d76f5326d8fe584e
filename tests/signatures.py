"""Reading our modules' public signatures, for the tests that check their types
(tests/test_service_types.py, tests/test_vsphere_types.py)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator
from types import ModuleType


def public_functions(module: ModuleType) -> Iterator[tuple[str, Callable[..., object]]]:
    """The module's own public functions, and the public methods (and ``__init__``) of its
    own public classes (properties' getters, static and class methods included)."""
    for name, value in vars(module).items():
        if getattr(value, "__module__", None) != module.__name__ or name.startswith("_"):
            continue
        if inspect.isfunction(value):
            yield name, value
        elif inspect.isclass(value):
            for attr, member in vars(value).items():
                if isinstance(member, property) and member.fget is not None:
                    member = member.fget
                if isinstance(member, staticmethod | classmethod):
                    member = member.__func__
                if inspect.isfunction(member) and (attr == "__init__"
                                                   or not attr.startswith("_")):
                    yield f"{name}.{attr}", member


def leaves(hint: object) -> Iterator[object]:
    """``hint`` and every type inside it (generic arguments, unions, Callable's list)."""
    yield hint
    if isinstance(hint, list | tuple):
        for h in hint:
            yield from leaves(h)
        return
    for arg in typing.get_args(hint):
        yield from leaves(arg)


def has_any(hint: object) -> bool:
    return any(h is typing.Any for h in leaves(hint))
