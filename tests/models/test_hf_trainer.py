"""``transformers.Trainer`` trains every family for two steps (the outputs are ``ModelOutput`` s)."""

from __future__ import annotations

import pytest
import torch


pytest.importorskip("accelerate")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def _postgrag():
    from grag_testkit import build_backbone, make_examples, tokenizer_for

    from personakit.models.grag import PostGRAG

    model = PostGRAG.from_backbone(build_backbone("llama"), tokenizer_for("llama"), extractor_heads=2,
                                   extractor_dropout=0.0, alpha=0.5, beta=0.5)
    return model, make_examples() + make_examples()


def _dual_tower():
    from _questioner_kit import QUESTIONERS, build_lm, build_tokenizer, make_examples

    from personakit.models.questioner import DualTowerResponder

    return DualTowerResponder.from_backbone(build_lm(), build_tokenizer(), questioners=QUESTIONERS, rank=4,
                                            general="full"), make_examples(4)


def _copersona():
    pytest.importorskip("torch_geometric")
    pytest.importorskip("peft")
    from copersona_testkit import build_context, examples, make_model

    return make_model(build_context(), lora={"r": 2, "lora_alpha": 4}), examples() + examples()


@pytest.mark.parametrize("build", [_postgrag, _dual_tower, _copersona], ids=["PostGRAG", "DualTower", "CoPersona"])
def test_hf_trainer_runs_two_steps(build, tmp_path):
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    model, data = build()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, report_to=[],
                             use_cpu=True, save_strategy="no", remove_unused_columns=False, learning_rate=1e-2,
                             logging_steps=1, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=model.make_collator())
    result = trainer.train()
    assert result.global_step == 2
    assert torch.isfinite(torch.tensor(result.training_loss))
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(x)) for x in losses)
    changed = [n for n, p in model.named_parameters() if n in before and not torch.equal(p.detach(), before[n])]
    assert changed, "no trainable weight changed"
