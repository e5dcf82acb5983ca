"""PreSFT, PreGRAG, PostGRAG on tiny random BART, T5, BERT2BERT and Llama backbones."""

from __future__ import annotations

import pytest
import torch
from grag_testkit import BACKBONES, build_backbone, make_examples, tokenizer_for

from personakit.backbones.compat import cache_argument, output_cache
from personakit.functional.losses import last_token_pool
from personakit.losses import CJEPALoss
from personakit.models.grag import GRAGConfig, GRAGModel, PostGRAG, PreGRAG, PreSFT, build_grag_model

# EncoderDecoderModel warns when given labels (the reference losses below pass them)
pytestmark = pytest.mark.filterwarnings("ignore:Version v4.12.0:FutureWarning")


def build(cls, kind, **settings):
    if cls is PostGRAG:
        settings.setdefault("extractor_heads", 2)
        settings.setdefault("extractor_dropout", 0.0)
    return cls.from_backbone(build_backbone(kind), tokenizer_for(kind), **settings)


def batch_for(model):
    return model.make_collator()(make_examples())


# ---------------------------------------------------------------------------- PreSFT
@pytest.mark.parametrize("kind", BACKBONES)
@pytest.mark.parametrize("mode", ["hist", "tst"])
def test_presft_loss_equals_backbone_loss(kind, mode):
    model = build(PreSFT, kind, mode=mode).eval()
    batch = batch_for(model)
    out = model(**batch)
    ref = model.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         labels=batch["labels"]).loss
    torch.testing.assert_close(out.loss_p, ref)
    assert out.loss is out.loss_p and out.loss_g is None and out.loss_cjepa is None
    aligned = out.labels if out.labels is not None else batch["labels"]
    assert out.logits.shape[:2] == aligned.shape
    if out.labels is not None:  # decoder-only: logits only from the earliest target on, equal to the backbone's
        full = model.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        width = out.logits.size(1)
        assert width < full.size(1)
        torch.testing.assert_close(out.logits, full[:, -width:], atol=1e-5, rtol=1e-5)
        assert torch.equal(out.labels, batch["labels"][:, -width:])


# ---------------------------------------------------------------------------- PreGRAG
@pytest.mark.parametrize("kind", BACKBONES)
def test_pregrag_total_and_cjepa_terms(kind):
    model = build(PreGRAG, kind, beta=0.7).eval()
    batch = batch_for(model)
    out = model(**batch)
    torch.testing.assert_close(out.loss, out.loss_p + 0.7 * out.loss_cjepa, rtol=0, atol=0)
    # reference: C from the fused input alone, P and G from R_P and R_G alone
    with torch.no_grad():
        if model.is_encoder_decoder:
            context = last_token_pool(model.encode(batch["input_ids"], batch["attention_mask"]), batch["attention_mask"])
        else:
            context = last_token_pool(model.encode(batch["prompt_ids"], batch["prompt_mask"]), batch["prompt_mask"])
        p = last_token_pool(model.encode(batch["response_ids"], batch["response_mask"]), batch["response_mask"])
        g = last_token_pool(model.encode(batch["generic_ids"], batch["generic_mask"]), batch["generic_mask"])
    torch.testing.assert_close(out.loss_cjepa, CJEPALoss()(context, p, g), atol=1e-5, rtol=1e-5)
    # L_P is the plain backbone loss on the fused input
    ref = model.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         labels=batch["labels"]).loss
    torch.testing.assert_close(out.loss_p, ref)


def test_pregrag_beta_zero_has_no_cjepa_term_unless_logged():
    model = build(PreGRAG, "bart", beta=0.0).eval()
    batch = batch_for(model)
    out = model(**batch)
    assert out.loss_cjepa is None and out.loss is out.loss_p
    model.config.compute_unweighted_losses = True
    out = model(**batch)
    assert out.loss_cjepa is not None and not out.loss_cjepa.requires_grad
    assert torch.equal(out.loss, out.loss_p)


# ---------------------------------------------------------------------------- PostGRAG
@pytest.mark.parametrize("kind", BACKBONES)
def test_postgrag_total_is_exact_weighted_sum(kind):
    model = build(PostGRAG, kind, alpha=0.3, beta=0.2).eval()
    out = model(**batch_for(model))
    for term in (out.loss_p, out.loss_g, out.loss_cjepa):
        assert term is not None and torch.isfinite(term)
    torch.testing.assert_close(out.loss, out.loss_p + 0.3 * out.loss_g + 0.2 * out.loss_cjepa, rtol=0, atol=0)
    assert out.style.shape == (3, model.decoder_hidden_size)


@pytest.mark.parametrize("decoder_passes", [1, 2])
@pytest.mark.parametrize("kind", BACKBONES)
def test_postgrag_decodings_equal_separate_reference_passes(kind, decoder_passes):
    """L_P and L_G, from one stacked decoder pass (decoder_passes=1) or two (the default), equal
    separately computed styled reference passes."""
    model = build(PostGRAG, kind, alpha=1.0, beta=0.0, decoder_passes=decoder_passes).eval()
    assert model.config.decoder_passes == decoder_passes
    batch = batch_for(model)
    out = model(**batch)
    with torch.no_grad():
        enc = {n: model.encode_segments([(batch[f"{n}_ids"], batch[f"{n}_mask"])])[0]
               for n in ("persona", "history", "generic", "response")}
        s_p = model.personal_style(enc["persona"], enc["history"], enc["generic"])
        s_g = model.generic_style(enc["persona"], enc["history"], enc["response"])
        if model.is_encoder_decoder:
            with model.style_decoder.use_style(s_p):
                lp = model.token_loss(model.decode_encoder_decoder(*enc["history"], batch["labels"]), batch["labels"])
            with model.style_decoder.use_style(s_g):
                lg = model.token_loss(model.decode_encoder_decoder(*enc["response"], batch["generic_labels"]),
                                      batch["generic_labels"])
        else:
            lp = _continued_loss(model, s_p, batch["history_mask"], batch["input_ids"], batch["labels"])
            lg = _continued_loss(model, s_g, batch["response_mask"], batch["generic_input_ids"],
                                 batch["generic_labels"])
    torch.testing.assert_close(out.loss_p, lp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss_g, lg, atol=1e-5, rtol=1e-5)


def _continued_loss(model, style, prefix_mask, ids, labels):
    """Decoder-only reference, one row at a time without padding: the prefix but its last token is
    read without style (its cache), the rest (from that last token on) with the style."""
    nll, count = 0.0, 0
    for i in range(ids.size(0)):
        n_prefix, n_all = int(prefix_mask[i].sum()), int((labels[i] != -100).nonzero().max()) + 1
        row, lab = ids[i:i + 1, :n_all], labels[i, :n_all]
        cache = output_cache(model.backbone(input_ids=row[:, : n_prefix - 1], use_cache=True))
        with model.style_decoder.use_style(style[i:i + 1]):
            logits = model.backbone(input_ids=row[:, n_prefix - 1:], **{cache_argument(model.backbone): cache}).logits[0]  # (T', V)
        target = lab[n_prefix:]  # position j of the tail predicts token n_prefix + j
        keep = target != -100
        nll += float(torch.nn.functional.cross_entropy(logits[:-1][keep], target[keep], reduction="sum"))
        count += int(keep.sum())
    return torch.tensor(nll / count)


def test_postgrag_decoder_only_prefix_is_unstyled_and_continuation_styled():
    """Decoder-only PostGRAG returns the continuation's logits with labels aligned to them, scores every
    target token, and another S_P changes L_P (the continuation runs under the style)."""
    model = build(PostGRAG, "llama", alpha=0.0, beta=0.0).eval()
    batch = batch_for(model)
    with torch.no_grad():
        out = model(**batch)
        assert out.labels is not None and out.logits.shape[:2] == out.labels.shape
        assert int((out.labels != -100).sum()) == int((batch["labels"] != -100).sum())  # every target token scored
        model.style_extractor.out_proj.bias.add_(3.0)  # another S_P
        other = model(**batch)
    assert not torch.allclose(out.loss_p, other.loss_p)


def test_postgrag_decoder_only_generation_matches_teacher_forcing():
    """Greedy generation continues H exactly as the training pass does: teacher-forcing the generated
    tokens gives them as the argmax at every step."""
    model = build(PostGRAG, "llama", alpha=0.0, beta=0.0).eval()
    examples = make_examples()
    infer = model.make_collator(with_targets=False)(examples)
    with torch.no_grad():
        new = model.generate(infer, max_new_tokens=4, min_new_tokens=4, do_sample=False)  # (B, 4)
        for i in range(new.size(0)):
            n_h = int(infer["history_mask"][i].sum())
            h = infer["history_ids"][i:i + 1, :n_h]
            seq = torch.cat([h, new[i:i + 1]], dim=1)
            labels = torch.cat([torch.full_like(h, -100), new[i:i + 1]], dim=1)
            enc = model.encode_segments([(infer["persona_ids"][i:i + 1], infer["persona_mask"][i:i + 1]),
                                         (h, torch.ones_like(h)),
                                         (infer["generic_ids"][i:i + 1], infer["generic_mask"][i:i + 1])])
            style = model.personal_style(*enc)
            _, caches = model.encode_segments_with_cache([(h, torch.ones_like(h))], (0,))
            logits, tail = model._continue(style, [caches[0]], [torch.ones_like(h)],
                                           [(seq, torch.ones_like(seq), labels)])
            predicted = logits[0, :-1].argmax(-1)[tail[0, 1:] != -100]
            assert torch.equal(predicted, new[i]), i


@pytest.mark.parametrize("kind", BACKBONES)
def test_postgrag_gradients_reach_both_extractors(kind):
    model = build(PostGRAG, kind, alpha=0.5, beta=0.5).train()
    model(**batch_for(model)).loss.backward()
    for name in ("style_extractor", "generic_style_extractor"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name


def test_postgrag_zero_weights_give_no_gradient_from_their_terms():
    torch.manual_seed(0)
    model = build(PostGRAG, "bart", alpha=0.0, beta=0.0).eval()
    batch = batch_for(model)
    out = model(**batch)
    assert out.loss_g is None and out.loss_cjepa is None and out.loss is out.loss_p
    out.loss.backward()
    assert all(p.grad is None for p in model.generic_style_extractor.parameters())  # SE_G unused without L_G
    grads_lp = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    # beta = 0 with the CJEPA term logged: the same gradients as L_P alone
    model.zero_grad(set_to_none=True)
    model.config.compute_unweighted_losses = True
    out = model(**batch)
    assert out.loss_cjepa is not None and out.loss_g is not None
    out.loss.backward()
    for n, p in model.named_parameters():
        if n in grads_lp:
            torch.testing.assert_close(p.grad, grads_lp[n], atol=1e-6, rtol=1e-5)
        else:
            assert p.grad is None or not p.grad.any(), n  # SE_G: the logged L_G gives it a zero gradient


def test_postgrag_beta_changes_only_through_cjepa():
    model = build(PostGRAG, "t5", alpha=0.0, beta=2.0).eval()
    batch = batch_for(model)
    out = model(**batch)
    out.loss_cjepa.backward()
    # C-JEPA depends on the encoder only: no gradient to the extractors or the LM head
    assert all(p.grad is None for p in model.style_extractor.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.encoder.parameters())


# ---------------------------------------------------------------------------- generation
@pytest.mark.parametrize("kind", BACKBONES)
@pytest.mark.parametrize("cls", [PreSFT, PreGRAG, PostGRAG])
def test_generate_is_deterministic_and_needs_no_response(kind, cls):
    model = build(cls, kind).eval()
    infer = model.make_collator(with_targets=False)(make_examples())
    assert "labels" not in infer and "response_ids" not in infer
    a = model.generate(infer, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    b = model.generate(infer, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert a.shape == (3, 5) and torch.equal(a, b)
    # a training batch works too (its extra fields are ignored)
    c = model.generate(batch_for(model), max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert torch.equal(a, c)
    texts = model.respond(make_examples(), max_new_tokens=3, min_new_tokens=3)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)


@pytest.mark.parametrize("kind", ["bart", "llama"])
def test_postgrag_generation_uses_the_style(kind):
    """Generation runs under S_P: another style gives other tokens."""
    model = build(PostGRAG, kind).eval()
    infer = model.make_collator(with_targets=False)(make_examples())
    with torch.no_grad():
        tokens = model.generate(infer, max_new_tokens=4, min_new_tokens=4)
        model.style_extractor.out_proj.bias.add_(3.0)  # a different S_P
        other = model.generate(infer, max_new_tokens=4, min_new_tokens=4)
    assert not torch.equal(tokens, other)


# ---------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("kind", BACKBONES)
@pytest.mark.parametrize("cls", [PreSFT, PreGRAG, PostGRAG])
def test_save_load_round_trip_gives_identical_logits(kind, cls, tmp_path):
    model = build(cls, kind, **({"alpha": 0.4, "beta": 0.1} if cls is PostGRAG else {})).eval()
    batch = batch_for(model)
    with torch.no_grad():  # make the extractors non-trivial
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    before = model(**batch)
    model.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").is_file() and (tmp_path / "ckpt" / "config.json").is_file()
    loaded = GRAGModel.from_pretrained(tmp_path / "ckpt").eval()
    assert type(loaded) is cls and loaded.config.to_dict() == model.config.to_dict()
    after = loaded(**batch)
    assert torch.equal(before.logits, after.logits)
    assert torch.equal(before.loss, after.loss)
    # tied embeddings stay tied after loading
    emb, head = loaded.base_model.get_input_embeddings(), loaded.base_model.get_output_embeddings()
    if getattr(loaded.base_model.config, "tie_word_embeddings", False) and kind != "bert2bert":
        assert emb.weight is head.weight
    # style wrappers do not leak into the saved key names
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ckpt" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    if cls is PostGRAG:
        assert not any(".base_layer." in k for k in keys)
        assert any(k.startswith("style_extractor.") for k in keys)
        backbone_keys = {k[len("backbone."):] for k in keys if k.startswith("backbone.")}
        assert backbone_keys <= set(build_backbone(kind).state_dict())
    tok_loaded = loaded.tokenizer
    assert tok_loaded is not None and tok_loaded.convert_tokens_to_ids("guitar") == model.tokenizer.convert_tokens_to_ids("guitar")


# ---------------------------------------------------------------------------- config / factory
def test_config_validation_and_factory():
    with pytest.raises(ValueError, match="alpha"):
        GRAGConfig(method="pregrag", alpha=0.5)
    with pytest.raises(ValueError, match="method"):
        GRAGConfig(method="midgrag")
    with pytest.raises(ValueError, match="beta"):
        GRAGConfig(method="presft", beta=1.0)
    with pytest.raises(ValueError, match="decoder_passes"):
        GRAGConfig(method="postgrag", decoder_passes=3)
    assert GRAGConfig().decoder_passes == 2
    model = build_grag_model("presft-tst", build_backbone("bart"))
    assert isinstance(model, PreSFT) and model.config.mode == "tst"
    post = build_grag_model("PostGRAG", build_backbone("llama"), extractor_heads=2, alpha=0.1, beta=0.05)
    assert isinstance(post, PostGRAG) and post.config.alpha == 0.1
    assert post.config.backbone_class == "LlamaForCausalLM"
    with pytest.raises(ValueError, match="unknown kind"):
        build_grag_model("grag", build_backbone("bart"))


def test_importing_grag_does_not_import_peft():
    import subprocess
    import sys

    code = "import sys, personakit.models.grag; print('peft' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
