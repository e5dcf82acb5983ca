"""Shared helpers of the benchmark scripts: machine description, command line, atomic result files."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SHARED_DATA = HERE.parent.parent / "shared" / "data"
PFG_DATA = SHARED_DATA / "persuasionforgood" / "FullData"

for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or :func:`platform.processor`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(packages: Iterable[str] = ("torch", "transformers"), device: str | None = None) -> dict[str, Any]:
    """Platform, CPU, core count, load average, torch threads, GPU (if used) and package versions."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in packages},
    }
    try:
        from personakit.backbones.precision import cpu_bf16_support

        support = cpu_bf16_support()
        info["amx_bf16"], info["avx512_bf16"] = bool(support.get("amx_bf16")), bool(support.get("avx512_bf16"))
    except ImportError:
        pass
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if device and str(device).startswith("cuda") and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def machine_line(info: dict[str, Any], unit: str | None = None) -> str:
    """One markdown sentence describing :func:`machine_info`'s result: the machine that wrote the
    results, or with ``unit`` the machine stamped on that unit of a resumable benchmark (whose
    units may come from several machines; :func:`machines_line` lists them)."""
    load = info.get("load_average") or [float("nan")]
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items() if v)
    flags = f", AMX {'yes' if info['amx_bf16'] else 'no'}" if "amx_bf16" in info else ""
    head, when = ((f"Machine that ran unit `{unit}`", "when it finished") if unit
                  else ("Machine", "when the results were written"))
    return (f"{head}: {info['cpu']} ({info['cpu_count']} cores{flags}{gpu}), {info['platform']}, Python {info['python']}, "
            f"{versions}; 1-minute load average {load[0]:.2f} {when}.")


def unit_machine_line(unit: dict[str, Any]) -> str:
    """:func:`machine_line` of the machine stamped on a resumable benchmark's ``unit`` (``""`` without a stamp)."""
    return machine_line(unit["machine"], unit.get("unit", "?")) if unit.get("machine") else ""


def trained_where(unit: dict[str, Any]) -> str:
    """``<CPU> (AMX yes/no), <kernel> attention`` of a unit stamped with ``precision`` (``""`` without):
    the groups of :func:`machines_line`; step times compare only within one group."""
    p = unit.get("precision")
    if not p:
        return ""
    return f"{p.get('cpu', '?')} (AMX {'yes' if p.get('amx_bf16') else 'no'}), {unit.get('train_attention', 'sdpa')} attention"


def train_attention(device: str | None) -> str | None:
    """The attention kernel ``grag_quality.py`` and ``questioner_pfg.py`` train with
    (``TrainingConfig.attn_implementation``): ``"eager"`` on the CPU, where at their sequence lengths (up to
    about 260 tokens) it makes a bf16 training step faster than SDPA's fused kernel, whose CPU backward gains
    nothing from bf16 (``bf16_step_profile.py``); the model's own on a GPU.  ``copersona_pfg.py``'s ~300-token
    prompts are past the crossover, so it keeps SDPA.  Not part of a unit key: the losses agree within 0.3%,
    so units trained with SDPA (``train_attention`` missing) stay valid."""
    return "eager" if device in (None, "cpu") else None


def machines_line(trained: Iterable[tuple[str, dict[str, Any]]]) -> str:
    """``Trained on: <CPU> (AMX yes/no), <kernel> attention: <units>; ...``: which CPU and training attention
    kernel trained which units (sessions may run on different machines; a unit without ``train_attention``
    was trained with SDPA).  ``trained``: ``(name, unit)`` of the units that trained a model; those without
    a ``precision`` stamp are left out.  ``""`` when none is left."""
    groups: dict[str, list[str]] = {}
    for name, u in trained:
        where = trained_where(u)
        if where:
            groups.setdefault(where, []).append(name)
    return "Trained on: " + "; ".join(f"{where}: {', '.join(names)}" for where, names in groups.items()) + "." \
        if groups else ""


def command_line(argv: Iterable[str] | None = None) -> str:
    """The command that ran this script, relative to the repository root (``argv``: the arguments given to ``main``)."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(HERE.parent)
    except ValueError:
        pass
    args = list(sys.argv[1:] if argv is None else argv)
    return "python " + " ".join(shlex.quote(a) for a in [str(script), *args])


def add_setting_arguments(parser: argparse.ArgumentParser, name: str, data: Path | None = PFG_DATA,
                          quick_help: str = "smoke setting", scale_help: str = "larger GPU setting (use with --device cuda)"
                          ) -> argparse.ArgumentParser:
    """The options of a setting-based benchmark: ``--quick`` / ``--scale``, ``--data``, ``--device``, ``--seed``,
    ``--work-dir`` (default ``results/tmp/<name>-<setting>``) and ``--out`` (default ``results/``)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help=quick_help)
    group.add_argument("--scale", action="store_true", help=scale_help)
    if data is not None:
        parser.add_argument("--data", type=Path, default=data, help="Persuasion-for-Good FullData folder")
    parser.add_argument("--device", default=None, help="cuda for a GPU (default: CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=None,
                        help=f"caches and per-run outputs (default: benchmarks/results/tmp/{name}-<setting>)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"folder of {name}.{{json,md}}")
    return parser


def setting_name(args: argparse.Namespace) -> str:
    """``"quick"``, ``"scale"`` or ``"default"`` from :func:`add_setting_arguments`' flags."""
    return "quick" if args.quick else "scale" if args.scale else "default"


def work_dir(args: argparse.Namespace, name: str) -> Path:
    """``--work-dir`` or ``results/tmp/<name>-<setting>``."""
    return args.work_dir or RESULTS / "tmp" / f"{name}-{setting_name(args)}"


def require_pfg(parser: argparse.ArgumentParser, data: Path) -> None:
    """Exit with a usage error when ``data`` holds no Persuasion-for-Good ``full_dialog.csv``."""
    if not (Path(data) / "full_dialog.csv").is_file():
        parser.error(f"{data}: no full_dialog.csv (pass --data FullData folder of Persuasion-for-Good)")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


VOLATILE = ("command", "written", "machine_line")


def write_results(name: str, report: dict[str, Any], markdown: str, out_dir: Path | None = None,
                  volatile: Iterable[str] = VOLATILE) -> tuple[Path, Path]:
    """Write ``{out_dir}/{name}.json`` and ``.md`` atomically; returns both paths.

    When both files exist and differ from the new ones only in the ``volatile`` top-level
    fields of the report (when, by which command and on which machine it was written;
    the Markdown is compared with those fields' values masked), neither is rewritten: a
    resumable benchmark rerun that finished no new unit leaves its committed results (and
    the git tree) as they are.
    """
    from personakit.config import atomic_write_text

    out = Path(out_dir) if out_dir is not None else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    text = json.dumps(report, indent=2, default=str) + "\n"
    markdown = markdown if markdown.endswith("\n") else markdown + "\n"
    if not _only_volatile_changes(json_path, md_path, text, markdown, tuple(volatile)):
        atomic_write_text(json_path, text)
        atomic_write_text(md_path, markdown)
    return json_path, md_path


def report_volatile(args: Any) -> tuple[str, ...]:
    """The ``volatile`` fields for :func:`write_results` from a resumable benchmark's arguments: none
    for an explicit ``--report`` (a request to rewrite the page, e.g. after a change to its layout or
    machine line), :data:`VOLATILE` for a run."""
    return () if getattr(args, "report", False) else VOLATILE


def _only_volatile_changes(json_path: Path, md_path: Path, text: str, markdown: str, volatile: tuple[str, ...]) -> bool:
    """Whether the written ``json_path`` / ``md_path`` equal ``text`` / ``markdown`` but for ``volatile`` fields."""
    if not (volatile and json_path.exists() and md_path.exists()):
        return False
    try:
        old, new = json.loads(json_path.read_text(encoding="utf-8")), json.loads(text)
        old_md = md_path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return False
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return False

    def masked(report: dict[str, Any], md: str) -> tuple[dict[str, Any], str]:
        for key in volatile:
            value = report.get(key)
            if isinstance(value, str) and value:
                md = md.replace(value, f"<{key}>")
        return {k: v for k, v in report.items() if k not in volatile}, md

    return masked(old, old_md) == masked(new, markdown)


def prompt_pass_seconds(generator: Any, prompts: list[Any], batch_size: int) -> float:
    """Wall time of the prompt passes alone (``HFGenerator.prefill``, no decoding) over ``prompts``.

    The prompts are grouped into the batches ``generator.generate`` would form (its length
    order, ``batch_size`` per batch), so that the time is the part of a batched generation
    that no batch size removes: on a compute-bound CPU it bounds what batching can gain
    (one-at-a-time time per prompt / this time per prompt).
    """
    import time

    order = generator._batch_order(list(prompts))
    start = time.perf_counter()
    for i in range(0, len(order), batch_size):
        generator.prefill([prompts[j] for j in order[i:i + batch_size]])
    return time.perf_counter() - start


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, or ``None`` (with a message) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install personakit[bench])", flush=True)
        return None
    return plt


def save_figure(fig: Any, path: Path, dpi: int = 110) -> Path:
    """Write a matplotlib figure atomically (a temporary file renamed into place) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)
    return path


class UnitStore:
    """Resumable results of a long benchmark (``../shared/EXPERIMENTS.md`` §6): one JSON file per unit.

    A *unit* (a dataset, system and seed, say) is stored as
    ``{root}/{name}/{group}/{unit}-{key}.json``, ``key`` a hash of everything that determines its
    result (:meth:`key`), written atomically.  A rerun asks :meth:`load` first and skips the units
    already there; a changed config gives a new key, so a stale result is never reused.

    Example:
        >>> import tempfile
        >>> store = UnitStore(Path(tempfile.mkdtemp()), "demo")
        >>> key = store.key({"seed": 0, "lr": 1e-4})
        >>> store.load("SPC", "presft-s0", key) is None
        True
        >>> _ = store.save("SPC", "presft-s0", key, {"rouge1": 0.3})
        >>> store.load("SPC", "presft-s0", key)
        {'rouge1': 0.3}
    """

    def __init__(self, root: Path, name: str):
        self.root = Path(root)
        self.name = name

    @staticmethod
    def key(payload: dict[str, Any], length: int = 10) -> str:
        """A stable hash of ``payload`` (JSON with sorted keys): the same config gives the same key."""
        import hashlib

        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:length]

    def path(self, group: str, unit: str, key: str) -> Path:
        return self.root / self.name / group / f"{unit}-{key}.json"

    def load(self, group: str, unit: str, key: str) -> dict[str, Any] | None:
        """The stored result of this unit and key, or ``None`` when it has not finished yet."""
        path = self.path(group, unit, key)
        return json.loads(path.read_text()) if path.is_file() else None

    def save(self, group: str, unit: str, key: str, result: dict[str, Any]) -> Path:
        """Write the unit's result atomically (a crash leaves the old file or none, never half of one)."""
        from personakit.config import atomic_write_text

        path = self.path(group, unit, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(path, json.dumps(result, indent=1, default=str) + "\n")

    def all(self) -> list[dict[str, Any]]:
        """Every stored result (any key), in path order."""
        folder = self.root / self.name
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*/*.json"))] if folder.is_dir() else []


def git_commit_id() -> str:
    """The repository's short HEAD commit (``"unknown"`` outside a git checkout)."""
    import subprocess

    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def commit_path(paths: Path | Iterable[Path], message: str, name: str, *, repo: Path | None = None) -> None:
    """``git commit`` results files (only those paths) in one commit, retried while another git command holds
    the index; paths that do not exist or did not change are left out.

    Long benchmarks commit each finished unit, with the report it updated, this way
    (``../shared/EXPERIMENTS.md`` §6). ``repo``: the checkout (default: this repository).
    """
    import subprocess
    import time

    repo = HERE.parent if repo is None else Path(repo)
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    paths = [str(p) for p in paths if p.exists()]
    names = ", ".join(Path(p).name for p in paths)
    if not paths:  # git given no path would commit everything staged
        print(f"[{name}] no file to commit", flush=True)
        return
    for attempt in range(10):
        status = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=repo, capture_output=True,
                                text=True)
        if status.returncode == 0 and not status.stdout.strip():
            print(f"[{name}] {names} unchanged; nothing to commit", flush=True)
            return
        add = subprocess.run(["git", "add", "--", *paths], cwd=repo, capture_output=True, text=True)
        done = add.returncode == 0 and subprocess.run(
            ["git", "commit", "-q", "-m", message, "--", *paths], cwd=repo, capture_output=True,
            text=True).returncode == 0
        if done:
            print(f"[{name}] committed {names}", flush=True)
            return
        time.sleep(3 + attempt)
    print(f"[{name}] WARNING: could not commit {names}", flush=True)


def run_units(order: Iterable[str], *, store: UnitStore, group: str, name: str,
              key_of: Callable[[str], str], run: Callable[[str, str, dict], dict | None],
              stamp: Callable[[str], dict[str, Any]] = lambda unit: {}, deadline: float = float("inf"),
              commit: bool = False, describe: Callable[[str], str] = str,
              report: Callable[[], Any] | None = None, report_paths: Iterable[Path] = (),
              lock_dir: Path | None = None) -> dict[str, dict]:
    """Run a resumable benchmark's units in order (``../shared/EXPERIMENTS.md`` §6); return every unit done.

    For each unit: its key (``key_of(unit)``, which may use the keys of units before it);
    a stored result with that key is loaded and skipped; past ``deadline`` (``time.time()``)
    no new unit starts; otherwise ``run(unit, key, done)`` computes it (``done``: the units
    so far, by name; ``None`` skips the unit), and the result gets ``unit``, ``key``,
    ``wall_s`` (unless the unit set its own, e.g. training over several sessions plus
    scoring), ``finished``, ``commit`` and ``stamp(unit)``'s fields (setting, machine,
    precision), is written atomically under ``group``, ``report()`` is called, and with
    ``commit`` the unit file and the existing ``report_paths`` are committed together (one commit
    per unit).

    **Several processes.** With ``lock_dir`` (a folder outside git, e.g. the work folder) a
    unit runs under an exclusive lock on ``lock_dir/<unit>.lock`` (:func:`try_lock`): two
    processes given the same units share them out, each skipping the units another one is
    running (the operating system frees a lock when its process ends, so a killed run leaves
    none behind).  A unit whose ``run`` needs units that another process is still running
    returns ``None``.  While a pass over ``order`` skipped units for a lock and ran at least
    one unit, another pass follows, which picks up the units the other process has finished
    meanwhile and those that were waiting for them.  Without ``lock_dir`` (the default) one
    process runs the units in order, as before.

    Example:
        >>> import tempfile
        >>> store = UnitStore(Path(tempfile.mkdtemp()), "demo")
        >>> calls = []
        >>> def run(unit, key, done):
        ...     calls.append(unit)
        ...     return {"value": len(done)}
        >>> done = run_units(["a", "b"], store=store, group="g", name="demo", key_of=lambda u: u * 3, run=run)
        [demo] a: starting
        [demo] a: finished in 0.0 min
        [demo] b: starting
        [demo] b: finished in 0.0 min
        >>> again = run_units(["a", "b"], store=store, group="g", name="demo", key_of=lambda u: u * 3, run=run)
        [demo] a: done (aaa)
        [demo] b: done (bbb)
        >>> calls, again["b"]["value"]
        (['a', 'b'], 1)
    """
    import time

    order = list(order)
    done: dict[str, dict] = {}
    while True:
        ran, locked = _units_pass(order, done, store=store, group=group, name=name, key_of=key_of, run=run,
                                  stamp=stamp, deadline=deadline, commit=commit, describe=describe, report=report,
                                  report_paths=report_paths, lock_dir=lock_dir)
        if not (ran and locked) or time.time() > deadline:
            return done


def resident_mb() -> float | None:
    """This process's resident memory (``VmRSS``) in MB; ``None`` where ``/proc`` is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def release_memory() -> tuple[float | None, float | None]:
    """Collect garbage and hand the allocator's free pages back to the system; return the resident MB
    before and after.

    A finished unit's model, trainer and activations are unreachable once it returns, but
    reference cycles (modules, hooks, trainers) wait for the cyclic collector, and glibc keeps
    the freed memory of a long training in its heap, so a process that runs several units
    grows: a CoPersona lane went from 9 GB in training to 13 GB two units later, and the
    kernel's OOM killer ended it on 2026-12-07.
    ``malloc_trim(0)`` (glibc only; elsewhere a no-op) returns the free pages.
    """
    import gc

    before = resident_mb()
    gc.collect()
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        sys.modules["torch"].cuda.empty_cache()
    malloc_trim()
    return before, resident_mb()


def malloc_trim() -> bool:
    """glibc's ``malloc_trim(0)``: hand the free pages of the heap back to the system (``False`` without glibc)."""
    import ctypes
    import ctypes.util

    try:
        trim = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "malloc_trim", None)
    except OSError:
        return False
    if trim is None:
        return False
    trim(0)
    return True


def trim_callback(name: str, every: int = 10) -> Any:
    """A trainer callback that keeps a training's resident memory near what it uses.

    PyTorch's CPU tensors come from glibc's ``malloc``; below its mmap threshold (which rises to
    32 MB as large blocks are freed) they are carved from the heap, and the pages of freed blocks
    stay resident. A questioner unit held 9-11 GB resident while training, of which a heap trim at
    the end of the unit returned three quarters. The callback trims the heap every ``every``
    optimizer steps and after each evaluation, and logs the resident size around the
    post-evaluation trim (``[name] step N: resident A GB, B GB after trim``).
    """
    from personakit.training import TrainerCallback

    class TrimMemory(TrainerCallback):
        def on_step_end(self, trainer: Any, step: int) -> None:
            if every > 0 and step % every == 0:
                malloc_trim()

        def on_evaluate(self, trainer: Any, record: dict[str, Any]) -> None:
            before, after = release_memory()
            if after is not None:
                print(f"[{name}] step {record.get('step')}: resident {before / 1024:.1f} GB, {after / 1024:.1f} GB "
                      "after trim", flush=True)

    return TrimMemory()


def try_lock(path: Path) -> Any:
    """An exclusive, non-blocking lock on the file ``path`` (created with its folders): the open file
    object, whose closing (or the process's end) releases the lock, or ``None`` when another process
    holds it.  ``fcntl.flock``, so POSIX only; elsewhere every call gets the lock (no sharing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no sharing between processes
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")  # who holds it, for a person looking
    handle.flush()
    return handle


def _units_pass(order: list[str], done: dict[str, dict], *, store: UnitStore, group: str, name: str,
                key_of: Callable[[str], str], run: Callable[[str, str, dict], dict | None],
                stamp: Callable[[str], dict[str, Any]], deadline: float, commit: bool,
                describe: Callable[[str], str], report: Callable[[], Any] | None, report_paths: Iterable[Path],
                lock_dir: Path | None) -> tuple[int, int]:
    """One pass of :func:`run_units` over ``order``: ``(units run, units skipped for another process's lock)``."""
    import time

    ran = locked = 0
    for unit in order:
        if unit in done:
            continue
        key = key_of(unit)
        label = describe(unit)
        stored, lock = store.load(group, unit, key), None
        if stored is None and lock_dir is not None and time.time() <= deadline:
            lock = try_lock(lock_dir / f"{unit}.lock")
            if lock is None:
                locked += 1
                print(f"[{name}] {label}: running in another process; skipped here", flush=True)
                continue
            stored = store.load(group, unit, key)  # another process may have finished it meanwhile
        try:
            if stored is not None:
                done[unit] = stored
                print(f"[{name}] {label}: done ({key})", flush=True)
                continue
            if time.time() > deadline:
                print(f"[{name}] time budget reached; {label} and later units left for a later run", flush=True)
                break
            print(f"[{name}] {label}: starting", flush=True)
            start = time.perf_counter()
            result = run(unit, key, done)
            if result is None:
                continue
            ran += 1
            result.setdefault("wall_s", time.perf_counter() - start)
            result.update({"unit": unit, "key": key, "finished": now(), "commit": git_commit_id(), **stamp(unit)})
            path = store.save(group, unit, key, result)
            done[unit] = result
        finally:
            if lock is not None:
                lock.close()
        before, after = release_memory()
        memory = f"; resident {before / 1024:.1f} GB, {after / 1024:.1f} GB after release" if after else ""
        print(f"[{name}] {label}: finished in {result['wall_s'] / 60:.1f} min{memory}", flush=True)
        if report is not None:
            report()
        if commit:
            minutes = f"{result['wall_s'] / 60:.0f} min"
            commit_path([path, *map(Path, report_paths)], f"{name}: {label} ({minutes}) and the report", name)
    return ran, locked


def sanity_replies(train: Sequence[Any], test: Sequence[Any]) -> dict[str, list[str]]:
    """The test replies of two sanity rows (``../shared/EXPERIMENTS.md`` §5) that need no model.

    ``copy_last_turn``: each test example's last history turn (the user's or questioner's
    words, copied); ``most_frequent_reply``: the training split's most frequent ``response``
    (compared lower-cased and stripped; ties go to the one seen first), for every test
    example.  Examples need ``history`` (turns with ``text``) and ``response``.

    Example:
        >>> from types import SimpleNamespace as E
        >>> turn = lambda text: E(text=text)
        >>> train = [E(history=[], response=r) for r in ("Hi.", "No.", " hi.")]
        >>> sanity_replies(train, [E(history=[turn("Hello?")], response="Yes.")])
        {'copy_last_turn': ['Hello?'], 'most_frequent_reply': ['Hi.']}
    """
    from collections import Counter

    counts = Counter(ex.response.strip().lower() for ex in train)
    top = counts.most_common(1)[0][0] if counts else ""
    frequent = next((ex.response.strip() for ex in train if ex.response.strip().lower() == top), "")
    return {"copy_last_turn": [ex.history[-1].text if ex.history else "" for ex in test],
            "most_frequent_reply": [frequent] * len(test)}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--commit``, ``--budget-hours`` and ``--report``: the options of a resumable benchmark."""
    parser.add_argument("--commit", action="store_true", help="git commit each finished unit and the report")
    parser.add_argument("--budget-hours", type=float, default=None, help="start no unit after this many hours")
    parser.add_argument("--report", action="store_true", help="only rebuild the report from the finished units")
    parser.add_argument("--only", nargs="+", default=None, metavar="UNIT",
                        help="run only these units (their names in the benchmark's unit order; grag_quality: kinds "
                             "of unit, e.g. sanity); the report still shows every finished unit")


class UnitContext:
    """The state the units of a resumable benchmark share (``../shared/EXPERIMENTS.md`` §6).

    ``args`` (from :func:`add_setting_arguments` and :func:`add_run_arguments`), ``s`` (the
    setting's dict), ``work`` (the work folder, outside git: checkpoints, caches), ``store``
    (:class:`UnitStore` under ``args.out``), ``units`` (the finished units by name) and
    ``keys`` (their keys).  A benchmark subclasses it with its data and models, implements
    :meth:`key` (which may use the keys of the units a unit depends on) and calls
    :meth:`run`.
    """

    PACKAGES: tuple[str, ...] = ("torch", "transformers", "peft", "personakit")

    def __init__(self, args: argparse.Namespace, setting: dict, name: str):
        self.args, self.s, self.name = args, setting, name
        self.work = Path(args.work_dir or RESULTS / "tmp" / f"{name}-{args.setting_name}")
        self.work.mkdir(parents=True, exist_ok=True)
        self.store = UnitStore(args.out, name)
        self.units: dict[str, dict] = {}
        self.keys: dict[str, str] = {}

    def key(self, unit: str) -> str:
        """The unit's key: a hash of everything that determines its result."""
        raise NotImplementedError

    def stamp(self, unit: str) -> dict[str, Any]:
        """Fields every stored unit gets: the setting, the machine and the precision."""
        from personakit.backbones.precision import describe_precision

        device = getattr(self.args, "device", None)
        return {"setting": self.args.setting_name, "machine": machine_info(self.PACKAGES, device),
                "precision": describe_precision(device)}

    def run(self, order: Iterable[str], run_unit: Callable[[str, str], dict | None], *,
            report: Callable[[], Any] | None = None, report_paths: Iterable[Path] = (),
            depends: Callable[[str], Iterable[str]] = lambda unit: ()) -> dict[str, dict]:
        """:func:`run_units` over ``order`` with ``run_unit(unit, key)``, the ``--budget-hours``, ``--commit`` and
        ``--only`` of ``args``; the finished units land in :attr:`units` (before each unit runs, too).  With
        ``--only`` the units a listed unit depends on must be listed too (their stored results are loaded).

        Several processes of one benchmark share its units out: each unit runs under a lock in the work folder
        (``run_units``' ``lock_dir``), and a unit whose inputs (``depends(unit)``) are not finished yet (another
        process is still running one) waits for a later pass or a later run."""
        import time

        budget = getattr(self.args, "budget_hours", None)

        def key_of(unit: str) -> str:
            self.keys[unit] = self.key(unit)
            return self.keys[unit]

        def run(unit: str, key: str, done: dict[str, dict]) -> dict | None:
            self.units.update(done)
            waiting = [d for d in depends(unit) if d not in done]
            if waiting:
                print(f"[{self.name}] {unit}: waits for {', '.join(waiting)}", flush=True)
                return None
            return run_unit(unit, key)

        only = getattr(self.args, "only", None)
        if only:
            order = list(order)
            unknown = sorted(set(only) - set(order))
            if unknown:
                raise SystemExit(f"{self.name}: --only: no unit named {', '.join(unknown)} (units: {', '.join(order)})")
            order = [unit for unit in order if unit in only]
        self.units.update(run_units(
            order, store=self.store, group=self.args.setting_name, name=self.name, key_of=key_of, run=run,
            stamp=self.stamp, deadline=time.time() + budget * 3600 if budget else float("inf"),
            commit=bool(getattr(self.args, "commit", False)), report=report, report_paths=report_paths,
            lock_dir=self.work / "locks"))
        return self.units


def plot_dev_curve(ax: Any, unit: dict[str, Any], key: str, name: str) -> None:
    """One trained unit's dev curve (``eval_history[*][key]`` against the step) on ``ax``, labelled with
    ``name``, its training minutes and whether it reached a plateau."""
    hist = [r for r in unit.get("eval_history") or [] if r.get(key) is not None]
    ax.plot([r["step"] for r in hist], [r[key] for r in hist], marker=".",
            label=f"{name} ({unit['train_s'] / 60:.0f} min, "
                  f"{'plateau' if unit.get('stopped_early') else 'not converged'})")
