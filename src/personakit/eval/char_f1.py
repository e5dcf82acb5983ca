"""Character-level F1 (Char-F1), as listed among the GRAG metrics.

GRAG (Table 3) reports "Char-F1: the character-level overlap between the predicted
and reference responses" without a formula.  :class:`CharF1` implements the most
direct reading: the SQuAD token-F1 with characters in place of tokens.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pydantic import Field

from personakit.config import BaseConfig
from personakit.eval.base import References, TextMetric
from personakit.functional.text import char_counts, multiset_f1

__all__ = ["CharF1", "CharF1Config", "char_f1"]


class CharF1(TextMetric):
    r"""Character-level F1 over character multisets, averaged over pairs.

    For a prediction $p$ and reference $r$, remove every whitespace character and
    let $C_p$, $C_r$ be the multisets (bags) of the remaining characters. With the
    overlap $o = \sum_c \min(C_p(c), C_r(c))$:

    $$P = \frac{o}{|C_p|},\quad R = \frac{o}{|C_r|},\quad
      \mathrm{CharF1}(p, r) = \frac{2PR}{P + R} = \frac{2o}{|C_p| + |C_r|},$$

    with $\mathrm{CharF1} = 1$ when both are empty and $0$ when exactly one is empty
    or nothing overlaps.  With several references the best one counts (the SQuAD
    convention).  The corpus score is the mean over pairs (macro average).

    Why this definition: the GRAG paper names the metric without a formula, and the
    bag-of-units F1 is what "F1" means for text overlap (SQuAD, ParlAI); using
    characters instead of words makes it robust to tokenisation and partial word
    matches.  Whitespace is dropped because spaces are the most frequent character
    and would otherwise reward length agreement rather than content.  Case and
    punctuation are kept (``lowercase=True`` folds case).

    Caveat: this bag-of-characters F1 is high even for unrelated English sentences
    (about 0.53 between random EmpatheticDialogues utterances), whereas GRAG's Table
    3 reports Char-F1 of 0.13–0.37, *below* its ROUGE-1.  The paper's numbers are
    therefore probably from a different definition (their scale matches a character
    n-gram F-score such as chrF, available here as :class:`~personakit.eval.CHRF`,
    divided by 100).  Compare Char-F1 values only with numbers computed by this
    same definition.

    Args:
        lowercase: Fold case before counting characters.
        ignore_whitespace: Drop whitespace characters before counting (the default;
            ``False`` counts spaces too).

    Example:
        >>> CharF1()(["the cat"], ["a cat"])  # overlap {a, c, t} = 3; (2*3)/(6+4)
        0.6
    """

    name = "char_f1"

    def __init__(self, lowercase: bool = False, ignore_whitespace: bool = True) -> None:
        super().__init__()
        self.lowercase = lowercase
        self.ignore_whitespace = ignore_whitespace

    def pair_scores(self, predictions: Sequence[str], references: References) -> np.ndarray:
        """Char-F1 of each pair (best reference), shape ``(N,)``."""
        preds, refs = self.validate(predictions, references)
        return np.asarray(self._pair_scores(preds, refs), dtype=np.float64)

    def _pair_scores(self, predictions: list[str], references: list[list[str]]) -> list[float]:
        out = []
        for pred, refs in zip(predictions, references):
            p = char_counts(pred, self.ignore_whitespace, self.lowercase)
            out.append(max(multiset_f1(p, char_counts(r, self.ignore_whitespace, self.lowercase)) for r in refs))
        return out

    def score(self, predictions: list[str], references: list[list[str]]) -> float:
        return float(np.mean(self._pair_scores(predictions, references)))

    def extra_repr(self) -> str:
        return f"lowercase={self.lowercase}, ignore_whitespace={self.ignore_whitespace}"


class CharF1Config(BaseConfig):
    """Config of :class:`CharF1`."""

    _target_ = CharF1
    lowercase: bool = Field(False, description="Fold case before counting characters.")
    ignore_whitespace: bool = Field(True, description="Drop whitespace characters before counting.")


def char_f1(predictions: Sequence[str], references: References, lowercase: bool = False,
            ignore_whitespace: bool = True) -> float:
    """Mean character-level F1 over pairs; functional form of :class:`CharF1`.

    Example:
        >>> char_f1(["abc", "abc"], ["abc", "xyz"])
        0.5
    """
    return CharF1(lowercase=lowercase, ignore_whitespace=ignore_whitespace)(predictions, references)
