"""personakit: composable building blocks for personalizing language models.

The public names of every sub-package are importable from here as well
(``from personakit import Persona``).  Imports are lazy: ``import personakit`` does not
import torch, torch_geometric, sentence_transformers or peft; each name is imported on
first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # config
    "BaseConfig": "personakit.config",
    "ConfigError": "personakit.config",
    "Registry": "personakit.config",
    # data model
    "Persona": "personakit.types",
    "Turn": "personakit.types",
    "Dialogue": "personakit.types",
    "ProfileItem": "personakit.types",
    "UserProfile": "personakit.types",
    "ResponseExample": "personakit.types",
    "ProfileExample": "personakit.types",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'personakit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
