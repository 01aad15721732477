"""Lazy package attributes (PEP 562), so that importing a package imports none of its modules.

A package's ``__init__`` lists which module defines each public name and binds what
:func:`lazy_attributes` returns::

    __getattr__, __dir__ = lazy_attributes(__name__, {"Model": "envkit.models.model"})
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any


def lazy_attributes(
    package: str, attributes: Mapping[str, str], submodules: Collection[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``.

    ``attributes`` maps a name to the module that defines it, imported on first access;
    ``submodules`` names the package's submodules that are imported on first access.
    """

    def __getattr__(name: str) -> Any:
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        module = attributes.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        namespace = vars(sys.modules[package])
        return sorted(set(namespace) | set(namespace.get("__all__", ())) | set(submodules))

    return __getattr__, __dir__


@functools.cache
def optional_module(name: str) -> Any:
    """The module ``name`` if it can be imported, else None; looked up once per process (a
    failed import is not cached by Python: retried per request it costs more than the work an
    optional accelerator such as orjson saves)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
