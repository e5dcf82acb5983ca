"""A Python function behind the :class:`~personakit.llm.base.TextGenerator` interface."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from personakit.llm.base import GenerationSettings, Prompt, TextGenerator

__all__ = ["CallableGenerator"]


class CallableGenerator(TextGenerator):
    """Wrap a Python function as a text generator (tests, rules, a custom API client).

    With ``batched=False`` the function is called once per prompt, ``fn(prompt)`` or
    ``fn(prompt, settings)``; with ``batched=True`` once per batch, ``fn(prompts)`` or
    ``fn(prompts, settings)``, and must return one string per prompt.  Whether the
    settings are passed is read from the function's signature (two or more positional
    parameters, or ``*args``).

    Args:
        fn: the function.
        model_id: name used in cache keys; give each distinct function its own name.
        batched: whether ``fn`` takes a whole batch.
        batch_size: prompts per batch.

    Example:
        >>> gen = CallableGenerator(lambda p: f"echo: {p}")
        >>> gen.generate(["a", "b"])
        ['echo: a', 'echo: b']
        >>> gen = CallableGenerator(lambda ps, s: [p[: s.max_new_tokens] for p in ps], batched=True)
        >>> gen.generate(["abcdef"], {"max_new_tokens": 3})
        ['abc']
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        model_id: str = "callable",
        batched: bool = False,
        batch_size: int = 8,
    ):
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        super().__init__(model_id=model_id, batch_size=batch_size)
        self.fn = fn
        self.batched = batched
        self._pass_settings = _takes_two_args(fn)

    def _call(self, arg: Any, settings: GenerationSettings) -> Any:
        return self.fn(arg, settings) if self._pass_settings else self.fn(arg)

    def _generate_batch(self, prompts: list[Prompt], settings: GenerationSettings) -> list[str]:
        if self.batched:
            out = list(self._call(prompts, settings))
        else:
            out = [self._call(p, settings) for p in prompts]
        return out


def _takes_two_args(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    return len(positional) >= 2
