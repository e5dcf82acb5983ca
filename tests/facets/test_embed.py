"""Facet embeddings: L2-normalised [N, M, d], reliability labels, cache."""

import numpy as np
import torch

from personakit.facets import PLACEHOLDER, FacetEmbedder, FacetSummary, UserFacets


def test_embeddings_are_normalised_and_placeholders_shared():
    seen = []

    def enc(texts):
        seen.extend(texts)
        return np.random.default_rng(len(seen)).normal(size=(len(texts), 6))

    users = [UserFacets(user_id=u, content_hash="", facets=[
        FacetSummary(facet="a", summary=f"likes {u}", quotes=["x y z"], reliability="strong"),
        FacetSummary(facet="b", summary=PLACEHOLDER, reliability="weak")]) for u in "pq"]
    out = FacetEmbedder(enc).embed(users)
    assert out.embeddings.shape == (2, 2, 6) and out.reliability.tolist() == [[3, 1], [3, 1]]
    assert torch.allclose(out.embeddings.norm(dim=-1), torch.ones(2, 2))
    assert torch.equal(out.embeddings[0, 1], out.embeddings[1, 1])  # the same placeholder text
    assert seen.count(PLACEHOLDER) == 1 and 'likes p "x y z"' in seen
