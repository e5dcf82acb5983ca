"""CoPersonaModel: soft-prompt masking and labels in forward, variants, generate, save/load round trip."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "facets"))

from copersona_kit import encoder, examples, fake_llm, tiny_llama, users  # noqa: E402

pytest.importorskip("torch_geometric")
pytest.importorskip("peft")

from personakit.facets import FacetEmbedder, FacetSchema, FacetSummarizer  # noqa: E402
from personakit.graph import build_multiplex_graph  # noqa: E402
from personakit.models.copersona import COPERSONA_VARIANTS, CoPersonaContext, CoPersonaModel  # noqa: E402

SCHEMA = FacetSchema(facets=[{"name": n, "definition": "d", "values": "v"} for n in ("Hobbies", "Tone", "Work")])
L = 3


@pytest.fixture(scope="module")
def context():
    profiles = users()
    facets = FacetSummarizer(fake_llm([]), SCHEMA).summarize(profiles)
    emb = FacetEmbedder(encoder).embed([facets[p.user_id] for p in profiles])
    graph = build_multiplex_graph(emb.embeddings, emb.reliability, top_k=2, threshold=0.0, facet_names=SCHEMA.names)
    return CoPersonaContext.build(profiles, facets, emb, graph, max_neighbors=1)


def make(context, variant="copersona", lora=None, seed=0):
    model, tok = tiny_llama(seed)
    torch.manual_seed(seed)
    return CoPersonaModel.from_backbone(model, tok, context=context, variant=variant, num_facets=3, facet_dim=8,
                                       graph_hidden=8, num_virtual_tokens=L, lora=lora, max_prompt_tokens=48)


def test_forward_prepends_masked_soft_prompt(context):
    model = make(context)
    batch = model.make_collator()(examples())
    out = model(**batch)
    b, t = batch["input_ids"].shape
    assert out.soft_prompt.shape == (b, L, 16) and out.logits.shape[:2] == (b, L + t)
    assert (out.labels[:, :L] == -100).all() and torch.equal(out.labels[:, L:], batch["labels"])
    # the loss is the backbone's loss on the real target tokens only
    manual = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, out.logits.size(-1)),
                                               out.labels[:, 1:].reshape(-1), ignore_index=-100)
    assert torch.allclose(out.loss, manual, atol=1e-5)
    out.loss.backward()
    assert model.projector is not None and any(p.grad is not None and p.grad.abs().sum() > 0
                                               for p in model.facet_graph.parameters())


def test_soft_prompt_depends_on_the_user_and_is_cached(context):
    model = make(context).eval()
    sp = model.soft_prompts(torch.tensor([0, 1, 0]))
    assert not torch.allclose(sp[0], sp[1]) and torch.equal(sp[0], sp[2])
    assert set(model._prompt_cache) == {0, 1}


@pytest.mark.parametrize("variant", sorted(COPERSONA_VARIANTS))
def test_variants_build_their_prompts(context, variant):
    model = make(context, variant=variant)
    coll = model.make_collator()
    prompt = coll.prompt(examples()[0])
    assert ("[The user's earlier messages]" in prompt) == (variant not in ("nonperso",))
    assert ("[Similar users]" in prompt) == (variant in ("copersona", "no_parametric"))
    assert ("[The user's profile]" in prompt) == (variant == "pag")
    assert (model.projector is not None) == (variant in ("copersona", "no_nonparametric"))
    out = model(**coll(examples()[:2]))
    assert torch.isfinite(out.loss)


def test_generate_and_save_load_round_trip(context, tmp_path):
    model = make(context, lora={"r": 2, "alpha": 4, "dropout": 0.0}).eval()
    texts = model.respond(examples()[:2], max_new_tokens=4, do_sample=False)
    assert len(texts) == 2
    model.save_pretrained(tmp_path)
    loaded = CoPersonaModel.from_pretrained(tmp_path).eval()
    assert loaded.config.variant == "copersona" and loaded.context.user_ids == context.user_ids
    batch = model.make_collator()(examples())
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, loaded(**batch).logits, atol=1e-6)
    assert loaded.respond(examples()[:2], max_new_tokens=4, do_sample=False) == texts
