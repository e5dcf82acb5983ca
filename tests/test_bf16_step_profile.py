"""benchmarks/bf16_step_profile.py without the real models: the operator groups, and the three variants'
interleaved, profiled steps on a tiny random Llama with LoRA."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
sys.path.insert(0, str(Path(__file__).resolve().parent / "models" / "grag"))
profile_bench = pytest.importorskip("bf16_step_profile")
pytest.importorskip("peft")


@pytest.mark.parametrize("name, group", [
    ("aten::mm", "matrix products"), ("aten::bmm", "matrix products"), ("aten::addmm", "matrix products"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu", "attention"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu_backward", "attention"),
    ("aten::copy_", "copies and dtype casts"), ("aten::_to_copy", "copies and dtype casts"),
    ("aten::_log_softmax_backward_data", "loss and softmax"), ("aten::nll_loss_forward", "loss and softmax"),
    ("aten::mul", "other"), ("aten::silu_backward", "other"),
])
def test_categorise(name, group):
    assert profile_bench.categorise(name) == group


def test_breakdown_sums_aten_self_time_only():
    events = [SimpleNamespace(key="aten::mm", self_cpu_time_total=2e6),
              SimpleNamespace(key="aten::copy_", self_cpu_time_total=1e6),
              SimpleNamespace(key="aten::mul", self_cpu_time_total=5e5),
              SimpleNamespace(key="autograd::engine::evaluate_function: MmBackward0", self_cpu_time_total=9e6)]
    out = profile_bench.breakdown(events)
    assert out == {"matrix products": 2.0, "attention": 0.0, "copies and dtype casts": 1.0,
                   "loss and softmax": 0.0, "other": 0.5}


@pytest.mark.parametrize("label", ["PreSFT(Hist)", "PostGRAG"])
def test_profile_system_on_a_tiny_llama(label):
    import torch
    from grag_testkit import build_backbone, make_examples, tokenizer_for

    base, tokenizer = build_backbone("llama"), tokenizer_for("llama")
    batches = [make_examples()[:2], make_examples()[1:3]]
    args = argparse.Namespace(steps=2, seed=0)
    reference, collated, info = profile_bench.build_system(label, base, tokenizer, batches, args)
    assert info["padded_length"] >= info["tokens_per_sequence"] > 0
    out = profile_bench.profile_system(label, reference, collated, info, args)
    assert set(out["variants"]) == set(profile_bench.VARIANTS)
    for variant, run in out["variants"].items():
        assert len(run["fwd_bwd_s"]) == 2 and len(run["losses"]) == 3  # the first step untimed
        assert run["profiled_s"] > 0 and run["categories_s"]["matrix products"] > 0
        assert abs(sum(run["categories_s"].values()) - run["profiled_s"]) < 1e-9
        assert run["last_loss_gap"] < 0.05, (variant, run["losses"], out["variants"]["fp32"]["losses"])
    assert out["variants"]["fp32"]["ratio_to_fp32"] == 1.0
    # the first losses agree (same weights, same batch, same dropout masks); bf16 rounds
    first = [run["losses"][0] for run in out["variants"].values()]
    assert max(first) - min(first) < 0.02 * abs(first[0])
    # every variant trained: its losses change over the steps
    assert all(run["losses"][0] != run["losses"][-1] for run in out["variants"].values())
    assert torch.get_num_threads() >= 1


def test_markdown_of_a_report():
    variants = {v: {"median_fwd_bwd_s": 2.0 / (i + 1), "median_optimizer_s": 0.01, "losses": [3.0, 2.9],
                    "ratio_to_fp32": 1.0 / (i + 1), "last_loss_gap": 0.001 * i, "profiled_s": 2.0,
                    "categories_s": {"matrix products": 1.0, "attention": 0.5, "copies and dtype casts": 0.25,
                                     "loss and softmax": 0.0, "other": 0.25},
                    "top_ops": [{"op": "aten::mm", "self_s": 1.0, "calls": 10}]}
                for i, v in enumerate(profile_bench.VARIANTS)}
    report = {"command": "python benchmarks/bf16_step_profile.py", "date": "2026-12-07", "threads": 1,
              "load_at_start": [1.0], "precision": {"amx_bf16": True, "avx512_bf16": True},
              "machine": profile_bench.machine_info(), "setting": {"batch_size": 8, "steps": 4},
              "matmul": {"fp32_gflops": 100.0, "bf16_gflops": 800.0}, "wall_time_s": 5.0, "plot": None,
              "systems": [{"system": "PreSFT(Hist)", "variants": variants}]}
    md = profile_bench.to_markdown(report)
    assert "**8.0x**" in md and "`amx_bf16` yes" in md
    assert "| PreSFT(Hist) | bf16 + autocast | 0.67 | 0.33x |" in md and "eager attention" in md
    assert "1.00 (50 %)" in md


def test_a_variant_that_fails_is_reported_and_left_out(monkeypatch):
    from grag_testkit import build_backbone, make_examples, tokenizer_for

    base, tokenizer = build_backbone("llama"), tokenizer_for("llama")
    args = argparse.Namespace(steps=1, seed=0)
    reference, collated, info = profile_bench.build_system("PreSFT(Hist)", base, tokenizer, [make_examples()[:2]], args)
    real = profile_bench.forward_backward

    def failing(model, batch, variant):
        if variant == "bf16 + autocast":
            raise NotImplementedError('"addmm_out_sparse_csr_impl_mkl" not implemented for \'BFloat16\'\nmore')
        return real(model, batch, variant)

    monkeypatch.setattr(profile_bench, "forward_backward", failing)
    out = profile_bench.profile_system("PreSFT(Hist)", reference, collated, info, args)
    assert out["variants"]["bf16 + autocast"] == {
        "error": 'NotImplementedError: "addmm_out_sparse_csr_impl_mkl" not implemented for \'BFloat16\''}
    for variant in ("fp32", "bf16", "bf16, eager attention"):
        assert len(out["variants"][variant]["fwd_bwd_s"]) == 1 and out["variants"][variant]["profiled_s"] > 0
    report = {"command": "c", "date": "d", "threads": 1, "load_at_start": [1.0], "precision": {"amx_bf16": False},
              "machine": profile_bench.machine_info(), "setting": {"batch_size": 2, "steps": 1},
              "matmul": {"fp32_gflops": 100.0, "bf16_gflops": 200.0}, "wall_time_s": 1.0, "plot": None,
              "systems": [out]}
    md = profile_bench.to_markdown(report)
    assert "| PreSFT(Hist) | bf16 + autocast | failed: NotImplementedError:" in md
    assert md.count("| PreSFT(Hist) | bf16 + autocast |") == 1  # no row in the operator table

    def fp32_fails(model, batch, variant):
        raise RuntimeError("boom")

    monkeypatch.setattr(profile_bench, "forward_backward", fp32_fails)
    with pytest.raises(RuntimeError, match="boom"):  # the baseline must run
        profile_bench.profile_system("PreSFT(Hist)", reference, collated, info, args)


def test_copersona_stand_in_context_and_system():
    import torch
    from grag_testkit import build_backbone, tokenizer_for

    pytest.importorskip("torch_geometric")
    from personakit.data import builtin_pfg_dialogues
    from personakit.data.copersona_users import build_pfg_users

    users = build_pfg_users(builtin_pfg_dialogues()).users
    context = profile_bench.copersona_context(users, seed=0)
    n = len(users)
    assert context.facet_embeddings.shape == (n, profile_bench.COPERSONA_FACETS, profile_bench.COPERSONA_FACET_DIM)
    assert int(context.reliability.min()) >= 0 and int(context.reliability.max()) <= 3
    assert context.edge_index.shape == (2, 2 * n)
    for u in range(n):  # a ring: user u hears u - 1 and u + 1
        heard = sorted(context.edge_index[0][context.edge_index[1] == u].tolist())
        assert heard == sorted({(u - 1) % n, (u + 1) % n})
    first = users[0].user_id
    assert len(context.profile_summary[first].split()) <= 61
    assert context.peer_context[first].endswith(" ".join(" ".join(i.text for i in users[1].items).split()[:100]))

    base, tokenizer = build_backbone("llama"), tokenizer_for("llama")
    args = argparse.Namespace(steps=0, seed=0, batch_size=2)
    reference, collated, info = profile_bench.build_system("copersona", base, tokenizer, None, args)
    assert len(collated) == 2 and all(b["user_index"].shape == (2,) for b in collated)
    assert info["kind"] == "copersona" and info["users"] == n and info["padded_length"] > 0
    with torch.no_grad():
        assert torch.isfinite(reference(**{k: v for k, v in collated[0].items()
                                           if k not in ("prompt_ids", "prompt_mask")}).loss)


@pytest.mark.real_data
@pytest.mark.real_model
def test_questioner_examples_from_pfg_match_the_benchmark_split():
    if not profile_bench.PFG_DATA.exists():
        pytest.skip(f"no Persuasion-for-Good folder at {profile_bench.PFG_DATA}")
    config, train = profile_bench.questioner_examples("pfg")
    assert len(train) == 647  # questioner_pfg.py's training split (its results page: 647 train examples)
    assert all("question_cluster" in ex.metadata and ex.questioner_id for ex in train)
    assert config.systems


def test_grag_quality_batches_read_the_prepared_split_with_its_budgets(tmp_path, monkeypatch):
    from grag_testkit import build_backbone, make_examples, tokenizer_for

    from personakit.augment import save_examples

    monkeypatch.setattr(profile_bench, "RESULTS", tmp_path)
    args = argparse.Namespace(grag_data="PFG", examples=5, batch_size=2, seed=0, steps=1)
    with pytest.raises(SystemExit, match="grag-data PFG: .*train.jsonl is missing"):
        profile_bench.grag_quality_batches(args)
    folder = tmp_path / "tmp" / "grag_quality-default" / "PFG"
    folder.mkdir(parents=True)
    examples = make_examples() * 3
    save_examples(folder / "train.jsonl", examples)
    batches, lengths = profile_bench.grag_quality_batches(args)
    assert [[ex.id for ex in b] for b in batches] == [[ex.id for ex in examples[i:i + 2]] for i in (0, 2)]
    p, h, g, r = profile_bench.grag_quality_settings()["lengths"]
    assert lengths == {"max_persona_tokens": p, "max_history_tokens": h, "max_generic_tokens": g,
                       "max_response_tokens": r}
    base, tokenizer = build_backbone("llama"), tokenizer_for("llama")
    _, collated, info = profile_bench.build_system("PostGRAG", base, tokenizer, None, args)
    assert info["data"] == "PFG" and info["lengths"] == lengths and len(collated) == 2
