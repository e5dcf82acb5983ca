"""Non-parametric peer context: facet-aligned neighbours, similarity shown, token budgets."""

from types import SimpleNamespace as NS

import torch

from personakit.retrieval.neighbors import PeerContextRetriever


class Graph:
    def __init__(self, table):
        self.table = table

    def neighbors(self, u, facet=None):
        idx, w = self.table[(u, facet)]
        return torch.tensor(idx), torch.tensor(w)


def _f(summary, rel="strong", quotes=()):
    return NS(summary=summary, quotes=list(quotes), reliability=rel)


FACETS = [[_f("self a"), _f("self b")],
          [_f("likes cats", quotes=["cats are great"]), _f("calm tone")],
          [_f("likes dogs"), _f("x", rel="weak")],
          [_f("loud"), _f("loud tone " + "word " * 50)]]
G = Graph({(0, 0): ([2, 1], [0.5, 0.9]), (0, 1): ([2, 3, 1], [0.99, 0.7, 0.6])})


def test_facet_grouped_sorted_and_unreliable_skipped():
    r = PeerContextRetriever(G, FACETS, ["Pets", "Tone"], max_neighbors=2)
    ev = r.retrieve(0)
    assert [(e.facet, e.peer) for e in ev] == [("Pets", 1), ("Pets", 2), ("Tone", 3), ("Tone", 1)]
    text = r.context(0)
    assert text.startswith("[Pets]\n- peer (similarity 0.90): likes cats \"cats are great\"")
    assert "x" not in text.split("[Tone]")[1].split()  # the weak peer's placeholder is left out


def test_token_budgets():
    r = PeerContextRetriever(G, FACETS, ["Pets", "Tone"], max_neighbors=3, max_tokens_per_peer=12, max_tokens=40)
    text = r.context(0)
    assert len(text.split()) <= 40
    assert all(len(line.split()) <= 12 for line in text.splitlines())
    assert "..." in text  # the long summary was cut
