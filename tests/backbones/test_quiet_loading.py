"""Quiet, honest loading: transformers' load reports and progress bars, peft's deprecation warning.

Tiny random BERT / Llama checkpoints written to a temporary folder; no embedded model.
"""

from __future__ import annotations

import logging
import warnings

import pytest

from personakit.backbones.quiet import (LoadReports, capture_load_reports, loading_progress,
                                        loading_progress_enabled, summarise_load_reports, transformers_progress)

REPORT = (
    "\x1b[1mBertLMHeadModel LOAD REPORT\x1b[0m from: /models/minilm\n"
    "Key                                                      | Status     | \n"
    "---------------------------------------------------------+------------+-\n"
    "pooler.dense.weight                                      | UNEXPECTED | \n"
    "bert.encoder.layer.{0, 1, 2}.crossattention.self.query.weight | MISSING    | \n"
    "cls.predictions.transform.dense.bias                     | MISSING    | \n"
    "\nNotes:\n- UNEXPECTED:\tcan be ignored ...\n"
)
TIED = ("This checkpoint seem corrupted. The tied weights mapping for this model specifies to tie "
        "cls.predictions.bias to cls.predictions.decoder.bias, but both are absent from the checkpoint, and ...")
NEW, UNUSED = (r"crossattention", r"^cls\."), (r"^pooler\.",)


def _log_report(text: str = REPORT) -> None:
    logging.getLogger("transformers.modeling_utils").warning(text)


def test_reports_are_parsed_and_held_back(caplog):
    caplog.set_level(logging.INFO)
    with capture_load_reports() as reports:
        _log_report()
        logging.getLogger("transformers.modeling_utils").warning(TIED)
        logging.getLogger("transformers.modeling_utils").warning("something else")
    assert reports.models == ["BertLMHeadModel"]
    assert reports.count("MISSING") == 4 and reports.count("UNEXPECTED") == 1   # {0, 1, 2} is three weights
    assert reports.tied == [("cls.predictions.bias", "cls.predictions.decoder.bias")]
    logged = [r.getMessage() for r in caplog.records]
    assert "something else" in logged
    assert not any("LOAD REPORT" in m or "seem corrupted" in m for m in logged)
    line = summarise_load_reports(reports, "minilm warm-started", expected_missing=NEW,
                                  expected_unexpected=UNUSED, show=False)
    assert line is not None and "4 new weights" in line and "1 checkpoint weight unused" in line
    assert line.count("\n") == 0
    assert any(m == line for m in (r.getMessage() for r in caplog.records if r.name == "personakit.backbones"))


def test_an_unexpected_missing_weight_is_shown_as_transformers_wrote_it(caplog):
    report = REPORT.replace("cls.predictions.transform.dense.bias ", "bert.encoder.layer.0.attention.self.query.weight")
    with capture_load_reports() as reports:
        _log_report(report)
    caplog.set_level(logging.INFO)
    assert summarise_load_reports(reports, "x", expected_missing=NEW, expected_unexpected=UNUSED, show=False) is None
    assert any("LOAD REPORT" in r.getMessage() for r in caplog.records), "the report must be released unchanged"


def test_nothing_captured_gives_no_line():
    assert summarise_load_reports(LoadReports(), "x", show=False) is None


def test_loading_progress_nests_and_restores():
    assert loading_progress_enabled() is None
    with loading_progress(False):
        assert loading_progress_enabled() is False
        with loading_progress(True):
            assert loading_progress_enabled() is True
        assert loading_progress_enabled() is False
    assert loading_progress_enabled() is None


def test_transformers_progress_switch_is_restored():
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    with transformers_progress(False):
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled() == before
    with transformers_progress(None):
        assert hf_logging.is_progress_bar_enabled() == before


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(folder)
    config = BertConfig(vocab_size=7, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    BertModel(config).save_pretrained(folder)   # with a pooler, as sentence encoders are saved
    return folder


def test_bert2bert_warm_start_prints_one_line_and_no_bar(tiny_bert, capfd):
    from personakit.models.grag.base import load_backbone

    with loading_progress(True):
        model, _ = load_backbone(str(tiny_bert))
    err = capfd.readouterr().err
    assert type(model).__name__ == "EncoderDecoderModel"
    assert "LOAD REPORT" not in err and "seem corrupted" not in err, err
    ours = [line for line in err.splitlines() if line.startswith("personakit:")]
    assert len(ours) == 1 and "warm-started as a BERT2BERT encoder-decoder" in ours[0], err
    assert "Loading weights" in err  # progress on: transformers' bar is shown

    with loading_progress(False):
        load_backbone(str(tiny_bert))
    err = capfd.readouterr().err
    assert "Loading weights" not in err, err
    assert "LOAD REPORT" not in err and "personakit:" not in err, err


def test_lora_does_not_warn_about_is_gradient_checkpointing():
    pytest.importorskip("peft")
    from transformers import LlamaConfig, LlamaForCausalLM

    from personakit.backbones.peft import apply_lora

    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=50))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_lora(model, {"r": 4, "lora_alpha": 8})
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)], [str(w.message) for w in caught]


def test_output_cache_reads_the_cache_without_a_deprecation_log(caplog):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from personakit.backbones.compat import output_cache

    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=50)).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor([[1, 2, 3]]), use_cache=True)
    caplog.set_level(logging.WARNING)
    cache = output_cache(out)
    assert int(cache.get_seq_length()) == 3
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()], [r.getMessage() for r in caplog.records]
