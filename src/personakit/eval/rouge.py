"""ROUGE-N and ROUGE-L F-measures (Lin, 2004), computed by Google's ``rouge-score``."""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
from pydantic import Field, field_validator

from personakit.config import BaseConfig
from personakit.eval.base import References, TextMetric

__all__ = ["Rouge", "RougeConfig", "rouge"]

_TYPE_RE = re.compile(r"^rouge([1-9]|L|Lsum)$")


def _check_types(types: Sequence[str]) -> tuple[str, ...]:
    if isinstance(types, str):
        types = (types,)
    types = tuple(types)
    if not types:
        raise ValueError("rouge: give at least one ROUGE type, e.g. ('rouge1', 'rouge2', 'rougeL')")
    for t in types:
        if not isinstance(t, str) or not _TYPE_RE.match(t):
            raise ValueError(f"rouge: unknown ROUGE type {t!r}; use 'rouge1' … 'rouge9', 'rougeL' or 'rougeLsum'")
    if len(set(types)) != len(types):
        raise ValueError(f"rouge: duplicate ROUGE types in {types}")
    return types


class Rouge(TextMetric):
    r"""Mean ROUGE F-measure per type (Lin, 2004).

    For ROUGE-N, with $o$ the clipped count of $n$-grams shared by prediction and
    reference, $P = o / \#\text{n-grams(pred)}$, $R = o / \#\text{n-grams(ref)}$; for
    ROUGE-L, $o$ is the length of the longest common subsequence of tokens.  Each
    pair's score is $F = 2PR/(P+R)$ and the corpus score is the mean over pairs
    (what papers report as ROUGE-1/2/L F1).  ``rougeLsum`` splits on newlines and
    uses the union LCS over sentences.

    The ``rouge-score`` package does the scoring: its tokenizer lower-cases and keeps
    only ``[a-z0-9]`` runs (non-ASCII letters are dropped), and ``use_stemmer`` applies
    the Porter stemmer to tokens longer than 3 characters.  With several references
    per prediction, each type takes the best reference (``score_multi``).

    Args:
        types: ROUGE variants to report (``"rouge1"`` … ``"rouge9"``, ``"rougeL"``,
            ``"rougeLsum"``).
        use_stemmer: Porter-stem tokens before matching (the setting of most papers).

    Example:
        >>> scores = Rouge(types=("rouge1",))(["the cat sat"], ["the cat sat down"])
        >>> round(scores["rouge1"], 4)  # P = 3/3, R = 3/4
        0.8571

    Reference: Lin, "ROUGE: A Package for Automatic Evaluation of Summaries", 2004.
    """

    name = "rouge"

    def __init__(self, types: Sequence[str] = ("rouge1", "rouge2", "rougeL"), use_stemmer: bool = True) -> None:
        super().__init__()
        self.types = _check_types(types)
        self.use_stemmer = use_stemmer
        self._scorer = None

    def _get_scorer(self):
        if self._scorer is None:
            from rouge_score import rouge_scorer

            self._scorer = rouge_scorer.RougeScorer(list(self.types), use_stemmer=self.use_stemmer)
        return self._scorer

    def pair_scores(self, predictions: Sequence[str], references: References) -> dict[str, np.ndarray]:
        """F-measure of each pair per type: ``{type: array of shape (N,)}``."""
        preds, refs = self.validate(predictions, references)
        return self._pair_scores(preds, refs)

    def _pair_scores(self, predictions: list[str], references: list[list[str]]) -> dict[str, np.ndarray]:
        scorer = self._get_scorer()
        out: dict[str, list[float]] = {t: [] for t in self.types}
        for pred, refs in zip(predictions, references):
            # rouge-score's argument order is (target, prediction)
            s = scorer.score(refs[0], pred) if len(refs) == 1 else scorer.score_multi(refs, pred)
            for t in self.types:
                out[t].append(s[t].fmeasure)
        return {t: np.asarray(v, dtype=np.float64) for t, v in out.items()}

    def score(self, predictions: list[str], references: list[list[str]]) -> dict[str, float]:
        return {t: float(v.mean()) for t, v in self._pair_scores(predictions, references).items()}

    def flat(self, result: dict[str, float]) -> dict[str, float]:
        return {k: float(v) for k, v in result.items()}

    def extra_repr(self) -> str:
        return f"types={self.types}, use_stemmer={self.use_stemmer}"


class RougeConfig(BaseConfig):
    """Config of :class:`Rouge`."""

    _target_ = Rouge
    types: tuple[str, ...] = Field(("rouge1", "rouge2", "rougeL"), description="ROUGE variants to report.")
    use_stemmer: bool = Field(True, description="Porter-stem tokens before matching.")

    @field_validator("types")
    @classmethod
    def _valid_types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check_types(v)


def rouge(predictions: Sequence[str], references: References,
          types: Sequence[str] = ("rouge1", "rouge2", "rougeL"), use_stemmer: bool = True) -> dict[str, float]:
    """Mean ROUGE F-measure per type; functional form of :class:`Rouge`.

    Example:
        >>> round(rouge(["a b c"], ["a b d"], types=("rouge1", "rouge2"))["rouge2"], 4)
        0.5
    """
    return Rouge(types=types, use_stemmer=use_stemmer)(predictions, references)
