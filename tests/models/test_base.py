"""The one model base: every family subclasses it, its outputs are ModelOutputs, LoRA settings and
user ``PeftModel`` / ``LoraConfig`` backbones round-trip through save / load."""

from __future__ import annotations

import json

import pytest
import torch
from _questioner_kit import QUESTIONERS, build_lm, build_tokenizer
from _questioner_kit import make_examples as questioner_examples
from grag_testkit import build_backbone, make_examples, tokenizer_for
from transformers.utils import ModelOutput

from personakit.backbones.peft import LoraSettings, apply_lora, lora_settings_of
from personakit.models import PersonaModel, PersonaModelConfig, PersonaModelOutput
from personakit.models.copersona import CoPersonaConfig, CoPersonaModel, CoPersonaOutput
from personakit.models.grag import GRAGConfig, GRAGModel, GRAGOutput, PostGRAG, PreGRAG, PreSFT
from personakit.models.questioner import DualTowerConfig, DualTowerOutput, DualTowerResponder

peft = pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def test_every_model_config_and_output_shares_the_base():
    for cls in (PreSFT, PreGRAG, PostGRAG, DualTowerResponder, CoPersonaModel):
        assert issubclass(cls, PersonaModel), cls
        assert issubclass(cls.config_class, PersonaModelConfig), cls
    for cfg in (GRAGConfig, DualTowerConfig, CoPersonaConfig):
        assert issubclass(cfg, PersonaModelConfig)
    for out in (GRAGOutput, DualTowerOutput, CoPersonaOutput):
        assert issubclass(out, PersonaModelOutput) and issubclass(out, ModelOutput)


@pytest.mark.parametrize("cls", [PreSFT, PostGRAG])
def test_grag_output_is_a_model_output(cls):
    model = cls.from_backbone(build_backbone("llama"), tokenizer_for("llama"), **(
        {"extractor_heads": 2} if cls is PostGRAG else {}))
    out = model(**model.make_collator()(make_examples()))
    assert isinstance(out, ModelOutput)
    assert out["loss"] is out.loss and out[0] is out.loss  # loss first, as transformers.Trainer reads it
    assert torch.equal(out["logits"], out.logits)
    values = out.to_tuple()
    assert values[0] is out.loss and all(v is not None for v in values)
    assert "loss_g" not in out.keys() or out.loss_g is not None  # a None field is not a key
    assert set(out.losses()) >= {"loss", "loss_p"} and "style" in out.to_dict()


def test_dual_tower_output_is_a_model_output():
    model = DualTowerResponder.from_backbone(build_lm(), build_tokenizer(), questioners=QUESTIONERS, rank=4,
                                             general="full")
    out = model(**model.make_collator()(questioner_examples(8)))
    assert out[0] is out["loss"] is out.loss
    assert list(out.keys())[:2] == ["loss", "loss_lm"]
    assert abs(out.losses()["loss"] - float(out.to_tuple()[0].detach())) < 1e-6


# ------------------------------------------------------------------------------ LoRA settings
def test_lora_settings_use_peft_names_and_read_the_old_ones():
    old = LoraSettings.model_validate({"r": 4, "alpha": 8, "dropout": 0.1})
    assert (old.lora_alpha, old.lora_dropout) == (8, 0.1) and old == LoraSettings(r=4, lora_alpha=8, lora_dropout=0.1)
    assert old.alpha == 8 and old.dropout == 0.1  # read-only old names
    dumped = old.model_dump()
    assert "lora_alpha" in dumped and "alpha" not in dumped
    config = old.to_peft("CAUSAL_LM")
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 8, 0.1)
    with pytest.raises(ValueError, match="lora_alpha"):
        LoraSettings.model_validate({"alpha": 8, "lora_alpha": 8})
    with pytest.raises(ValueError, match="peft_options"):
        LoraSettings(peft_options={"r": 2})
    with pytest.raises(ValueError, match="extra|forbid|alpah"):
        LoraSettings.model_validate({"alpah": 8})


def test_lora_settings_round_trip_a_peft_lora_config():
    config = peft.LoraConfig(r=2, lora_alpha=6, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                             use_rslora=True, layers_to_transform=[1])
    settings = LoraSettings.from_peft(config)
    assert settings.peft_options == {"use_rslora": True, "layers_to_transform": [1]}
    assert settings.target_modules == ["q_proj", "v_proj"]
    again = settings.to_peft("CAUSAL_LM")
    for name in ("r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora", "layers_to_transform"):
        assert getattr(again, name) == getattr(config, name), name
    assert LoraSettings.model_validate(json.loads(settings.model_dump_json())) == settings


def test_config_reads_old_lora_names_and_a_lora_config():
    cfg = GRAGConfig(method="presft", lora={"r": 4, "alpha": 8, "dropout": 0.0})
    assert cfg.lora["lora_alpha"] == 8 and "alpha" not in cfg.lora
    cfg = DualTowerConfig(lora=peft.LoraConfig(r=3, lora_alpha=9))
    assert cfg.lora_settings.r == 3 and cfg.lora_settings.lora_alpha == 9
    with pytest.raises(ValueError, match="field 'lora'"):
        CoPersonaConfig(lora={"r": 0})


def test_apply_lora_keeps_a_peft_model_and_the_users_config():
    backbone = build_backbone("llama")
    config = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"])
    wrapped = apply_lora(backbone, config)
    assert config.task_type is None  # the user's object is not changed
    assert wrapped.peft_config["default"].task_type == "CAUSAL_LM"
    assert apply_lora(wrapped, LoraSettings()) is wrapped
    assert lora_settings_of(wrapped).target_modules == ["q_proj"]


# ------------------------------------------------------------------------------ user PeftModel round trip
def _user_peft(kind="llama"):
    backbone = build_lm() if kind == "questioner" else build_backbone("llama")
    config = peft.LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                             use_rslora=True, task_type="CAUSAL_LM")
    model = peft.get_peft_model(backbone, config, adapter_name="mine")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()  # non-zero adapters: the round trip must restore them
    return model


def _grag(backbone):
    return PostGRAG.from_backbone(backbone, tokenizer_for("llama"), extractor_heads=2)


def _dual(backbone):
    return DualTowerResponder.from_backbone(backbone, build_tokenizer(), questioners=QUESTIONERS, rank=4)


@pytest.mark.parametrize(("build", "kind", "examples"), [
    (_grag, "llama", make_examples), (_dual, "questioner", lambda: questioner_examples(4)),
], ids=["PostGRAG", "DualTower"])
def test_user_peft_model_saves_and_loads(build, kind, examples, tmp_path):
    backbone = _user_peft(kind)
    model = build(backbone).eval()
    assert model.backbone is backbone  # kept as given
    settings = model.config.lora_settings
    assert settings.adapter_name == "mine" and settings.peft_options == {"use_rslora": True}
    batch = model.make_collator()(examples())
    with torch.no_grad():
        before = model(**batch).logits
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path).eval()
    assert type(loaded.backbone).__name__.startswith("Peft")
    assert loaded.backbone.active_adapter == "mine" and loaded.backbone.peft_config["mine"].use_rslora
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, before)


def test_user_lora_config_round_trips(tmp_path):
    config = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], lora_dropout=0.0, use_rslora=True)
    model = PreSFT.from_backbone(build_backbone("llama"), tokenizer_for("llama"), lora=config).eval()
    assert model.backbone.peft_config["default"].use_rslora and model.config.lora["peft_options"]
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    batch = model.make_collator()(make_examples())
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["lora"]["lora_alpha"] == 4 and saved["lora"]["peft_options"] == {"use_rslora": True}
    loaded = GRAGModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)


def test_old_lora_names_in_a_saved_config_still_load(tmp_path):
    model = PreSFT.from_backbone(build_backbone("llama"), tokenizer_for("llama"),
                                 lora=LoraSettings(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["q_proj"]))
    model.save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    data = json.loads(path.read_text())
    lora = data["lora"]
    data["lora"] = {"r": lora["r"], "alpha": lora["lora_alpha"], "dropout": lora["lora_dropout"],
                    "target_modules": lora["target_modules"], "bias": "none"}  # as written before the rename
    path.write_text(json.dumps(data))
    loaded = PreSFT.from_pretrained(tmp_path)
    assert loaded.config.lora_settings == model.config.lora_settings


def test_peft_model_with_other_lora_settings_is_refused():
    with pytest.raises(ValueError, match="PeftModel"):
        PostGRAG.from_backbone(_user_peft(), tokenizer_for("llama"), lora=LoraSettings(r=8))
    with pytest.raises(ValueError, match="'general'"):
        DualTowerResponder.from_backbone(_user_peft("questioner"), build_tokenizer(), general="full")


def test_load_errors_name_the_file(tmp_path):
    model = PreSFT.from_backbone(build_backbone("llama"), tokenizer_for("llama"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        PreSFT.from_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        PreSFT.from_pretrained(tmp_path)
    other = PreSFT.from_backbone(build_backbone("bart"), tokenizer_for("bart"))
    other.save_pretrained(tmp_path / "bart")
    (tmp_path / "model.safetensors").write_bytes((tmp_path / "bart" / "model.safetensors").read_bytes())
    with pytest.raises(RuntimeError, match="model.safetensors"):
        PreSFT.from_pretrained(tmp_path)


def test_tied_tensors_missing_from_an_old_checkpoint_are_filled(tmp_path):
    from safetensors.torch import save_model

    model = DualTowerResponder.from_backbone(build_lm("gpt2"), build_tokenizer(), questioners=QUESTIONERS, rank=4,
                                             general="full").eval()
    model.save_pretrained(tmp_path)
    save_model(model, str(tmp_path / "model.safetensors"))  # keeps one name of each tied tensor
    loaded = DualTowerResponder.from_pretrained(tmp_path).eval()
    batch = model.make_collator()(questioner_examples(4))
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)


def test_peft_options_typo_fails_when_the_settings_are_read():
    from personakit.backbones.peft import LoraSettings

    assert LoraSettings(peft_options={"use_rslora": True}).to_peft("CAUSAL_LM").use_rslora is True
    with pytest.raises(ValueError, match=r"'use_rslroa', which is not a peft.LoraConfig field \(did you mean 'use_rslora'\?\)"):
        LoraSettings(peft_options={"use_rslroa": True})
