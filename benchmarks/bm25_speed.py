"""BM25 scoring speed: personakit's BM25Retriever vs ``bm25s`` and rank-bm25's ``BM25Okapi.get_scores``.

Scores queries against profiles of 100, 1,000 and 10,000 entries of synthetic text
(Zipfian vocabulary, fixed seed), checks in the same run that ours gives rank-bm25's
scores, and reports median per-query times over repeats, ours against ``bm25s`` (sparse
precomputed scores, "eager" BM25) and rank-bm25, one query at a time and for a batch of
many users' queries, each against its own profile.

    python benchmarks/bm25_speed.py                  # writes benchmarks/results/bm25_speed.{json,md,png}
    python benchmarks/bm25_speed.py --quick          # seconds: 100 and 300 entries, 3 repeats
    python benchmarks/bm25_speed.py --sizes 100 1000 --repeats 5
    python benchmarks/bm25_speed.py --plot-only      # redraw bm25_speed.png from the committed JSON (no run)

What each timing includes (every library gets the same tokens, personakit's default ``\\w+`` runs):

* ours: ``BM25Retriever.score(query, indexed_profile)``, the public API, *including*
  tokenising the query string and mapping tokens to ids; "ours, tokens given":
  ``BM25Retriever._score_prepared([tokens], indexed)``, the same without tokenisation.
* bm25s (``method="robertson"``, k1=1.5, b=0.75, float32, numpy backend):
  ``BM25.get_scores_from_ids(ids)`` with the query's token ids computed beforehand (not
  timed: tokenisation and vocabulary lookup), and ``BM25.get_scores(tokens)`` (vocabulary
  lookup timed).  bm25s's scores are not rank-bm25's (its Robertson idf clips negative
  values to 0 instead of rank-bm25's epsilon floor, and it sums in float32); the work per
  query is the same kind (a sum of precomputed per-term score vectors).
* rank-bm25: ``BM25Okapi.get_scores(tokens)`` (query tokenised beforehand, not timed).
* batch: one query per user, each against that user's own profile; ours
  ``score_batch(queries, indexed_profiles)`` (tokenisation included), bm25s and rank-bm25
  a loop over the users' indexes (ids / tokens given).  Reported per query.

The timed loops of the libraries alternate within each repeat, so background load hits
them alike.  Index times: ours tokenises the profile, the others get it tokenised.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (RESULTS, command_line, machine_info, machine_line, now, pyplot, save_figure,  # noqa: E402
                     write_results)

from personakit.retrieval import BM25Retriever, default_tokenize  # noqa: E402


def synthetic_corpus(n_docs: int, *, vocab_size: int = 20_000, zipf_s: float = 1.07, min_len: int = 20,
                     max_len: int = 120, seed: int = 0) -> list[str]:
    """``n_docs`` texts whose words follow a Zipf law (rank r has probability ∝ r^-s)."""
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(vocab_size)])
    p = 1.0 / np.arange(1, vocab_size + 1) ** zipf_s
    p /= p.sum()
    lengths = rng.integers(min_len, max_len + 1, size=n_docs)
    tokens = rng.choice(vocab_size, size=int(lengths.sum()), p=p)
    out, start = [], 0
    for n in lengths.tolist():
        out.append(" ".join(words[tokens[start:start + n]].tolist()))
        start += n
    return out


def _loop_size(fn, min_seconds: float) -> int:
    """How many calls of ``fn`` last at least ``min_seconds`` (after one warm-up call)."""
    fn()
    number = 1
    while True:
        t = time.perf_counter()
        for _ in range(number):
            fn()
        if time.perf_counter() - t >= min_seconds or number >= 1 << 16:
            return number
        number *= 2


def _interleaved_median(fns: dict, repeats: int, min_seconds: float = 0.05) -> dict[str, float]:
    """Median seconds per call of each function; the timed loops alternate within every repeat."""
    numbers = {k: _loop_size(fn, min_seconds) for k, fn in fns.items()}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            n = numbers[k]
            t = time.perf_counter()
            for _ in range(n):
                fn()
            times[k].append((time.perf_counter() - t) / n)
    return {k: statistics.median(v) for k, v in times.items()}


def cpu_flags() -> set[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def default_users(n_entries: int) -> int:
    """Users in the batch at ``n_entries`` per profile: 64 at 100 entries, 25 at 1,000, 4 at 10,000."""
    return max(4, min(64, 25_600 // n_entries))


def _bm25s_model(tokenized: list[list[str]]):
    import bm25s

    model = bm25s.BM25(method="robertson", k1=1.5, b=0.75)
    model.index(tokenized, show_progress=False)
    return model


def _bm25s_nbytes(model) -> int:
    return int(sum(np.asarray(model.scores[k]).nbytes for k in ("data", "indices", "indptr")))


def _compare(ours: np.ndarray, ref: np.ndarray) -> tuple[float, bool]:
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-12)
    denom = np.maximum(np.abs(ref), 1e-300)
    rel = float(np.max(np.abs(ours - ref) / denom)) if ref.size else 0.0
    return rel, bool(np.array_equal(ours, ref))


def run(sizes: list[int], repeats: int, n_queries: int, seed: int, users: int | None = None) -> dict:
    from rank_bm25 import BM25Okapi

    n_users = {n: users or default_users(n) for n in sizes}
    queries = synthetic_corpus(max(n_queries, *n_users.values()), min_len=8, max_len=32, seed=seed + 1)
    tokenized_queries = [default_tokenize(q) for q in queries]
    rows = []
    for n in sizes:
        retriever = BM25Retriever()
        retriever.cache_size = 0  # time real index builds
        profiles, tokenized_profiles, indexed, refs, models = [], [], [], [], []
        index_s = {"ours": 0.0, "bm25s": 0.0, "rank_bm25": 0.0}
        for u in range(n_users[n]):
            texts = synthetic_corpus(n, seed=seed + 1000 * u)  # user 0: the profile of the one-query timings
            tokenized = [default_tokenize(t) for t in texts]
            t = time.perf_counter()
            indexed.append(retriever.index(texts))
            index_s["ours"] += time.perf_counter() - t
            t = time.perf_counter()
            models.append(_bm25s_model(tokenized))
            index_s["bm25s"] += time.perf_counter() - t
            t = time.perf_counter()
            refs.append(BM25Okapi(tokenized))
            index_s["rank_bm25"] += time.perf_counter() - t
            profiles.append(texts)
            tokenized_profiles.append(tokenized)

        # one query at a time against user 0's profile
        qs, tqs = queries[:n_queries], tokenized_queries[:n_queries]
        idx0, ref0, model0 = indexed[0], refs[0], models[0]
        ids0 = [model0.get_tokens_ids(tq) for tq in tqs]
        # the batch: user u asks query u against their own profile
        bq, btq = queries[:n_users[n]], tokenized_queries[:n_users[n]]
        bids = [m.get_tokens_ids(tq) for m, tq in zip(models, btq)]

        # our scores equal rank-bm25's, checked in this run
        max_rel, bit_identical = 0.0, True
        checks = [(retriever.score(q, idx0), ref0.get_scores(tq)) for q, tq in zip(qs, tqs)]
        checks += [(s, r.get_scores(tq)) for s, r, tq in zip(retriever.score_batch(bq, indexed), refs, btq)]
        checks += [(s, ref0.get_scores(tq)) for s, tq in zip(retriever.score_batch(qs, idx0), tqs)]
        for ours, ref in checks:
            rel, same = _compare(ours, ref)
            max_rel, bit_identical = max(max_rel, rel), bit_identical and same

        per_query = _interleaved_median({
            "ours": lambda: [retriever.score(q, idx0) for q in qs],
            "ours_tokens": lambda: [retriever._score_prepared([tq], idx0) for tq in tqs],
            "ours_same_profile_batch": lambda: retriever.score_batch(qs, idx0),
            "bm25s": lambda: [model0.get_scores_from_ids(i) for i in ids0],
            "bm25s_tokens": lambda: [model0.get_scores(tq) for tq in tqs],
        }, repeats)
        batch = _interleaved_median({
            "ours": lambda: retriever.score_batch(bq, indexed),
            "bm25s": lambda: [m.get_scores_from_ids(i) for m, i in zip(models, bids)],
        }, repeats)
        slow = _interleaved_median({
            "rank_bm25": lambda: [ref0.get_scores(tq) for tq in tqs],
            "rank_bm25_batch": lambda: [r.get_scores(tq) for r, tq in zip(refs, btq)],
        }, repeats, min_seconds=0.2)
        us = {k: v / n_queries * 1e6 for k, v in per_query.items()}
        us["rank_bm25"] = slow["rank_bm25"] / n_queries * 1e6
        bus = {k: v / n_users[n] * 1e6 for k, v in batch.items()}
        bus["rank_bm25"] = slow["rank_bm25_batch"] / n_users[n] * 1e6
        row = {
            "entries": n,
            "mean_entry_tokens": float(np.mean([len(d) for d in tokenized_profiles[0]])),
            "vocabulary": len(idx0.state.vocab),
            "dense_terms": int(idx0.state.dense.shape[0]),
            "ours_query_us": us["ours"],
            "ours_tokens_given_query_us": us["ours_tokens"],
            "ours_same_profile_batch_query_us": us["ours_same_profile_batch"],
            "bm25s_query_us": us["bm25s"],
            "bm25s_tokens_query_us": us["bm25s_tokens"],
            "rank_bm25_query_us": us["rank_bm25"],
            "speedup_vs_bm25s": us["bm25s"] / us["ours"],
            "speedup_vs_rank_bm25": us["rank_bm25"] / us["ours"],
            "batch_users": n_users[n],
            "ours_batch_query_us": bus["ours"],
            "bm25s_batch_query_us": bus["bm25s"],
            "rank_bm25_batch_query_us": bus["rank_bm25"],
            "batch_speedup_vs_bm25s": bus["bm25s"] / bus["ours"],
            "batch_speedup_vs_rank_bm25": bus["rank_bm25"] / bus["ours"],
            "ours_index_ms": index_s["ours"] / n_users[n] * 1e3,
            "bm25s_index_ms": index_s["bm25s"] / n_users[n] * 1e3,
            "rank_bm25_index_ms": index_s["rank_bm25"] / n_users[n] * 1e3,
            "ours_index_mb": idx0.state.nbytes / 1e6,
            "bm25s_index_mb": _bm25s_nbytes(model0) / 1e6,
            "max_relative_difference": max_rel,
            "bit_identical": bit_identical,
        }
        rows.append(row)
        print(f"  {n:>6} entries: ours {row['ours_query_us']:7.1f} us/query, bm25s {row['bm25s_query_us']:7.1f}, "
              f"rank-bm25 {row['rank_bm25_query_us']:9.1f}; batch of {n_users[n]} users: ours "
              f"{row['ours_batch_query_us']:7.1f}, bm25s {row['bm25s_batch_query_us']:7.1f}", flush=True)
    machine = machine_info(("numpy", "scipy", "rank-bm25", "bm25s"))
    machine.setdefault("amx_bf16", "amx_bf16" in cpu_flags())
    return {
        "benchmark": "bm25_speed",
        "description": "BM25 scoring against one profile (per query) and a batch of users' queries against their "
                       "own profiles; median over repeats",
        "date_utc": now(),
        "command": command_line(),
        "settings": {"sizes": sizes, "repeats": repeats, "queries": n_queries, "seed": seed,
                     "batch_users": {str(k): v for k, v in n_users.items()},
                     "mean_query_tokens": float(np.mean([len(q) for q in tokenized_queries[:n_queries]])),
                     "corpus": "Zipf(s=1.07) over 20,000 synthetic words, 20-120 tokens per entry",
                     "bm25": {"k1": 1.5, "b": 0.75, "epsilon": 0.25, "tokenizer": "default"},
                     "bm25s": {"method": "robertson", "k1": 1.5, "b": 0.75, "dtype": "float32",
                               "backend": "numpy"}},
        "machine": machine,
        "results": rows,
    }


def _x(ratio: float) -> str:
    return f"{ratio:.1f}×" if ratio < 100 else f"{ratio:,.0f}×"


def to_markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    lines = [
        "# BM25 scoring speed: personakit vs bm25s vs rank-bm25",
        "",
        f"Synthetic profiles ({s['corpus']}); {s['queries']} queries of {s['mean_query_tokens']:.0f} tokens on "
        f"average; median of {s['repeats']} repeats, the libraries' timed loops alternating within each repeat. "
        "Our scores are checked equal to `rank_bm25.BM25Okapi.get_scores` (rtol 1e-6; bit-identical column) in the "
        "same run, for every query timed.",
        "",
        "What the times include: **ours** = `BM25Retriever.score(query, indexed)` (public API, query tokenisation "
        "included); **ours, tokens given** = the same scoring with the query already tokenised; **bm25s** = "
        f"`BM25.get_scores_from_ids(ids)` (bm25s {m['versions'].get('bm25s')}, method robertson, float32, numpy "
        "backend) with the query's token ids computed beforehand, **bm25s, tokens** = `BM25.get_scores(tokens)` "
        "(vocabulary lookup included); **rank-bm25** = `get_scores(tokens)`. bm25s's scores differ from rank-bm25's "
        "(negative idf clipped to 0, float32 sums); only its speed is compared. Speed-ups are against the fastest "
        "bm25s timing (ids given) and rank-bm25, with our tokenisation counted against us.",
        "",
        "## One query against one profile (µs per query)",
        "",
        "| entries | ours | ours, tokens given | bm25s (ids) | bm25s (tokens) | rank-bm25 | vs bm25s | vs rank-bm25 "
        "| bit-identical |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['entries']:,} | {r['ours_query_us']:.1f} | {r['ours_tokens_given_query_us']:.1f} | "
            f"{r['bm25s_query_us']:.1f} | {r['bm25s_tokens_query_us']:.1f} | {r['rank_bm25_query_us']:,.1f} | "
            f"{_x(r['speedup_vs_bm25s'])} | {_x(r['speedup_vs_rank_bm25'])} | {'yes' if r['bit_identical'] else 'no'} |"
        )
    lines += [
        "",
        "## A batch of users' queries, each against the user's own profile (µs per query)",
        "",
        "Ours: one `score_batch(queries, indexed_profiles)` call (tokenisation included); bm25s and rank-bm25: a "
        "loop over the users' indexes (ids / tokens given).",
        "",
        "| entries | users | ours | bm25s (ids) | rank-bm25 | vs bm25s | vs rank-bm25 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['entries']:,} | {r['batch_users']} | {r['ours_batch_query_us']:.1f} | "
            f"{r['bm25s_batch_query_us']:.1f} | {r['rank_bm25_batch_query_us']:,.1f} | "
            f"{_x(r['batch_speedup_vs_bm25s'])} | {_x(r['batch_speedup_vs_rank_bm25'])} |"
        )
    lines += [
        "",
        "## Index per profile",
        "",
        "Build time (ours tokenises the profile; bm25s and rank-bm25 get it tokenised) and the memory of the "
        "score arrays (ours: postings in float64 / int64 plus dense float64 rows for terms in at least 1/8 of the "
        "entries; bm25s: float32 / int32 postings; vocabulary dicts not counted).",
        "",
        "| entries | ours (ms) | bm25s (ms) | rank-bm25 (ms) | ours (MB) | bm25s (MB) | dense terms (ours) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['entries']:,} | {r['ours_index_ms']:.1f} | {r['bm25s_index_ms']:.1f} | "
            f"{r['rank_bm25_index_ms']:.1f} | {r['ours_index_mb']:.2f} | {r['bm25s_index_mb']:.2f} | "
            f"{r['dense_terms']} |"
        )
    line = machine_line(m)
    if "AMX" not in line:
        line += f" AMX-BF16: {'yes' if m.get('amx_bf16') else 'no'}."
    lines += [
        "",
        f"{line} Everything here is single-threaded numpy on the CPU (no AMX or GPU use). "
        f"Date: {report['date_utc']}.",
        "",
        f"Reproduce: `{report['command']}`.",
        "",
    ]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> bool:
    """Time per query against profile size (one query, batch; log-log) and the speed-up over bm25s."""
    plt = pyplot()
    if plt is None:
        return False
    rows = sorted(report["results"], key=lambda r: r["entries"])
    sizes = [r["entries"] for r in rows]
    fig, (ax_t, ax_b, ax_s) = plt.subplots(1, 3, figsize=(14, 3.9))
    for ax, keys, title in (
        (ax_t, [("rank_bm25_query_us", "rank-bm25 get_scores", "s", "0.45", "-"),
                ("bm25s_query_us", "bm25s get_scores_from_ids", "D", "C2", "-"),
                ("ours_query_us", "personakit score", "o", "C0", "-"),
                ("ours_tokens_given_query_us", "personakit, tokens given", "^", "C1", "--")],
         "one query against one profile"),
        (ax_b, [("rank_bm25_batch_query_us", "rank-bm25 (loop)", "s", "0.45", "-"),
                ("bm25s_batch_query_us", "bm25s (loop)", "D", "C2", "-"),
                ("ours_batch_query_us", "personakit score_batch", "o", "C0", "-")],
         "batch: each user's query against their profile"),
    ):
        for key, label, marker, color, style in keys:
            ax.plot(sizes, [r[key] for r in rows], marker=marker, color=color, linestyle=style, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel("µs per query (median)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    width = 0.38
    xs = list(range(len(rows)))
    bars = ax_s.bar([x - width / 2 for x in xs], [r["speedup_vs_bm25s"] for r in rows], width, color="C0",
                    label="one query")
    bars_b = ax_s.bar([x + width / 2 for x in xs], [r["batch_speedup_vs_bm25s"] for r in rows], width, color="C1",
                      label="batch")
    for bar in (*bars, *bars_b):
        ax_s.annotate(f"{bar.get_height():.1f}×", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha="center", va="bottom", fontsize=8)
    ax_s.axhline(1.0, color="0.3", linewidth=0.8)
    ax_s.set_xticks(xs, [f"{n:,}" for n in sizes])
    ax_s.set_ylabel("speed-up over bm25s (ids given)")
    ax_s.set_title("speed-up over bm25s (ours incl. tokenising)", fontsize=10)
    ax_s.legend(fontsize=8)
    for ax in (ax_t, ax_b, ax_s):
        ax.set_xlabel("profile entries")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("BM25 scoring: personakit vs bm25s vs rank-bm25 (ours equal to rank-bm25's scores)", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw bm25_speed.png from bm25_speed.json in --out-dir; runs nothing")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 and 300 entries, 3 repeats, 4 users")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--users", type=int, default=None,
                        help="users (profiles) in the batch; default 64 at 100 entries, 25 at 1,000, 4 at 10,000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    png = args.out_dir / "bm25_speed.png"
    if args.plot_only:
        report = json.loads((args.out_dir / "bm25_speed.json").read_text(encoding="utf-8"))
        print(f"wrote {png}" if plot(report, png) else "no plot written")
        return report
    if args.quick:
        args.sizes, args.repeats, args.users = [100, 300], 3, args.users or 4
    report = run(args.sizes, args.repeats, args.queries, args.seed, args.users)
    md = to_markdown(report)
    print()
    print(md)
    write_results("bm25_speed", report, md, args.out_dir)
    plot(report, png)
    return report


if __name__ == "__main__":
    main()
