"""``benchmarks/grag_style_norms.py`` reads the style-extractor weights of finished GRAG units' best checkpoints."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


def _unit(root: Path, name: str, step: int, tensors: dict) -> None:
    folder = root / "SPC" / "checkpoints" / name / "best" / f"checkpoint-{step:08d}" / "modules"
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"))


def test_style_norms_report_each_extractor_against_a_fresh_initialisation(tmp_path):
    import grag_style_norms

    d = 16
    w = {f"params.style_extractor/{p}/weight": torch.full((d, d), 0.5) for p in ("q_proj", "k_proj", "v_proj")}
    w["params.style_extractor/out_proj/weight"] = torch.zeros(d, d)
    w["params.style_extractor/out_proj/weight"][0, 0] = 3.0
    w["params.backbone/lora_A/weight"] = torch.ones(2, d)  # not a style projection: ignored
    _unit(tmp_path / "work", "postgrag-s0-abc", 250, w)
    _unit(tmp_path / "work", "presft-hist-s0-def", 400, {"params.backbone/lora_A/weight": torch.ones(2, d)})

    assert grag_style_norms.main(["--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "grag_style_norms.json").read_text())
    assert report["d_model"] == d and len(report["units"]) == 1  # PreSFT has no style path
    row = report["units"][0]
    assert (row["unit"], row["best_step"], row["extractor"]) == ("postgrag-s0-abc", 250, "style_extractor")
    assert row["q_proj"] == torch.full((d, d), 0.5).norm().item() and row["out_proj"] == 3.0
    fresh = grag_style_norms.fresh_norms(d)
    assert abs(report["fresh"]["out_proj"] - fresh["out_proj"]) < 1e-6 and fresh["out_proj"] > 0
    assert "out_proj / fresh" in (tmp_path / "out" / "grag_style_norms.md").read_text()
    assert grag_style_norms.main(["--work-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 1


def test_style_lr_pilot_measures_the_output_projections_and_reports_every_point():
    """``benchmarks/grag_style_lr.py``: the norm share it tracks and the table it writes (no training here)."""
    from types import SimpleNamespace

    import grag_style_lr

    d = 4
    extractor = lambda value: SimpleNamespace(out_proj=SimpleNamespace(weight=torch.full((d, d), value)))  # noqa: E731
    model = SimpleNamespace(style_extractor=extractor(1.0), generic_style_extractor=extractor(3.0))
    # Frobenius norms 4 and 12, mean 8, over a fresh norm of 16
    assert grag_style_lr.out_proj_share(model, fresh=16.0) == 0.5

    point = lambda step, loss: {"step": step, "loss_p": loss, "persona_gap": 0.01, "generic_gap": -0.02,  # noqa: E731
                                "out_proj_share": 0.1}
    result = {"command": "python benchmarks/grag_style_lr.py", "date": "2026-01-01", "n_train": 10, "n_dev": 4,
              "batch": 8, "lr": 2e-4, "machine_line": "Machine: test.",
              "runs": [{"multiplier": 1.0, "dtype": "bfloat16", "seconds": 60.0, "resumed_at_step": 0,
                        "points": [point(0, 2.0), point(20, 1.5)]},
                       {"multiplier": 10.0, "dtype": "bfloat16", "seconds": 120.0, "resumed_at_step": 20,
                        "points": [point(0, 2.0), point(20, 6.0)]}]}
    md = grag_style_lr.to_markdown(result)
    assert "| 10 | every | 20 | 6.0000 | +0.0100 | -0.0200 | 0.100 |" in md
    assert "m=1 1.0 min, m=10 2.0 min (resumed at step 20)" in md
    # a single-layer pilot shows the committed every-layer runs beside its own, marked as earlier
    layer = {**result, "runs": [{**result["runs"][1], "style_layers": [0], "points": [point(20, 1.7)]}],
             "baseline_runs": [{**result["runs"][1], "earlier": True}],
             "baseline_source": "benchmarks/results/grag_style_lr.json", "baseline_date": "2025-12-31",
             "baseline_command": "python benchmarks/grag_style_lr.py --multipliers 1 10"}
    md = grag_style_lr.to_markdown(layer)
    assert "| 10 | every (*earlier run*) | 20 | 6.0000 |" in md and "| 10 | 0 | 20 | 1.7000 |" in md
    assert "Earlier runs: `benchmarks/results/grag_style_lr.json` (2025-12-31" in md
    assert grag_style_lr.run_label(layer["runs"][0]) == "m = 10, layer 0"
    assert grag_style_lr.run_label(result["runs"][0]) == "m = 1, every layer"
