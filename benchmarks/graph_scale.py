"""Multiplex graph construction at scale: exact and approximate top-k vs a dense baseline and the bare matmul.

Synthetic users (fixed seed): ``M`` facets of ``d``-dim L2-normalised embeddings drawn
around ``N / 200`` random centres per facet (each user has a persona type that picks its
centre in each facet with probability 0.75, a random centre otherwise), reliability
levels drawn with probabilities (0.15, 0.25, 0.30, 0.30).  The combined layer uses
``--combined-threshold`` (default 0.1): with the ω weights, a mean over all five facets
rarely reaches the per-facet 0.35.
Each case runs in its own subprocess, so its peak memory (``ru_maxrss``) is its own;
data generation is not timed, and "extra memory" is the peak minus the memory held
right after the data was generated.

Cases (default sizes; ``--quick`` shrinks them for a smoke run):

* ``exact``: ``build_multiplex_graph(backend="exact")`` at 10^4 and 10^5 users;
* ``bare``: the same chunked ``M`` matrix products (``N x N x d x M`` multiply-adds,
  same row blocks, reliability weighting included) with no top-k: the floor for an
  exact method; reported as the exact / bare time ratio;
* ``dense``: all-pairs ``N x N`` score matrices then top-k (10^4 only: where it fits);
* ``ivf`` (plain torch) and ``faiss`` approximate backends: 10^4 and 10^5, and ``ivf``
  at 10^6; recall@K against the exact graph (all layers) where the exact graph was
  built, otherwise against exact neighbours of a random sample of users (``--approx-sizes``
  run ``--approx-backends``, default ``ivf``, without the exact build);
* ``forward``: one ``FacetGraph`` forward (no grad) over 10^5 users, 5 neighbours each.

    python benchmarks/graph_scale.py            # writes benchmarks/results/graph_scale.{json,md}
    python benchmarks/graph_scale.py --quick    # small sizes, for a smoke run (writes to benchmarks/results/tmp/)
    python benchmarks/graph_scale.py --sizes 10000 --approx-sizes 100000 1000000 --approx-backends faiss ivf \
        --name graph_scale_approx   # the approximate backends without the 10^5 exact build
    python benchmarks/graph_scale.py --plot-only   # redraw graph_scale.png from the committed JSON (no run)

The plot (``graph_scale.png``: time and extra memory against users, log-log) draws the
rows of ``graph_scale.json``; a point that run lacks or that failed there (the 10^6 ``ivf``
build) comes from ``graph_scale_approx.json`` when that file exists.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (RESULTS, command_line, machine_info, machine_line, now, pyplot, resident_mb,  # noqa: E402
                     save_figure, write_results)

RELIABILITY_P = (0.15, 0.25, 0.30, 0.30)


# ------------------------------------------------------------------------------- data


def synthetic_users(n: int, m: int, d: int, seed: int, chunk: int = 65_536) -> tuple[torch.Tensor, torch.Tensor]:
    """``(embeddings [n, m, d], reliability [n, m])``: clustered facets, random reliability."""
    g = torch.Generator().manual_seed(seed)
    clusters = max(8, n // 200)
    centers = F.normalize(torch.randn(m, clusters, d, generator=g), dim=-1)  # (m, C, d)
    persona_type = torch.randint(clusters, (n, 1), generator=g).expand(n, m)  # a user's type sets most facets
    own = torch.rand(n, m, generator=g) < 0.75
    assign = torch.where(own, persona_type, torch.randint(clusters, (n, m), generator=g))
    e = torch.empty(n, m, d)
    facet = torch.arange(m)
    for s in range(0, n, chunk):
        c = centers[facet, assign[s:s + chunk]]  # (c, m, d)
        noise = torch.randn(c.shape, generator=g) * (0.8 / math.sqrt(d))
        e[s:s + chunk] = F.normalize(c + noise, dim=-1)
    r = torch.multinomial(torch.tensor(RELIABILITY_P), n * m, replacement=True, generator=g).view(n, m)
    return e, r


def _rss_mb() -> float:
    return resident_mb() or _peak_mb()  # the peak where /proc is missing


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ------------------------------------------------------------------------------- cases (child side)


def _sample_exact(e, r, omega, rows, k, threshold, combined_threshold):
    """Exact neighbours of a few users, facet by facet (no weighted copy of the table)."""
    w = torch.tensor(omega)[r]  # (N, M)
    n, m, _ = e.shape
    out = []
    combined = torch.zeros(len(rows), n)
    ar = torch.arange(len(rows))
    for f in range(m):
        s = (e[rows, f] * w[rows, f, None]) @ e[:, f].T * w[:, f]  # (S, N)
        combined += s
        s[ar, rows] = -math.inf
        v, i = s.topk(k, dim=1)
        out.append(torch.where(v >= threshold, i, -1))
    combined /= m
    combined[ar, rows] = -math.inf
    v, i = combined.topk(k, dim=1)
    out.append(torch.where(v >= combined_threshold, i, -1))
    return torch.stack(out)  # (M + 1, S, K)


def recall(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """Fraction of exact neighbours (all layers) that the approximate lists contain."""
    hits = ((approx.unsqueeze(-1) == exact.unsqueeze(-2)) & (exact.unsqueeze(-2) >= 0)).sum()
    return float(hits) / max(1, int((exact >= 0).sum()))


def run_case(args) -> dict:
    from personakit.graph import build_multiplex_graph
    from personakit.graph.builder import DEFAULT_OMEGA, _auto_chunk, _weighted_facets

    e, r = synthetic_users(args.n, args.facets, args.dim, args.seed)
    base = _rss_mb()
    res: dict = {"case": args.case, "users": args.n, "threads": torch.get_num_threads()}
    t = time.perf_counter()
    if args.case in ("exact", "ivf", "faiss"):
        graph = build_multiplex_graph(e, r, top_k=args.top_k, threshold=args.threshold, backend=args.case,
                                      nprobe=args.nprobe, combined_threshold=args.combined_threshold)
        res["seconds"] = time.perf_counter() - t
        res["peak_mb"] = _peak_mb()
        res["edges_per_user"] = graph.edge_index.shape[1] / args.n
        torch.save(graph.neighbor_index, args.save)
        if args.case != "exact":
            g = torch.Generator().manual_seed(1)
            rows = torch.randperm(args.n, generator=g)[: args.recall_sample]
            exact = _sample_exact(e, r, DEFAULT_OMEGA, rows, args.top_k, args.threshold, args.combined_threshold)
            res["sampled_recall"] = recall(graph.neighbor_index[:, rows], exact)
            res["recall_sample"] = len(rows)
    elif args.case == "bare":
        per_facet = _weighted_facets(e, r, DEFAULT_OMEGA)
        chunk = _auto_chunk(args.n, None)
        buf = torch.empty(min(chunk, args.n), args.n)
        for start in range(0, args.n, chunk):
            rows = torch.arange(start, min(start + chunk, args.n))
            for w in per_facet:
                torch.mm(w[rows], w.T, out=buf[: len(rows)])
        res["seconds"] = time.perf_counter() - t
        res["peak_mb"] = _peak_mb()
        res["gflop"] = 2 * args.n * args.n * args.dim * args.facets / 1e9
        res["gflops_per_s"] = res["gflop"] / res["seconds"]
    elif args.case == "dense":
        per_facet = _weighted_facets(e, r, DEFAULT_OMEGA)
        n = args.n
        scores = torch.stack([w @ w.T for w in per_facet])  # (M, N, N): the dense baseline
        scores = torch.cat([scores, scores.mean(0, keepdim=True)])  # (M + 1, N, N)
        scores[:, torch.arange(n), torch.arange(n)] = -math.inf
        v, i = scores.topk(args.top_k, dim=-1)
        thr = torch.tensor([args.threshold] * args.facets + [args.combined_threshold]).view(-1, 1, 1)
        idx = torch.where(v >= thr, i, -1)
        res["seconds"] = time.perf_counter() - t
        res["peak_mb"] = _peak_mb()
        torch.save(idx, args.save)
    elif args.case == "forward":
        from personakit.graph import FacetGraph

        g = torch.Generator().manual_seed(2)
        k = args.top_k
        edge_index = torch.stack([torch.randint(args.n, (args.n * k,), generator=g),
                                  torch.arange(args.n).repeat_interleave(k)])
        edge_weight = torch.rand(args.n * k, generator=g)
        layer = FacetGraph(args.dim, args.out_dim, args.facets, num_heads=4).eval()
        times = []
        with torch.no_grad():
            layer(e[:1000], r[:1000], edge_index[:, :0])  # warm-up of the kernels
            for _ in range(args.repeats):
                t = time.perf_counter()
                out = layer(e, r, edge_index, edge_weight)
                times.append(time.perf_counter() - t)
        res["seconds"] = statistics.median(times)
        res["all_seconds"] = times
        res["peak_mb"] = _peak_mb()
        res["output_shape"] = list(out.shape)
        res["out_dim"] = args.out_dim
    else:
        raise ValueError(f"unknown case {args.case!r}")
    res["extra_mb"] = res["peak_mb"] - base
    res["data_mb"] = base
    return res


# ------------------------------------------------------------------------------- driver (parent side)


def _child(case: str, n: int, args, tmp: Path) -> dict:
    save = tmp / f"{case}_{n}.pt"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--case", case, "--n", str(n),
           "--facets", str(args.facets), "--dim", str(args.dim), "--top-k", str(args.top_k),
           "--threshold", str(args.threshold), "--combined-threshold", str(args.combined_threshold),
           "--nprobe", str(args.nprobe), "--seed", str(args.seed),
           "--out-dim", str(args.out_dim), "--repeats", str(args.repeats),
           "--recall-sample", str(args.recall_sample), "--save", str(save)]
    print(f"  {case:>7} N={n:>9,} ...", end="", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f" failed (exit {proc.returncode})", flush=True)
        return {"case": case, "users": n, "failed": f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["saved"] = str(save) if save.exists() else None
    print(f" {res['seconds']:9.2f} s, peak {res['peak_mb']:9.0f} MB", flush=True)
    return res


def run(args) -> dict:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for n in args.sizes:
            exact = _child("exact", n, args, tmp)
            bare = _child("bare", n, args, tmp)
            if "seconds" in exact and "seconds" in bare:
                exact["bare_seconds"] = bare["seconds"]
                exact["exact_over_bare"] = exact["seconds"] / bare["seconds"]
            rows += [exact, bare]
            if n <= args.dense_max:
                dense = _child("dense", n, args, tmp)
                if dense.get("saved") and exact.get("saved"):
                    dense["same_neighbours_as_exact"] = float(
                        (torch.load(dense["saved"], weights_only=True) == torch.load(exact["saved"], weights_only=True)).float().mean())
                rows.append(dense)
            for backend in args.backends:
                approx = _child(backend, n, args, tmp)
                if approx.get("saved") and exact.get("saved"):
                    approx["recall"] = recall(torch.load(approx["saved"], weights_only=True), torch.load(exact["saved"], weights_only=True))
                rows.append(approx)
        for n in args.approx_sizes:
            for backend in args.approx_backends:
                if backend == "faiss" and n > args.faiss_max:
                    continue
                rows.append(_child(backend, n, args, tmp))
        for n in args.forward_users:
            rows.append(_child("forward", n, args, tmp))
    for row in rows:
        row.pop("saved", None)
    return {
        "benchmark": "graph_scale",
        "description": "multiplex graph construction (exact / approximate top-k) and FacetGraph forward",
        "date_utc": now(),
        "command": command_line(),
        "settings": {"sizes": args.sizes, "approx_sizes": args.approx_sizes, "approx_backends": args.approx_backends,
                     "faiss_max": args.faiss_max,
                     "forward_users": args.forward_users,
                     "facets": args.facets, "dim": args.dim, "top_k": args.top_k, "threshold": args.threshold,
                     "combined_threshold": args.combined_threshold,
                     "nprobe": args.nprobe, "backends": args.backends, "dense_max": args.dense_max,
                     "out_dim": args.out_dim, "seed": args.seed, "reliability_p": RELIABILITY_P,
                     "clusters_per_facet": "max(8, N / 200)"},
        "machine": machine_info(("torch", "faiss-cpu", "torch-geometric")),
        "results": rows,
    }


def _fmt(x, spec: str, dash: str = "–") -> str:
    return dash if x is None else format(x, spec)


def to_markdown(report: dict) -> str:
    s, m = report["settings"], report["machine"]
    lines = [
        "# Multiplex graph construction at scale",
        "",
        f"{s['facets']} facets × {s['dim']}-d L2-normalised synthetic embeddings ({s['clusters_per_facet']} clusters "
        f"per facet), reliability drawn with p = {tuple(s['reliability_p'])}, top-{s['top_k']} with threshold "
        f"{s['threshold']} (combined layer {s['combined_threshold']}); approximate backends with nprobe = "
        f"{s['nprobe']} and 4√N cells. One subprocess per case; "
        "time excludes data generation; extra memory = peak RSS minus the RSS right after generating the data. "
        "`bare` = the same chunked matrix products without top-k.",
        "",
        "| case | users | time (s) | peak RSS (MB) | extra (MB) | exact / bare | recall@K | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["results"]:
        if "failed" in r:
            lines.append(f"| {r['case']} | {r['users']:,} | – | – | – | – | – | failed: {r['failed'][:80]} |")
            continue
        note = []
        if "gflops_per_s" in r:
            note.append(f"{r['gflops_per_s']:.0f} GFLOP/s")
        if "same_neighbours_as_exact" in r:
            note.append(f"same lists as exact: {100 * r['same_neighbours_as_exact']:.2f}%")
        if "sampled_recall" in r:
            note.append(f"recall on {r['recall_sample']} sampled users: {r['sampled_recall']:.3f}")
        if "edges_per_user" in r:
            note.append(f"{r['edges_per_user']:.2f} combined edges/user")
        if r["case"] == "forward":
            note.append(f"FacetGraph({s['dim']}→{r['out_dim']}, 4 heads), output {r['output_shape']}, median of "
                        f"{len(r['all_seconds'])}")
        lines.append(f"| {r['case']} | {r['users']:,} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | {r['extra_mb']:.0f} | "
                     f"{_fmt(r.get('exact_over_bare'), '.2f')} | {_fmt(r.get('recall'), '.3f')} | {'; '.join(note)} |")
    lines += [
        "",
        f"{machine_line(m)} Torch threads: {m.get('torch_threads')}. Date: {report['date_utc']}.",
        "",
        f"Reproduce: `{report['command']}`.",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- plot

PLOT_CASES = (("exact", "exact top-k", "C0", "o"), ("bare", "bare matmul (floor)", "0.45", "s"),
              ("dense", "dense all-pairs", "C3", "x"), ("ivf", "ivf (torch, approx.)", "C1", "^"),
              ("faiss", "faiss (approx.)", "C2", "v"), ("forward", "FacetGraph forward", "C4", "D"))


def plot_points(reports: list[dict]) -> dict[str, dict[int, dict]]:
    """``{case: {users: row}}`` over ``reports``: the first report with a successful row wins; later ones
    only fill points that earlier ones lack or where their run failed."""
    points: dict[str, dict[int, dict]] = {}
    for report in reports:
        for row in report.get("results", []):
            if row.get("seconds") is None:
                continue
            points.setdefault(row["case"], {}).setdefault(int(row["users"]), row)
    return points


def plot_scaling(reports: list[dict], path: Path) -> bool:
    """Time and extra memory against users (log-log) for every case of ``reports``; False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    points = plot_points(reports)
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.0))
    for case, label, colour, marker in PLOT_CASES:
        rows = points.get(case)
        if not rows:
            continue
        users = sorted(rows)
        ax_t.plot(users, [rows[u]["seconds"] for u in users], marker=marker, color=colour, label=label)
        ax_m.plot(users, [rows[u]["extra_mb"] / 1024 for u in users], marker=marker, color=colour, label=label)
    for ax, ylabel in ((ax_t, "wall time (s)"), (ax_m, "extra memory (GB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("users")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.set_title("time to build (forward: one pass)", fontsize=10)
    ax_m.set_title("peak memory beyond the input", fontsize=10)
    ax_t.legend(fontsize=8)
    machine = reports[0].get("machine", {}) if reports else {}
    fig.suptitle(f"Multiplex graph construction at scale ({machine.get('cpu', 'CPU')}, "
                 f"{machine.get('torch_threads', '?')} threads)", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def plot_from_results(out_dir: Path, name: str = "graph_scale") -> Path | None:
    """Redraw ``{name}.png`` from ``{name}.json`` (and ``graph_scale_approx.json``) in ``out_dir``."""
    files = [out_dir / f"{name}.json", out_dir / "graph_scale_approx.json"]
    reports = [json.loads(f.read_text(encoding="utf-8")) for f in dict.fromkeys(files) if f.is_file()]
    if not reports:
        raise FileNotFoundError(f"{files[0]}: no results to plot (run the benchmark first)")
    path = out_dir / f"{name}.png"
    return path if plot_scaling(reports, path) else None


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw <name>.png from the results JSON in --out-dir (default benchmarks/results); "
                             "runs nothing")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="exact + approximate sizes")
    parser.add_argument("--approx-sizes", type=int, nargs="*", default=None,
                        help="sizes run with the --approx-backends only (recall on a sample of users)")
    parser.add_argument("--approx-backends", nargs="+", default=["ivf"], choices=["ivf", "faiss"],
                        help="backends of the --approx-sizes (default: ivf)")
    parser.add_argument("--faiss-max", type=int, default=100_000,
                        help="largest --approx-sizes size run with faiss (its k-means at 10^6 takes ~15 min here)")
    parser.add_argument("--forward-users", type=int, nargs="*", default=None)
    parser.add_argument("--backends", nargs="*", default=None, choices=["ivf", "faiss"])
    parser.add_argument("--dense-max", type=int, default=10_000)
    parser.add_argument("--facets", type=int, default=5)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=0.35)
    parser.add_argument("--combined-threshold", type=float, default=0.1)
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--out-dim", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--recall-sample", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="graph_scale", help="results file name (default: %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="default benchmarks/results (--quick: benchmarks/results/tmp)")
    # child mode (one case per subprocess)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_case(args)), flush=True)
        return None
    if args.plot_only:
        path = plot_from_results(args.out_dir or RESULTS, args.name)
        print(f"wrote {path}" if path else "no plot written")
        return None
    if args.quick:
        defaults = {"sizes": [2_000, 5_000], "approx_sizes": [20_000], "forward_users": [5_000]}
    else:
        defaults = {"sizes": [10_000, 100_000], "approx_sizes": [1_000_000], "forward_users": [100_000]}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.backends is None:
        try:
            import faiss  # noqa: F401

            args.backends = ["ivf", "faiss"]
        except ImportError:
            args.backends = ["ivf"]
    report = run(args)
    md = to_markdown(report)
    print()
    print(md)
    out_dir = args.out_dir or (RESULTS / "tmp" if args.quick else RESULTS)
    write_results(args.name, report, md, out_dir)
    if args.name == "graph_scale":
        plot_from_results(out_dir, args.name)
    return report


if __name__ == "__main__":
    main()
