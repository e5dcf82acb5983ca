"""Helpers of the CoPersona tests: a tiny user context and a tiny model (needs torch_geometric)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "facets"))

from copersona_kit import encoder, examples, fake_llm, tiny_llama, users  # noqa: E402,F401

L = 3
"""Virtual tokens of the tiny models."""


def build_context():
    """A :class:`CoPersonaContext` over the facets kit's users (3 facets of size 8)."""
    from personakit.facets import FacetEmbedder, FacetSchema, FacetSummarizer
    from personakit.graph import build_multiplex_graph
    from personakit.models.copersona import CoPersonaContext

    schema = FacetSchema(facets=[{"name": n, "definition": "d", "values": "v"} for n in ("Hobbies", "Tone", "Work")])
    profiles = users()
    facets = FacetSummarizer(fake_llm([]), schema).summarize(profiles)
    emb = FacetEmbedder(encoder).embed([facets[p.user_id] for p in profiles])
    graph = build_multiplex_graph(emb.embeddings, emb.reliability, top_k=2, threshold=0.0, facet_names=schema.names)
    return CoPersonaContext.build(profiles, facets, emb, graph, max_neighbors=1)


def make_model(context, variant="copersona", lora=None, seed=0, backbone=None):
    """A tiny :class:`CoPersonaModel` (``backbone``: the tiny Llama, or the one given, e.g. a PeftModel of it)."""
    from personakit.models.copersona import CoPersonaModel

    model, tok = tiny_llama(seed)
    torch.manual_seed(seed)
    return CoPersonaModel.from_backbone(model if backbone is None else backbone, tok, context=context,
                                        variant=variant, num_facets=3, facet_dim=8, graph_hidden=8,
                                        num_virtual_tokens=L, lora=lora, max_prompt_tokens=48)
