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
from typing import Callable, Optional, Sequence

import numpy as np

__all__ = [
    "LAMP_EVAL_METRICS",
    "LaMPEval",
    "lamp_accuracy",
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


def lamp3_score(prediction: str, target: str) -> float:
    r"""The LaMP-3 EVAL, $\frac{\max(|1-y|,|5-y|) - |y-\hat y|}{\max(|1-y|,|5-y|)}$ (ROPG paper, eq. 8).

    The prediction is parsed with :func:`parse_rating` and clipped to $[1, 5]$; an
    unparsable prediction scores 0 (the worst rating).  The target must be a number in
    $[1, 5]$.

    Raises:
        ValueError: the target is not a number in $[1, 5]$.

    Example:
        >>> lamp3_score("5", "5"), lamp3_score("1", "5"), lamp3_score("2", "3"), lamp3_score("x", "3")
        (1.0, 0.0, 0.5, 0.0)
    """
    y = parse_rating(target)
    if y is None or not 1.0 <= y <= 5.0:
        raise ValueError(f"lamp3_score: the target {target!r} is not a rating between 1 and 5")
    worst = max(abs(1.0 - y), abs(5.0 - y))  # >= 2, never 0
    y_hat = parse_rating(prediction)
    if y_hat is None:
        return 0.0
    y_hat = min(5.0, max(1.0, y_hat))
    return (worst - abs(y - y_hat)) / worst


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
