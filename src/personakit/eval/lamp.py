r"""The per-example EVAL functions of LaMP (Salemi et al., 2023) used as LLM feedback by ROPG/RSPG.

Salemi et al., "Optimization Methods for Personalizing Large Language Models through
Retrieval Augmentation" (SIGIR 2024), section 6.1 ("Training Configurations"): the
retriever trainers and the retriever selector need a score $\mathrm{EVAL}(y, \hat y)$
of *one* prediction $\hat y$ against its target $y$, higher is better:

| task | EVAL |
|---|---|
| LaMP-1 citation identification, LaMP-2 movie tagging | accuracy (1 or 0) |
| LaMP-3 product rating | the normalised score below |
| LaMP-4 … LaMP-7, PFG-LaMP (generation) | ROUGE-1 F-measure |

LaMP-3 is evaluated with MAE, where lower is better, so the paper turns it into a
reward in $[0, 1]$ (equation 8):

$$
\mathrm{EVAL}_{\text{LaMP-3}}(y, \hat y) =
\frac{\max(|1 - y|, |5 - y|) - |y - \hat y|}{\max(|1 - y|, |5 - y|)}
$$

A correct rating scores 1 and the worst possible rating (the end of the 1–5 scale
farthest from $y$) scores 0.

Choices where the paper is silent (documented here, tested):

* **Labels** (LaMP-1/2) are compared after normalisation: surrounding whitespace,
  quotes and a final period are stripped and case is folded, so ``" [1]."`` matches
  ``"[1]"`` and ``"Sci-Fi"`` matches ``"sci-fi"``.  The official LaMP scorer compares
  the stripped strings exactly; pass ``normalize=False`` to :func:`lamp_accuracy` for that.
* **Ratings** (LaMP-3): the prediction is read as a number when the whole (stripped)
  string is one, otherwise the first number in the text is taken (``"4 stars"`` → 4,
  ``"Rating: 3"`` → 3); the number is clipped to $[1, 5]$ so the score stays in
  $[0, 1]$.  A prediction without any number is *unparsable* and gets the worst
  rating, hence score 0: the LaMP scorer does the same (it maps an unparsable
  prediction to whichever of 1 and 5 is farther from $y$).  The target must parse.
* **ROUGE-1** is the F-measure of Google's ``rouge-score`` without stemming, as the
  LaMP evaluation (Hugging Face ``evaluate``'s default) computes it.

Example:
    >>> f = lamp_eval_fn("LaMP-3")
    >>> f.name, f("4", "5"), f("no idea", "5")
    ('lamp3_score', 0.75, 0.0)
    >>> lamp_eval_fn("LaMP_1")(" [1]", "[1]")
    1.0
    >>> round(lamp_eval_fn("LaMP-4")("the cat sat", "the cat sat down"), 4)
    0.8571
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from personakit.eval.base import Metric, check_pairs
from personakit.eval.rouge import Rouge

__all__ = [
    "LAMP_EVAL_METRICS",
    "LaMPEval",
    "lamp_accuracy",
    "LaMPMetric",
    "lamp3_rating",
    "lamp3_score",
    "lamp_rouge1",
    "parse_rating",
    "lamp_eval_fn",
    "lamp_eval_name",
]

LAMP_EVAL_METRICS: dict[str, str] = {
    "LaMP-1": "accuracy",
    "LaMP-2": "accuracy",
    "LaMP-3": "lamp3_score",
    "LaMP-4": "rouge1",
    "LaMP-5": "rouge1",
    "LaMP-6": "rouge1",
    "LaMP-7": "rouge1",
    "PFG-LaMP": "rouge1",
}
"""The EVAL of each task (ROPG/RSPG paper, section 6.1); ``PFG-LaMP`` is personakit's
Persuasion-for-Good task (:mod:`personakit.data.pfg_lamp`)."""

_LAMP_RE = re.compile(r"lamp[\s_\-]?([1-7])", re.IGNORECASE)
_PFG_RE = re.compile(r"pfg[\s_\-]?lamp", re.IGNORECASE)
_NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_STRIP_CHARS = " \t\r\n\"'`“”‘’"


def _task_name(task: object) -> str:
    """``"LaMP_4"``, ``"lamp4"``, ``4`` -> ``"LaMP-4"``; ``"pfg_lamp"`` -> ``"PFG-LaMP"``."""
    if isinstance(task, int) and not isinstance(task, bool) and 1 <= task <= 7:
        return f"LaMP-{task}"
    if isinstance(task, str):
        text = task.strip()
        m = _LAMP_RE.fullmatch(text)
        if m:
            return f"LaMP-{m.group(1)}"
        if _PFG_RE.fullmatch(text):
            return "PFG-LaMP"
    raise ValueError(f"unknown task {task!r}; expected one of {', '.join(LAMP_EVAL_METRICS)}")


def _normalize_label(text: str) -> str:
    text = text.strip(_STRIP_CHARS)
    if text.endswith("."):
        text = text[:-1].strip(_STRIP_CHARS)
    return text.casefold()


def lamp_accuracy(prediction: str, target: str, *, normalize: bool = True) -> float:
    """1.0 when the predicted label equals the target label, else 0.0 (LaMP-1, LaMP-2).

    Args:
        prediction: the LLM output.
        target: the gold label (``"[1]"``, ``"sci-fi"``).
        normalize: compare after stripping whitespace, quotes and a final period and
            folding case; ``False`` compares the stripped strings exactly (LaMP's scorer).

    Example:
        >>> lamp_accuracy('"Sci-Fi".', "sci-fi"), lamp_accuracy("Sci-Fi", "sci-fi", normalize=False)
        (1.0, 0.0)
    """
    if normalize:
        return float(_normalize_label(prediction) == _normalize_label(target))
    return float(prediction.strip() == target.strip())


def parse_rating(text: str) -> Optional[float]:
    """The rating in a LaMP-3 output: the whole string as a number, else its first number; ``None`` if none.

    Example:
        >>> parse_rating(" 4 "), parse_rating("I would give it 3 stars."), parse_rating("great!")
        (4.0, 3.0, None)
    """
    stripped = text.strip().strip(_STRIP_CHARS)
    try:
        value = float(stripped)
    except ValueError:
        m = _NUMBER_RE.search(stripped)
        if m is None:
            return None
        value = float(m.group(0))
    if math.isnan(value) or math.isinf(value):
        return None
    return value


def _lamp3_target(target: str) -> float:
    y = parse_rating(target)
    if y is None or not 1.0 <= y <= 5.0:
        raise ValueError(f"lamp3_score: the target {target!r} is not a rating between 1 and 5")
    return y


def lamp3_rating(prediction: str, target: str) -> float:
    """The rating LaMP-3 scores for ``prediction``: its number (:func:`parse_rating`) clipped to $[1, 5]$.

    A prediction without a number gets the end of the scale farther from the target
    (the LaMP scorer's rule), so it scores as the worst rating.

    Raises:
        ValueError: the target is not a number in $[1, 5]$.

    Example:
        >>> lamp3_rating("7 stars", "4"), lamp3_rating("no idea", "4"), lamp3_rating("no idea", "2")
        (5.0, 1.0, 5.0)
    """
    y = _lamp3_target(target)
    y_hat = parse_rating(prediction)
    if y_hat is None:
        return 1.0 if abs(y - 1.0) > abs(y - 5.0) else 5.0
    return min(5.0, max(1.0, y_hat))


def lamp3_score(prediction: str, target: str) -> float:
    r"""The LaMP-3 EVAL, $\frac{\max(|1-y|,|5-y|) - |y-\hat y|}{\max(|1-y|,|5-y|)}$ (ROPG paper, eq. 8).

    $\hat y$ is :func:`lamp3_rating` (the parsed prediction clipped to $[1, 5]$); an
    unparsable prediction scores 0 (the worst rating).  The target must be a number in
    $[1, 5]$.

    Raises:
        ValueError: the target is not a number in $[1, 5]$.

    Example:
        >>> lamp3_score("5", "5"), lamp3_score("1", "5"), lamp3_score("2", "3"), lamp3_score("x", "3")
        (1.0, 0.0, 0.5, 0.0)
    """
    y = _lamp3_target(target)
    worst = max(abs(1.0 - y), abs(5.0 - y))  # >= 2, never 0
    return (worst - abs(y - lamp3_rating(prediction, target))) / worst


_SCORER = None


def lamp_rouge1(prediction: str, target: str) -> float:
    """ROUGE-1 F-measure of one prediction (``rouge-score``, no stemming, as LaMP's evaluation).

    Example:
        >>> round(lamp_rouge1("a b c", "a b d"), 4)
        0.6667
    """
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False)
    return float(_SCORER.score(target, prediction)["rouge1"].fmeasure)  # rouge-score's order: (target, prediction)


_FUNCTIONS: dict[str, Callable[[str, str], float]] = {
    "accuracy": lamp_accuracy,
    "lamp3_score": lamp3_score,
    "rouge1": lamp_rouge1,
}


@dataclass(frozen=True)
class LaMPEval:
    """A named per-example EVAL: ``eval_fn(prediction, target) -> float`` (higher is better).

    The ``name`` identifies the metric in logs and caches.

    Attributes:
        name: ``"accuracy"``, ``"lamp3_score"`` or ``"rouge1"``.
        fn: the function.
    """

    name: str
    fn: Callable[[str, str], float]

    def __call__(self, prediction: str, target: str) -> float:
        return float(self.fn(prediction, target))

    def many(self, predictions: Sequence[str], targets: Sequence[str]) -> np.ndarray:
        """EVAL of each pair, shape ``(N,)``."""
        if len(predictions) != len(targets):
            raise ValueError(f"{self.name}: {len(predictions)} predictions but {len(targets)} targets")
        return np.asarray([self.fn(p, t) for p, t in zip(predictions, targets)], dtype=np.float64)


def lamp_eval_name(task: object) -> str:
    """The EVAL metric name of a task: ``"accuracy"``, ``"lamp3_score"`` or ``"rouge1"``."""
    return LAMP_EVAL_METRICS[_task_name(task)]


def lamp_eval_fn(task: object) -> LaMPEval:
    """The per-example EVAL of a LaMP task (``"LaMP-1"`` … ``"LaMP-7"``, ``"LaMP_4"``, ``4``) or ``"PFG-LaMP"``.

    Returns:
        A :class:`LaMPEval`, callable as ``(prediction, target) -> float`` in $[0, 1]$.

    Raises:
        ValueError: an unknown task.
    """
    name = lamp_eval_name(task)
    return LaMPEval(name=name, fn=_FUNCTIONS[name])


class LaMPMetric(Metric):
    r"""The test metrics of a LaMP task (ROPG paper, Table 3), over a test set and per example.

    | task | keys |
    |---|---|
    | LaMP-1, LaMP-2 | ``accuracy`` (:func:`lamp_accuracy`) |
    | LaMP-3 | ``lamp3_score`` (:func:`lamp3_score`) and ``mae`` (of :func:`lamp3_rating`; lower is better) |
    | LaMP-4 … LaMP-7, PFG-LaMP | ``rouge1`` and ``rougeL`` (F-measure without stemming, :class:`~personakit.eval.Rouge`) |

    The first key is the task's EVAL (:func:`lamp_eval_name`), the score the ROPG
    trainers and the RSPG selectors learn from; every corpus score is the mean of the
    per-example scores (:meth:`per_example`, the input of a paired test).

    Args:
        task: ``"LaMP-1"`` … ``"LaMP-7"`` (``"LaMP_4"``, ``4``) or ``"PFG-LaMP"``.

    Example:
        >>> metric = LaMPMetric("LaMP-3")
        >>> metric.keys
        ('lamp3_score', 'mae')
        >>> metric(["4", "no idea"], ["5", "5"])
        {'lamp3_score': 0.375, 'mae': 2.5}
        >>> metric.per_example(["4", "no idea"], ["5", "5"])
        {'lamp3_score': [0.75, 0.0], 'mae': [1.0, 4.0]}
    """

    name = "lamp"

    def __init__(self, task: object) -> None:
        super().__init__()
        self.task = _task_name(task)
        self.eval = lamp_eval_fn(self.task)
        self._rouge: Optional[Rouge] = None

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys this metric reports, the task's EVAL first."""
        return {"accuracy": ("accuracy",), "lamp3_score": ("lamp3_score", "mae")}.get(self.eval.name,
                                                                                        ("rouge1", "rougeL"))

    def validate(self, predictions: Sequence[Any], references: Sequence[Any]) -> tuple[list[str], list[str]]:
        check_pairs(predictions, references, self.name)
        for side, values in (("prediction", predictions), ("reference", references)):
            for i, v in enumerate(values):
                if not isinstance(v, str):
                    raise TypeError(f"{self.name}: {side} {i} is {type(v).__name__}; expected a string")
        return list(predictions), list(references)

    def _pairs(self, predictions: list[str], references: list[str]) -> dict[str, list[float]]:
        if self.eval.name == "accuracy":
            return {"accuracy": [lamp_accuracy(p, r) for p, r in zip(predictions, references)]}
        if self.eval.name == "lamp3_score":
            return {"lamp3_score": [lamp3_score(p, r) for p, r in zip(predictions, references)],
                    "mae": [abs(_lamp3_target(r) - lamp3_rating(p, r)) for p, r in zip(predictions, references)]}
        if self._rouge is None:
            self._rouge = Rouge(types=("rouge1", "rougeL"), use_stemmer=False)
        return {k: [float(x) for x in v] for k, v in self._rouge.pair_scores(predictions, references).items()}

    def score(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        return {k: float(np.mean(v)) for k, v in self._pairs(predictions, references).items()}

    def flat(self, result: Any) -> dict[str, float]:
        return {k: float(v) for k, v in result.items()}

    def per_example(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, list[float]]:
        """``{key: [score per pair]}`` for every key of :attr:`keys`."""
        return self._pairs(*self.validate(predictions, references))

    def extra_repr(self) -> str:
        return f"task={self.task!r}"
