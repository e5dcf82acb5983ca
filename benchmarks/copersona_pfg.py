"""CoPersona on Persuasion-for-Good users at learning scale (``../shared/EXPERIMENTS.md``): plateaus, seeds, controls.

What it runs (Zhang, Wang et al., KDD 2026, Tables 1, 4 and 5, in direction):

* **Users** (:func:`personakit.data.copersona_users.build_pfg_users`): the PFG workers
  (persuaders and persuadees alike: a user is a worker id, in either role) with at least
  2 dialogues; the history is the user's own merged turns in all but the held-out
  dialogues, the most recent 8; users whose history has fewer than ``min_history_words``
  (40) words are left out ("enough text").  All the users are in the facet schema, the
  summaries and the graph.
* **Items** (one item = one reply of a user to the other participant, the last 3 turns
  as input): the test items come from each user's *last* dialogue (up to
  ``test_per_user`` per user, then a seeded sample of ``test``); the training items from
  the user's second-to-last dialogue when the user has 3 or more (the builder's train
  dialogue).  Those dialogues are split by a seeded draw of ``dev_fraction`` of them
  into dev dialogues; the rest train.  A train or dev item whose dialogue is some user's
  test dialogue (both participants are users) is dropped, so no dialogue is in two
  splits.  **Users overlap between splits, as the task defines it**: CoPersona
  personalises known users, each a node of the graph with facets from its history, and
  the paper's splits are per user in time (earlier held-out reviews train, the
  second-to-last validates, the last tests).  The data unit counts users, dialogues and
  items per split and the overlaps.
* **Facets** (one unit, cached): schema induction (one facet per cluster) and the
  schema-guided summaries of every user by the embedded SmolLM2-135M-Instruct
  (``dtype="auto"``, batch 16), the LLM's own reliability labels kept beside the
  evidence-graded ones (:func:`~personakit.facets.evidence_reliability`, the labels the
  systems use); seconds per user; the facet-biased fraction (Table 4) under both labels;
  the structured-output success rates of free JSON (first try, after retry) against
  schema-guided decoding.
* **Graph** (item 4): edges, degree distribution, isolated users, per-facet edges of the
  benchmark's multiplex graph (MiniLM facet embeddings, ``top_k`` 5, threshold 0.35),
  under evidence labels and under the LLM's labels, and the two label sets measured
  against each other (agreement, Cohen's kappa, confusion).
* **Systems** (SmolLM2-135M-Instruct + LoRA r 16, frozen weights in bf16 where the
  hardware has a fast path): Non-Perso, RAG, PAG, CoPersona, w/o parametric, w/o
  non-parametric; 3 seeds for CoPersona and RAG, 1 for the rest.  The dev loss is
  evaluated every ``eval_steps``; training stops when it has not improved by 1%
  (relative) for ``patience`` evaluations (or at ``max_steps``), and the best weights are
  kept (the shared trainer's ``early_stopping_*`` / ``load_best_model_at_end``).
* **Controls** (the trained CoPersona of seed 0 at test, no retraining): **random
  neighbours** at the same degree (:func:`~personakit.graph.random_neighbors`, every
  layer; both the soft prompt's graph and the peer context change: does the graph
  matter?), **swapped own facets** (:func:`~personakit.models.copersona.swap_own_facets`,
  a seeded derangement: every user reads another user's facet summaries as its own;
  neighbours unchanged: does the persona matter?) and **no similarity scores**
  (:func:`~personakit.models.copersona.without_peer_similarity`: the peer context without
  its scores).
* **Sanity rows** (no model trained): the other participant's last turn copied, and the
  most frequent training reply, scored like the systems (no BPC).
* **Test scoring**: ROUGE-1 / ROUGE-L, METEOR, BLEU, BERTScore (MiniLM), bits per
  character of the references under the model (teacher forcing: more sensitive than
  the overlap metrics to whether an input is used), the shares of distinct replies and
  of replies that run past one turn; mean ± std over seeds; against RAG a paired t-test
  and a paired bootstrap 95% interval per example (:func:`personakit.eval.paired_comparison`,
  scores averaged over seeds); each control against the same trained model.

Every part is a **unit** stored as ``benchmarks/results/copersona_pfg/<setting>/<unit>-<key>.json``
(``key``: a hash of its settings, the data digest and the keys of the units it depends on);
``--commit`` commits each file as soon as it is written.  A rerun skips finished units; the
LLM cache, the facet store and the checkpoints live in the work folder (outside the
repository) and a unit's training resumes from its checkpoints (``resume_from="latest"``).
The control units rebuild the trained CoPersona from its checkpoints (retrained when the
work folder lost them).  ``--report`` rebuilds ``benchmarks/results/copersona_pfg.{md,json}``
and ``copersona_pfg_curves.png`` from whatever units exist.

Settings:

* ``default`` (CPU, learning scale): 251 users, 300 test items (at most 2 per user, from
  212 users), 813 train items (84 users) and 64 of the 163 dev items (14 dialogues); 5
  facets; prompts of at most 384 tokens (4 history items of 32 tokens, 128 tokens of peer
  context; the CoPersona prompts average 282 tokens and 14% of them exceed 352), targets of
  40 tokens; batch 8, learning rate 2e-4, budget 200 steps (about 2
  epochs), dev loss every 25 steps, patience 3; 32 new tokens.  Measured on this 2-core
  AMD EPYC (AVX512-BF16, no AMX; frozen weights in bf16) with one thread and a 1-minute
  load average of 5-6.6 (five other jobs on the two cores, so about a third of a core):
  54 s per training step of 8 items (320-token cap), 2.1 s per dev item, 1.9 s per test
  prediction and 1.85 s per test likelihood; the quick run's facet stage 5.4 s per user
  (3 facets).  So one trained unit is at most about 3.6 h at that load (200 steps 3.0 h,
  8 dev evaluations 18 min, the test 19 min; less when the dev loss plateaus), which is
  about 70 min on one free core and 40-50 min on the two idle cores with two threads; a
  control about 19 min at that load (6 min on a free core); the facet unit about 40 min
  at that load.  In all 10 trained units and 3 controls: about 13 CPU hours on a free
  core (8 h on the idle machine, up to 38 h at the load measured), so run it with
  ``--commit --budget-hours`` over several sessions.
* ``--quick``: a smoke test of every unit on real data (24 users, 3 facets, 6 steps, 12
  test items, 2 seeds for CoPersona and RAG): 18.9 minutes at the load above, every unit
  run; far too small for conclusions.
* ``--scale`` (GPU; add ``--device cuda``): every user and test item, 768-token prompts,
  64-token targets, budget 3,000 steps.

    python benchmarks/copersona_pfg.py --commit --budget-hours 2.5   # default, resumable
    python benchmarks/copersona_pfg.py --report                       # tables from the finished units
    python benchmarks/copersona_pfg.py --quick --work-dir /tmp/cpfg_quick --out /tmp/cpfg_quick_out
    python benchmarks/copersona_pfg.py --scale --device cuda
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (UnitContext, UnitStore, add_run_arguments, add_setting_arguments, command_line,  # noqa: E402
                     unit_machine_line, machines_line, now, plot_dev_curve, pyplot, require_pfg, sanity_replies,
                     save_figure, setting_name, report_volatile, trim_callback, write_results)

NAME = "copersona_pfg"
CODE_VERSION = 1  # bump when a change makes earlier unit files incomparable

SETTINGS = {
    "default": dict(min_history_words=40, max_users=None, history_turns=3, max_profile_items=8, dev_fraction=0.15,
                    train=None, dev=64, test=300, test_per_user=2,
                    facets=dict(num_facets=5, num_clusters=6, schema_items=8, summary_items=6, batch_size=16),
                    structured_prompts=24, top_k=5, threshold=0.35,
                    model=dict(graph_hidden=512, num_virtual_tokens=20, retrieval_k=4, max_neighbors=3,
                               max_item_tokens=32, max_peer_tokens=128, max_prompt_tokens=384, max_target_tokens=41),
                    batch=8, lr=2e-4, max_steps=200, eval_steps=25, patience=3, new_tokens=32, bertscore=True,
                    seeds={"rag": 3, "copersona": 3}),
    "quick": dict(min_history_words=40, max_users=24, history_turns=3, max_profile_items=8, dev_fraction=0.15,
                  train=32, dev=8, test=12, test_per_user=1,
                  facets=dict(num_facets=3, num_clusters=3, schema_items=6, summary_items=4, batch_size=16),
                  structured_prompts=4, top_k=5, threshold=0.35,
                  model=dict(graph_hidden=64, num_virtual_tokens=4, retrieval_k=2, max_neighbors=2,
                             max_item_tokens=32, max_peer_tokens=96, max_prompt_tokens=192, max_target_tokens=25),
                  batch=4, lr=2e-4, max_steps=6, eval_steps=2, patience=2, new_tokens=8, bertscore=True,
                  seeds={"rag": 2, "copersona": 2}),
    "scale": dict(min_history_words=40, max_users=None, history_turns=3, max_profile_items=8, dev_fraction=0.15,
                  train=None, dev=200, test=None, test_per_user=None,
                  facets=dict(num_facets=5, num_clusters=8, schema_items=8, summary_items=6, batch_size=32),
                  structured_prompts=200, top_k=5, threshold=0.35,
                  model=dict(graph_hidden=512, num_virtual_tokens=20, retrieval_k=4, max_neighbors=3,
                             max_item_tokens=64, max_peer_tokens=256, max_prompt_tokens=768, max_target_tokens=64),
                  batch=8, lr=1e-4, max_steps=3000, eval_steps=100, patience=5, new_tokens=64, bertscore=True,
                  seeds={"rag": 3, "copersona": 3}),
}

SYSTEMS = {"nonperso": "Non-Perso", "rag": "RAG", "pag": "PAG", "copersona": "CoPersona",
           "no_parametric": "w/o parametric", "no_nonparametric": "w/o non-parametric"}
"""Variant -> row label (the recipe's labels, paper Tables 1 and 5)."""
CONTROLS = {"ctrl-random-neighbors": "random neighbours (same degree)",
            "ctrl-swapped-facets": "own facets swapped with another user's",
            "ctrl-no-scores": "peer context without similarity scores"}
"""Control unit -> row label; each runs the trained CoPersona of seed 0 on the test items."""
BASELINE = "RAG"
FULL = "CoPersona"
ABLATIONS = ("no_parametric", "no_nonparametric")
"""The paper's Table 5 ablations, each tested against full CoPersona of the same seed (0)."""
SANITY = {"copy_last_turn": "copy of the other participant's last turn",
          "most_frequent_reply": "most frequent training reply"}
"""Sanity rows (``../shared/EXPERIMENTS.md`` §5): replies that need no trained model."""
METRIC_KEYS = ["rouge1", "rougeL", "meteor", "bleu", "bertscore_f1", "bpc", "distinct", "multi_turn"]
HEADERS = ["R-1", "R-L", "METEOR", "BLEU", "BERT-F1", "BPC", "distinct", "multi-turn"]
TESTED = ("rouge1", "rougeL", "meteor", "bpc")
"""Per-example keys of the paired tests (BPC: lower is better)."""
TESTED_NAMES = ("ROUGE-1", "ROUGE-L", "METEOR", "BPC")
LEVELS = ("none", "weak", "moderate", "strong")

PAPER_TABLE5 = {  # Books, Qwen2.5-7B: R-1, R-L, METEOR, BLEU
    "CoPersona": (0.3953, 0.2254, 0.3349, 15.4703),
    "w/o non-parametric": (0.3822, 0.2190, 0.3149, 13.3008),
    "w/o parametric": (0.3673, 0.2067, 0.2890, 11.3355),
}
PAPER_TABLE1_BOOKS_7B = {  # R-1, METEOR, BLEU, BERTScore
    "Non-Perso": (0.2907, 0.1735, 1.9766, 0.5004), "RAG": (0.3149, 0.2101, 3.6874, 0.5083),
    "PAG": (0.3136, 0.2378, 4.6762, 0.4992), "CoPersona": (0.3953, 0.3349, 15.4703, 0.5729),
}
PAPER_FACET_BIASED = {"Books": 0.9748, "Movies & TV": 1.0, "CDs & Vinyl": 0.8826}


def unit_order(setting: dict) -> list[str]:
    """The units in run order: data, sanity rows, facets, graph, the headline systems and controls, the rest, more
    seeds."""
    order = ["data", "sanity", "facets", "graph", "rag-s0", "copersona-s0", *CONTROLS,
             "nonperso-s0", "pag-s0", "no_parametric-s0", "no_nonparametric-s0"]
    for seed in range(1, max(setting["seeds"].values())):
        order += [f"{v}-s{seed}" for v in ("rag", "copersona") if seed < setting["seeds"].get(v, 1)]
    return order


def depends(unit: str) -> tuple[str, ...]:
    """A unit's direct inputs: its key hashes theirs, so a changed input reruns what depends on it."""
    if unit == "data":
        return ()
    if unit in ("facets", "sanity"):
        return ("data",)
    if unit in CONTROLS:
        return ("copersona-s0",)
    return ("facets",)  # the graph unit and every system: the graph is rebuilt from the facets


def parse_system(unit: str) -> tuple[str, int]:
    """``"copersona-s2"`` -> ``("copersona", 2)``."""
    variant, seed = unit.rsplit("-s", 1)
    return variant, int(seed)


# ------------------------------------------------------------------------------ pure pieces
def unit_key(unit: str, setting: dict, digest: str, deps: Sequence[str] = (), device: Optional[str] = None,
             dtype: str = "auto") -> str:
    """A unit's key: a hash of the code version, the settings (less the seed counts), the data digest and its inputs' keys."""
    return UnitStore.key({"v": CODE_VERSION, "unit": unit, "setting": {k: v for k, v in setting.items() if k != "seeds"},
                          "digest": digest, "deps": list(deps), "device": device or "cpu", "dtype": dtype})


def _sample(rows: list, k: Optional[int], seed: int) -> list:
    """A seeded sample of ``k`` rows in their order (all when ``k`` is ``None`` or not smaller)."""
    if k is None or len(rows) <= k:
        return list(rows)
    keep = sorted(random.Random(seed).sample(range(len(rows)), k))
    return [rows[i] for i in keep]


def history_words(user: Any) -> int:
    """Words in a user's history (all items)."""
    return sum(len(it.text.split()) for it in user.items)


def split_items(data: Any, setting: dict, seed: int = 0) -> dict[str, Any]:
    """Users and train / dev / test items of the benchmark (the module docstring's construction).

    Args:
        data: :class:`~personakit.data.copersona_users.CoPersonaUsers` of every user.
        setting: ``min_history_words``, ``max_users``, ``dev_fraction``, ``train``, ``dev``, ``test``,
            ``test_per_user``.
        seed: the sampling seed.

    Returns:
        ``{"users", "train", "dev", "test", "counts"}``.
    """
    kept = [u for u in data.users if history_words(u) >= setting["min_history_words"]]
    users = _sample(kept, setting["max_users"], seed + 3)
    ids = {u.user_id for u in users}
    test_dialogues = {ex.dialogue_id for ex in data.test}  # every user's, kept or not
    pool = [ex for ex in data.train if ex.user_id in ids]
    leaked = [ex for ex in pool if ex.dialogue_id in test_dialogues]
    pool = [ex for ex in pool if ex.dialogue_id not in test_dialogues]
    dialogues = sorted({ex.dialogue_id for ex in pool})
    n_dev = min(len(dialogues) - 1, max(1, round(setting["dev_fraction"] * len(dialogues)))) if len(dialogues) > 1 else 0
    dev_dialogues = set(random.Random(seed + 5).sample(dialogues, n_dev)) if n_dev > 0 else set()
    train_all = [ex for ex in pool if ex.dialogue_id not in dev_dialogues]
    dev_all = [ex for ex in pool if ex.dialogue_id in dev_dialogues]
    train = _sample(train_all, setting["train"], seed + 6)
    dev = _sample(dev_all, setting["dev"], seed + 7)
    by_user: dict[str, list] = {}
    for ex in data.test:
        if ex.user_id in ids:
            by_user.setdefault(ex.user_id, []).append(ex)
    per_user = [ex for i, u in enumerate(sorted(by_user))
                for ex in _sample(by_user[u], setting["test_per_user"], seed + 100 + i)]
    test = _sample(per_user, setting["test"], seed + 9)
    splits = {"train": train, "dev": dev, "test": test}

    def users_of(rows: list) -> set:
        return {ex.user_id for ex in rows}

    roles = Counter(next((ex.agent for ex in data.test if ex.user_id == u.user_id), "none") for u in users)
    counts = {
        "candidates": len(data.users), "little_text": len(data.users) - len(kept), "users": len(users),
        "test_role": dict(sorted(roles.items())),
        "users_with_train_dialogue": len(users_of(pool) | {ex.user_id for ex in leaked}),
        "leaked_items_dropped": len(leaked), "dev_dialogues": len(dev_dialogues),
        "pools": {"train": len(train_all), "dev": len(dev_all), "test": len(per_user),
                  "test_all": sum(len(v) for v in by_user.values())},
        "splits": {name: {"items": len(rows), "users": len(users_of(rows)),
                          "dialogues": len({ex.dialogue_id for ex in rows})} for name, rows in splits.items()},
        "user_overlap": {"train&test": len(users_of(train) & users_of(test)),
                         "dev&test": len(users_of(dev) & users_of(test)),
                         "train&dev": len(users_of(train) & users_of(dev))},
        "dialogue_overlap": sum(len({ex.dialogue_id for ex in splits[a]} & {ex.dialogue_id for ex in splits[b]})
                                for a, b in (("train", "dev"), ("train", "test"), ("dev", "test"))),
        "history_words_median": statistics.median([history_words(u) for u in users]) if users else 0,
        "reference_words_mean": statistics.fmean([len(ex.response.split()) for ex in test]) if test else 0.0,
    }
    return {"users": users, **splits, "counts": counts}


def data_digest(split: dict) -> str:
    """A hash of the users' histories and every split's item ids and references."""
    h = hashlib.sha256()
    for u in split["users"]:
        h.update(f"user|{u.user_id}|{','.join(it.id for it in u.items)}\n".encode())
    for name in ("train", "dev", "test"):
        for ex in split[name]:
            h.update(f"{name}|{ex.id}|{ex.user_id}|{ex.response}\n".encode())
    return h.hexdigest()[:16]


def regrade(facets: Any, levels: Sequence[int]) -> Any:
    """A user's :class:`~personakit.facets.UserFacets` with other reliability ``levels`` (0-3 per facet).

    The summariser's rule: a facet graded none or weak gets the placeholder, moderate or
    strong the LLM's own summary (kept in ``llm_summary``); a facet whose reply never
    validated (no ``llm_summary``) stays ``none``.
    """
    from personakit.facets import PLACEHOLDER

    out = []
    for f, level in zip(facets.facets, levels):
        label = LEVELS[int(level)] if f.llm_summary else "none"
        out.append(f.model_copy(update={"reliability": label, "summary": f.llm_summary if label in ("moderate", "strong")
                                        else PLACEHOLDER}))
    return facets.model_copy(update={"facets": out})


def graph_stats(graph: Any) -> dict[str, Any]:
    """Edges, degree distribution, isolated users and per-facet edges of a :class:`~personakit.graph.MultiplexGraph`.

    The degree of a user is its number of neighbours in the combined (user-level) layer, the
    neighbours whose messages it receives; a user is *isolated* when it has no neighbour and is
    no one's neighbour.
    """
    n = graph.num_users
    comb = graph.neighbor_index[-1]  # (N, K)
    valid = comb >= 0
    degree = valid.sum(1).tolist()
    heard = set(comb[valid].tolist())
    pairs = {(int(v), u) for u in range(n) for v in comb[u][valid[u]].tolist()}
    per_facet = []
    for m, name in enumerate(graph.facet_names):
        layer = graph.neighbor_index[m] >= 0
        per_facet.append({"facet": name, "edges": int(layer.sum()),
                          "users_with_neighbours": float(layer.any(1).float().mean()) if n else 0.0})
    return {"users": n, "edges": int(valid.sum()), "mean_degree": float(statistics.fmean(degree)) if n else 0.0,
            "degree_histogram": {str(k): c for k, c in sorted(Counter(degree).items())},
            "no_neighbours": sum(d == 0 for d in degree) / n if n else 0.0,
            "isolated": sum(1 for u in range(n) if degree[u] == 0 and u not in heard) / n if n else 0.0,
            "reciprocal": (sum((u, v) in pairs for v, u in pairs) / len(pairs)) if pairs else 0.0,
            "per_facet": per_facet, "top_k": graph.top_k, "threshold": graph.threshold,
            "combined_threshold": graph.combined_threshold}


def label_agreement(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]],
                    facet_names: Sequence[str] = ()) -> dict[str, Any]:
    """Two reliability labellings (per user, per facet, levels 0-3) against each other.

    Returns:
        ``agreement`` (share of equal labels), Cohen's ``kappa`` (``nan`` when the chance
        agreement is 1, e.g. both sides give every pair the same label), ``within_one`` (labels
        at most one level apart), ``confusion`` (``[a level][b level]`` counts), the label
        counts of each side and the agreement per facet.
    """
    flat = [(int(x), int(y)) for ra, rb in zip(a, b) for x, y in zip(ra, rb)]
    n = len(flat)
    confusion = [[0] * len(LEVELS) for _ in LEVELS]
    for x, y in flat:
        confusion[x][y] += 1
    agree = sum(confusion[i][i] for i in range(len(LEVELS))) / n if n else float("nan")
    pa = [sum(confusion[i]) / n for i in range(len(LEVELS))] if n else []
    pb = [sum(row[j] for row in confusion) / n for j in range(len(LEVELS))] if n else []
    chance = sum(x * y for x, y in zip(pa, pb))
    kappa = (agree - chance) / (1 - chance) if n and chance < 1 else float("nan")
    per_facet = {}
    for m, name in enumerate(facet_names):
        col = [(int(ra[m]) == int(rb[m])) for ra, rb in zip(a, b)]
        per_facet[name] = sum(col) / len(col) if col else float("nan")
    return {"n": n, "agreement": agree, "kappa": kappa,
            "within_one": sum(abs(x - y) <= 1 for x, y in flat) / n if n else float("nan"),
            "confusion": confusion,
            "counts_a": {LEVELS[i]: sum(confusion[i]) for i in range(len(LEVELS))},
            "counts_b": {LEVELS[j]: sum(row[j] for row in confusion) for j in range(len(LEVELS))},
            "per_facet": per_facet}


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(statistics.fmean(vals)) if vals else float("nan")


def _compare(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    from personakit.eval import paired_comparison

    return paired_comparison(list(a), list(b), n_resamples=5000, seed=0).to_dict()


def _per_example(units: Sequence[dict], key: str) -> list[float]:
    """One system's per-example ``key`` averaged over its seeds (the same test items in each)."""
    return [statistics.fmean(v) for v in zip(*[u["test"]["per_example"][key] for u in units])]


def summarise(units: dict[str, dict]) -> dict[str, Any]:
    """The test table (mean and std over seeds), the tests against RAG and the controls, from the stored units.

    Args:
        units: ``{unit name: unit dict}`` (any subset of :func:`unit_order`; missing parts are left out).
    """
    systems: dict[str, list[dict]] = {}
    for name, u in units.items():
        if u.get("kind") == "system":
            systems.setdefault(u["system"], []).append(u)
    rows: dict[str, Any] = {}
    for label in SYSTEMS.values():
        us = sorted(systems.get(label, []), key=lambda u: u["seed"])
        if us:
            systems[label] = us
            rows[label] = {k: [u["test"]["metrics"].get(k) for u in us] for k in METRIC_KEYS}
            rows[label]["seeds"] = len(us)
    tests: dict[str, Any] = {}
    base = systems.get(BASELINE)
    if base:
        for label, us in systems.items():
            if label != BASELINE:
                tests[label] = {k: _compare(_per_example(us, k), _per_example(base, k)) for k in TESTED}
    controls: dict[str, Any] = {}
    full0 = next((u for u in systems.get(FULL, []) if u["seed"] == 0), None)
    for name, label in CONTROLS.items():
        c = units.get(name)
        if not c:
            continue
        entry = {"label": label, "metrics": {k: c["test"]["metrics"].get(k) for k in METRIC_KEYS},
                 "note": c.get("note", "")}
        if full0:
            entry["vs_full"] = {k: _compare(c["test"]["per_example"][k], full0["test"]["per_example"][k])
                                for k in TESTED}
        if base:
            entry["vs_baseline"] = {k: _compare(c["test"]["per_example"][k], _per_example(base, k)) for k in TESTED}
        controls[name] = entry
    ablations: dict[str, Any] = {}
    for variant in ABLATIONS:
        u = next((u for u in systems.get(SYSTEMS[variant], []) if u["seed"] == 0), None)
        if u and full0:
            ablations[SYSTEMS[variant]] = {k: _compare(u["test"]["per_example"][k], full0["test"]["per_example"][k])
                                           for k in TESTED}
    sanity = {cond: c["metrics"] for cond, c in (units.get("sanity") or {}).get("conditions", {}).items()}
    return {"rows": rows, "tests": tests, "controls": controls, "ablations": ablations, "baseline": BASELINE,
            "sanity": sanity}


def verdict(summary: dict) -> str:
    """Reproduced in direction / not reproduced / inconclusive, for CoPersona against RAG on ROUGE-1 and ROUGE-L."""
    test = summary.get("tests", {}).get(FULL)
    if not test:
        return f"not yet measured ({FULL} or {BASELINE} missing)"
    keys = ("rouge1", "rougeL")
    up = all(test[k]["significant"] and test[k]["mean_difference"] > 0 for k in keys)
    down = any(test[k]["significant"] and test[k]["mean_difference"] < 0 for k in keys)
    if up:
        return f"reproduced in direction ({FULL} > {BASELINE} on ROUGE-1 and ROUGE-L, p < 0.05)"
    if down:
        return f"not reproduced ({FULL} significantly below {BASELINE} on ROUGE-1 or ROUGE-L)"
    return f"inconclusive (no significant difference between {FULL} and {BASELINE} on both ROUGE-1 and ROUGE-L)"


CONTROL_SIGNAL = {"ctrl-random-neighbors": "the graph (which users are linked)",
                  "ctrl-swapped-facets": "the user's own facets",
                  "ctrl-no-scores": "the similarity scores of the peer context"}


def controls_verdict(summary: dict) -> list[str]:
    """One line per control: does replacing the signal hurt the trained CoPersona (ROUGE-L down or BPC up, p < 0.05)?"""
    lines = []
    for name, c in summary.get("controls", {}).items():
        vs = c.get("vs_full")
        if not vs:
            lines.append(f"{c['label']}: not compared ({FULL} seed 0 missing)")
            continue
        rl, bpc = vs["rougeL"], vs["bpc"]
        hurt = (rl["significant"] and rl["mean_difference"] < 0) or (bpc["significant"] and bpc["mean_difference"] > 0)
        helped = (rl["significant"] and rl["mean_difference"] > 0) or (bpc["significant"] and bpc["mean_difference"] < 0)
        what = CONTROL_SIGNAL.get(name, name)
        if hurt and not helped:
            tail = f"the model uses {what}"
        elif helped and not hurt:
            tail = f"the model does better without {what}: it does not use it well"
        elif hurt and helped:
            tail = f"mixed: ROUGE-L and BPC disagree about {what}"
        else:
            tail = f"no detectable use of {what}"
        lines.append(f"{c['label']}: ROUGE-L {_p(rl)}; BPC {_p(bpc)} -> {tail}")
    return lines


def _p(c: dict) -> str:
    if c["p_value"] is None or (isinstance(c["p_value"], float) and math.isnan(c["p_value"])):
        return f"{c['mean_difference']:+.4f} (the same difference on every item: no test)"
    return f"{c['mean_difference']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}], p {c['p_value']:.3g}"


def _cell(values: Sequence[Optional[float]], digits: int = 4) -> str:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "–"
    mean = statistics.fmean(vals)
    return f"{mean:.{digits}f}" + (f" ± {statistics.stdev(vals):.{digits}f}" if len(vals) > 1 else "")


def _digits(key: str) -> int:
    return 2 if key == "bleu" else 3 if key in ("distinct", "multi_turn") else 4


def _paper_cells(label: str) -> str:
    t5, t1 = PAPER_TABLE5.get(label), PAPER_TABLE1_BOOKS_7B.get(label)
    if t5:
        return " / ".join(f"{v:g}" for v in t5)
    if t1:
        return f"{t1[0]:g} / – / {t1[1]:g} / {t1[2]:g}"
    return "–"


def to_markdown(report_: dict) -> str:
    """The results page: data, facets, graph, training, the test table with controls and tests, samples, the paper."""
    units, s = report_["units"], report_["summary"]
    lines = [f"# CoPersona on Persuasion-for-Good users, learning scale ({report_['setting']} setting)", "",
             f"Command: `{report_['command']}`; written {report_['written']}.", "", report_.get("machine_line", ""), ""]
    if report_.get("trained_on"):
        lines += [report_["trained_on"], ""]
    missing = [u for u in report_.get("order", []) if u not in units]
    if missing:
        lines += [f"Units still to run: {', '.join(missing)} (this page shows what is finished).", ""]
    lines += [f"**Verdict: {verdict(s)}.**", ""]
    cv = controls_verdict(s)
    if cv:
        lines += ["**What the controls say** (each against the same trained CoPersona, seed 0; difference control "
                  "- full, paired bootstrap 95% interval, t-test p):", ""] + [f"- {line}." for line in cv] + [""]
    data = units.get("data")
    if data:
        c = data["counts"]
        lines += ["## Data", "",
                  f"Persuasion-for-Good workers with at least 2 dialogues (either role): {c['candidates']}; "
                  f"{c['little_text']} left out with fewer than {data['settings']['min_history_words']} history words; "
                  f"**{c['users']} users** (role in their test dialogue: "
                  + ", ".join(f"{k} {v}" for k, v in c["test_role"].items())
                  + f"), median history {c['history_words_median']} words.  Test items from each user's last "
                  f"dialogue ({c['pools']['test_all']} in all, at most {data['settings']['test_per_user']} per user, "
                  f"then a seeded sample); train and dev items from the train dialogues of the "
                  f"{c['users_with_train_dialogue']} users with 3 or more dialogues, {c['dev_dialogues']} of those "
                  f"dialogues drawn for dev; {c['leaked_items_dropped']} train items dropped because their dialogue is "
                  f"another user's test dialogue.  Data digest {data['digest']}.", "",
                  "| split | items | users | dialogues |", "| --- | ---: | ---: | ---: |"]
        for name, row in c["splits"].items():
            lines.append(f"| {name} | {row['items']} | {row['users']} | {row['dialogues']} |")
        ov = c["user_overlap"]
        lines += ["", f"Users in two splits (by design: CoPersona personalises known users): train & test "
                  f"{ov['train&test']}, dev & test {ov['dev&test']}, train & dev {ov['train&dev']}; dialogues in two "
                  f"splits: {c['dialogue_overlap']}.  Mean reference length {c['reference_words_mean']:.1f} words.", ""]
    facets = units.get("facets")
    if facets:
        st = facets["stats"]
        lines += ["## Facets", "",
                  f"SmolLM2-135M-Instruct ({facets.get('llm_dtype')}), schema-guided decoding, batch "
                  f"{data['settings']['facets']['batch_size'] if data else '?'}: schema {facets['schema_s']:.0f} s, "
                  f"summaries {st['seconds']:.0f} s for {st['summarized']} users ({st['reused']} reused from the store); "
                  f"**{facets['seconds_per_user']:.1f} s per user**; {st['failures']} of {st['prompts']} summary "
                  f"prompts never valid; {st['dropped_quotes']} ungrounded quotes dropped.", "",
                  "Schema: " + "; ".join(f"**{f['name']}**: {f['definition']}" for f in facets["schema"]["facets"]), "",
                  f"Facet-biased users (Table 4; at least one facet not 'strong'): evidence labels "
                  f"{facets['facet_biased']['evidence']:.2%}, the LLM's labels {facets['facet_biased']['llm']:.2%} "
                  "(paper: " + ", ".join(f"{k} {v:.2%}" for k, v in PAPER_FACET_BIASED.items()) + ").", ""]
        sr = facets.get("structured")
        if sr:
            lines += [f"Structured output of SmolLM2-135M: free JSON on {sr['prompts']} summary prompts parses "
                      f"{sr['first_try']:.0%} at the first try and {sr['after_retry']:.0%} after two retries with the "
                      f"validation error; schema-guided decoding (the {st['prompts']} summary prompts) "
                      f"{1 - st['failures'] / max(1, st['prompts']):.0%}.", ""]
        if facets.get("examples"):
            lines += ["Examples of summaries (user, facet, the LLM's label, the evidence label):", ""]
            for e in facets["examples"]:
                lines.append(f"- {e['user']} / {e['facet']} ({e['llm']} / {e['evidence']}): {e['summary']}"
                             + (f" — quotes: {'; '.join(e['quotes'])}" if e["quotes"] else ""))
            lines.append("")
    graph = units.get("graph")
    if graph:
        lines += ["## Graph", "", "| labels | users | edges | mean degree | no neighbour | isolated | reciprocal | "
                  "degree histogram | edges per facet |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
        for which in ("evidence", "llm"):
            g = graph[which]
            lines.append(f"| {which} | {g['users']} | {g['edges']} | {g['mean_degree']:.2f} | {g['no_neighbours']:.1%} | "
                         f"{g['isolated']:.1%} | {g['reciprocal']:.1%} | "
                         + ", ".join(f"{k}: {v}" for k, v in g["degree_histogram"].items()) + " | "
                         + ", ".join(f"{f['facet']} {f['edges']}" for f in g["per_facet"]) + " |")
        la = graph["labels"]
        lines += ["", f"Reliability labels, the LLM's (rows) against the evidence grading (columns), {la['n']} "
                  f"(user, facet) pairs: agreement {la['agreement']:.1%}, Cohen's kappa "
                  + ("n/a" if la["kappa"] is None or (isinstance(la["kappa"], float) and math.isnan(la["kappa"]))
                     else f"{la['kappa']:.3f}")
                  + f", within one level {la['within_one']:.1%}.", "",
                  "| LLM \\ evidence | " + " | ".join(LEVELS) + " |", "| --- |" + " ---: |" * len(LEVELS)]
        for i, level in enumerate(LEVELS):
            lines.append(f"| {level} | " + " | ".join(str(v) for v in la["confusion"][i]) + " |")
        lines.append("")
    if s["rows"]:
        lines += ["## Training", "", "Dev loss every `eval_steps`; plateau: no 1% (relative) improvement for "
                  "`patience` evaluations; the best weights are kept.", "",
                  "| system | seed | steps (budget) | best step | best dev loss | converged | train min | test min | "
                  "prompt tokens (mean, cut) |", "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |"]
        for name, u in units.items():
            if u.get("kind") != "system":
                continue
            conv = "yes (plateau)" if u.get("stopped_early") else "**not converged** (budget)"
            pt = u.get("prompt_tokens") or {}
            lines.append(f"| {u['system']} | {u['seed']} | {u['steps']} / {u['total_steps']} | {u.get('best_step')} | "
                         f"{u['best_dev_loss']:.4f} | {conv} | {u['train_s'] / 60:.1f} | {u['eval_s'] / 60:.1f} | "
                         f"{pt.get('mean', float('nan')):.0f}, {pt.get('cut', float('nan')):.0%} |")
        n_test = next(u["test"]["n"] for u in units.values() if u.get("kind") == "system")
        lines += ["", f"## Test ({n_test} items)", "", "Mean ± std over seeds; BPC: bits per character of the references (lower is better). The "
                  "paper's column: Amazon Books, Qwen2.5-7B (Table 5: R-1 / R-L / METEOR / BLEU; Table 1 rows: R-1 / "
                  "– / METEOR / BLEU), so only the direction is comparable.", "",
                  "| system | seeds | " + " | ".join(HEADERS) + " | paper |",
                  "| --- | ---: | " + " | ".join(["---:"] * len(HEADERS)) + " | --- |"]
        for label, row in s["rows"].items():
            lines.append(f"| {label} | {row['seeds']} | " + " | ".join(_cell(row[k], _digits(k)) for k in METRIC_KEYS)
                         + f" | {_paper_cells(label)} |")
        for name, c in s["controls"].items():
            lines.append(f"| control: {c['label']} | 1 | "
                         + " | ".join(_cell([c["metrics"].get(k)], _digits(k)) for k in METRIC_KEYS) + " | – |")
        if s["tests"]:
            lines += ["", f"Against {BASELINE} (per-example scores averaged over seeds): mean difference, paired "
                      "bootstrap 95% interval, paired t-test p.", "",
                      "| system | " + " | ".join(TESTED_NAMES) + " |", "| --- |" + " --- |" * len(TESTED)]
            for label, t in s["tests"].items():
                lines.append(f"| {label} | " + " | ".join(_p(t[k]) for k in TESTED) + " |")
            for name, c in s["controls"].items():
                if c.get("vs_baseline"):
                    lines.append(f"| control: {c['label']} | " + " | ".join(_p(c["vs_baseline"][k]) for k in TESTED)
                                 + " |")
        if any(c.get("vs_full") for c in s["controls"].values()):
            lines += ["", f"Controls against the same trained {FULL} (seed 0): control - full.", "",
                      "| control | " + " | ".join(TESTED_NAMES) + " | note |", "| --- |" + " --- |" * len(TESTED) + " --- |"]
            for name, c in s["controls"].items():
                if c.get("vs_full"):
                    lines.append(f"| {c['label']} | " + " | ".join(_p(c["vs_full"][k]) for k in TESTED)
                                 + f" | {c.get('note', '')} |")
        if s.get("ablations"):
            full5 = PAPER_TABLE5[FULL]
            lines += ["", f"Ablations against {FULL} of the same seed (0): ablation - full (a branch that carries "
                      "signal makes its ablation lower on ROUGE / METEOR and higher on BPC); the paper's Table 5 "
                      "difference (Books, Qwen2.5-7B) beside.", "",
                      "| ablation | " + " | ".join(TESTED_NAMES) + " | paper R-1 / R-L |",
                      "| --- |" + " --- |" * len(TESTED) + " --- |"]
            for label, t in s["ablations"].items():
                paper = PAPER_TABLE5.get(label)
                cell = f"{paper[0] - full5[0]:+.4f} / {paper[1] - full5[1]:+.4f}" if paper else "–"
                lines.append(f"| {label} | " + " | ".join(_p(t[k]) for k in TESTED) + f" | {cell} |")
        lines.append("")
    if s.get("sanity"):
        lines += ["## Sanity rows (no model trained, the same test items)", "",
                  "| reply | " + " | ".join(HEADERS) + " |", "| --- | " + " | ".join(["---:"] * len(HEADERS)) + " |"]
        for cond, m in s["sanity"].items():
            lines.append(f"| {SANITY.get(cond, cond)} | "
                         + " | ".join(_cell([m.get(k)], _digits(k)) for k in METRIC_KEYS) + " |")
        lines.append("")
    if data and data.get("samples"):
        seed0 = {u["system"]: u for u in units.values() if u.get("kind") == "system" and u["seed"] == 0}
        if seed0:
            lines += ["## Samples (seed 0)", ""]
            for sm in data["samples"]:
                i = sm["index"]
                lines.append(f"- **{sm['id']}** (user {sm['user']}, {sm['agent']})")
                lines.append(f"  - last turn: {sm['last_turn']}")
                lines.append(f"  - reference: {sm['reference']}")
                for label in SYSTEMS.values():
                    if label in seed0 and i < len(seed0[label]["test"]["predictions"]):
                        lines.append(f"  - {label}: {seed0[label]['test']['predictions'][i]}")
            lines.append("")
    lines += ["## The paper", "", "Table 5 (Books, Qwen2.5-7B): " + "; ".join(
        f"{k} {' / '.join(f'{v:g}' for v in vals)}" for k, vals in PAPER_TABLE5.items())
        + " (R-1 / R-L / METEOR / BLEU).  Table 1 (Books, 7B): " + "; ".join(
        f"{k} {' / '.join(f'{v:g}' for v in vals)}" for k, vals in PAPER_TABLE1_BOOKS_7B.items())
        + " (R-1 / METEOR / BLEU / BERTScore).", ""]
    timing = [f"{u}: {units[u].get('wall_s', 0) / 60:.1f} min" for u in report_.get("order", []) if u in units]
    lines += ["Wall time per unit: " + "; ".join(timing) + ".", "",
              f"Learning curves: `{NAME}_curves.png`. Each unit file (`benchmarks/results/{NAME}/<setting>/`) names "
              "the commit that produced it."]
    return "\n".join(lines) + "\n"


def plot_curves(units: dict[str, dict], path: Path) -> bool:
    """Dev loss against optimizer steps for every trained unit: seed 0 of every system, then the extra seeds."""
    plt = pyplot()
    trained = [u for u in units.values() if u.get("kind") == "system" and u.get("eval_history")]
    if plt is None or not trained:
        return False
    panels = [("seed 0", [u for u in trained if u["seed"] == 0]), ("seeds of RAG and CoPersona",
                                                                   [u for u in trained if u["system"] in (BASELINE, FULL)])]
    panels = [p for p in panels if p[1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 3.9), squeeze=False)
    for ax, (title, us) in zip(axes[0], panels):
        for u in sorted(us, key=lambda u: (u["system"], u["seed"])):
            plot_dev_curve(ax, u, "loss", f"{u['system']} s{u['seed']}")
        ax.set_title(f"dev loss, {title}")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("dev loss")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    return True


# ------------------------------------------------------------------------------ runtime context
class Context(UnitContext):
    """The run's settings, data, store and the lazily built facets, graph, user context and backbone."""

    def __init__(self, args: argparse.Namespace, setting: dict):
        super().__init__(args, setting, NAME)
        self._encoder = self._backbone = self._graph = self._context = self._embeddings = None
        self._facets: dict[str, Any] = {}
        self._trained: dict[tuple[str, int], Any] = {}
        from personakit.data.copersona_users import build_pfg_users

        full = build_pfg_users(args.data, max_profile_items=setting["max_profile_items"],
                               history_turns=setting["history_turns"], seed=args.seed)
        self.data = split_items(full, setting, args.seed)
        self.digest = data_digest(self.data)

    def key(self, unit: str) -> str:
        return unit_key(unit, self.s, self.digest, [self.keys[d] for d in depends(unit)], self.args.device,
                        self.args.dtype)

    # -------------------------------------------------------------- models and facets
    def encoder(self):
        """MiniLM ``texts -> [n, 384]`` (facet embeddings, evidence grading, schema clusters)."""
        if self._encoder is None:
            from personakit.backbones import load_sentence_encoder

            self._encoder = load_sentence_encoder("minilm", device=self.args.device).encode
        return self._encoder

    def backbone(self):
        """A fresh copy of SmolLM2-135M-Instruct and its tokenizer (loaded once)."""
        import copy

        if self._backbone is None:
            from personakit.backbones import load_causal_lm

            self._backbone = load_causal_lm("smollm2")
        model, tok = self._backbone
        return copy.deepcopy(model), tok

    def schema(self):
        from personakit.facets import FacetSchema

        return FacetSchema.model_validate(self.units["facets"]["schema"])

    def user_facets(self, labels: str = "evidence") -> dict[str, Any]:
        """``{user: UserFacets}`` from the facets unit, with the evidence-graded or the LLM's labels."""
        if labels not in self._facets:
            from personakit.facets import UserFacets

            f = self.units["facets"]
            llm = {u: UserFacets.model_validate(v) for u, v in f["facets_llm"].items()}
            self._facets["llm"] = llm
            self._facets["evidence"] = {u: regrade(v, f["evidence_levels"][u]) for u, v in llm.items()}
        return self._facets[labels]

    def build_graph(self, labels: str = "evidence"):
        """(embeddings, graph) of the users' facets (MiniLM, exact top-k)."""
        from personakit.facets import FacetEmbedder
        from personakit.graph import build_multiplex_graph

        schema, facets = self.schema(), self.user_facets(labels)
        emb = FacetEmbedder(self.encoder()).embed([facets[u.user_id] for u in self.data["users"]], schema.names)
        graph = build_multiplex_graph(emb.embeddings, emb.reliability, top_k=self.s["top_k"],
                                      threshold=self.s["threshold"],
                                      combined_threshold=self.s["threshold"] / len(schema), facet_names=schema.names)
        return emb, graph

    @property
    def graph(self):
        if self._graph is None:
            self._embeddings, self._graph = self.build_graph("evidence")
        return self._graph

    def build_context(self, graph: Any = None):
        """The :class:`~personakit.models.copersona.CoPersonaContext` over ``graph`` (default: the benchmark's)."""
        from personakit.models.copersona import CoPersonaContext

        default = self.graph  # also computes the embeddings
        graph = graph if graph is not None else default
        _, tok = self.backbone_tokenizer()
        m = self.s["model"]
        return CoPersonaContext.build(self.data["users"], self.user_facets("evidence"), self._embeddings, graph,
                                      max_neighbors=m["max_neighbors"], max_peer_tokens=m["max_peer_tokens"],
                                      count_tokens=lambda t: len(tok(t, add_special_tokens=False)["input_ids"]))

    def backbone_tokenizer(self):
        if self._backbone is None:
            self.backbone()
        return self._backbone

    @property
    def context(self):
        if self._context is None:
            _ = self.graph
            self._context = self.build_context()
        return self._context


# ------------------------------------------------------------------------------ units
def data_unit(ctx: Context) -> dict:
    d = ctx.data
    test = d["test"]
    samples = []
    for i in sorted({0, len(test) // 2, len(test) - 1}) if test else []:
        ex = test[i]
        last = ex.history[-1] if ex.history else None
        samples.append({"index": i, "id": ex.id, "user": ex.user_id, "agent": ex.agent, "reference": ex.response,
                        "last_turn": f"{last.speaker}: {last.text}" if last else ""})
    return {"counts": d["counts"], "digest": ctx.digest, "settings": ctx.s, "samples": samples,
            "ids": {name: [ex.id for ex in d[name]] for name in ("train", "dev", "test")},
            "users": [u.user_id for u in d["users"]]}


def structured_rates(generator: Any, users: Sequence[Any], n_prompts: int) -> dict:
    """First-try / after-retry success rates of free JSON on facet-summary prompts (the embedded model)."""
    from personakit.facets import FacetSchema, build_summary_prompt
    from personakit.facets.summarize import SummaryReply
    from personakit.llm import extract_json, generate_structured

    spec = FacetSchema(facets=[{"name": "Values", "definition": "What the user cares about.",
                                "values": "none / weak / moderate / strong"}]).facets[0]
    prompts = [build_summary_prompt([it.text for it in u.items][-4:], spec) for u in users[:n_prompts]]
    settings = {"max_new_tokens": 96}
    first = generator.generate(prompts, settings)

    def ok(raw: str) -> bool:
        try:
            SummaryReply.model_validate(extract_json(raw))
            return True
        except Exception:  # noqa: BLE001
            return False

    retried = generate_structured(generator, prompts, SummaryReply, settings, max_attempts=3, on_failure="none")
    return {"prompts": len(prompts), "first_try": sum(map(ok, first)) / max(1, len(prompts)),
            "after_retry": sum(r is not None for r in retried) / max(1, len(prompts))}


def facets_unit(ctx: Context) -> dict:
    """Schema and every user's summaries (LLM labels), the evidence labels, seconds per user, structured output."""
    from personakit.facets import (FacetSchemaInducer, FacetSummarizer, SchemaGuidedGenerator, evidence_reliability,
                                   facet_biased_fraction)
    from personakit.llm import CachedGenerator, GenerationSettings, HFGenerator

    fs = ctx.s["facets"]
    users = ctx.data["users"]
    generator = HFGenerator.from_pretrained("smollm2", dtype=ctx.args.dtype, batch_size=8, device=ctx.args.device)
    constrained = SchemaGuidedGenerator.from_hf(generator, batch_size=fs["batch_size"])
    encoder = ctx.encoder()
    gen = CachedGenerator(generator, str(ctx.work / "llm_cache.jsonl"))
    inducer = FacetSchemaInducer(gen, encoder, num_facets=fs["num_facets"], num_clusters=fs["num_clusters"],
                                 max_items=fs["schema_items"], settings=GenerationSettings(max_new_tokens=512),
                                 constrained=constrained, per_cluster=True, seed=ctx.args.seed)
    t = time.perf_counter()
    schema = inducer.induce(list(users))
    schema_s = time.perf_counter() - t
    summarizer = FacetSummarizer(gen, schema, max_items=fs["summary_items"], store=ctx.work / "facet_store.jsonl",
                                 settings=GenerationSettings(max_new_tokens=160), on_failure="placeholder",
                                 constrained=constrained, reliability="llm", batch_size=fs["batch_size"])
    facets = summarizer.summarize(list(users), progress=True)
    stats = summarizer.last_stats
    vectors = encoder([spec.describe() for spec in schema.facets])
    evidence = {u.user_id: evidence_reliability(summarizer.user_texts(u), schema.facets, encoder, vectors) for u in users}
    regraded = [regrade(facets[u.user_id], evidence[u.user_id]) for u in users]
    t = time.perf_counter()
    structured = structured_rates(generator, users, ctx.s["structured_prompts"])
    structured["seconds"] = time.perf_counter() - t
    examples = []
    for u in users[:3]:
        for f, level in zip(facets[u.user_id].facets, evidence[u.user_id]):
            if f.llm_summary and len(examples) < 6:
                examples.append({"user": u.user_id, "facet": f.facet, "llm": f.reliability, "evidence": LEVELS[level],
                                 "summary": f.llm_summary, "quotes": f.quotes})
    dtype = str(next(generator.model.parameters()).dtype).removeprefix("torch.")
    del generator, constrained, gen
    gc.collect()
    summarized = max(1, stats.summarized)
    return {"schema": json.loads(schema.model_dump_json()), "schema_s": schema_s, "llm_dtype": dtype,
            "stats": {k: getattr(stats, k) for k in ("users", "reused", "summarized", "prompts", "failures",
                                                     "dropped_quotes", "seconds")},
            "seconds_per_user": (schema_s + stats.seconds) / summarized,
            "facets_llm": {u: json.loads(f.model_dump_json()) for u, f in facets.items()},
            "evidence_levels": evidence,
            "facet_biased": {"llm": facet_biased_fraction(list(facets.values())),
                             "evidence": facet_biased_fraction(regraded)},
            "structured": structured, "examples": examples}


def graph_unit(ctx: Context) -> dict:
    """Graph statistics under the evidence labels and the LLM's, and the two label sets against each other."""
    ids = [u.user_id for u in ctx.data["users"]]
    schema = ctx.schema()
    llm = ctx.user_facets("llm")
    _, g_llm = ctx.build_graph("llm")
    return {"evidence": graph_stats(ctx.graph), "llm": graph_stats(g_llm),
            "labels": label_agreement([llm[u].reliability for u in ids],
                                      [ctx.units["facets"]["evidence_levels"][u] for u in ids], schema.names)}


def _trainer(ctx: Context, variant: str, seed: int, key: str):
    """The model and trainer of one (variant, seed); ``key`` names its checkpoint folder."""
    import torch

    from personakit.backbones.precision import cast_frozen, resolve_dtype
    from personakit.models.copersona import CoPersonaModel
    from personakit.training.copersona import CoPersonaTrainer, CoPersonaTrainingConfig

    s, m = ctx.s, ctx.s["model"]
    context = ctx.context
    base, tok = ctx.backbone()
    torch.manual_seed(seed)
    model = CoPersonaModel.from_backbone(
        base, tok, context=context, variant=variant, num_facets=len(ctx.schema()),
        facet_dim=int(context.facet_embeddings.shape[-1]), graph_hidden=m["graph_hidden"],
        num_virtual_tokens=m["num_virtual_tokens"], retrieval_k=m["retrieval_k"], max_neighbors=m["max_neighbors"],
        max_item_tokens=m["max_item_tokens"], max_peer_tokens=m["max_peer_tokens"],
        max_prompt_tokens=m["max_prompt_tokens"], max_target_tokens=m["max_target_tokens"],
        lora={"r": 16, "lora_alpha": 32, "lora_dropout": 0.05})
    dtype = resolve_dtype(ctx.args.dtype, ctx.args.device)
    if dtype != torch.float32:
        cast_frozen(model, dtype)
    if ctx.args.device:
        model.to(ctx.args.device)
    cfg = CoPersonaTrainingConfig(
        output_dir=str(ctx.work / "checkpoints" / f"{variant}-s{seed}-{key}"), max_steps=s["max_steps"],
        batch_size=s["batch"], gradient_accumulation_steps=1, learning_rate=s["lr"], seed=seed, logging_steps=5,
        eval_steps=s["eval_steps"], eval_at_epoch_end=False, save_steps=s["eval_steps"], keep_last=1,
        eval_metrics=["loss"], early_stopping_patience=s["patience"], early_stopping_threshold=0.01,
        metric_for_best_model="loss", load_best_model_at_end=True, eval_batch_size=16,
        max_new_tokens=s["new_tokens"], use_cpu=not str(ctx.args.device or "cpu").startswith("cuda"), progress=True)
    # SDPA, not _common.train_attention's eager kernel: at CoPersona's ~300-token prompts a bf16 step takes
    # 1.12x as long with eager attention on the AMX Xeon (benchmarks/results/family_step_profile.md)
    trainer = CoPersonaTrainer(model, cfg, train_examples=ctx.data["train"], eval_examples=ctx.data["dev"],
                               callbacks=[trim_callback(NAME)])
    return model, trainer, str(dtype).removeprefix("torch.")


def score(predictions: Sequence[str], examples: Sequence[Any], lls: Optional[Sequence[float]], bertscore: bool) -> dict:
    """Corpus metrics, the per-example scores of the paired tests (BPC from the log-likelihoods; ``None`` without
    them) and the predictions."""
    from personakit.eval import evaluate_per_example, evaluate_texts

    refs = [ex.response for ex in examples]
    names = ["rouge", "meteor", "bleu", "reply_stats"] + (["bertscore"] if bertscore else [])
    metrics = evaluate_texts(list(predictions), refs, metrics=names,
                             **({"bertscore": {"model": "minilm"}} if bertscore else {}))
    chars = [max(1, len(r.strip())) for r in refs]
    metrics["bpc"] = None if lls is None else -sum(lls) / (math.log(2) * sum(chars))
    per = evaluate_per_example(list(predictions), refs, metrics=["rouge", "meteor", "bleu"])
    per = {k: [round(float(v), 6) for v in per[k]] for k in ("rouge1", "rougeL", "meteor", "bleu")}
    if lls is not None:
        per["bpc"] = [round(-ll / (math.log(2) * c), 6) for ll, c in zip(lls, chars)]
    return {"n": len(refs), "metrics": metrics, "per_example": per, "predictions": list(predictions)}


def run_test(ctx: Context, model: Any, trainer: Any, context: Any = None) -> tuple[dict, float]:
    """Predictions and reference likelihoods on the test items (with ``context`` swapped in, then put back)."""
    test = ctx.data["test"]
    original = (model.context, trainer.collator)
    t = time.perf_counter()
    try:
        if context is not None:
            model.set_context(context)
            trainer.collator = model.make_collator()
        predictions = trainer.predict(test)
        lls = trainer.reference_log_likelihoods(test)
    finally:
        if context is not None:
            model.set_context(original[0])
            trainer.collator = original[1]
    return score(predictions, test, lls, ctx.s["bertscore"]), time.perf_counter() - t


def prompt_lengths(ctx: Context, model: Any) -> dict:
    """Mean token length of the test prompts before the cut, and the share cut to ``max_prompt_tokens``."""
    coll = model.make_collator(with_targets=False)
    tok = model.tokenizer
    lengths = [len(tok(coll.prompt_text(ex), add_special_tokens=False)["input_ids"]) for ex in ctx.data["test"]]
    cap = ctx.s["model"]["max_prompt_tokens"]
    return {"mean": _mean(lengths), "max": max(lengths) if lengths else 0, "cut": _mean([x > cap for x in lengths])}


def train_unit(ctx: Context, unit: str) -> dict:
    """One (system, seed) trained to a plateau of its dev loss, then scored on the test items."""
    variant, seed = parse_system(unit)
    model, trainer, dtype = _trainer(ctx, variant, seed, ctx.keys[unit])
    t = time.perf_counter()
    result = trainer.train(resume_from="latest")
    train_s = result.train_seconds or (time.perf_counter() - t)  # every session's training, resumes included
    test, eval_s = run_test(ctx, model, trainer)
    out = {"kind": "system", "system": SYSTEMS[variant], "variant": variant, "seed": seed, "dtype": dtype,
           "train_attention": trainer.args.attn_implementation or "sdpa", "steps": result.global_step,
           "total_steps": result.total_steps, "stopped_early": result.stopped_early,
           "best_step": result.best_step, "best_dev_loss": result.best_metric, "eval_history": result.eval_history,
           "history": [{k: r.get(k) for k in ("step", "loss", "lr")} for r in result.history],
           "train_s": train_s, "eval_s": eval_s, "train_items": len(ctx.data["train"]),
           "dev_items": len(ctx.data["dev"]), "prompt_tokens": prompt_lengths(ctx, model),
           "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad), "test": test}
    if (variant, seed) == ("copersona", 0):
        ctx._trained[(variant, seed)] = (model, trainer)  # the controls run on it
    return out


def control_unit(ctx: Context, unit: str) -> dict:
    """The trained CoPersona of seed 0 on the test items with one signal replaced."""
    from personakit.graph import random_neighbors
    from personakit.models.copersona import swap_own_facets, without_peer_similarity

    if ("copersona", 0) not in ctx._trained:
        print(f"[{NAME}] {unit}: rebuilding the trained CoPersona (seed 0) from its checkpoints", flush=True)
        model, trainer, _ = _trainer(ctx, "copersona", 0, ctx.keys["copersona-s0"])
        trainer.train(resume_from="latest")  # a finished run loads its best weights; a lost one retrains
        ctx._trained[("copersona", 0)] = (model, trainer)
    model, trainer = ctx._trained[("copersona", 0)]
    seed = ctx.args.seed
    original = ctx.context
    extra: dict[str, Any] = {}
    if unit == "ctrl-random-neighbors":
        graph = random_neighbors(ctx.graph, seed=seed + 1)
        context = ctx.build_context(graph)
        changed = sum(a != b for a, b in zip(context.peer_context.values(), original.peer_context.values()))
        extra = {"graph": graph_stats(graph), "peer_context_changed": changed / max(1, len(context.user_ids)),
                 "note": f"every layer rewired, same degrees; peer context changed for {changed} of "
                         f"{len(context.user_ids)} users"}
    elif unit == "ctrl-swapped-facets":
        context = swap_own_facets(original, seed=seed + 1)
        extra = {"own_rows": context.own_rows, "note": "seeded derangement of the users' own facet rows"}
    elif unit == "ctrl-no-scores":
        context = without_peer_similarity(original)
        extra = {"note": "same peers and texts, no '(similarity x.xx)'"}
    else:
        raise ValueError(f"unknown control {unit!r}")
    test, eval_s = run_test(ctx, model, trainer, context)
    return {"kind": "control", "control": CONTROLS[unit], "eval_s": eval_s, "test": test, **extra}


def sanity_unit(ctx: Context) -> dict:
    """The sanity rows scored on the test items (no model is trained; no BPC)."""
    t = time.perf_counter()
    train, test = ctx.data["train"], ctx.data["test"]
    conditions = {name: score(replies, test, None, ctx.s["bertscore"])
                  for name, replies in sanity_replies(train, test).items()}
    return {"kind": "sanity", "conditions": conditions, "eval_s": time.perf_counter() - t}


def run_unit(ctx: Context, unit: str) -> dict:
    if unit == "data":
        return data_unit(ctx)
    if unit == "sanity":
        return sanity_unit(ctx)
    if unit == "facets":
        return facets_unit(ctx)
    if unit == "graph":
        return graph_unit(ctx)
    if unit in CONTROLS:
        return control_unit(ctx, unit)
    return train_unit(ctx, unit)


# ------------------------------------------------------------------------------ report, main
def load_units(out: Path, setting_: str, order: Sequence[str]) -> dict[str, dict]:
    """The newest stored unit of each name for ``setting_``."""
    found: dict[str, dict] = {}
    for u in UnitStore(out, NAME).all():
        if u.get("setting") == setting_ and u.get("unit") in order:
            if u["unit"] not in found or u.get("finished", "") >= found[u["unit"]].get("finished", ""):
                found[u["unit"]] = u
    return {name: found[name] for name in order if name in found}


def report(args: argparse.Namespace) -> dict:
    order = unit_order(SETTINGS[args.setting_name])
    units = load_units(args.out, args.setting_name, order)
    summary = summarise(units)
    first = next(iter(units.values()), {})
    out = {"benchmark": NAME, "command": command_line(args.argv), "setting": args.setting_name, "written": now(),
           "machine_line": unit_machine_line(first),
           "trained_on": machines_line((name, u) for name, u in units.items() if u.get("kind") == "system"),
           "precision": first.get("precision"), "order": order, "units": units, "summary": summary,
           "verdict": verdict(summary), "controls_verdict": controls_verdict(summary),
           "paper_table5_books_7b": PAPER_TABLE5, "paper_table1_books_7b": PAPER_TABLE1_BOOKS_7B,
           "paper_facet_biased": PAPER_FACET_BIASED}
    md = to_markdown(out)
    keep = ("key", "commit", "finished", "wall_s", "train_s", "eval_s", "steps", "best_step", "stopped_early")
    slim = json.loads(json.dumps({**out, "units": {k: {f: u.get(f) for f in keep if f in u}
                                                   for k, u in units.items()}}, default=str))
    write_results(NAME, slim, md, args.out, volatile=report_volatile(args))
    plot_curves(units, args.out / f"{NAME}_curves.png")
    return slim


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setting_arguments(parser, NAME, quick_help="smoke setting (every unit, tiny; 15-30 minutes on a loaded CPU)",
                          scale_help="GPU setting (add --device cuda)")
    parser.add_argument("--dtype", default="auto", help="frozen-weight dtype: auto (bf16 where fast), float32, bfloat16")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = argv
    args.setting_name = setting_name(args)
    if args.report:
        return report(args)
    require_pfg(parser, args.data)
    ctx = Context(args, SETTINGS[args.setting_name])
    print(f"[{NAME}] {args.setting_name}: {len(ctx.data['users'])} users, "
          + ", ".join(f"{n} {len(ctx.data[n])}" for n in ("train", "dev", "test")) + f" (data {ctx.digest})", flush=True)
    ctx.run(unit_order(ctx.s), lambda unit, key: run_unit(ctx, unit), report=lambda: report(args), depends=depends,
            report_paths=[args.out / f"{NAME}.md", args.out / f"{NAME}.json", args.out / f"{NAME}_curves.png"])
    return report(args)


if __name__ == "__main__":
    main()
