"""Label and rating metrics: accuracy, macro-F1 (LaMP-1/2), MAE and RMSE (LaMP-3)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Hashable, Sequence

from personakit.eval.base import Metric, check_pairs

__all__ = ["Accuracy", "MacroF1", "MAE", "RMSE", "accuracy", "macro_f1", "mae", "rmse"]


def _labels(values: Sequence[Any], side: str, metric: str) -> list[Hashable]:
    out = list(values)
    for i, v in enumerate(out):
        if isinstance(v, str):
            continue
        try:
            hash(v)
        except TypeError:
            raise TypeError(f"{metric}: {side} {i} is {type(v).__name__}, which cannot be a label") from None
    return out


def _numbers(values: Sequence[Any], side: str, metric: str) -> list[float]:
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool):
            raise TypeError(f"{metric}: {side} {i} is a bool; expected a number")
        if isinstance(v, str):
            try:
                x = float(v.strip())
            except ValueError:
                raise ValueError(f"{metric}: {side} {i} is {v!r}, which is not a number") from None
        else:
            try:
                x = float(v)
            except (TypeError, ValueError):
                raise TypeError(f"{metric}: {side} {i} is {type(v).__name__}; expected a number") from None
        if math.isnan(x):
            raise ValueError(f"{metric}: {side} {i} is NaN")
        out.append(x)
    return out


class Accuracy(Metric):
    r"""Fraction of exact matches, $\frac{1}{N}\sum_i [\hat y_i = y_i]$.

    Labels may be any hashable values (strings are compared exactly; strip or
    normalise them first if needed).

    Example:
        >>> Accuracy()(["a", "b", "c"], ["a", "b", "b"])
        0.6666666666666666
    """

    name = "accuracy"

    def validate(self, predictions, references):
        check_pairs(predictions, references, self.name)
        return _labels(predictions, "prediction", self.name), _labels(references, "reference", self.name)

    def score(self, predictions: list[Hashable], references: list[Hashable]) -> float:
        return sum(p == r for p, r in zip(predictions, references)) / len(predictions)


class MacroF1(Metric):
    r"""Macro-averaged F1 over classes: $\frac{1}{|C|}\sum_{c} \frac{2\,TP_c}{2\,TP_c + FP_c + FN_c}$.

    The classes $C$ are every label that occurs among the references or the
    predictions (scikit-learn's default), so a predicted label that never occurs in
    the references counts as a class with F1 = 0.

    Example:
        >>> round(MacroF1()(["a", "a", "b"], ["a", "b", "b"]), 4)  # F1(a) = 2/3, F1(b) = 2/3
        0.6667
    """

    name = "macro_f1"

    def validate(self, predictions, references):
        check_pairs(predictions, references, self.name)
        return _labels(predictions, "prediction", self.name), _labels(references, "reference", self.name)

    def score(self, predictions: list[Hashable], references: list[Hashable]) -> float:
        tp: Counter[Hashable] = Counter()
        fp: Counter[Hashable] = Counter()
        fn: Counter[Hashable] = Counter()
        for p, r in zip(predictions, references):
            if p == r:
                tp[p] += 1
            else:
                fp[p] += 1
                fn[r] += 1
        classes = set(predictions) | set(references)
        return sum(2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]) for c in classes) / len(classes)


class MAE(Metric):
    r"""Mean absolute error, $\frac{1}{N}\sum_i |\hat y_i - y_i|$ (lower is better).

    Numbers may be given as strings (``"4"``, ``" 3.5"``); anything that does not
    parse is an error naming the item.

    Example:
        >>> MAE()([1, 2, 5], ["1", "4", "4"])
        1.0
    """

    name = "mae"
    higher_is_better = False

    def validate(self, predictions, references):
        check_pairs(predictions, references, self.name)
        return _numbers(predictions, "prediction", self.name), _numbers(references, "reference", self.name)

    def score(self, predictions: list[float], references: list[float]) -> float:
        return math.fsum(abs(p - r) for p, r in zip(predictions, references)) / len(predictions)


class RMSE(Metric):
    r"""Root mean squared error, $\sqrt{\frac{1}{N}\sum_i (\hat y_i - y_i)^2}$ (lower is better).

    Example:
        >>> RMSE()([1, 3], [1, 1])
        1.4142135623730951
    """

    name = "rmse"
    higher_is_better = False

    def validate(self, predictions, references):
        check_pairs(predictions, references, self.name)
        return _numbers(predictions, "prediction", self.name), _numbers(references, "reference", self.name)

    def score(self, predictions: list[float], references: list[float]) -> float:
        return math.sqrt(math.fsum((p - r) ** 2 for p, r in zip(predictions, references)) / len(predictions))


def accuracy(predictions: Sequence[Hashable], references: Sequence[Hashable]) -> float:
    """Fraction of exact matches; functional form of :class:`Accuracy`."""
    return Accuracy()(predictions, references)


def macro_f1(predictions: Sequence[Hashable], references: Sequence[Hashable]) -> float:
    """Macro-averaged F1 over classes; functional form of :class:`MacroF1`."""
    return MacroF1()(predictions, references)


def mae(predictions: Sequence[float | str], references: Sequence[float | str]) -> float:
    """Mean absolute error; functional form of :class:`MAE`."""
    return MAE()(predictions, references)


def rmse(predictions: Sequence[float | str], references: Sequence[float | str]) -> float:
    """Root mean squared error; functional form of :class:`RMSE`."""
    return RMSE()(predictions, references)
