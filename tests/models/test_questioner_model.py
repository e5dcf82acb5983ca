"""DualTowerResponder: forward, generate(questioner_id=...), collator, save/load round trip."""

from __future__ import annotations

import pytest
import torch

from _questioner_kit import QUESTIONERS, build_lm, build_tokenizer, make_examples
from personakit.models.questioner import DualTowerConfig, DualTowerResponder, QuestionerCollator


def _model(kind="llama", **settings):
    settings.setdefault("rank", 4)
    return DualTowerResponder.from_backbone(build_lm(kind), build_tokenizer(), questioners=QUESTIONERS, **settings)


def _batch(model, n=8):
    return model.make_collator()(make_examples(n))


def test_collator_fields():
    tok = build_tokenizer()
    coll = QuestionerCollator(tok, {"ann": 1, "bob": 2}, max_history_turns=1)
    examples = make_examples(4)
    batch = coll(examples)
    assert batch["questioner_ids"].tolist() == [1, 2, 0, 0]  # cat, dan unknown to this index
    assert batch["cluster_ids"].tolist() == [0, 0, 0, 0]
    assert coll.prompt_text(examples[0]) == "user: how are you\nagent:"
    row = batch["labels"][0]
    target = row[row != -100].tolist()
    assert target[-1] == tok.eos_token_id and tok.decode(target[:-1]) == examples[0].response
    assert batch["input_ids"][0, :int(batch["prompt_mask"][0].sum())].tolist() == \
        batch["prompt_ids"][0, :int(batch["prompt_mask"][0].sum())].tolist()
    inference = QuestionerCollator(tok, {}, with_targets=False)(examples)
    assert "labels" not in inference and "prompt_ids" in inference


@pytest.mark.parametrize("general", ["lora", "full", "frozen"])
def test_forward_losses_and_trainable_parts(general):
    model = _model(general=general)
    model.train()
    out = model(**_batch(model))
    terms = out.losses()
    assert {"loss", "loss_lm", "loss_contrastive", "contrastive_valid"} <= set(terms)
    assert abs(terms["loss"] - (terms["loss_lm"] + 0.5 * terms["loss_contrastive"])) < 1e-5
    out.loss.backward()
    names = model.trainable_parameter_names()
    assert any("specific.blocks" in n for n in names) and any("projector" in n for n in names)
    if general == "lora":
        assert any("lora_" in n for n in names) and not any(n.endswith("embed_tokens.weight") for n in names)
    elif general == "frozen":
        assert not any(n.startswith("backbone.") for n in names)
    else:
        assert any(n.endswith("embed_tokens.weight") for n in names)
    assert model.specific.blocks[0].ffn.down_proj.weight.grad.abs().sum() > 0


def test_lm_loss_equals_backbone_loss_when_stream_zeroed():
    lm = build_lm()
    batch = DualTowerResponder.from_backbone(build_lm(), build_tokenizer(), questioners=QUESTIONERS,
                                             general="full").make_collator()(make_examples(4))
    with torch.no_grad():
        ref = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    model = DualTowerResponder.from_backbone(lm, build_tokenizer(), questioners=QUESTIONERS, general="full")
    model.specific.zero_()
    model.eval()
    with torch.no_grad():
        out = model(**batch)
    assert torch.equal(out.logits, ref.logits)
    assert torch.allclose(out.loss_lm, ref.loss)


def test_baseline_without_specific_stream():
    model = _model(use_specific=False)
    assert model.specific is None and model.added_parameters_per_layer() == 0
    out = model(**_batch(model))
    assert set(out.losses()) == {"loss", "loss_lm"}


def test_generate_with_questioner_ids_and_unknown_fallback():
    torch.manual_seed(0)
    model = _model(general="full", init_scale=3.0, unknown_questioner="general").eval()
    lm_only = model.base_model
    prompt = torch.tensor([[1, 5, 6, 7]])
    kw = dict(max_new_tokens=5, do_sample=False)
    plain = model.generate(input_ids=prompt, **kw)
    assert torch.equal(model.generate(input_ids=prompt, questioner_id="nobody", **kw), plain)  # general stream
    assert torch.equal(plain, lm_only.generate(prompt, attention_mask=torch.ones_like(prompt), pad_token_id=0,
                                               **kw)[:, 4:])
    outs = {q: model.generate(input_ids=prompt, questioner_id=q, **kw) for q in QUESTIONERS}
    assert len({tuple(o[0].tolist()) for o in outs.values()} | {tuple(plain[0].tolist())}) > 1
    both = model.generate(input_ids=prompt.expand(2, -1), questioner_id=["ann", "bob"], **kw)
    assert torch.equal(both[0], outs["ann"][0]) and torch.equal(both[1], outs["bob"][0])


def test_unknown_questioner_default_mode_uses_default_embedding():
    model = _model(general="full", init_scale=3.0, unknown_questioner="default").eval()
    prompt = torch.tensor([[1, 5, 6, 7]])
    with torch.no_grad():
        plain = model.backbone(prompt).logits
        unknown = model(prompt, questioner_ids=model.questioner_ids_for("nobody", 1)).logits
    assert not torch.allclose(plain, unknown)
    ids = model.questioner_ids_for(["ann", None, "zed"], 3)
    assert ids.tolist() == [1, 0, 0]


def test_questioner_dropout_only_in_training():
    model = _model(questioner_dropout=0.5)
    ids = torch.tensor([1, 2, 3, 4] * 8)
    model.train()
    torch.manual_seed(0)
    assert (model._drop_questioners(ids) == 0).any()
    model.eval()
    assert torch.equal(model._drop_questioners(ids), ids)


@pytest.mark.parametrize(("kind", "general"), [("llama", "lora"), ("gpt2", "full"), ("qwen2", "frozen")])
def test_save_load_round_trip(tmp_path, kind, general):
    model = _model(kind, general=general, queue_size=8, init_scale=0.5)
    model.train()
    model(**_batch(model))  # fills the queue
    model.eval()
    batch = _batch(model, 4)
    with torch.no_grad():
        ref = model(**batch).logits
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "config.json").is_file()
    loaded = DualTowerResponder.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.questioners == QUESTIONERS and loaded.config.rank == 4
    assert torch.equal(loaded.contrastive.queue, model.contrastive.queue)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, ref)
    assert loaded.tokenizer is not None
    assert loaded.respond(make_examples(2), max_new_tokens=3, do_sample=False) == \
        model.respond(make_examples(2), max_new_tokens=3, do_sample=False)


def test_config_validation():
    with pytest.raises(ValueError, match="'rank'"):
        DualTowerConfig(rank=0)
    with pytest.raises(ValueError, match="'questioners'"):
        DualTowerConfig(questioners=["a", "a"])
    with pytest.raises(ValueError, match="'general'"):
        DualTowerConfig(general="half")
    with pytest.raises(FileNotFoundError):
        DualTowerResponder.from_pretrained("/nonexistent/folder")


@pytest.mark.parametrize("general", ["lora", "full"])
def test_deepcopy_gives_an_independent_dual_tower(general):
    import copy

    torch.manual_seed(0)
    model = _model(general=general).eval()
    for p in model.specific.parameters():  # a non-trivial specific stream
        torch.nn.init.normal_(p, std=0.5)
    batch = _batch(model, 4)
    with torch.no_grad():
        before = model(**batch).logits
        twin = copy.deepcopy(model).eval()
        assert torch.equal(twin(**batch).logits, before)  # same weights, same output
        for p in twin.specific.parameters():  # change only the copy's specific stream
            p.add_(1.0)
        changed = twin(**batch).logits
        assert not torch.allclose(changed, before)  # the copy runs its own stream ...
        assert torch.equal(model(**batch).logits, before)  # ... and the original is untouched
        twin.specific.unwrap()  # unwrapping the copy leaves the original's wrappers in place
        assert torch.equal(model(**batch).logits, before)


def test_output_counts_positive_pairs_of_known_questioners():
    model = _model()
    model.train()
    batch = _batch(model)
    out = model(**batch)
    qids = batch["questioner_ids"]
    known = qids[qids > 0]
    expected = model.contrastive.pair_counts(known, batch["cluster_ids"][qids > 0])
    assert float(out.contrastive_positive_pairs) == float(expected["positive_pairs"])
    assert float(out.contrastive_negative_pairs) == float(expected["negative_pairs"])
    assert {"contrastive_positive_pairs", "contrastive_negative_pairs"} <= set(out.losses())
    lora = _model(use_specific=False)
    assert "contrastive_positive_pairs" not in lora(**_batch(lora)).losses()
