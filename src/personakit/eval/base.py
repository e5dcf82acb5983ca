"""The thin base class of every metric: ``update(predictions, references)`` → ``compute()``.

A :class:`Metric` accumulates prediction/reference pairs with :meth:`Metric.update`
(call it once per batch) and scores everything seen so far with
:meth:`Metric.compute`, which calls the single hook subclasses implement,
:meth:`Metric.score`.  Calling the metric directly scores one set of pairs without
touching the accumulated state.

Example:
    >>> from personakit.eval import CharF1
    >>> metric = CharF1()
    >>> metric.update(["abc"], ["abc"])
    >>> metric.update(["abc"], ["xyz"])
    >>> metric.compute()
    0.5
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence, Union

__all__ = ["Metric", "TextMetric", "References", "normalize_references", "check_pairs"]

#: One reference string per prediction, or several (a list of strings) per prediction.
References = Union[Sequence[str], Sequence[Sequence[str]]]


def check_pairs(predictions: Sequence[Any], references: Sequence[Any], metric: str = "metric") -> None:
    """Reject empty input and mismatched lengths with a message naming the metric."""
    if isinstance(predictions, (str, bytes)) or isinstance(references, (str, bytes)):
        raise TypeError(
            f"{metric}: predictions and references must be sequences (one item per example), not a single string; "
            "wrap a single example in a list"
        )
    n_pred, n_ref = len(predictions), len(references)
    if n_pred != n_ref:
        raise ValueError(f"{metric}: {n_pred} predictions but {n_ref} references; they must pair up one to one")
    if n_pred == 0:
        raise ValueError(f"{metric}: empty input (no predictions); nothing to score")


def normalize_references(references: References, metric: str = "metric") -> list[list[str]]:
    """Turn single or multiple references per example into ``list[list[str]]``.

    Each item of ``references`` is either a string (one reference) or a non-empty
    sequence of strings (several references for the same prediction).

    Raises:
        TypeError: An item, or one of its references, is not a string; the message
            names the example (0-based index).
        ValueError: An example has an empty list of references.
    """
    out: list[list[str]] = []
    for i, ref in enumerate(references):
        if isinstance(ref, str):
            out.append([ref])
            continue
        if not isinstance(ref, Sequence):
            raise TypeError(f"{metric}: reference {i} is {type(ref).__name__}; expected a string or a list of strings")
        refs = list(ref)
        if not refs:
            raise ValueError(f"{metric}: reference {i} is an empty list; give at least one reference string")
        for j, r in enumerate(refs):
            if not isinstance(r, str):
                raise TypeError(f"{metric}: reference {i}[{j}] is {type(r).__name__}; expected a string")
        out.append(refs)
    return out


def _check_text_predictions(predictions: Sequence[Any], metric: str) -> list[str]:
    out = list(predictions)
    for i, p in enumerate(out):
        if not isinstance(p, str):
            raise TypeError(f"{metric}: prediction {i} is {type(p).__name__}; expected a string")
    return out


class Metric(ABC):
    """Base class of every metric: accumulate with ``update``, score with ``compute``.

    Subclasses set :attr:`name` and implement :meth:`score` (pure: it scores the
    pairs it is given).  :meth:`flat` turns a result into the flat
    ``{key: float}`` mapping used by :func:`personakit.eval.evaluate_texts`.

    Attributes:
        name: The metric's key in flat result dicts (``"char_f1"``, ``"bleu"``).
        higher_is_better: Direction of improvement.
    """

    name: ClassVar[str] = "metric"
    higher_is_better: ClassVar[bool] = True

    def __init__(self) -> None:
        self._predictions: list[Any] = []
        self._references: list[Any] = []

    # ---------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget every accumulated pair."""
        self._predictions = []
        self._references = []

    def validate(self, predictions: Sequence[Any], references: Sequence[Any]) -> tuple[list[Any], list[Any]]:
        """Check one batch of pairs and return it in the form :meth:`score` takes."""
        check_pairs(predictions, references, self.name)
        return list(predictions), list(references)

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        """Add a batch of prediction/reference pairs."""
        preds, refs = self.validate(predictions, references)
        self._predictions.extend(preds)
        self._references.extend(refs)

    def compute(self) -> float | dict[str, float]:
        """Score every pair added with :meth:`update` so far."""
        if not self._predictions:
            raise ValueError(f"{self.name}: compute() called before update(); no pairs to score")
        return self.score(self._predictions, self._references)

    def __call__(self, predictions: Sequence[Any], references: Sequence[Any]) -> float | dict[str, float]:
        """Score ``predictions`` against ``references`` (the accumulated state is untouched)."""
        preds, refs = self.validate(predictions, references)
        return self.score(preds, refs)

    def __len__(self) -> int:
        return len(self._predictions)

    # ----------------------------------------------------------------- hooks
    @abstractmethod
    def score(self, predictions: list[Any], references: list[Any]) -> float | dict[str, float]:
        """Score validated pairs; the one method a subclass must implement."""

    def flat(self, result: float | dict[str, float]) -> dict[str, float]:
        """Flat ``{key: value}`` view of a result of :meth:`score`.

        A float becomes ``{name: value}``; a dict ``{k: v}`` becomes
        ``{f"{name}_{k}": v}`` (subclasses whose keys are already unique, such as
        ROUGE, override this).
        """
        if isinstance(result, dict):
            return {f"{self.name}_{k}": float(v) for k, v in result.items()}
        return {self.name: float(result)}

    def per_example(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, list[float]]:
        """Flat ``{key: [value per pair]}``: each pair scored on its own (the input of a paired test).

        The default scores one pair at a time with :meth:`score`; a metric whose corpus
        score is not a mean of per-pair scores (BLEU) gives its sentence-level form here,
        and a metric with a costly set-up (BERTScore) may override this to batch.

        Example:
            >>> from personakit.eval import build_metrics
            >>> build_metrics(["char_f1"])[0].per_example(["abc", "xyz"], ["abc", "abc"])
            {'char_f1': [1.0, 0.0]}
        """
        preds, refs = self.validate(predictions, references)
        out: dict[str, list[float]] = {}
        for p, r in zip(preds, refs):
            for key, value in self.flat(self.score([p], [r])).items():
                out.setdefault(key, []).append(float(value))
        return out

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class TextMetric(Metric):
    """A metric over text: predictions are strings, references one string or several per prediction.

    :meth:`validate` turns references into ``list[list[str]]`` (one list per
    prediction), so :meth:`score` always sees multiple-reference form.
    """

    def validate(self, predictions: Sequence[Any], references: Sequence[Any]) -> tuple[list[str], list[list[str]]]:
        check_pairs(predictions, references, self.name)
        return _check_text_predictions(predictions, self.name), normalize_references(references, self.name)
