"""METEOR (Banerjee & Lavie, 2005) with exact and Porter-stem matching, no WordNet."""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, ClassVar, Sequence

import numpy as np
from pydantic import Field

from personakit.config import BaseConfig
from personakit.eval.base import References, TextMetric
from personakit.functional.text import word_tokenize

__all__ = ["Meteor", "MeteorConfig", "meteor", "meteor_alignment", "count_chunks", "meteor_from_alignment"]


def _match_stage(hyp: list[tuple[int, str]], ref: list[tuple[int, str]]
                 ) -> tuple[list[tuple[int, int]], list[tuple[int, str]], list[tuple[int, str]]]:
    """Align equal keys; the i-th last occurrence in ``hyp`` takes the i-th last free one in ``ref``."""
    free: dict[str, list[int]] = defaultdict(list)
    for j, (_, key) in enumerate(ref):
        free[key].append(j)
    matches: list[tuple[int, int]] = []
    used_h: set[int] = set()
    used_r: set[int] = set()
    for i in range(len(hyp) - 1, -1, -1):
        slots = free.get(hyp[i][1])
        if slots:
            j = slots.pop()
            used_h.add(i)
            used_r.add(j)
            matches.append((hyp[i][0], ref[j][0]))
    rest_h = [x for i, x in enumerate(hyp) if i not in used_h]
    rest_r = [x for j, x in enumerate(ref) if j not in used_r]
    return matches, rest_h, rest_r


def meteor_alignment(hypothesis: Sequence[str], reference: Sequence[str],
                     stem: Callable[[str], str] | None = None) -> list[tuple[int, int]]:
    """Align hypothesis and reference tokens: exact matches first, then stem matches.

    Within a stage, the $k$-th last occurrence of a word in the hypothesis is aligned
    to the $k$-th last still-unaligned occurrence in the reference (the rule of
    ``nltk.translate.meteor_score``).  Each token is aligned at most once.

    Args:
        hypothesis: Hypothesis tokens (already normalised, e.g. lower-cased).
        reference: Reference tokens.
        stem: Stemmer applied in the second stage; ``None`` skips the stem stage.

    Returns:
        ``(hypothesis index, reference index)`` pairs sorted by hypothesis index.

    Example:
        >>> meteor_alignment(["the", "cats"], ["cat", "the"], stem=lambda w: w.rstrip("s"))
        [(0, 1), (1, 0)]
    """
    hyp = list(enumerate(hypothesis))
    ref = list(enumerate(reference))
    matches, hyp, ref = _match_stage(hyp, ref)
    if stem is not None and hyp and ref:
        stem_matches, _, _ = _match_stage([(i, stem(w)) for i, w in hyp], [(j, stem(w)) for j, w in ref])
        matches += stem_matches
    return sorted(matches)


def count_chunks(alignment: Sequence[tuple[int, int]]) -> int:
    """Fewest chunks: maximal runs of matches adjacent in both hypothesis and reference.

    ``alignment`` must be sorted by hypothesis index.  Returns 0 for no matches.

    Example:
        >>> count_chunks([(0, 0), (1, 1), (2, 5), (3, 6)])
        2
    """
    if not alignment:
        return 0
    chunks = 1
    for (h0, r0), (h1, r1) in zip(alignment, alignment[1:]):
        if not (h1 == h0 + 1 and r1 == r0 + 1):
            chunks += 1
    return chunks


def meteor_from_alignment(matches: int, chunks: int, hyp_len: int, ref_len: int,
                          alpha: float = 0.9, beta: float = 3.0, gamma: float = 0.5) -> float:
    r"""METEOR from match and chunk counts (Lavie & Agarwal 2007 parametrisation).

    $$P = \frac{m}{|h|},\ R = \frac{m}{|r|},\
      F_{mean} = \frac{P R}{\alpha P + (1-\alpha) R},\
      \mathrm{Pen} = \gamma \left(\frac{ch}{m}\right)^{\beta},\
      \mathrm{METEOR} = (1 - \mathrm{Pen})\, F_{mean}.$$

    Returns 0 when there is no match (or an empty side).
    """
    if matches == 0 or hyp_len == 0 or ref_len == 0:
        return 0.0
    precision = matches / hyp_len
    recall = matches / ref_len
    fmean = precision * recall / (alpha * precision + (1.0 - alpha) * recall)
    penalty = gamma * (chunks / matches) ** beta
    return (1.0 - penalty) * fmean


class Meteor(TextMetric):
    r"""Sentence METEOR averaged over pairs, exact + Porter-stem matching (no WordNet).

    METEOR (Banerjee & Lavie, 2005) aligns unigrams of the hypothesis $h$ and the
    reference $r$ in stages (exact, then Porter stem; the original adds WordNet
    synonyms), counts the $m$ aligned unigrams and the $ch$ chunks (maximal runs
    contiguous in both sentences), and scores

    $$F_{mean} = \frac{P R}{\alpha P + (1-\alpha) R},\qquad
      \mathrm{METEOR} = \Big(1 - \gamma \big(\tfrac{ch}{m}\big)^{\beta}\Big) F_{mean},$$

    with $P = m/|h|$, $R = m/|r|$ and the Lavie & Agarwal (2007) parameters
    $\alpha = 0.9$, $\beta = 3$, $\gamma = 0.5$.  With several references, the best
    one counts; the corpus score is the mean over pairs.

    Departures, all deliberate and recorded in :attr:`variant`:

    * No WordNet synonym stage: WordNet needs a data download, unavailable offline.
      Scores are therefore lower than or equal to WordNet METEOR on the same text.
    * The alignment follows ``nltk.translate.meteor_score`` (within each stage, the
      $k$-th last occurrence of a word in $h$ takes the $k$-th last free occurrence
      in $r$) rather than the original's search for the alignment with the fewest
      crossings; both agree unless a word repeats.  This keeps the numbers equal to
      nltk's (hence Hugging Face ``evaluate``'s) METEOR without WordNet.
    * Tokenisation: lower-cased ``\w+`` runs and single punctuation marks
      (:func:`personakit.functional.text.word_tokenize`), needing no Punkt data.

    Args:
        alpha: Precision weight in $F_{mean}$ (recall weight $1 - \alpha$).
        beta: Shape of the fragmentation penalty.
        gamma: Maximum fragmentation penalty.
        stem: Use the Porter-stem matching stage.
        lowercase: Lower-case before tokenising.

    Example:
        >>> # 5 matches ("cats"~"cat" by stem), 3 chunks: (1 - 0.5*(3/5)**3) * 5/6
        >>> round(Meteor()(["the cat sat on the mat"], ["the cats sat on a mat"]), 4)
        0.7433

    Reference: Banerjee & Lavie, "METEOR: An Automatic Metric for MT Evaluation with
    Improved Correlation with Human Judgments", 2005; Lavie & Agarwal, 2007.
    """

    name = "meteor"
    variant: ClassVar[str] = "exact+stem, no WordNet synonyms"

    def __init__(self, alpha: float = 0.9, beta: float = 3.0, gamma: float = 0.5, stem: bool = True,
                 lowercase: bool = True) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"meteor: alpha must be in [0, 1], got {alpha}")
        if beta < 0 or not 0.0 <= gamma <= 1.0:
            raise ValueError(f"meteor: need beta >= 0 and 0 <= gamma <= 1, got beta={beta}, gamma={gamma}")
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.stem = stem
        self.lowercase = lowercase
        self._stemmer = None
        self._stem_cache: dict[str, str] = {}

    def _stem(self, word: str) -> str:
        cached = self._stem_cache.get(word)
        if cached is None:
            if self._stemmer is None:
                from nltk.stem.porter import PorterStemmer  # pure Python, needs no nltk data

                self._stemmer = PorterStemmer()
            cached = self._stem_cache[word] = self._stemmer.stem(word)
        return cached

    def score_tokens(self, hypothesis: Sequence[str], reference: Sequence[str]) -> float:
        """METEOR of one tokenised pair."""
        alignment = meteor_alignment(hypothesis, reference, self._stem if self.stem else None)
        return meteor_from_alignment(len(alignment), count_chunks(alignment), len(hypothesis), len(reference),
                                     self.alpha, self.beta, self.gamma)

    def pair_scores(self, predictions: Sequence[str], references: References) -> np.ndarray:
        """METEOR of each pair (best reference), shape ``(N,)``."""
        preds, refs = self.validate(predictions, references)
        return np.asarray(self._pair_scores(preds, refs), dtype=np.float64)

    def _pair_scores(self, predictions: list[str], references: list[list[str]]) -> list[float]:
        out = []
        for pred, refs in zip(predictions, references):
            hyp = word_tokenize(pred, self.lowercase)
            out.append(max(self.score_tokens(hyp, word_tokenize(r, self.lowercase)) for r in refs))
        return out

    def score(self, predictions: list[str], references: list[list[str]]) -> float:
        return float(np.mean(self._pair_scores(predictions, references)))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, stem={self.stem}, variant={self.variant!r}"


class MeteorConfig(BaseConfig):
    """Config of :class:`Meteor`."""

    _target_ = Meteor
    alpha: float = Field(0.9, ge=0.0, le=1.0, description="Precision weight in F_mean.")
    beta: float = Field(3.0, ge=0.0, description="Shape of the fragmentation penalty.")
    gamma: float = Field(0.5, ge=0.0, le=1.0, description="Maximum fragmentation penalty.")
    stem: bool = Field(True, description="Use the Porter-stem matching stage.")
    lowercase: bool = Field(True, description="Lower-case before tokenising.")


def meteor(predictions: Sequence[str], references: References, alpha: float = 0.9, beta: float = 3.0,
           gamma: float = 0.5, stem: bool = True, lowercase: bool = True) -> float:
    """Mean sentence METEOR (exact + stem, no WordNet); functional form of :class:`Meteor`.

    Example:
        >>> meteor(["hello there"], ["hello there"])  # 2 matches, 1 chunk: 1 - 0.5*(1/2)**3
        0.9375
    """
    return Meteor(alpha=alpha, beta=beta, gamma=gamma, stem=stem, lowercase=lowercase)(predictions, references)
