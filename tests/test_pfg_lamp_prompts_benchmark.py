"""The PFG-LaMP prompt benchmark's pure pieces (benchmarks/pfg_lamp_prompts.py): labels, copy rate, report.

No model is loaded: the report is a small hand-made dict.
"""

from __future__ import annotations

import doctest
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import pfg_lamp_prompts as bench  # noqa: E402


def test_doctests():
    assert doctest.testmod(bench).failed == 0


def test_leading_label_and_shares():
    outs = ["Persuadee: The point is", "Persuader: I completely understand your", "I'm glad to hear", "", "  "]
    assert [bench.leading_label(o) for o in outs] == ["persuadee", "persuader", None, None, None]
    assert bench.label_shares(outs) == {"persuadee_label": 0.2, "persuader_label": 0.2, "empty": 0.4}
    assert bench.label_shares([]) == {"persuadee_label": 0.0, "persuader_label": 0.0, "empty": 0.0}


def test_doc_copy_rate():
    assert bench.doc_copy_rate("", "a b", "c") == 0.0
    assert bench.doc_copy_rate("Kids kids", "kids", "") == 1.0
    assert bench.doc_copy_rate("kids", "kids", "the kids") == 0.0  # in the input too: not from the document


def test_variant_prompt():
    assert bench.variant_prompt(bench.VARIANTS["current"], "x") == "x"
    chat = bench.variant_prompt(bench.VARIANTS["persuader-chat"], "x")
    assert [m["role"] for m in chat] == ["system", "user"] and chat[1]["content"] == "x"
    assert not bench.VARIANTS["persuader-chat"]["aggregate"].endswith("Persuader:")
    assert bench.VARIANTS["persuader-chat+label"]["aggregate"].endswith("\nPersuader:")


def _cmp(d: float) -> dict:
    return {"mean_difference": d, "ci_low": d - 0.01, "ci_high": d + 0.01, "p_value": 0.5}


def test_report_markdown():
    cond = {"persuadee_label": 0.5, "persuader_label": 0.25, "empty": 0.0, "empty_after_cleaning": 0.5,
            "rouge1_raw": 0.1, "rouge1_drop": 0.05, "rouge1_keep": 0.12, "words": 7.0, "doc_copy_rate": 0.1}
    variant = {"what": "as sent now", "profile": cond, "none": cond, "profile_effect_raw": _cmp(0.01),
               "profile_effect_drop": _cmp(0.02), "profile_effect_keep": {**_cmp(0.03), "significant": False},
               "vs_current_raw": _cmp(0.0),
               "samples": [{"input": "Persuadee: hi", "target": "hello", "profile": "Persuadee: x", "none": "y"}]}
    report = {"date": "today", "command": "python benchmarks/pfg_lamp_prompts.py", "wall_seconds": 1.0,
              "machine": {"cpu": "cpu", "cpu_count": 2, "platform": "linux", "python": "3.11", "versions": {},
                          "load_average": [1.0, 1.0, 1.0]},
              "settings": {"n": 1, "k": 4, "max_tokens": 192, "max_new_tokens": 24, "batch_size": 16,
                           "dtype": "torch.bfloat16", "seed": 0, "entries_used_mean": 3.0, "test_examples": 10,
                           "test_users": 2},
              "timing": {}, "variants": {"current": variant, "raw": variant}, "controls": {"copy": 0.2}}
    md = bench.to_markdown(report)
    assert "| current | 50% | 25% | 0% / 50% | 7.0 | 0.1000 / 0.0500 / 0.1200 |" in md
    assert "+0.0300 [+0.0200, +0.0400] p=0.500" in md
    assert "| control: copy |" in md and "python benchmarks/pfg_lamp_prompts.py" in md
    assert len(bench.table(report).splitlines()) == 2 + 2 + 1
    assert "50% of the outputs start with `Persuadee:`" in md
    assert "no variant gains from the retrieved entries" in md and "no LLM variant beats it" in md
