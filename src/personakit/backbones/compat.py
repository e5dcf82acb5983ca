"""Small compatibility shims over transformers versions (one place, so call sites stay plain).

Example:
    >>> import torch
    >>> cache_argument(torch.nn.Linear(2, 2))
    'past_key_values'
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

__all__ = ["cache_argument", "output_cache"]


@functools.lru_cache(maxsize=None)
def _cache_argument_of(cls: type) -> str:
    try:
        params = inspect.signature(cls.forward).parameters
    except (TypeError, ValueError, AttributeError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def cache_argument(model: Any) -> str:
    """The keyword that hands a KV cache to ``model(...)`` and ``model.generate(...)``.

    transformers 5.25 renamed ``past_key_values`` to ``cache`` (the old name warns and goes
    away in 5.40 for ``forward``); earlier 5.x releases only know ``past_key_values``.  A
    peft ``PeftModel`` is looked through to the model it wraps.
    """
    from personakit.backbones.peft import unwrap_peft  # imports torch: only when asked

    return _cache_argument_of(type(unwrap_peft(model)))


def output_cache(output: Any) -> Any:
    """The KV cache a model output carries: ``output.cache`` (transformers 5.25+, where reading
    ``output.past_key_values`` logs a deprecation warning) or ``output.past_key_values`` (earlier 5.x).

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Old:
        ...     past_key_values: object = "kv"
        >>> output_cache(Old())
        'kv'
    """
    if "cache" in getattr(output, "__dataclass_fields__", {}):
        return output.cache
    return output.past_key_values
