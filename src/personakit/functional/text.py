"""Pure text helpers shared by the evaluation metrics: tokenisation and multiset F1.

These functions hold no state and import nothing heavy; the metric classes in
:mod:`personakit.eval` call them.

Example:
    >>> from personakit.functional.text import char_counts, multiset_f1, word_tokenize
    >>> word_tokenize("Hello, World!")
    ['hello', ',', 'world', '!']
    >>> round(multiset_f1(char_counts("ab c"), char_counts("abd")), 4)
    0.6667
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Hashable, Mapping

__all__ = ["WORD_PATTERN", "word_tokenize", "char_counts", "multiset_f1", "multiset_overlap"]

#: A word is a run of letters/digits/underscore; every other non-space character is a token of its own.
WORD_PATTERN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def word_tokenize(text: str, lowercase: bool = True) -> list[str]:
    r"""Split ``text`` into words and punctuation marks.

    Words are maximal runs of ``\w`` (Unicode letters, digits, ``_``); each other
    non-whitespace character is its own token, so ``"don't"`` becomes
    ``["don", "'", "t"]``.  Needs no downloaded data (unlike nltk's Punkt-based
    ``word_tokenize``).

    Args:
        text: The text to split.
        lowercase: Lower-case the text first.

    Returns:
        The tokens, in order.

    Example:
        >>> word_tokenize("The cat's mat.")
        ['the', 'cat', "'", 's', 'mat', '.']
    """
    if lowercase:
        text = text.lower()
    return WORD_PATTERN.findall(text)


def char_counts(text: str, ignore_whitespace: bool = True, lowercase: bool = False) -> Counter[str]:
    """The multiset of characters of ``text``.

    Args:
        text: The text.
        ignore_whitespace: Drop every whitespace character (``str.isspace``) first.
        lowercase: Lower-case the text first.

    Returns:
        A ``Counter`` mapping each character to its number of occurrences.

    Example:
        >>> sorted(char_counts("a b a").items())
        [('a', 2), ('b', 1)]
    """
    if lowercase:
        text = text.lower()
    if ignore_whitespace:
        text = "".join(text.split())
    return Counter(text)


def multiset_overlap(a: Mapping[Hashable, int], b: Mapping[Hashable, int]) -> int:
    r"""Size of the multiset intersection, $\sum_x \min(a_x, b_x)$."""
    if len(a) > len(b):
        a, b = b, a
    return sum(min(n, b.get(x, 0)) for x, n in a.items())


def multiset_f1(prediction: Mapping[Hashable, int], reference: Mapping[Hashable, int]) -> float:
    r"""F1 between two multisets (bags), as in the SQuAD token-F1.

    With overlap $o = \sum_x \min(p_x, r_x)$, precision $P = o / |p|$ and recall
    $R = o / |r|$:

    $$F_1 = \frac{2 P R}{P + R} = \frac{2 o}{|p| + |r|}.$$

    When both bags are empty the score is 1 (the texts agree); when exactly one is
    empty, or nothing overlaps, it is 0.

    Args:
        prediction: Counts of the predicted items.
        reference: Counts of the reference items.

    Returns:
        The F1 in $[0, 1]$.

    Example:
        >>> multiset_f1({"a": 2, "b": 1}, {"a": 1, "c": 1})
        0.4
    """
    n_pred = sum(prediction.values())
    n_ref = sum(reference.values())
    if n_pred == 0 and n_ref == 0:
        return 1.0
    if n_pred == 0 or n_ref == 0:
        return 0.0
    overlap = multiset_overlap(prediction, reference)
    return 2.0 * overlap / (n_pred + n_ref)
