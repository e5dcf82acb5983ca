"""Facet schema induction: clustering evidence, JSON retry, clear failure, constrained decoding."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from copersona_kit import SCHEMA_REPLY, encoder, tiny_llama, users  # noqa: E402

from personakit.facets import (FacetSchema, FacetSchemaInducer, SchemaGuidedGenerator, cluster_profiles,
                               schema_skeleton, summary_skeleton)
from personakit.facets.summarize import SummaryReply
from personakit.llm import CallableGenerator, StructuredOutputError


def test_cluster_evidence_keywords_and_medoids():
    texts = ["cookies bake oven cookies", "bake cookies sugar", "guitar music play", "guitar songs music"]
    emb = [[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]]
    ev = cluster_profiles(texts, emb, 2, num_excerpts=1)
    by_kw = {e.keywords[0]: e for e in ev}
    assert set(by_kw) == {"cookies", "guitar"}
    assert sorted(by_kw["cookies"].members) == [0, 1] and by_kw["cookies"].excerpts[0] in texts[:2]


def test_schema_retry_then_valid():
    replies = iter(['{"facets": [{"name": "Tone"}]}', "Sure!\n```json\n" + SCHEMA_REPLY + "\n```"])
    chats = []
    gen = CallableGenerator(lambda chat: chats.append(chat) or next(replies))
    schema = FacetSchemaInducer(gen, encoder, num_facets=3, num_clusters=2).induce(users())
    assert schema.names == ["Hobbies", "Tone", "Work"]
    assert len(chats) == 2 and "definition" in chats[1][-1]["content"]  # the error names the missing field


def test_schema_wrong_count_fails_with_the_raw_reply():
    gen = CallableGenerator(lambda chat: SCHEMA_REPLY)
    with pytest.raises(StructuredOutputError, match="exactly 5 facets") as err:
        FacetSchemaInducer(gen, encoder, num_facets=5, num_clusters=2, max_attempts=2).induce(users())
    assert "Hobbies" in str(err.value)


def test_duplicate_names_rejected():
    with pytest.raises(ValueError, match="appears twice"):
        FacetSchema(facets=[{"name": "Tone", "definition": "d", "values": "v"}, {"name": "tone", "definition": "d",
                                                                                "values": "v"}])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_constrained_decoding_always_parses_with_a_tiny_random_llama(seed):
    model, tok = tiny_llama(seed)
    model.eval()
    gen = SchemaGuidedGenerator(model, tok, use_chat_template=False)
    [raw] = gen.generate_json(["hello how are you"], schema_skeleton(3, name_tokens=3, text_tokens=4))
    schema = FacetSchema.model_validate(json.loads(raw))
    assert len(schema) == 3
    [raw] = gen.generate_json(["tell me"], summary_skeleton(summary_tokens=3, quote_tokens=2))
    reply = SummaryReply.model_validate(json.loads(raw))
    assert reply.reliability in ("none", "weak", "moderate", "strong")


def test_prefix_cache_logits_equal_a_full_forward():
    from personakit.facets.constrained import _PrefixCache

    model, _ = tiny_llama(0)
    model.eval()
    cache = _PrefixCache(model)
    g = torch.Generator().manual_seed(0)
    first = torch.randint(5, 40, (12,), generator=g).tolist()
    second = first[:7] + torch.randint(5, 40, (6,), generator=g).tolist()  # shares a prefix of 7, then differs
    for ids, start in [(first, 11), (first + [9], 12), (second, 4), (second, 12), (first, 0)]:
        got = cache.logits(ids, start)
        with torch.no_grad():
            want = model(input_ids=torch.tensor([ids])).logits[0, start:]
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert cache.ids == first


def test_constrained_inducer_end_to_end():
    model, tok = tiny_llama(0)
    gen = SchemaGuidedGenerator(model.eval(), tok, use_chat_template=False, max_input_tokens=64)
    inducer = FacetSchemaInducer(None, encoder, num_facets=2, num_clusters=2, constrained=gen)
    assert len(inducer.induce(users())) == 2


def test_per_cluster_induction_asks_once_per_facet_and_repairs_generic_or_repeated_names():
    replies = iter([json.dumps({"name": "Baking", "definition": "Talks about baking.", "values": "no / yes"}),
                    json.dumps({"name": "baking", "definition": "Same again.", "values": "no / yes"}),  # repeated
                    json.dumps({"name": "Night work", "definition": "Works at night.", "values": "no / yes"})])
    chats = []
    gen = CallableGenerator(lambda chat: chats.append(chat) or next(replies))
    inducer = FacetSchemaInducer(gen, encoder, num_facets=2, num_clusters=2, per_cluster=True, max_attempts=2)
    schema = inducer.induce(users())
    assert schema.names == ["Baking", "Night work"]
    assert len(chats) == 3  # one prompt per facet + one retry of the repeated name with the error
    assert "Facets already chosen" in chats[1][-1]["content"] and "Baking" in chats[1][-1]["content"]
    assert "already a facet" in chats[2][-1]["content"]
    assert [f.keywords for f in schema.facets] == [e.keywords for e in inducer.last_evidence[:2]]
    assert all(f.keywords for f in schema.facets) and "Keywords:" in schema.facets[0].describe()


def test_per_cluster_generic_names_are_replaced_by_the_cluster_keywords():
    from personakit.facets.schema import ClusterEvidence, FacetSpec, _repair_facet

    ev = ClusterEvidence(cluster=0, size=3, keywords=["cookies", "bake", "oven"], excerpts=["x"])
    for name, definition in [("name", "not specified"), ("facet 2", "Yes"), ("Facet", "Talks about baking."),
                             ("Baking", "x"), ("I love to bake in my oven", "no")]:
        spec = _repair_facet(FacetSpec(name=name, definition=definition, values="v"), ev, ["Baking"],
                             ["Talks about baking."])
        assert spec.name == "cookies / bake" and spec.definition.startswith("How the user writes about cookies")
    kept = _repair_facet(FacetSpec(name="Tone", definition="How warm they sound.", values="v"), ev, ["Baking"])
    assert (kept.name, kept.definition, kept.keywords) == ("Tone", "How warm they sound.", ["cookies", "bake", "oven"])


def test_constrained_per_cluster_inducer_gives_distinct_names():
    model, tok = tiny_llama(0)
    gen = SchemaGuidedGenerator(model.eval(), tok, use_chat_template=False, max_input_tokens=64)
    schema = FacetSchemaInducer(None, encoder, num_facets=3, num_clusters=2, constrained=gen,
                                per_cluster=True).induce(users())
    assert len(schema) == 3 and len({n.lower() for n in schema.names}) == 3  # 3 facets from 2 clusters still distinct
