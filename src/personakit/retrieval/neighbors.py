r"""CoPersona's non-parametric branch: facet-aligned peer evidence as prompt text (§3.3, Eq. 7-8).

For a target user $u^*$ and facet $m$ the neighbours are read from the sparsified facet
layer of the multiplex graph, $N_{u^*}^{(m)} = \{v \mid (u^*, v) \in \mathcal E^{(m)}\}$,
and each contributes its exemplar package $t_v^{(m)} = [s_v^{(m)}; \mathrm{ev}_v^{(m)}]$
with the reliability-gated similarity $\tilde A_{u^*v}^{(m)}$ as a confidence signal:
$E_{u^*}^{(m)} = \{(v, t_v^{(m)}, \tilde A_{u^*v}^{(m)})\}$.  :class:`PeerContextRetriever`
linearises $\{E_{u^*}^{(m)}\}_m$ into facet-grouped text::

    [Genre Preference]
    - peer (similarity 0.82): Prefers hard science fiction. "loved the physics"

within a token budget: at most ``max_tokens_per_peer`` per peer entry (the paper caps a
neighbour facet summary at 512 tokens) and ``max_tokens`` overall; entries are added
facet by facet, strongest similarity first, and an entry that does not fit is left out.

The graph and the facet summaries are duck-typed so that this module depends on neither
:mod:`personakit.graph` nor :mod:`personakit.facets`: ``graph.neighbors(u, facet=m)``
returns ``(indices, scores)`` (as :class:`personakit.graph.MultiplexGraph` does) and
``facets[v][m]`` has ``summary``, ``quotes`` and ``reliability`` (as
:class:`personakit.facets.FacetSummary`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

__all__ = ["PeerEvidence", "PeerContextRetriever"]


@dataclass(frozen=True)
class PeerEvidence:
    """One retrieved exemplar $(v, t_v^{(m)}, \\tilde A_{u^*v}^{(m)})$."""

    facet: str
    peer: int
    similarity: float
    text: str


def _whitespace_tokens(text: str) -> int:
    return len(text.split())


def _truncate(text: str, budget: int, count: Callable[[str], int]) -> str:
    if count(text) <= budget:
        return text
    words = text.split()
    lo, hi = 0, len(words)
    while lo < hi:  # longest word prefix within the budget
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid]) + " ...") <= budget:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo]) + " ..." if lo else ""


class PeerContextRetriever:
    """Retrieve and linearise facet-aligned neighbour evidence for a user.

    Args:
        graph: a multiplex graph with ``neighbors(user_index, facet=m) -> (indices, scores)``.
        facets: per user (graph row order), the per-facet summaries (``summary``, ``quotes``, ``reliability``).
        facet_names: the ``M`` facet names (section headers).
        max_neighbors: peers per facet (paper: up to 3).
        max_tokens_per_peer: token cap of one peer entry.
        max_tokens: token cap of the whole context.
        skip_unreliable: leave out peers whose facet is ``none``/``weak`` (their text is a placeholder).
        count_tokens: text → token count (default: whitespace words; pass ``lambda t: len(tok(t).input_ids)``).

    Example:
        >>> import torch
        >>> from types import SimpleNamespace as NS
        >>> class G:
        ...     def neighbors(self, u, facet=None):
        ...         return torch.tensor([1 - u]), torch.tensor([0.8])
        >>> f = [[NS(summary="Likes sci-fi.", quotes=["warp drives rock"], reliability="strong")],
        ...      [NS(summary="Likes poetry.", quotes=[], reliability="moderate")]]
        >>> print(PeerContextRetriever(G(), f, ["Genre"]).context(0))
        [Genre]
        - peer (similarity 0.80): Likes poetry.
    """

    def __init__(self, graph: Any, facets: Sequence[Sequence[Any]], facet_names: Sequence[str], *,
                 max_neighbors: int = 3, max_tokens_per_peer: int = 512, max_tokens: int = 1024,
                 skip_unreliable: bool = True, count_tokens: Optional[Callable[[str], int]] = None):
        if max_neighbors < 0 or max_tokens_per_peer < 1 or max_tokens < 1:
            raise ValueError("PeerContextRetriever: max_neighbors >= 0, max_tokens_per_peer >= 1, max_tokens >= 1")
        self.graph, self.facets, self.facet_names = graph, facets, list(facet_names)
        self.max_neighbors, self.max_tokens_per_peer, self.max_tokens = max_neighbors, max_tokens_per_peer, max_tokens
        self.skip_unreliable = skip_unreliable
        self.count_tokens = count_tokens or _whitespace_tokens

    def retrieve(self, user_index: int) -> list[PeerEvidence]:
        """$\\bigcup_m E_{u^*}^{(m)}$: per facet the strongest ``max_neighbors`` usable peers."""
        out: list[PeerEvidence] = []
        for m, name in enumerate(self.facet_names):
            idx, score = self.graph.neighbors(int(user_index), facet=m)
            pairs = sorted(zip([int(i) for i in idx], [float(s) for s in score]), key=lambda p: -p[1])
            kept = 0
            for v, sim in pairs:
                if kept >= self.max_neighbors:
                    break
                if v == user_index or v < 0:
                    continue
                f = self.facets[v][m]
                if self.skip_unreliable and getattr(f, "reliability", "strong") in ("none", "weak"):
                    continue
                text = " ".join([" ".join(f.summary.split()), *(f'"{q}"' for q in getattr(f, "quotes", []))])
                out.append(PeerEvidence(name, v, sim, text))
                kept += 1
        return out

    def linearize(self, evidence: Sequence[PeerEvidence]) -> str:
        """Facet-grouped text of ``evidence`` within the token budgets."""
        lines: list[str] = []
        used = 0
        current = None
        for ev in evidence:
            entry = f"- peer (similarity {ev.similarity:.2f}): "
            entry += _truncate(ev.text, max(1, self.max_tokens_per_peer - self.count_tokens(entry)), self.count_tokens)
            header = [f"[{ev.facet}]"] if ev.facet != current else []
            cost = self.count_tokens("\n".join(header + [entry]))
            if used + cost > self.max_tokens:
                continue
            lines += header + [entry]
            used += cost
            current = ev.facet
        return "\n".join(lines)

    def context(self, user_index: int) -> str:
        """:meth:`linearize` of :meth:`retrieve` (``""`` when no usable peer)."""
        return self.linearize(self.retrieve(user_index))
