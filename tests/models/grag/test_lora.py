"""LoRA (peft) on a tiny Llama: only adapters and extractors train; save/load round trip."""

from __future__ import annotations

import pytest
import torch
from grag_testkit import build_backbone, make_examples, tokenizer_for

from personakit.models.grag import GRAGModel, LoraSettings, PostGRAG, PreSFT

pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing`:FutureWarning")


def lora_model(cls=PostGRAG, **settings):
    lora = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    if cls is PostGRAG:
        settings.update(extractor_heads=2, extractor_dropout=0.0)
    return cls.from_backbone(build_backbone("llama"), tokenizer_for("llama"), lora=lora, **settings)


def test_lora_trains_only_adapters_and_extractors():
    model = lora_model(alpha=0.5, beta=0.5)
    names = model.trainable_parameter_names()
    assert names and all("lora_" in n or n.startswith(("style_extractor.", "generic_style_extractor."))
                          for n in names)
    assert any("lora_A" in n for n in names) and any(n.startswith("style_extractor.") for n in names)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    batch = model.make_collator()(make_examples())
    optim = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):
        optim.zero_grad()
        model(**batch).loss.backward()
        optim.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    changed = [n for n, p in model.named_parameters() if n in trained and not torch.equal(p, trained[n])]
    assert any("lora_B" in n for n in changed) and any(n.startswith("style_extractor.") for n in changed)


@pytest.mark.parametrize("cls", [PreSFT, PostGRAG])
def test_lora_save_load_round_trip(cls, tmp_path):
    model = lora_model(cls).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()  # non-zero adapters
    batch = model.make_collator()(make_examples())
    before = model(**batch).logits
    model.save_pretrained(tmp_path)
    loaded = GRAGModel.from_pretrained(tmp_path).eval()
    assert loaded.config.lora_settings == model.config.lora_settings
    assert type(loaded.backbone).__name__.startswith("Peft")
    assert torch.equal(loaded(**batch).logits, before)
    a = model.generate(batch, max_new_tokens=3, min_new_tokens=3)
    assert torch.equal(a, loaded.generate(batch, max_new_tokens=3, min_new_tokens=3))
