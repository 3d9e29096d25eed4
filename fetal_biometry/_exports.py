"""Lazy re-exports for the stage subpackages, as scikit-image's ``lazy_loader`` does.

A subpackage's ``__init__`` names its public functions and the module each lives in; the
module is imported on first use. Importing one module of a stage (``fetal_biometry.io.dataset``,
say) therefore does not import the rest of the stage, and stages may use each other without
import cycles.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable


def lazy(package: str, exports: dict[str, tuple[str, ...]]) -> tuple[Callable, Callable, list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``: ``exports`` maps a submodule to the
    names it exports; any submodule is an attribute too (``fetal_biometry.io.dicom``)."""
    where = {name: module for module, names in exports.items() for name in names}
    path = importlib.import_module(package).__path__
    submodules = {info.name for info in pkgutil.iter_modules(path)}

    def __getattr__(name: str):
        if name in where:
            return getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(where) | submodules)

    return __getattr__, __dir__, sorted(where)
