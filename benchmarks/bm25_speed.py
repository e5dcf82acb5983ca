"""BM25 scoring speed: personakit's vectorised BM25Retriever vs rank-bm25's ``BM25Okapi.get_scores``.

Scores queries against one profile of 100, 1,000 and 10,000 entries of synthetic text
(Zipfian vocabulary, fixed seed), checks in the same run that both give the same
scores, and reports median per-query times over repeats and the speed-up.

    python benchmarks/bm25_speed.py                  # writes benchmarks/results/bm25_speed.{json,md}
    python benchmarks/bm25_speed.py --sizes 100 1000 --repeats 5
    python benchmarks/bm25_speed.py --plot-only      # redraw bm25_speed.png from the committed JSON (no run)

Timed per query: ours = ``BM25Retriever.score(query, indexed_profile)`` (public API,
tokenising the query included); rank-bm25 = ``bm25.get_scores(tokenized_query)`` (query
tokenised beforehand, not timed).  Also reported: index build time (ours: tokenise +
sparse weights; rank-bm25: ``BM25Okapi(tokenized_corpus)``, corpus tokenised
beforehand) and ours batched (``score_batch`` of all queries at once, per query).
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


def _median_time(fn, repeats: int, min_seconds: float = 0.05) -> tuple[float, int]:
    """Median seconds per call of ``fn`` over ``repeats`` timed loops (loop size chosen to last ``min_seconds``)."""
    fn()  # warm-up
    number = 1
    while True:
        t = time.perf_counter()
        for _ in range(number):
            fn()
        if time.perf_counter() - t >= min_seconds or number >= 1 << 16:
            break
        number *= 2
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t) / number)
    return statistics.median(times), number


def run(sizes: list[int], repeats: int, n_queries: int, seed: int) -> dict:
    from rank_bm25 import BM25Okapi

    queries = synthetic_corpus(n_queries, min_len=8, max_len=32, seed=seed + 1)
    tokenized_queries = [default_tokenize(q) for q in queries]
    rows = []
    for n in sizes:
        texts = synthetic_corpus(n, seed=seed)
        tokenized = [default_tokenize(t) for t in texts]
        retriever = BM25Retriever()
        retriever.cache_size = 0  # time real index builds

        t = time.perf_counter()
        indexed = retriever.index(texts)
        ours_index_s = time.perf_counter() - t
        t = time.perf_counter()
        reference = BM25Okapi(tokenized)
        ref_index_s = time.perf_counter() - t

        # identical scores, checked in this run
        max_rel, bit_identical = 0.0, True
        for q, tq in zip(queries, tokenized_queries):
            ours, ref = retriever.score(q, indexed), reference.get_scores(tq)
            np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-12)
            bit_identical &= bool(np.array_equal(ours, ref))
            denom = np.maximum(np.abs(ref), 1e-300)
            max_rel = max(max_rel, float(np.max(np.abs(ours - ref) / denom)) if ref.size else 0.0)
        batch = retriever.score_batch(queries, indexed)
        for b, tq in zip(batch, tokenized_queries):
            np.testing.assert_allclose(b, reference.get_scores(tq), rtol=1e-6, atol=1e-12)

        ours_s, ours_n = _median_time(lambda: [retriever.score(q, indexed) for q in queries], repeats)
        batch_s, _ = _median_time(lambda: retriever.score_batch(queries, indexed), repeats)
        ref_s, ref_n = _median_time(lambda: [reference.get_scores(tq) for tq in tokenized_queries], repeats,
                                    min_seconds=0.2)
        row = {
            "entries": n,
            "mean_entry_tokens": float(np.mean([len(d) for d in tokenized])),
            "vocabulary": len(indexed.state.vocab),
            "ours_query_us": ours_s / n_queries * 1e6,
            "ours_batched_query_us": batch_s / n_queries * 1e6,
            "rank_bm25_query_us": ref_s / n_queries * 1e6,
            "speedup": ref_s / ours_s,
            "speedup_batched": ref_s / batch_s,
            "ours_index_ms": ours_index_s * 1e3,
            "rank_bm25_index_ms": ref_index_s * 1e3,
            "max_relative_difference": max_rel,
            "bit_identical": bit_identical,
            "loops_per_repeat": {"ours": ours_n, "rank_bm25": ref_n},
        }
        rows.append(row)
        print(f"  {n:>6} entries: ours {row['ours_query_us']:9.1f} us/query, rank-bm25 "
              f"{row['rank_bm25_query_us']:10.1f} us/query, speed-up {row['speedup']:6.1f}x", flush=True)
    return {
        "benchmark": "bm25_speed",
        "description": "BM25 scoring of one query against one profile; median over repeats",
        "date_utc": now(),
        "command": command_line(),
        "settings": {"sizes": sizes, "repeats": repeats, "queries": n_queries, "seed": seed,
                     "mean_query_tokens": float(np.mean([len(q) for q in tokenized_queries])),
                     "corpus": "Zipf(s=1.07) over 20,000 synthetic words, 20-120 tokens per entry",
                     "bm25": {"k1": 1.5, "b": 0.75, "epsilon": 0.25, "tokenizer": "default"}},
        "machine": machine_info(("numpy", "scipy", "rank-bm25")),
        "results": rows,
    }


def to_markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    lines = [
        "# BM25 scoring speed: personakit vs rank-bm25",
        "",
        f"One query scored against one profile ({s['corpus']}; {s['queries']} queries of "
        f"{s['mean_query_tokens']:.0f} tokens on average). Median of {s['repeats']} repeats. "
        "Scores are checked equal to `rank_bm25.BM25Okapi.get_scores` (rtol 1e-6) in the same run. "
        "Ours is timed through the public `BM25Retriever.score(query, indexed)` (query tokenisation included); "
        "rank-bm25's `get_scores` gets the query already tokenised. Index times: ours includes tokenising the "
        "profile, rank-bm25's constructor gets it already tokenised.",
        "",
        "| entries | ours (µs/query) | ours batched (µs/query) | rank-bm25 (µs/query) | speed-up | speed-up batched "
        "| index ours (ms) | index rank-bm25 (ms) | bit-identical |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['entries']:,} | {r['ours_query_us']:.1f} | {r['ours_batched_query_us']:.1f} | "
            f"{r['rank_bm25_query_us']:.1f} | {r['speedup']:.1f}× | {r['speedup_batched']:.1f}× | "
            f"{r['ours_index_ms']:.1f} | {r['rank_bm25_index_ms']:.1f} | {'yes' if r['bit_identical'] else 'no'} |"
        )
    lines += [
        "",
        f"{machine_line(m)} Date: {report['date_utc']}.",
        "",
        f"Reproduce: `{report['command']}`.",
        "",
    ]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> bool:
    """Per-query time against profile size (log-log) and the speed-up; False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    rows = sorted(report["results"], key=lambda r: r["entries"])
    sizes = [r["entries"] for r in rows]
    fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_t.plot(sizes, [r["rank_bm25_query_us"] for r in rows], marker="s", color="0.45", label="rank-bm25 get_scores")
    ax_t.plot(sizes, [r["ours_query_us"] for r in rows], marker="o", color="C0", label="personakit score")
    ax_t.plot(sizes, [r["ours_batched_query_us"] for r in rows], marker="^", color="C1", linestyle="--",
              label="personakit score_batch")
    ax_t.set_yscale("log")
    ax_t.set_ylabel("µs per query (median)")
    ax_t.set_title("time per query", fontsize=10)
    ax_t.legend(fontsize=8)
    width = 0.38
    xs = list(range(len(rows)))
    bars = ax_s.bar([x - width / 2 for x in xs], [r["speedup"] for r in rows], width, color="C0", label="one query")
    bars_b = ax_s.bar([x + width / 2 for x in xs], [r["speedup_batched"] for r in rows], width, color="C1",
                      label="batched")
    for bar in (*bars, *bars_b):
        ax_s.annotate(f"{bar.get_height():.0f}×", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha="center", va="bottom", fontsize=8)
    ax_s.set_xticks(xs, [f"{n:,}" for n in sizes])
    ax_s.set_yscale("log")
    ax_s.set_ylabel("speed-up over rank-bm25")
    ax_s.set_title("speed-up (same scores)", fontsize=10)
    ax_s.legend(fontsize=8)
    ax_t.set_xscale("log")
    for ax in (ax_t, ax_s):
        ax.set_xlabel("profile entries")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("BM25 scoring: personakit vs rank-bm25 (one query against one profile)", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw bm25_speed.png from bm25_speed.json in --out-dir; runs nothing")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    png = args.out_dir / "bm25_speed.png"
    if args.plot_only:
        report = json.loads((args.out_dir / "bm25_speed.json").read_text(encoding="utf-8"))
        print(f"wrote {png}" if plot(report, png) else "no plot written")
        return report
    report = run(args.sizes, args.repeats, args.queries, args.seed)
    md = to_markdown(report)
    print()
    print(md)
    write_results("bm25_speed", report, md, args.out_dir)
    plot(report, png)
    return report


if __name__ == "__main__":
    main()
