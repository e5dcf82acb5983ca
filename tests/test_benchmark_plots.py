"""The benchmark plots shown in the docs redraw from the committed JSON results, without rerunning anything.

Each script's ``--plot-only`` (``--plot-sweeps`` for the GRAG sweeps) reads its
``benchmarks/results/*.json`` (copied to a temporary folder here) and writes the PNG next to it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
RESULTS = BENCHMARKS / "results"
sys.path.insert(0, str(BENCHMARKS))

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def _copy(tmp_path: Path, *names: str) -> Path:
    for name in names:
        shutil.copy(RESULTS / name, tmp_path / name)
    return tmp_path


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000


def test_graph_scale_plot_only(tmp_path):
    import graph_scale

    out = _copy(tmp_path, "graph_scale.json", "graph_scale_approx.json")
    assert graph_scale.main(["--plot-only", "--out-dir", str(out)]) is None
    assert _is_png(out / "graph_scale.png")
    assert not (out / "graph_scale.md").exists()  # nothing was run or rewritten


def test_graph_scale_points_prefer_the_main_run_and_fill_failures():
    import json

    import graph_scale

    reports = [json.loads((RESULTS / f).read_text()) for f in ("graph_scale.json", "graph_scale_approx.json")]
    points = graph_scale.plot_points(reports)
    main_ivf = next(r for r in reports[0]["results"] if r["case"] == "ivf" and r["users"] == 100_000)
    assert points["ivf"][100_000] is main_ivf                 # the first report wins where it has the point
    assert points["ivf"][1_000_000]["seconds"] is not None   # failed in the first run, filled from the second


def test_bm25_plot_only(tmp_path):
    import bm25_speed

    out = _copy(tmp_path, "bm25_speed.json")
    report = bm25_speed.main(["--plot-only", "--out-dir", str(out)])
    assert report["benchmark"] == "bm25_speed"
    assert _is_png(out / "bm25_speed.png")


def test_bf16_plot_only_draws_curves_and_speedups(tmp_path):
    bf16_speed = pytest.importorskip("bf16_speed")

    out = _copy(tmp_path, "bf16_speed.json")
    report = bf16_speed.main(["--plot-only", "--out-dir", str(out)])
    assert _is_png(out / "bf16_speed.png") and _is_png(out / "bf16_speed_speedup.png")
    ratios = dict(bf16_speed.speedups(report))
    assert ratios["PreSFT(Hist)\ntraining step"] == pytest.approx(7.078333461000057 / 4.748, rel=1e-3)


def test_grag_sweeps_plot(tmp_path):
    import grag_quality

    out = _copy(tmp_path, "grag_sweeps.json")
    grag_quality.main(["--plot-sweeps", "--out", str(out)])
    assert _is_png(out / "grag_sweeps.png")
