"""Callbacks of :class:`~personakit.training.trainer.Trainer`: hooks around the fixed training loop.

Example:
    >>> class PrintLoss(TrainerCallback):
    ...     def on_log(self, trainer, record):
    ...         print(record["step"], round(record["loss"], 3))
    >>> as_callbacks([PrintLoss(), print])[1].fn is print  # a plain callable becomes an on_log hook
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

if TYPE_CHECKING:  # pragma: no cover
    from personakit.training.trainer import Trainer, TrainResult

__all__ = ["TrainerCallback", "FunctionCallback", "as_callbacks"]


class TrainerCallback:
    """Hooks called by :class:`~personakit.training.trainer.Trainer` on every process.

    Check ``trainer.is_main_process`` before writing anything.

    Override what you need; a plain callable passed as a callback is called as ``on_log``.
    """

    def on_train_begin(self, trainer: "Trainer") -> None:
        """Before the first step of ``train`` (after a resume)."""

    def on_step_end(self, trainer: "Trainer", step: int) -> None:
        """After optimizer step ``step`` (1-based), before logging, evaluation and saving."""

    def on_log(self, trainer: "Trainer", record: dict[str, Any]) -> None:
        """A training-history record was added."""

    def on_evaluate(self, trainer: "Trainer", record: dict[str, Any]) -> None:
        """An evaluation record was added."""

    def on_save(self, trainer: "Trainer", path: Path) -> None:
        """A checkpoint was written (main process: its path; the others get it too)."""

    def on_train_end(self, trainer: "Trainer", result: "TrainResult") -> None:
        """At the end of ``train``."""


class FunctionCallback(TrainerCallback):
    """A callable ``fn(record)`` called with every training-history record (``on_log``)."""

    def __init__(self, fn: Callable[[dict[str, Any]], Any]):
        if not callable(fn):
            raise TypeError(f"FunctionCallback: {type(fn).__name__} is not callable")
        self.fn = fn

    def on_log(self, trainer: "Trainer", record: dict[str, Any]) -> None:
        self.fn(record)


def as_callbacks(callbacks: Optional[Sequence[Union[TrainerCallback, Callable[[dict[str, Any]], Any]]]]
                 ) -> list[TrainerCallback]:
    """``callbacks`` as :class:`TrainerCallback` objects (callables wrapped in :class:`FunctionCallback`).

    Raises:
        TypeError: an entry is neither a :class:`TrainerCallback` nor callable (naming its position).
    """
    out: list[TrainerCallback] = []
    for i, cb in enumerate(callbacks or []):
        if isinstance(cb, TrainerCallback):
            out.append(cb)
        elif callable(cb):
            out.append(FunctionCallback(cb))
        else:
            raise TypeError(f"callbacks[{i}] is neither a TrainerCallback nor callable: {type(cb).__name__}")
    return out
