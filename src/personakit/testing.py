"""Helpers for testing personakit components (and your own components built on them)."""

from __future__ import annotations

from typing import Any, Iterable

from personakit.config import BaseConfig, constructor_fields

__all__ = ["assert_config_matches"]


def assert_config_matches(
    config_cls: type[BaseConfig],
    component: Any | None = None,
    *,
    exclude: Iterable[str] = (),
) -> None:
    """Assert that ``config_cls``'s fields are exactly ``component``'s constructor arguments.

    ``component`` defaults to ``config_cls._target_``.  Arguments that do not belong in
    a file (a model instance, a tokenizer) are listed in ``exclude``; they must still
    be constructor arguments.  Raises ``AssertionError`` naming the fields that drift.

    Example:
        >>> from personakit.config import BaseConfig
        >>> class Thing:
        ...     def __init__(self, size: int = 1): ...
        >>> class ThingConfig(BaseConfig):
        ...     _target_ = Thing
        ...     size: int = 1
        >>> assert_config_matches(ThingConfig)
    """
    target = component if component is not None else config_cls._target_
    if target is None:
        raise AssertionError(f"{config_cls.__name__} has no `_target_` and no component was given")
    ctor = constructor_fields(target)
    excluded = set(exclude)
    missing_in_ctor = excluded - ctor
    if missing_in_ctor:
        raise AssertionError(f"excluded names are not constructor arguments of {target!r}: {sorted(missing_in_ctor)}")
    fields = set(config_cls.model_fields)
    only_config = fields - ctor
    only_ctor = ctor - fields - excluded
    if only_config or only_ctor:
        raise AssertionError(
            f"{config_cls.__name__} and {getattr(target, '__qualname__', target)} drifted: "
            f"fields not in the constructor {sorted(only_config)}; constructor arguments not in the config {sorted(only_ctor)}"
        )
