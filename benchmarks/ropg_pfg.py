"""ROPG / RSPG on PFG-LaMP at learning scale (``../shared/EXPERIMENTS.md``): held-out users, plateaus, controls.

What it runs (Salemi et al., SIGIR 2024, Tables 3-5, in direction):

* **Data** (:func:`personakit.data.pfg_lamp.build_pfg_lamp_task`, ``split_by="user"``):
  the persuaders with at least ``min_prior_dialogues`` (2) earlier dialogues, shuffled by
  seed 0 and cut 50% / 20% / 30% into train / dev / test *users*, so no test user is seen
  in training.  From the train users' examples two disjoint seeded samples: the ROPG
  training inputs and the RSPG training inputs; from the dev users the ROPG dev inputs
  and (disjoint) the RSPG dev inputs; from the test users the test inputs (>= 300 at
  ``default``).  The data unit also counts users / dialogues / examples with
  ``min_prior_dialogues`` 1 and 2.
* **Frozen LLM**: the embedded SmolLM2-135M-Instruct, greedy, ``dtype="auto"`` (bf16
  where the CPU has a fast bf16 path, AMX or AVX512-BF16; the unit files record which),
  every answer kept in the work folder's response cache (``llm_cache.jsonl``).
* **ROPG feedback**: EVAL (ROUGE-1) of the LLM's output with each of the initial dense
  retriever's (MiniLM) top-``top_l`` documents, for the ROPG train and dev inputs.
* **ROPG-RL, ROPG-KD** (shared :class:`~personakit.training.trainer.Trainer` loop): the dev
  objective is the top-1 dev EVAL (``ropg_metric`` = ``rouge1@top1`` of
  ``ROPGTrainer.evaluate``: the EVAL of the candidate the retriever ranks first, what a
  retriever is used for), evaluated every ``ropg_eval_steps``.  (The expected EVAL of the
  policy, $\\mathbb{E}_{d \\sim \\pi}[\\mathrm{EVAL}(d)]$, the first choice, moves too slowly under
  the soft policy of cosine scores at temperature 0.05 for the 1% rule: 0.1338 to 0.1346 in
  95 steps of the first run, while top-1 rose 0.131 to 0.137; it is still reported.)  Training
  stops when the objective has not improved by 1%
  (relative) for ``patience`` evaluations (or at the epoch budget), and the best weights
  are kept (``ROPGTrainerConfig``'s ``eval_steps``, ``early_stopping_patience``,
  ``early_stopping_threshold``, ``load_best_model_at_end``; ``train(..., eval_items=dev)``).
* **Pool**: no retrieval, recency, BM25, dense (MiniLM), RRF (BM25 + recency + dense),
  ROPG-RL, ROPG-KD; ``k`` documents per prompt; the LLM's outputs and EVALs on the RSPG
  train, RSPG dev and test inputs (retrieved item ids are stored, so the prompts can be
  rebuilt without the retrievers).
* **RSPG-Pre, RSPG-Post** (MiniLM selector): trained on the RSPG train inputs for the whole
  budget, the dev KL loss on the RSPG dev inputs evaluated every ``rspg_eval_steps``.  The
  dev-best weights choose the test inputs' retrievers (the result); the weights at the end of
  the budget show whether the selector can fit its training split at all (a diagnostic,
  with their own test row), and the step where the plateau rule (``patience``, 1%) fires is
  reported.  (Stopping at the plateau, as a first run did, left a selector that picks "no
  retrieval" for every input: the dev KL is flat from the first evaluation and then rises,
  so the stop comes before the selector has learnt anything and says nothing about whether
  it can.)
* **Test scoring**: ROUGE-1 / ROUGE-L of every system; paired t-test and paired bootstrap
  95% interval (:func:`personakit.eval.paired_comparison`) against the best single
  retriever (by test ROUGE-1, as the paper).  Controls in the same table: each retriever
  on a **shuffled profile** (each test input gets the profile of another test user), **no
  profile** (= the no-retrieval row) and the **oracle** over the pool (a bound, not a
  result).  Selector diagnostics (:func:`personakit.retrieval.selector_diagnostics`,
  train and test): success rate, majority-choice rate, chosen x oracle confusion, share
  of inputs where the retrievers differ at all.
* **ROPG on held-out users**: top-1 EVAL (the LLM with one document) of the trained
  retrievers against the initial dense retriever on the test inputs, paired tests.

Every part is a **unit** stored as ``benchmarks/results/ropg_pfg/<setting>/<unit>-<key>.json``
(``key``: a hash of its settings, the data digest and the units it depends on);
``--commit`` commits each file as soon as it is written.  A rerun skips finished units; the
response cache, the feedback items and the trained weights live in the work folder (outside
the repository), and a unit whose inputs are gone there recomputes them (the LLM answers
are cached).  ``--report`` rebuilds ``benchmarks/results/ropg_pfg.{md,json}`` and
``ropg_pfg_curves.png`` from whatever units exist.

Settings (LLM prompts counted as upper bounds; the response cache removes repeats):

* ``default`` (CPU, learning scale): 300 ROPG train x top-8 and 80 dev x top-8 feedback
  prompts (3,040), the 7-retriever pool on 300 + 100 + 300 inputs (4,900), shuffled
  profiles for the 6 retrievers on 300 test inputs (1,800) and the held-out top-1 prompts
  (<= 900): about 10,600 prompts of <= 192 tokens with 24 new tokens.  ROPG budget 8 epochs
  (300 steps of 8 inputs x 8 candidates, dev every 19 steps), RSPG budget 6 epochs (228
  steps of 4 x 2 inputs x 7 prompts of 256 tokens).  Measured in the committed run (2-core
  AMD EPYC, no AMX; ``auto`` picks bf16 through AVX512-BF16; batch 16; 2 torch threads, the
  machine mostly to itself): about 3.7 generated prompts/s (cached answers cost nothing), so
  the pool units took 4-8 minutes each; ROPG-RL / ROPG-KD 22 / 18 minutes of training to
  their plateaus; RSPG-Pre / RSPG-Post 34 / 56 minutes for the whole budget (7-10 s per
  update).  The whole run is about 3 hours of wall time; ``--commit --budget-hours`` splits
  it over sessions (a unit's training resumes from its checkpoints in the work folder).
* ``--quick``: a smoke test of every unit on real data (10 / 4 ROPG inputs x top-3, 8 / 4 /
  8 pool inputs, 128-token prompts, 8 new tokens; about 200 distinct prompts, as the
  retrievers often pick the same documents): 13.8 minutes on the loaded 2-core CPU; far too
  small for conclusions.
* ``--scale`` (GPU; add ``--device cuda``): every train / dev / test input, top-16, 512-token
  prompts, 48 new tokens, budgets of 10 (ROPG) and 20 (RSPG) epochs.

    python benchmarks/ropg_pfg.py --commit --budget-hours 2.5   # default, resumable
    python benchmarks/ropg_pfg.py --report                       # tables from the finished units
    python benchmarks/ropg_pfg.py --quick --work-dir /tmp/ropg_quick --out /tmp/ropg_quick_out
    python benchmarks/ropg_pfg.py --scale --device cuda
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (PFG_DATA, UnitContext, UnitStore, add_run_arguments,  # noqa: E402
                     add_setting_arguments, command_line, unit_machine_line, now, plot_dev_curve, pyplot, require_pfg, save_figure,
                     setting_name, report_volatile, write_results)

NAME = "ropg_pfg"
CODE_VERSION = 1  # bump when a change makes earlier unit files incomparable
TASK = "PFG-LaMP"

SETTINGS = {
    "default": dict(min_prior_dialogues=2, split_fractions=(0.5, 0.2, 0.3), history_turns=3,
                    ropg_train=300, ropg_dev=80, rspg_train=300, rspg_dev=100, test=300,
                    top_l=8, k=4, max_tokens=192, new_tokens=24, llm_batch=16,
                    ropg=dict(learning_rate=5e-5, epochs=8, batch_size=8, temperature=0.05, target_temperature=0.1),
                    ropg_eval_steps=19, rspg=dict(epochs=6, batch_size=4, gradient_accumulation_steps=2,
                                                  learning_rate=5e-5, head_learning_rate=1e-3,
                                                  target_temperature=0.1, target_normalization="range"),
                    rspg_eval_steps=19, rspg_max_length=256, patience=4, threshold=0.01, ropg_metric="rouge1@top1"),
    "quick": dict(min_prior_dialogues=2, split_fractions=(0.5, 0.2, 0.3), history_turns=2,
                  ropg_train=10, ropg_dev=4, rspg_train=8, rspg_dev=4, test=8,
                  top_l=3, k=2, max_tokens=128, new_tokens=8, llm_batch=16,
                  ropg=dict(learning_rate=5e-5, epochs=4, batch_size=4, temperature=0.05, target_temperature=0.1),
                  ropg_eval_steps=3, rspg=dict(epochs=3, batch_size=2, gradient_accumulation_steps=1,
                                               learning_rate=5e-5, head_learning_rate=1e-3,
                                               target_temperature=0.1, target_normalization="range"),
                  rspg_eval_steps=3, rspg_max_length=128, patience=2, threshold=0.01, ropg_metric="rouge1@top1"),
    "scale": dict(min_prior_dialogues=2, split_fractions=(0.5, 0.2, 0.3), history_turns=3,
                  ropg_train=None, ropg_dev=None, rspg_train=None, rspg_dev=None, test=None,
                  top_l=16, k=4, max_tokens=512, new_tokens=48, llm_batch=32,
                  ropg=dict(learning_rate=1e-5, epochs=10, batch_size=8, temperature=0.05, target_temperature=0.1),
                  ropg_eval_steps=25, rspg=dict(epochs=20, batch_size=8, gradient_accumulation_steps=2,
                                                learning_rate=1e-5, head_learning_rate=1e-3,
                                                target_temperature=0.1, target_normalization="range"),
                  rspg_eval_steps=25, rspg_max_length=512, patience=5, threshold=0.01, ropg_metric="rouge1@top1"),
}

POOL = ("none", "recency", "bm25", "dense", "rrf", "ropg-rl", "ropg-kd")
DISPLAY = {"none": "No retrieval", "recency": "Recency", "bm25": "BM25", "dense": "Dense (MiniLM)", "rrf": "RRF",
           "ropg-rl": "ROPG-RL", "ropg-kd": "ROPG-KD", "rspg-pre": "RSPG-Pre", "rspg-post": "RSPG-Post"}
ROLES = ("ropg_train", "ropg_dev", "rspg_train", "rspg_dev", "test")
ROLE_SPLIT = {"ropg_train": "train", "rspg_train": "train", "ropg_dev": "dev", "rspg_dev": "dev", "test": "test"}
POOL_ROLES = ("rspg_train", "rspg_dev", "test")
ORDER = ("data", "feedback", "ropg-rl", "ropg-kd", "pool-rspg_train", "pool-rspg_dev", "pool-test",
         "rspg-pre", "rspg-post", "controls", "ropg-heldout")
DEPENDS = {"feedback": ("data",), "ropg-rl": ("feedback",), "ropg-kd": ("feedback",),
           "pool-rspg_train": ("ropg-rl", "ropg-kd"), "pool-rspg_dev": ("ropg-rl", "ropg-kd"),
           "pool-test": ("ropg-rl", "ropg-kd"), "rspg-pre": ("pool-rspg_train", "pool-rspg_dev", "pool-test"),
           "rspg-post": ("pool-rspg_train", "pool-rspg_dev", "pool-test"), "controls": ("ropg-rl", "ropg-kd"),
           "ropg-heldout": ("ropg-rl", "ropg-kd")}
"""Each unit's direct inputs: its key hashes theirs, so a changed input reruns what depends on it."""

# The paper's LaMP numbers (Table 3, FlanT5-XXL): the generation tasks, ROUGE-1 / ROUGE-L.
PAPER_TABLE3 = {
    "LaMP-4": {"No retrieval": (0.176, 0.160), "BM25": (0.186, 0.171), "Recency": (0.189, 0.173),
               "Contriever": (0.183, 0.169), "RRF": (0.190, 0.176), "ROPG-RL": (0.191, 0.177),
               "ROPG-KD": (0.187, 0.172), "RSPG-Pre": (0.190, 0.176), "RSPG-Post": (0.203, 0.186)},
    "LaMP-5": {"No retrieval": (0.478, 0.428), "BM25": (0.477, 0.427), "Recency": (0.475, 0.426),
               "Contriever": (0.483, 0.433), "RRF": (0.478, 0.428), "ROPG-RL": (0.475, 0.427),
               "ROPG-KD": (0.477, 0.428), "RSPG-Pre": (0.483, 0.431), "RSPG-Post": (0.480, 0.429)},
    "LaMP-6": {"No retrieval": (0.335, 0.319), "BM25": (0.412, 0.398), "Recency": (0.403, 0.389),
               "Contriever": (0.401, 0.386), "RRF": (0.394, 0.381), "ROPG-RL": (0.394, 0.381),
               "ROPG-KD": (0.415, 0.400), "RSPG-Pre": (0.426, 0.411), "RSPG-Post": (0.433, 0.418)},
    "LaMP-7": {"No retrieval": (0.449, 0.396), "BM25": (0.446, 0.394), "Recency": (0.444, 0.393),
               "Contriever": (0.440, 0.390), "RRF": (0.446, 0.395), "ROPG-RL": (0.448, 0.397),
               "ROPG-KD": (0.441, 0.391), "RSPG-Pre": (0.450, 0.400), "RSPG-Post": (0.461, 0.409)},
}
PAPER_TABLE4 = {"LaMP-4": (0.401, 0.447), "LaMP-5": (0.600, 0.577), "LaMP-6": (0.633, 0.641),
                "LaMP-7": (0.860, 0.898)}
"""Success rate (RSPG-Pre, RSPG-Post) in the paper's Table 4."""


# ------------------------------------------------------------------------------ pure pieces
def unit_key(unit: str, setting: dict, digest: str, deps: Sequence[str] = (), device: Optional[str] = None) -> str:
    """A unit's key: a hash of the benchmark's code version, its settings, the data digest and the keys of its inputs."""
    return UnitStore.key({"v": CODE_VERSION, "unit": unit, "setting": setting, "digest": digest,
                          "deps": list(deps), "device": device or "cpu"})


def role_samples(splits: dict[str, list], setting: dict, seed: int = 0) -> dict[str, list]:
    """The inputs of each role (``ROLES``): seeded samples, disjoint within a split.

    The ROPG and RSPG roles of a split share its shuffled order (ROPG takes the first
    ``n``, RSPG the next ``m``), so they never hold the same example; ``None`` takes all
    that is left (for the second role: everything after the first, which then gets half).
    """
    out: dict[str, list] = {}
    for split, (first, second) in {"train": ("ropg_train", "rspg_train"), "dev": ("ropg_dev", "rspg_dev")}.items():
        rows = list(splits[split])
        order = list(range(len(rows)))
        random.Random(seed + {"train": 11, "dev": 12}[split]).shuffle(order)
        n1 = setting[first] if setting[first] is not None else len(rows) // 2
        n1 = min(n1, len(rows))
        n2 = setting[second] if setting[second] is not None else len(rows) - n1
        out[first] = [rows[i] for i in sorted(order[:n1])]
        out[second] = [rows[i] for i in sorted(order[n1:n1 + n2])]
    test = list(splits["test"])
    n = setting["test"]
    keep = sorted(random.Random(seed + 13).sample(range(len(test)), n)) if n is not None and n < len(test) else None
    out["test"] = test if keep is None else [test[i] for i in keep]
    return {role: out[role] for role in ROLES}


def data_digest(roles: dict[str, list]) -> str:
    """A hash of every role's example ids, inputs, targets and profile item ids."""
    h = hashlib.sha256()
    for role in ROLES:
        for ex in roles[role]:
            h.update(f"{role}|{ex.id}|{ex.input}|{ex.target}|{','.join(i.id for i in ex.profile.items)}\n".encode())
    return h.hexdigest()[:16]


def shuffle_profiles(examples: Sequence[Any], seed: int = 0) -> list[Any]:
    """Copies of ``examples`` (``ProfileExample``) whose profile is that of another user (the shuffled control).

    The users are put in a seeded random cycle and every example of a user gets the
    profile of a seeded random example of the next user, so no example keeps its own
    user's profile (the input and target stay).

    Raises:
        ValueError: the examples come from fewer than two users.
    """
    examples = list(examples)
    users = sorted({ex.profile.user_id for ex in examples})
    if len(users) < 2:
        raise ValueError("shuffle_profiles: the examples come from fewer than two users; another user's profile "
                         "needs at least two")
    rng = random.Random(seed)
    rng.shuffle(users)
    donor = {u: users[(i + 1) % len(users)] for i, u in enumerate(users)}
    profiles: dict[str, list] = {}
    for ex in examples:
        profiles.setdefault(ex.profile.user_id, []).append(ex.profile)
    return [ex.model_copy(update={"profile": rng.choice(profiles[donor[ex.profile.user_id]])}) for ex in examples]


def split_counts(splits: dict[str, list]) -> dict[str, dict[str, int]]:
    """Users, dialogues and examples of each split."""
    return {name: {"users": len({ex.profile.user_id for ex in rows}),
                   "dialogues": len({ex.id.rsplit(":", 1)[0] for ex in rows}), "examples": len(rows)}
            for name, rows in splits.items()}


def _mean(values: Sequence[float]) -> float:
    return float(statistics.fmean(values)) if values else float("nan")


def _compare(a: Sequence[float], b: Sequence[float], seed: int = 0) -> dict[str, Any]:
    from personakit.eval import paired_comparison

    return paired_comparison(list(a), list(b), n_resamples=5000, seed=seed).to_dict()


def summarise(units: dict[str, dict]) -> dict[str, Any]:
    """The test table, controls, selector diagnostics and ROPG held-out tests from the stored units.

    Args:
        units: ``{unit name: unit dict}`` (any subset of ``ORDER``; missing parts are left out).
    """
    out: dict[str, Any] = {"rows": {}, "tests": {}, "controls": {}, "best_single": None}
    test = units.get("pool-test")
    if test:
        per = {DISPLAY[r]: test["per_example"][r] for r in test["retrievers"]}
        names = test["retrievers"]
        for label in ("rspg-pre", "rspg-post"):
            u = units.get(label) or {}
            # the dev-best selector is the result; the end-of-budget one (fitted to its training split) a diagnostic
            for system, choice in ((DISPLAY[label], u.get("test_choices")),
                                   (f"{DISPLAY[label]} (end of budget)", (u.get("fit_choices") or {}).get("test"))):
                if choice is not None:
                    per[system] = {m: [test["per_example"][names[c]][m][i] for i, c in enumerate(choice)]
                                   for m in ("rouge1", "rougeL")}
        out["rows"] = {s: {m: _mean(v[m]) for m in ("rouge1", "rougeL")} for s, v in per.items()}
        singles = [DISPLAY[r] for r in test["retrievers"]]
        best = max(singles, key=lambda s: out["rows"][s]["rouge1"])
        out["best_single"] = best
        for s in per:
            if s != best:
                out["tests"][s] = {m: _compare(per[s][m], per[best][m]) for m in ("rouge1", "rougeL")}
        # oracle over the pool (by ROUGE-1; ROUGE-L of the same choice): a bound, not a result
        r1 = [[test["per_example"][r]["rouge1"][i] for r in test["retrievers"]] for i in range(test["n"])]
        pick = [max(range(len(row)), key=lambda j: row[j]) for row in r1]
        worst = [min(range(len(row)), key=lambda j: row[j]) for row in r1]
        out["controls"]["oracle (best of the pool per input)"] = {
            "rouge1": _mean([row[j] for row, j in zip(r1, pick)]),
            "rougeL": _mean([test["per_example"][test["retrievers"][j]]["rougeL"][i] for i, j in enumerate(pick)])}
        out["controls"]["worst of the pool per input"] = {
            "rouge1": _mean([row[j] for row, j in zip(r1, worst)]),
            "rougeL": _mean([test["per_example"][test["retrievers"][j]]["rougeL"][i] for i, j in enumerate(worst)])}
        out["controls"]["no profile (= No retrieval)"] = dict(out["rows"][DISPLAY["none"]])
        ctrl = units.get("controls")
        if ctrl:
            out["shuffled"] = {}
            for r, scores in ctrl["per_example"].items():
                own = test["per_example"][r]
                out["shuffled"][DISPLAY[r]] = {
                    "own": {m: _mean(own[m]) for m in ("rouge1", "rougeL")},
                    "shuffled": {m: _mean(scores[m]) for m in ("rouge1", "rougeL")},
                    "own_vs_shuffled": _compare(own["rouge1"], scores["rouge1"]),
                    "own_vs_none": _compare(own["rouge1"], test["per_example"]["none"]["rouge1"])}
    held = units.get("ropg-heldout")
    if held:
        init = held["per_example"]["dense"]
        out["heldout"] = {"n": len(init), "initial": _mean(init),
                          "trained": {DISPLAY[r]: {"mean": _mean(held["per_example"][r]),
                                                   "vs_initial": _compare(held["per_example"][r], init),
                                                   "same_top1": held["same_top1"][r]}
                                      for r in ("ropg-rl", "ropg-kd") if r in held["per_example"]}}
    return out


def reads_document_verdict(summary: dict) -> str:
    """Whether the frozen LLM reads the retrieved documents, from the shuffled and no-profile controls.

    The test is on the best retriever other than no retrieval (by own-profile test ROUGE-1):
    the LLM reads the documents when that retriever is significantly above both its
    shuffled-profile and the no-profile ROUGE-1 (paired t-test, p < 0.05); the other
    retrievers' significant gaps are listed (with six retrievers one p < 0.05 comes easily
    by chance).
    """
    shuffled = summary.get("shuffled")
    if not shuffled:
        return "not yet measured (the controls unit is missing)"

    def up(c: dict) -> bool:
        return bool(c["significant"]) and c["mean_difference"] > 0

    best = max(shuffled, key=lambda name: shuffled[name]["own"]["rouge1"])
    b = shuffled[best]
    others = [name for name, v in shuffled.items() if name != best and up(v["own_vs_shuffled"]) and up(v["own_vs_none"])]
    also = f"; also above both for {', '.join(others)}" if others else ""
    if up(b["own_vs_shuffled"]) and up(b["own_vs_none"]):
        return (f"yes: with {best}'s documents ROUGE-1 is significantly above a shuffled profile "
                f"({b['own_vs_shuffled']['mean_difference']:+.4f}) and no profile "
                f"({b['own_vs_none']['mean_difference']:+.4f}){also}")
    return (f"the frozen LLM barely reads the retrieved document: the best retriever, {best}, is not significantly "
            f"above both a shuffled profile ({_p(b['own_vs_shuffled'])}) and no profile ({_p(b['own_vs_none'])}){also}; "
            "differences between retrievers and selectors here are mostly noise")


def verdict(summary: dict) -> str:
    """Reproduced in direction / not reproduced / inconclusive, for RSPG-Post against the best single retriever."""
    test = summary.get("tests", {}).get("RSPG-Post")
    if not test:
        return "not yet measured (RSPG-Post or the test pool missing)"
    t = test["rouge1"]
    if t["significant"] and t["mean_difference"] > 0:
        return f"reproduced in direction (RSPG-Post > {summary['best_single']} on ROUGE-1, p < 0.05)"
    if t["significant"]:
        return f"not reproduced (RSPG-Post significantly below {summary['best_single']} on ROUGE-1)"
    return f"inconclusive (no significant difference between RSPG-Post and {summary['best_single']} on ROUGE-1)"


def _p(c: dict) -> str:
    if c["mean_difference"] == 0 and c["ci_low"] == 0 and c["ci_high"] == 0:
        return "identical on every input"  # the same choices: no test to run (p is nan)
    return f"{c['mean_difference']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}], p {c['p_value']:.3g}"


def _training_row(label: str, u: dict, status: Optional[str] = None) -> str:
    """One trained unit's table row; ``status`` replaces the converged cell (the selectors' plateau step)."""
    if status is None:
        status = "yes (plateau)" if u.get("stopped_early") else "**not converged** (budget)"
    best = u.get("best_metric")
    return (f"| {label} | {u.get('steps')} / {u.get('total_steps')} | {u.get('best_step')} | "
            f"{'–' if best is None else f'{best:.4f}'} | {status} | {u.get('train_s', 0) / 60:.1f} | "
            f"{'–' if not u.get('train_cpu_s') else format(u['train_cpu_s'] / 60, '.1f')} |")


def to_markdown(report_: dict) -> str:
    """The results page: data, the test table with controls and tests, selector diagnostics, ROPG, paper tables."""
    units, s = report_["units"], report_["summary"]
    lines = [f"# ROPG / RSPG on PFG-LaMP, learning scale ({report_['setting']} setting)", "",
             f"Command: `{report_['command']}`; written {report_['written']}.", "", report_.get("machine_line", ""), ""]
    missing = [u for u in ORDER if u not in units]
    if missing:
        lines += [f"Units still to run: {', '.join(missing)} (this page shows what is finished).", ""]
    lines += [f"**Verdict: {verdict(s)}.**  ", f"**Does the LLM read the document?** {reads_document_verdict(s)}.", ""]
    data = units.get("data")
    if data:
        lines += ["## Data", "", f"Held-out users (`split_by=\"user\"`, fractions {tuple(data['setting_split'])}, "
                  f"seed 0); data digest {data['digest']}.", "",
                  "| min prior dialogues | split | users | dialogues | examples |", "| ---: | --- | ---: | ---: | ---: |"]
        for m, counts in data["counts"].items():
            for split, c in counts.items():
                lines.append(f"| {m} | {split} | {c['users']} | {c['dialogues']} | {c['examples']} |")
        lines += ["", "Inputs used: " + ", ".join(f"{r} {n}" for r, n in data["roles"].items())
                  + f"; mean test profile {data['mean_test_profile']:.1f} entries.", ""]
    if s["rows"]:
        lines += [f"## Test ({units['pool-test']['n']} inputs of held-out users)", "",
                  f"Against the best single retriever ({s['best_single']}): mean difference, paired bootstrap 95% "
                  "interval, paired t-test p.", "",
                  "| system | ROUGE-1 | ROUGE-L | ROUGE-1 vs best single | ROUGE-L vs best single |",
                  "| --- | ---: | ---: | --- | --- |"]
        for system, row in s["rows"].items():
            t = s["tests"].get(system)
            cells = (_p(t["rouge1"]), _p(t["rougeL"])) if t else ("(reference)", "(reference)")
            lines.append(f"| {system} | {row['rouge1']:.4f} | {row['rougeL']:.4f} | {cells[0]} | {cells[1]} |")
        lines += ["", "Controls (same test inputs; the oracle sees the references: a bound, never a result):", "",
                  "| control | ROUGE-1 | ROUGE-L |", "| --- | ---: | ---: |"]
        for name, row in s["controls"].items():
            lines.append(f"| {name} | {row['rouge1']:.4f} | {row['rougeL']:.4f} |")
        if s.get("shuffled"):
            lines += ["", "Shuffled profile (each test input gets another test user's profile):", "",
                      "| retriever | own profile R-1 | shuffled R-1 | own - shuffled | own - no profile |",
                      "| --- | ---: | ---: | --- | --- |"]
            for name, v in s["shuffled"].items():
                lines.append(f"| {name} | {v['own']['rouge1']:.4f} | {v['shuffled']['rouge1']:.4f} | "
                             f"{_p(v['own_vs_shuffled'])} | {_p(v['own_vs_none'])} |")
        lines.append("")
    sel = [(DISPLAY[k], units[k]) for k in ("rspg-pre", "rspg-post") if k in units]
    if sel:
        lines += ["## Selectors", "", "Each selector trains its whole budget with the dev KL evaluated at regular "
                  "steps; the dev-best weights choose the test inputs' retrievers, the weights at the end "
                  "show whether it can fit its training split. \"Plateau\" is the step where the early-stopping "
                  "rule (no 1% improvement for `patience` evaluations) fires.", "",
                  "| selector | steps (budget) | dev-best step | best dev KL | plateau at step | train min | "
                  "train CPU min |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        lines += [_training_row(label, u, "not reached" if u.get("plateau_step") is None else str(u["plateau_step"]))
                  for label, u in sel]
        fits = [(label, u) for label, u in sel if u.get("fit_diagnostics")]
        if fits:
            lines += ["", "Success rate (the chosen retriever is one of the input's best; Table 4) against the "
                      "majority-choice rate (the best constant choice on that split):", "",
                      "| selector | weights | train success | train majority | dev success | dev majority | "
                      "test success | test majority | test ROUGE-1 of the choice |",
                      "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
            for label, u in fits:
                for name, d in ((f"dev-best (step {u.get('best_step')})", u["diagnostics"]),
                                (f"end of budget (step {u.get('fit_step')})", u["fit_diagnostics"])):
                    cells = []
                    for split in ("train", "dev", "test"):
                        x = d.get(split)
                        cells += ["–", "–"] if x is None else [f"{x['success_rate']:.3f}", f"{x['majority_rate']:.3f}"]
                    sel_eval = d["test"]["selected_eval"] if "test" in d else float("nan")
                    lines.append(f"| {label} | {name} | " + " | ".join(cells) + f" | {sel_eval:.4f} |")
        lines.append("")
        for label, u in sel:
            for md in (u.get("fit_diagnostics_md", {}).get("train"), *(u.get("diagnostics_md", {}).get(split)
                                                                        for split in ("train", "test"))):
                if md:
                    lines += [md, ""]
        lines += ["The paper's success rates (Table 4, Pre / Post): "
                  + "; ".join(f"{t} {a:.3f} / {b:.3f}" for t, (a, b) in PAPER_TABLE4.items()) + ".", ""]
    ropg = [(DISPLAY[k], units[k]) for k in ("ropg-rl", "ropg-kd") if k in units]
    if ropg:
        watched = ropg[0][1].get("metric", "rouge1@expected")
        what = "top-1 ROUGE-1 (of the candidate the retriever ranks first)" if watched.endswith("@top1") else \
            "expected ROUGE-1 of the policy"
        lines += ["## ROPG", "", f"Dev objective: {what} over the dev inputs' top-"
                  f"{ropg[0][1]['top_l']} candidates (feedback unit: "
                  + (f"{units['feedback']['prompts']} prompts" if 'feedback' in units else "?") + ").", "",
                  "| retriever | steps (budget) | best step | best dev objective | converged | train min | train CPU min |",
                  "| --- | ---: | ---: | ---: | --- | ---: | ---: |"]
        lines += [_training_row(label, u) for label, u in ropg]
        lines += ["", "| retriever | split | top-1 before | top-1 after | expected before | expected after | "
                  "initial top doc | oracle |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for label, u in ropg:
            for split in ("train", "dev"):
                b, a = u["before"][split], u["after"][split]
                lines.append(f"| {label} | {split} | {b['rouge1@top1']:.4f} | {a['rouge1@top1']:.4f} | "
                             f"{b['rouge1@expected']:.4f} | {a['rouge1@expected']:.4f} | {a['rouge1@initial']:.4f} | "
                             f"{a['rouge1@oracle']:.4f} |")
        lines.append("")
    held = s.get("heldout")
    if held:
        lines += [f"ROPG on held-out users: top-1 ROUGE-1 (one document in the prompt) on {held['n']} test inputs; "
                  f"initial dense retriever {held['initial']:.4f}.", "",
                  "| retriever | top-1 ROUGE-1 | vs initial | same top document as initial |", "| --- | ---: | --- | ---: |"]
        for label, v in held["trained"].items():
            lines.append(f"| {label} | {v['mean']:.4f} | {_p(v['vs_initial'])} | {v['same_top1']:.3f} |")
        lines.append("")
    lines += ["## The paper (Table 3, FlanT5-XXL, ROUGE-1 / ROUGE-L)", "",
              "| system | " + " | ".join(PAPER_TABLE3) + " |", "| --- |" + " ---: |" * len(PAPER_TABLE3)]
    for system in PAPER_TABLE3["LaMP-4"]:
        lines.append(f"| {system} | " + " | ".join(f"{PAPER_TABLE3[t][system][0]:.3f} / {PAPER_TABLE3[t][system][1]:.3f}"
                                                   for t in PAPER_TABLE3) + " |")
    timing = [f"{u}: {units[u].get('wall_s', 0) / 60:.1f} min" for u in ORDER if u in units]
    lines += ["", "Wall time per unit: " + "; ".join(timing) + ".", "",
              f"Learning curves: `{NAME}_curves.png`. Each unit file (`benchmarks/results/{NAME}/<setting>/`) names "
              "the commit that produced it."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ runtime context
class Context(UnitContext):
    """The run's settings, data, store and the lazily loaded models (the LLM only when a unit needs it)."""

    def __init__(self, args: argparse.Namespace, setting: dict):
        super().__init__(args, setting, NAME)
        self._generator = self._builder = self._scorer = self._encoder = None
        self._retrievers: dict[str, Any] = {}
        self.splits, self.roles = self._load_data()
        self.digest = data_digest(self.roles)
        self.by_id = {ex.id: ex for rows in self.roles.values() for ex in rows}

    def _load_data(self):
        from personakit.data.pfg_lamp import build_pfg_lamp_task

        s = self.s
        splits = build_pfg_lamp_task(self.args.data, min_prior_dialogues=s["min_prior_dialogues"],
                                     history_turns=s["history_turns"], split_by="user",
                                     split_fractions=s["split_fractions"], seed=self.args.seed)
        splits = {k: [ex for ex in v if ex.profile.items] for k, v in splits.items()}
        return splits, role_samples(splits, s, self.args.seed)

    def key(self, unit: str) -> str:
        deps = [self.keys[d] for d in DEPENDS.get(unit, ())]
        return unit_key(unit, self.s, self.digest, deps, self.args.device)

    def trained_folder(self, unit: str) -> Path:
        """The work folder of a trained unit's checkpoints and weights, named by its key (a changed setting or
        data set never resumes another run's checkpoints)."""
        return self.work / f"{unit}-{self.keys[unit]}"

    def stamp(self, unit: str) -> dict:
        gen = self._generator
        dtype = getattr(gen, "dtype", None) or (next(gen.model.parameters()).dtype if gen is not None else None)
        return {**super().stamp(unit), "llm_dtype": str(dtype)}

    # -------------------------------------------------------------- models
    @property
    def generator(self):
        if self._generator is None:
            from personakit.llm import HFGenerator

            self._generator = HFGenerator.from_pretrained("smollm2", batch_size=self.s["llm_batch"], dtype="auto",
                                                          device=self.args.device)
        return self._generator

    @property
    def builder(self):
        if self._builder is None:
            from personakit.retrieval.lamp_prompts import LaMPPromptBuilder

            tok = self.generator.tokenizer
            self._builder = LaMPPromptBuilder(TASK, max_tokens=self.s["max_tokens"],
                                              tokenizer=lambda t: len(tok(t, add_special_tokens=False)["input_ids"]))
        return self._builder

    @property
    def scorer(self):
        if self._scorer is None:
            from personakit.llm import GenerationSettings
            from personakit.training.feedback import LLMFeedbackScorer

            settings = GenerationSettings(max_new_tokens=self.s["new_tokens"], temperature=0.0, stop=["\n"])
            self._scorer = LLMFeedbackScorer(self.generator, self.builder, cache=self.work / "llm_cache.jsonl",
                                             settings=settings, batch_size=self.s["llm_batch"], progress=True)
        return self._scorer

    def encoder(self):
        import copy

        from personakit.retrieval import as_text_encoder

        if self._encoder is None:
            self._encoder = as_text_encoder("minilm", device=self.args.device)
            self._encoder.eval()
        return copy.deepcopy(self._encoder)

    def retriever(self, name: str):
        """A pool member; ROPG-RL / ROPG-KD from their saved weights (retrained when the work folder lost them)."""
        from personakit.retrieval import BM25Retriever, DenseRetriever, NoRetrieval, RecencyRetriever, RRFRetriever

        if name in self._retrievers:
            return self._retrievers[name]
        if name == "none":
            r = NoRetrieval()
        elif name == "recency":
            r = RecencyRetriever()
        elif name == "bm25":
            r = BM25Retriever()
        elif name == "dense":
            r = DenseRetriever(encoder=self.encoder())
        elif name == "rrf":
            r = RRFRetriever([self.retriever("bm25"), self.retriever("recency"), self.retriever("dense")], k=60)
        else:
            import torch

            path = self.trained_folder(name) / "retriever.pt"
            if not path.is_file():
                print(f"[{NAME}] {name}: weights not in the work folder; training again", flush=True)
                train_ropg(self, name)
            r = DenseRetriever(encoder=self.encoder())
            r.module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            r.module.eval()
        self._retrievers[name] = r
        return r

    def examples(self, ids: Sequence[str]) -> list:
        return [self.by_id[i] for i in ids]


def _items_from(ex: Any, ids: Sequence[str]) -> list:
    by = {it.id: it for it in ex.profile.items}
    return [by[i] for i in ids]


# ------------------------------------------------------------------------------ units
def data_unit(ctx: Context) -> dict:
    from personakit.data.pfg_lamp import build_pfg_lamp_task

    counts = {}
    for m in (1, 2):
        sp = build_pfg_lamp_task(ctx.args.data, min_prior_dialogues=m, history_turns=ctx.s["history_turns"],
                                 split_by="user", split_fractions=ctx.s["split_fractions"], seed=ctx.args.seed)
        counts[str(m)] = split_counts(sp)
    return {"counts": counts, "setting_split": list(ctx.s["split_fractions"]), "digest": ctx.digest,
            "roles": {r: len(v) for r, v in ctx.roles.items()},
            "role_ids": {r: [ex.id for ex in v] for r, v in ctx.roles.items()},
            "mean_test_profile": _mean([len(ex.profile.items) for ex in ctx.roles["test"]])}


def feedback_unit(ctx: Context) -> dict:
    """EVAL of each of the initial dense retriever's top-l documents, for the ROPG train and dev inputs."""
    from personakit.training.ropg import prepare_ropg_items

    out: dict[str, Any] = {"top_l": ctx.s["top_l"], "items": {}}
    t = time.perf_counter()
    before = ctx.scorer.generated
    for role in ("ropg_train", "ropg_dev"):
        rows = ctx.roles[role]
        items = prepare_ropg_items([ctx.builder.query(ex) for ex in rows], [ex.profile for ex in rows],
                                   initial_retriever=ctx.retriever("dense"), top_l=ctx.s["top_l"],
                                   feedback=ctx.scorer.score_candidates, examples=rows, ids=[ex.id for ex in rows])
        ranked = ctx.retriever("dense").retrieve_batch([ctx.builder.query(ex) for ex in rows],
                                                       [ex.profile for ex in rows], k=ctx.s["top_l"])
        out["items"][role] = [{"id": it.id, "candidate_ids": [r.item.id for r in rk], "evals": it.evals.tolist()}
                              for it, rk in zip(items, ranked)]
    out["prompts"] = sum(len(v["evals"]) for r in out["items"].values() for v in r)
    out["generated"] = ctx.scorer.generated - before
    out["llm_s"] = time.perf_counter() - t
    out["seconds_per_generated_prompt"] = out["llm_s"] / out["generated"] if out["generated"] else None
    return out


def ropg_items(ctx: Context, role: str) -> list:
    from personakit.training.ropg import ROPGItem

    fb = ctx.units["feedback"]["items"][role]
    rows = []
    for rec in fb:
        ex = ctx.by_id[rec["id"]]
        rows.append(ROPGItem(query=ctx.builder.query(ex), candidates=[i.text for i in _items_from(ex, rec["candidate_ids"])],
                             evals=rec["evals"], id=rec["id"]))
    return rows


def train_ropg(ctx: Context, name: str) -> dict:
    """ROPG-RL or ROPG-KD to a plateau of the dev objective (``ropg_metric``); the best weights saved to the work folder."""
    import torch

    from personakit.retrieval import DenseRetriever
    from personakit.training.ropg import ROPGKDTrainer, ROPGRLTrainer, ROPGTrainerConfig

    s = ctx.s
    train, dev = ropg_items(ctx, "ropg_train"), ropg_items(ctx, "ropg_dev")
    folder = ctx.trained_folder(name)
    cfg = ROPGTrainerConfig(**{k: v for k, v in s["ropg"].items() if name == "ropg-kd" or k != "target_temperature"},
                            top_l=s["top_l"], warmup_ratio=0.05, gradient_accumulation_steps=1, seed=ctx.args.seed,
                            eval_metric="rouge1", output_dir=str(folder / "checkpoints"),
                            save_steps=s["ropg_eval_steps"], progress=True, eval_steps=s["ropg_eval_steps"],
                            early_stopping_patience=s["patience"], early_stopping_threshold=s["threshold"],
                            load_best_model_at_end=True, metric_for_best_model=s["ropg_metric"])
    torch.manual_seed(ctx.args.seed)
    retriever = DenseRetriever(encoder=ctx.encoder())
    trainer = (ROPGRLTrainer if name == "ropg-rl" else ROPGKDTrainer)(retriever, cfg)
    before = {"train": trainer.evaluate(train), "dev": trainer.evaluate(dev)}
    t = time.perf_counter()
    trainer.train(train, eval_items=dev, resume_from="latest")
    result = trainer.train_result
    train_s = result.train_seconds or (time.perf_counter() - t)  # every session's training, resumes included
    after = {"train": trainer.evaluate(train), "dev": trainer.evaluate(dev)}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(retriever.module.state_dict(), folder / "retriever.pt")
    retriever.module.eval()
    ctx._retrievers[name] = retriever
    return {"top_l": s["top_l"], "steps": result.global_step, "total_steps": result.total_steps,
            "stopped_early": result.stopped_early, "best_step": result.best_step, "best_metric": result.best_metric,
            "metric": s["ropg_metric"], "eval_history": result.eval_history,
            "history": [{k: r.get(k) for k in ("step", "loss", "lr")} for r in result.history],
            "before": before, "after": after, "train_s": train_s, "train_cpu_s": result.train_cpu_seconds or None,
            "train_items": len(train), "dev_items": len(dev)}


def pool_unit(ctx: Context, role: str) -> dict:
    """Every pool retriever's top-k, the LLM's output and its ROUGE-1 / ROUGE-L on one role's inputs."""
    from personakit.eval.lamp import LaMPMetric

    rows = ctx.roles[role]
    queries = [ctx.builder.query(ex) for ex in rows]
    ids: dict[str, list[list[str]]] = {}
    for name in POOL:
        ranked = ctx.retriever(name).retrieve_batch(queries, [ex.profile for ex in rows], k=ctx.s["k"])
        ids[name] = [[r.item.id for r in row] for row in ranked]
    t = time.perf_counter()
    before = ctx.scorer.generated
    scored = ctx.scorer.score_item_lists(rows, [[_items_from(ex, ids[n][i]) for n in POOL] for i, ex in enumerate(rows)])
    metric = LaMPMetric(TASK)
    per = {}
    for j, name in enumerate(POOL):
        outs = [o[j] for o in scored.outputs]
        per[name] = metric.per_example(outs, [str(ex.target) for ex in rows])
    return {"role": role, "n": len(rows), "retrievers": list(POOL), "example_ids": [ex.id for ex in rows],
            "item_ids": ids, "outputs": {n: [o[j] for o in scored.outputs] for j, n in enumerate(POOL)},
            "per_example": per, "generated": ctx.scorer.generated - before, "llm_s": time.perf_counter() - t}


def rspg_items(ctx: Context, role: str) -> list:
    from personakit.training.rspg import RSPGItem

    u = ctx.units[f"pool-{role}"]
    items = []
    for i, eid in enumerate(u["example_ids"]):
        ex = ctx.by_id[eid]
        prompts = [ctx.builder.build(ex, _items_from(ex, u["item_ids"][n][i])) for n in u["retrievers"]]
        items.append(RSPGItem(prompts=[str(p) for p in prompts], outputs=[u["outputs"][n][i] for n in u["retrievers"]],
                              evals=[u["per_example"][n]["rouge1"][i] for n in u["retrievers"]], id=eid))
    return items


def rspg_unit(ctx: Context, mode: str) -> dict:
    """RSPG-Pre or RSPG-Post over its whole budget; the dev-best weights answer the test, the last ones show the fit.

    The dev KL loss is evaluated every ``rspg_eval_steps``; the weights of its best value are put
    back at the end (``load_best_model_at_end``) and choose the test inputs' retrievers. Training
    does not stop at the plateau: the weights at the end of the budget measure whether the
    selector can fit its training split at all (the issue's first diagnostic), and the step at
    which the plateau rule (``patience``, ``threshold``) fires is reported beside it.
    """
    import torch

    from personakit.retrieval.selector import RetrieverSelector
    from personakit.retrieval.selector_diagnostics import selector_diagnostics
    from personakit.training.checkpoint import latest_checkpoint, load_checkpoint
    from personakit.training.rspg import RSPGTrainer, RSPGTrainerConfig

    s = ctx.s
    labels = [DISPLAY[n] for n in POOL]
    train, dev, test = rspg_items(ctx, "rspg_train"), rspg_items(ctx, "rspg_dev"), rspg_items(ctx, "test")
    torch.manual_seed(ctx.args.seed)
    selector = RetrieverSelector("minilm", mode=mode, max_length=s["rspg_max_length"], pooling="mean",
                                 retriever_names=labels)
    if ctx.args.device:
        selector = selector.to(ctx.args.device)
    folder = ctx.trained_folder(f"rspg-{mode}")
    cfg = RSPGTrainerConfig(**s["rspg"], eval_steps=s["rspg_eval_steps"], seed=ctx.args.seed,
                            output_dir=str(folder), save_steps=s["rspg_eval_steps"], progress=True,
                            early_stopping_threshold=s["threshold"], load_best_model_at_end=True)  # metric: dev KL
    trainer = RSPGTrainer(selector, cfg)
    t = time.perf_counter()
    out = trainer.train(train, eval_items=dev)
    train_s = out.train_seconds or (time.perf_counter() - t)  # every session's training, resumes included
    result = {"steps": out.global_step, "total_steps": trainer.plan(len(train)).total_steps,
              "plateau_step": cfg.plateau_step(out.eval_history, patience=s["patience"]),
              "eval_history": out.eval_history,
              "history": [{k: r.get(k) for k in ("step", "loss", "lr", "success_rate")} for r in trainer.history],  # resumes included
              "train_s": train_s, "train_cpu_s": out.train_cpu_seconds or None}
    result["stopped_early"] = result["plateau_step"] is not None  # the plateau was reached (training went on)
    best = trainer.best_evaluation()
    result.update(best_step=None if best is None else int(best["step"]),
                  best_metric=None if best is None else float(best["loss"]))
    splits = (("train", train), ("dev", dev), ("test", test))

    def diagnose() -> tuple[dict, dict]:
        choices = {split: trainer.predict(items).argmax(-1).tolist() for split, items in splits}
        return {split: selector_diagnostics(choices[split], [it.evals for it in items], labels)
                for split, items in splits}, choices

    diag, choices = diagnose()  # load_best_model_at_end put the dev-best weights back
    result["train_choices"], result["test_choices"] = choices["train"], choices["test"]
    result["diagnostics"] = {split: d.to_dict() for split, d in diag.items()}
    result["diagnostics_md"] = {split: diag[split].to_markdown(
        f"{DISPLAY[f'rspg-{mode}']}, dev-best weights (step {result['best_step']}), on {split} "
        f"({len(items)} inputs)") for split, items in splits if split != "dev"}
    last = latest_checkpoint(folder)  # the weights at the end of the budget: can the selector fit its split?
    load_checkpoint(last, modules={trainer.checkpoint_key: trainer.checkpoint_module()}, restore_rng=False)
    fit, fit_choices = diagnose()
    result["fit_step"] = int(last.name.rsplit("-", 1)[-1])
    result["fit_choices"] = fit_choices
    result["fit_diagnostics"] = {split: d.to_dict() for split, d in fit.items()}
    result["fit_diagnostics_md"] = {"train": fit["train"].to_markdown(
        f"{DISPLAY[f'rspg-{mode}']}, weights at the end of the budget (step {result['fit_step']}), on train "
        f"({len(train)} inputs)")}
    return result


def controls_unit(ctx: Context) -> dict:
    """Every retriever (but none) on the test inputs with another user's profile."""
    from personakit.eval.lamp import LaMPMetric

    rows = shuffle_profiles(ctx.roles["test"], seed=ctx.args.seed)
    names = [n for n in POOL if n != "none"]
    queries = [ctx.builder.query(ex) for ex in rows]
    lists = [[] for _ in rows]
    for name in names:
        for i, row in enumerate(ctx.retriever(name).retrieve_batch(queries, [ex.profile for ex in rows], k=ctx.s["k"])):
            lists[i].append([r.item for r in row])
    t, before = time.perf_counter(), ctx.scorer.generated
    scored = ctx.scorer.score_item_lists(rows, lists)
    metric = LaMPMetric(TASK)
    per = {n: metric.per_example([o[j] for o in scored.outputs], [str(ex.target) for ex in rows])
           for j, n in enumerate(names)}
    return {"n": len(rows), "donor_users": [ex.profile.user_id for ex in rows], "per_example": per,
            "generated": ctx.scorer.generated - before, "llm_s": time.perf_counter() - t}


def heldout_unit(ctx: Context) -> dict:
    """Top-1 document of the initial and the trained retrievers on the test inputs; EVAL with that one document."""
    rows = ctx.roles["test"]
    queries = [ctx.builder.query(ex) for ex in rows]
    names = ("dense", "ropg-rl", "ropg-kd")
    top = {n: [row[0].item for row in ctx.retriever(n).retrieve_batch(queries, [ex.profile for ex in rows], k=1)]
           for n in names}
    t, before = time.perf_counter(), ctx.scorer.generated
    scored = ctx.scorer.score_item_lists(rows, [[[top[n][i]] for n in names] for i in range(len(rows))])
    return {"n": len(rows), "top1_ids": {n: [d.id for d in top[n]] for n in names},
            "per_example": {n: [float(s[j]) for s in scored.scores] for j, n in enumerate(names)},
            "same_top1": {n: _mean([float(a.id == b.id) for a, b in zip(top[n], top["dense"])]) for n in names},
            "generated": ctx.scorer.generated - before, "llm_s": time.perf_counter() - t}


def run_unit(ctx: Context, unit: str) -> dict:
    if unit == "data":
        return data_unit(ctx)
    if unit == "feedback":
        return feedback_unit(ctx)
    if unit in ("ropg-rl", "ropg-kd"):
        return train_ropg(ctx, unit)
    if unit.startswith("pool-"):
        return pool_unit(ctx, unit[len("pool-"):])
    if unit in ("rspg-pre", "rspg-post"):
        return rspg_unit(ctx, unit.split("-")[1])
    if unit == "controls":
        return controls_unit(ctx)
    if unit == "ropg-heldout":
        return heldout_unit(ctx)
    raise ValueError(f"unknown unit {unit!r}")


# ------------------------------------------------------------------------------ git, report, main
def load_units(out: Path, setting: str) -> dict[str, dict]:
    """The newest stored unit of each name for ``setting``."""
    found: dict[str, dict] = {}
    for u in UnitStore(out, NAME).all():
        if u.get("setting") == setting and u.get("unit") in ORDER:
            if u["unit"] not in found or u.get("finished", "") >= found[u["unit"]].get("finished", ""):
                found[u["unit"]] = u
    return found


def plot_curves(units: dict[str, dict], path: Path) -> bool:
    """Dev objectives against optimizer steps: ROPG (its watched dev ROUGE-1) and RSPG (dev KL)."""
    plt = pyplot()
    watched = next((units[u].get("metric") for u in ("ropg-rl", "ropg-kd") if u in units), None) or "rouge1@expected"
    panels = [(("ropg-rl", "ropg-kd"), watched, f"ROPG: dev {watched}"),
              (("rspg-pre", "rspg-post"), "loss", "RSPG: dev KL loss")]
    panels = [p for p in panels if any(units.get(u, {}).get("eval_history") for u in p[0])]
    fits = [u for u in ("rspg-pre", "rspg-post") if any("success_rate" in r for r in units.get(u, {}).get("history", []))]
    if plt is None or not panels:
        return False
    fig, axes = plt.subplots(1, len(panels) + bool(fits), figsize=(5.4 * (len(panels) + bool(fits)), 3.8),
                             squeeze=False)
    if fits:  # can the selector fit its training split? batch success (train mode) against the dev success
        ax = axes[0][-1]
        for name, colour in zip(fits, ("tab:blue", "tab:orange")):
            u = units[name]
            every = max(1, int(u["eval_history"][0]["step"]) if u.get("eval_history") else 10)
            hist = [r for r in u["history"] if r.get("success_rate") is not None]
            windows = [hist[i:i + every] for i in range(0, len(hist), every)]
            ax.plot([w[-1]["step"] for w in windows], [sum(r["success_rate"] for r in w) / len(w) for w in windows],
                    linestyle="--", color=colour, label=f"{DISPLAY[name]} train batches")
            dev = [r for r in u.get("eval_history", []) if r.get("success_rate") is not None]
            ax.plot([r["step"] for r in dev], [r["success_rate"] for r in dev], marker=".", color=colour,
                    label=f"{DISPLAY[name]} dev")
            major = (u.get("fit_diagnostics") or {}).get("train", {}).get("majority_rate")
            if major is not None:
                ax.axhline(major, color=colour, linewidth=0.6, linestyle=":")
        ax.set_title("RSPG: success rate (dotted: train majority rate)")
        ax.set_xlabel("optimizer step")
        ax.legend(fontsize=7)
    for ax, (names, key, title) in zip(axes[0], panels):
        for name in names:
            u = units.get(name)
            if (u or {}).get("eval_history"):
                plot_dev_curve(ax, u, key, DISPLAY[name])
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def report(args: argparse.Namespace) -> dict:
    units = load_units(args.out, args.setting_name)
    summary = summarise(units)
    first = next(iter(units.values()), {})
    out = {"benchmark": NAME, "command": command_line(args.argv), "setting": args.setting_name, "written": now(),
           "machine_line": unit_machine_line(first),
           "precision": first.get("precision"), "units": units, "summary": summary,
           "verdict": verdict(summary), "reads_document": reads_document_verdict(summary),
           "paper_table3_rouge1_rougeL": PAPER_TABLE3, "paper_table4_success_rate_pre_post": PAPER_TABLE4}
    md = to_markdown(out)
    slim = json.loads(json.dumps({**out, "units": {k: {f: u.get(f) for f in ("key", "commit", "finished", "wall_s")}
                                                   for k, u in units.items()}}, default=str))
    write_results(NAME, slim, md, args.out, volatile=report_volatile(args))
    plot_curves(units, args.out / f"{NAME}_curves.png")
    return slim


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setting_arguments(parser, NAME, quick_help="smoke setting (10-20 minutes on a loaded CPU)",
                          scale_help="GPU setting (add --device cuda)")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = argv
    args.setting_name = setting_name(args)
    if args.report:
        return report(args)
    require_pfg(parser, args.data)
    ctx = Context(args, SETTINGS[args.setting_name])
    print(f"[{NAME}] {args.setting_name}: " + ", ".join(f"{r} {len(v)}" for r, v in ctx.roles.items())
          + f" (data {ctx.digest})", flush=True)
    ctx.run(ORDER, lambda unit, key: run_unit(ctx, unit), report=lambda: report(args),
            depends=lambda unit: DEPENDS.get(unit, ()),
            report_paths=[args.out / f"{NAME}.md", args.out / f"{NAME}.json", args.out / f"{NAME}_curves.png"])
    return report(args)


if __name__ == "__main__":
    main()
