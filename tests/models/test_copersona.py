"""CoPersonaModel: soft-prompt masking and labels in forward, variants, generate, save/load round trip."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torch_geometric")
pytest.importorskip("peft")

from copersona_testkit import L, build_context, examples, make_model  # noqa: E402

from personakit.models.copersona import COPERSONA_VARIANTS, CoPersonaModel  # noqa: E402


@pytest.fixture(scope="module")
def context():
    return build_context()


def make(context, variant="copersona", lora=None, seed=0):
    return make_model(context, variant=variant, lora=lora, seed=seed)


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


def test_user_peft_model_round_trip_and_prompt_ids_for_generation(context, tmp_path):
    import peft
    from copersona_testkit import tiny_llama

    lm, _ = tiny_llama(1)
    user = peft.get_peft_model(lm, peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], lora_dropout=0.0,
                                                   task_type="CAUSAL_LM"))
    with torch.no_grad():
        for n, p in user.named_parameters():
            if "lora_B" in n:
                p.normal_()
    model = make_model(context, backbone=user).eval()
    assert model.backbone is user and model.config.lora_settings.target_modules == ["q_proj"]
    train_batch = model.make_collator()(examples())
    infer_batch = model.make_collator(with_targets=False)(examples())
    # generation reads the prompts alone, from a training batch as from an inference one
    assert torch.equal(model.generate(train_batch, max_new_tokens=3, do_sample=False),
                       model.generate(infer_batch, max_new_tokens=3, do_sample=False))
    model.save_pretrained(tmp_path)
    assert {"model.safetensors", "graph.safetensors", "context.json", "config.json"} <= {
        p.name for p in tmp_path.iterdir()}
    loaded = CoPersonaModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(**train_batch).logits, model(**train_batch).logits)
