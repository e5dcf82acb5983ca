"""Corpus-level BLEU (Papineni et al., 2002) and chrF (Popović, 2015) via sacrebleu."""

from __future__ import annotations

from typing import Literal, Sequence

from pydantic import Field

from personakit.config import BaseConfig
from personakit.eval.base import References, TextMetric

__all__ = ["BLEU", "BLEUConfig", "bleu", "CHRF", "CHRFConfig", "chrf"]


def _reference_streams(references: list[list[str]]) -> list[list[str | None]]:
    """Transpose per-example reference lists into sacrebleu's reference streams.

    Examples with fewer references than the longest list are padded with ``None``,
    which sacrebleu skips, so the number of references may vary per example.
    """
    width = max(len(r) for r in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


class BLEU(TextMetric):
    r"""Corpus BLEU on the 0–100 scale, as papers report it (sacrebleu).

    $$\mathrm{BLEU} = 100 \cdot \mathrm{BP} \cdot
      \exp\Big(\sum_{n=1}^{4} \tfrac14 \log p_n\Big),\qquad
      \mathrm{BP} = \min\big(1, e^{1 - r/c}\big),$$

    where $p_n$ is the clipped $n$-gram precision summed over the whole corpus,
    $c$ the total prediction length and $r$ the total closest reference length.  This is a
    *corpus* score, not a mean of sentence scores.  Several references per
    prediction are supported (their number may vary between examples).

    Args:
        tokenize: sacrebleu tokenizer (``"13a"``, the WMT default; ``"intl"``,
            ``"char"``, ``"none"``, ...).
        lowercase: Case-insensitive BLEU.
        smooth_method: sacrebleu smoothing (``"exp"`` default, ``"floor"``,
            ``"add-k"``, ``"none"``); it only matters when some $p_n$ is 0.

    Example:
        >>> round(BLEU()(["the cat sat on the mat"], ["the cat sat on the mat"]), 1)
        100.0

    Reference: Papineni et al., "BLEU: a Method for Automatic Evaluation of Machine
    Translation", ACL 2002; Post, "A Call for Clarity in Reporting BLEU Scores", 2018.
    """

    name = "bleu"

    def __init__(self, tokenize: str = "13a", lowercase: bool = False,
                 smooth_method: Literal["exp", "floor", "add-k", "none"] = "exp") -> None:
        super().__init__()
        self.tokenize = tokenize
        self.lowercase = lowercase
        self.smooth_method = smooth_method

    def score(self, predictions: list[str], references: list[list[str]]) -> float:
        from sacrebleu.metrics import BLEU as SacreBLEU

        metric = SacreBLEU(tokenize=self.tokenize, lowercase=self.lowercase, smooth_method=self.smooth_method)
        return float(metric.corpus_score(predictions, _reference_streams(references)).score)

    def extra_repr(self) -> str:
        return f"tokenize={self.tokenize!r}, lowercase={self.lowercase}, smooth_method={self.smooth_method!r}"


class BLEUConfig(BaseConfig):
    """Config of :class:`BLEU`."""

    _target_ = BLEU
    tokenize: str = Field("13a", description="sacrebleu tokenizer name.")
    lowercase: bool = Field(False, description="Case-insensitive BLEU.")
    smooth_method: Literal["exp", "floor", "add-k", "none"] = Field("exp", description="sacrebleu smoothing method.")


def bleu(predictions: Sequence[str], references: References, tokenize: str = "13a", lowercase: bool = False,
         smooth_method: Literal["exp", "floor", "add-k", "none"] = "exp") -> float:
    """Corpus BLEU (0–100); functional form of :class:`BLEU`.

    ``references`` holds one string per prediction, or a list of strings per
    prediction for several references.

    Example:
        >>> round(bleu(["the cat is on the mat"], [["the cat is on the mat", "a cat is on a mat"]]), 1)
        100.0
    """
    return BLEU(tokenize=tokenize, lowercase=lowercase, smooth_method=smooth_method)(predictions, references)


class CHRF(TextMetric):
    r"""Corpus chrF / chrF++ on the 0–100 scale (sacrebleu).

    Character $n$-gram precision $P$ and recall $R$ (averaged over $n = 1 \ldots$
    ``char_order``, and word $n$-grams up to ``word_order`` for chrF++), combined as

    $$\mathrm{chrF}_\beta = 100\cdot\frac{(1 + \beta^2)\,P R}{\beta^2 P + R}.$$

    Offered beside :class:`~personakit.eval.CharF1` because its scale matches the
    "Char-F1" column of GRAG's Table 3 (see the caveat there).

    Args:
        char_order: Maximum character $n$-gram order.
        word_order: Maximum word $n$-gram order (2 gives chrF++).
        beta: Weight of recall relative to precision.
        lowercase: Case-insensitive.
        whitespace: Keep whitespace inside character $n$-grams.

    Example:
        >>> round(CHRF()(["hello world"], ["hello world"]), 1)
        100.0

    Reference: Popović, "chrF: character n-gram F-score for automatic MT evaluation", WMT 2015.
    """

    name = "chrf"

    def __init__(self, char_order: int = 6, word_order: int = 0, beta: int = 2, lowercase: bool = False,
                 whitespace: bool = False) -> None:
        super().__init__()
        self.char_order = char_order
        self.word_order = word_order
        self.beta = beta
        self.lowercase = lowercase
        self.whitespace = whitespace

    def score(self, predictions: list[str], references: list[list[str]]) -> float:
        from sacrebleu.metrics import CHRF as SacreCHRF

        metric = SacreCHRF(char_order=self.char_order, word_order=self.word_order, beta=self.beta,
                           lowercase=self.lowercase, whitespace=self.whitespace)
        return float(metric.corpus_score(predictions, _reference_streams(references)).score)

    def extra_repr(self) -> str:
        return f"char_order={self.char_order}, word_order={self.word_order}, beta={self.beta}"


class CHRFConfig(BaseConfig):
    """Config of :class:`CHRF`."""

    _target_ = CHRF
    char_order: int = Field(6, ge=1, description="Maximum character n-gram order.")
    word_order: int = Field(0, ge=0, description="Maximum word n-gram order (2 = chrF++).")
    beta: int = Field(2, ge=1, description="Weight of recall relative to precision.")
    lowercase: bool = Field(False, description="Case-insensitive.")
    whitespace: bool = Field(False, description="Keep whitespace inside character n-grams.")


def chrf(predictions: Sequence[str], references: References, char_order: int = 6, word_order: int = 0,
         beta: int = 2, lowercase: bool = False, whitespace: bool = False) -> float:
    """Corpus chrF (0–100); functional form of :class:`CHRF`."""
    return CHRF(char_order=char_order, word_order=word_order, beta=beta, lowercase=lowercase,
                whitespace=whitespace)(predictions, references)
