"""The CoPersona recipe end to end on tiny random models with a callable LLM; incremental updates."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "facets"))

from copersona_kit import encoder, examples, fake_llm, tiny_llama, users  # noqa: E402

pytest.importorskip("torch_geometric")
pytest.importorskip("peft")

from personakit.data.copersona_users import CoPersonaUsers  # noqa: E402
from personakit.facets import FacetEmbedder, FacetSchemaInducer, FacetSummarizer  # noqa: E402
from personakit.recipes.copersona import (COPERSONA_LABELS, CoPersonaPipeline, CoPersonaRecipeConfig,  # noqa: E402
                                          run_copersona_recipe)
from personakit.types import ProfileItem, UserProfile  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_recipe_end_to_end(tmp_path):
    torch.set_num_threads(1)
    calls: list = []
    cfg = CoPersonaRecipeConfig.from_yaml(REPO / "examples" / "configs" / "copersona_tiny.yaml")
    cfg = CoPersonaRecipeConfig.from_dict({
        **cfg.to_dict(), "output_dir": str(tmp_path), "metrics": ["rouge", "bleu", "meteor"],
        "facets": {**cfg.facets.to_dict(), "num_facets": 3, "num_clusters": 2},
        "model": {**cfg.model.to_dict(), "graph_hidden": 8, "num_virtual_tokens": 2, "max_prompt_tokens": 48},
        "training": {**cfg.training.to_dict(), "max_steps": 2, "batch_size": 2, "gradient_accumulation_steps": 1},
        "max_new_tokens": 3})
    data = CoPersonaUsers(users=users(), train=examples(), test=examples(("u1", "u3")))
    res = run_copersona_recipe(cfg, data=data, generator=fake_llm(calls), encoder=encoder,
                               backbone_factory=lambda: tiny_llama(0))
    assert list(res.rows) == [COPERSONA_LABELS[v] for v in cfg.variants]
    for row in res.rows.values():
        assert {"rouge1", "rougeL", "meteor", "bleu"} <= set(row)
    assert [f["name"] for f in res.schema["facets"]] == ["Hobbies", "Tone", "Work"]
    assert res.facet_biased_fraction == 1.0  # evidence-graded reliability: one strong facet per user, the rest less
    assert res.sizes["reliability_counts"] == {"none": 0, "weak": 4, "moderate": 4, "strong": 4}
    assert len(res.sizes["facet_edges"]) == 3
    for name in ("results.md", "results.json", "predictions.jsonl", "facet_schema.json"):
        assert (tmp_path / name).is_file()
    n_calls = len(calls)
    # a rerun: schema from the file, summaries from the store: no LLM call at all
    run_copersona_recipe(cfg.model_copy(update={"variants": ["rag"]}), data=data, generator=fake_llm(calls),
                         encoder=encoder, backbone_factory=lambda: tiny_llama(0))
    assert len(calls) == n_calls


def test_incremental_update_touches_only_changed_users(tmp_path):
    calls: list = []
    llm = fake_llm(calls)
    inducer = FacetSchemaInducer(llm, encoder, num_facets=3, num_clusters=2)
    pipe = CoPersonaPipeline(inducer, lambda s: FacetSummarizer(llm, s, store=tmp_path / "store.jsonl"),
                             FacetEmbedder(encoder), top_k=2, threshold=0.0)
    profiles = users()
    pipe.update(profiles)
    assert len(calls) == 1 + 4 * 3  # one schema prompt + users x facets
    calls.clear()
    pipe.update(profiles)
    assert calls == [] and pipe.last_changed == []
    grown = profiles[2].model_copy(update={"items": profiles[2].items + [ProfileItem(id="z", text="i love dogs")]})
    newcomer = UserProfile(user_id="u7", items=[ProfileItem(id="a", text="i play guitar and bake")])
    pipe.update([profiles[0], profiles[1], grown, profiles[3], newcomer])
    assert len(calls) == 2 * 3 and sorted(pipe.last_changed) == ["u2", "u7"]
    assert pipe.embeddings.user_ids == ["u0", "u1", "u2", "u3", "u7"] and pipe.graph.num_users == 5
    assert all("bake cookies" not in json.dumps(c) or "guitar" in json.dumps(c) for c in calls)
