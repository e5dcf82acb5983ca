"""The one lazy-import helper of personakit (module-level ``__getattr__`` / ``__dir__``, PEP 562).

A package lists, per module, the names that module provides; the names are imported on
first access, so ``import personakit`` (or a light sub-package) does not import torch,
torch_geometric, sentence_transformers or peft. In the spirit of ``lazy_loader.attach``
(scientific-python):

    >>> __getattr__, __dir__, names = attach("personakit.data", {"builtin": ["load_builtin_corpus"]})
    >>> names
    ['load_builtin_corpus']

A module name is relative to the package (``"builtin"`` is ``personakit.data.builtin``;
at the top level ``"data"`` is ``personakit.data``) unless it is a full ``personakit.``
path.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["attach"]


def _absolute(package_name: str, module: str) -> str:
    if module == "personakit" or module.startswith("personakit."):
        return module
    return f"{package_name}.{module}"


def attach(
    package_name: str,
    exports: Mapping[str, Iterable[str]],
    *,
    requires: Mapping[str, str] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Lazy attributes for ``package_name``: ``__getattr__``, ``__dir__`` and the lazy names.

    Args:
        package_name: the package's ``__name__``.
        exports: module (relative to the package, or a full ``personakit.`` path) → the
            public names it provides, each imported on first access and then cached in the
            package's namespace. A name may appear once only.
        requires: module → an optional dependency it needs; a missing one raises the
            ``ImportError`` of :func:`personakit._imports.require` (what to install), not
            the bare ``ModuleNotFoundError`` of the import.

    Returns:
        ``(__getattr__, __dir__, names)``: assign the first two at module level; ``names``
        lists the lazy names in the order given (for ``__all__``).

    Raises:
        ValueError: a name is listed twice.
    """
    name_to_module: dict[str, str] = {}
    for module, names in exports.items():
        target = _absolute(package_name, module)
        for name in names:
            if name in name_to_module:
                raise ValueError(f"{package_name}: {name!r} is listed twice (in {name_to_module[name]} and {target})")
            name_to_module[name] = target
    needs = {_absolute(package_name, module): dependency for module, dependency in (requires or {}).items()}

    def __getattr__(name: str) -> Any:
        module = name_to_module.get(name)
        if module is None:
            raise AttributeError(f"module {package_name!r} has no attribute {name!r}")
        if module in needs:
            from personakit._imports import require

            require(needs[module], f"{package_name}.{name}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package_name], name, value)  # cached: the next access skips __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package_name])) | set(name_to_module))

    return __getattr__, __dir__, list(name_to_module)
