r"""The recipe skeleton every family recipe is built on.

A recipe is a config class (a :class:`RecipeConfig`), a run function returning a
:class:`RecipeResults`, and the YAML files that ship with it.  This module holds what they
share, so each family's ``recipes/<family>/{config,run}.py`` holds only its own method:

* **Loading a config** (:func:`load_recipe_config`): a shipped name (``tiny``,
  ``default``) or a file; ``--set key.path=value`` overrides; relative paths in a file
  resolve against the file's folder (``${VAR}`` and ``${VAR:-default}`` expand first);
  every key is checked before anything runs, so a typo fails at load with the field named.
* **Stages** (:class:`Stages`): timed, printed stage messages.
* **Subsampling** (:func:`subsample`): a seeded subset in the original order.
* **Scoring** (:func:`score_test_set`): metrics per system through
  :func:`~personakit.eval.evaluate_texts`, per-example scores through
  :meth:`~personakit.eval.Metric.per_example`, and the paired comparison against a
  baseline (:func:`~personakit.eval.paired_comparison`: t-test and bootstrap interval),
  for each named test set.
* **Results** (:class:`RecipeResults`): tables through
  :func:`~personakit.eval.format_metrics_table`; one ``save(directory) -> Path`` that writes
  ``results.md``, ``results.json``, ``predictions.jsonl`` (readable by ``personakit
  evaluate``) and ``manifest.json`` atomically.
* **Manifest** (:func:`run_manifest`): seed, full config, data file hashes, package
  versions, git commit, machine (with whether the CPU has AMX).
* **Registry** (:data:`RECIPES`, :func:`run_recipe`): what ``personakit run`` runs.

Example:
    >>> subsample(list(range(10)), 3, seed=0)
    [0, 6, 9]
    >>> apply_overrides({"training": {"epochs": 1}}, ["training.epochs=3", "seed=2"])
    {'training': {'epochs': 3}, 'seed': 2}
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import os
import platform
import random
import re
import subprocess
import sys
import time
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping, NamedTuple, Optional, Sequence, Union

import yaml
from pydantic import BaseModel, Field

from personakit.config import BaseConfig, ConfigError, atomic_write_text

__all__ = [
    "RECIPES",
    "RecipeSpec",
    "RecipeConfig",
    "RecipeResults",
    "TestSetResult",
    "Stages",
    "PathField",
    "apply_overrides",
    "expand_path",
    "find_config",
    "jsonable",
    "list_recipes",
    "load_recipe_config",
    "packaged_configs",
    "resolve_config_paths",
    "run_manifest",
    "run_recipe",
    "score_test_set",
    "subsample",
    "default_output_dir",
]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""Where the shipped recipe configs live: ``configs/<recipe>/<name>.yaml``."""


# ----------------------------------------------------------------------------- registry
class RecipeSpec(NamedTuple):
    """One entry of :data:`RECIPES`: where the config class and the run function live."""

    module: str
    config: str
    run: str
    summary: str


RECIPES: dict[str, RecipeSpec] = {
    "grag": RecipeSpec("personakit.recipes.grag", "GRAGRecipeConfig", "run_grag_recipe",
                       "augment with a generic LLM, train PreSFT / PreGRAG / PostGRAG, compare with ICL(Hist)"),
    "questioner": RecipeSpec("personakit.recipes.questioner", "QuestionerRecipeConfig", "run_questioner_recipe",
                             "dual-tower questioner-aware responder against LoRA and persona-in-prompt"),
    "copersona": RecipeSpec("personakit.recipes.copersona", "CoPersonaRecipeConfig", "run_copersona_recipe",
                            "facets, summaries, multiplex graph, CoPersona against Non-Perso / RAG / PAG"),
    "ropg": RecipeSpec("personakit.recipes.ropg", "ROPGRecipeConfig", "run_ropg_recipe",
                       "retrievers over a user's profile, ROPG-trained retrievers and the RSPG selector"),
    "retrieved-persona": RecipeSpec("personakit.recipes.retrieved_persona", "RetrievedPersonaRecipeConfig",
                                    "run_retrieved_persona_recipe",
                                    "cross-family: retrievers and the RSPG selector choose the persona a GRAG model reads"),
}
"""``personakit run <name>``: the recipes, by name."""


def _spec(recipe: str) -> RecipeSpec:
    key = recipe.strip().lower().replace("_", "-")
    if key not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; the recipes are {', '.join(sorted(RECIPES))}")
    return RECIPES[key]


def recipe_parts(recipe: str) -> tuple[type["RecipeConfig"], Callable[..., "RecipeResults"]]:
    """``(config class, run function)`` of a registered recipe (imported on first use)."""
    spec = _spec(recipe)
    module = importlib.import_module(spec.module)
    return getattr(module, spec.config), getattr(module, spec.run)


def list_recipes() -> dict[str, dict[str, Any]]:
    """``{name: {"summary", "configs"}}`` for every registered recipe and its shipped configs."""
    return {name: {"summary": spec.summary, "configs": sorted(packaged_configs(name))} for name, spec in RECIPES.items()}


def run_recipe(recipe: str, config: Union["RecipeConfig", str, os.PathLike[str], None] = "tiny",
               overrides: Sequence[str] = (), output_dir: Union[str, os.PathLike[str], None] = None,
               **kwargs: Any) -> "RecipeResults":
    """Load a config (:func:`load_recipe_config`) unless one is given, and run the recipe.

    Args:
        recipe: a name of :data:`RECIPES`.
        config: a config object, a shipped config name or a config file.
        overrides: ``key.path=value`` strings.
        output_dir: replaces the config's ``output_dir``.
        **kwargs: passed to the recipe's run function (``progress``, stand-in models...);
            ``progress=False`` also hides transformers' "Loading weights" bars.
    """
    from personakit.backbones.quiet import loading_progress

    config_cls, run = recipe_parts(recipe)
    if not isinstance(config, BaseConfig):
        config = load_recipe_config(recipe, config, overrides=overrides, output_dir=output_dir)
    elif overrides or output_dir is not None:
        data = apply_overrides(config.to_dict(), overrides)
        if output_dir is not None:
            data["output_dir"] = str(output_dir)
        config = config_cls.from_dict(data, source="overrides")
    with loading_progress(False if kwargs.get("progress", True) is False else None):
        return run(config, **kwargs)


# ----------------------------------------------------------------------------- configs
def PathField(default: Any = None, *, description: str, **kwargs: Any) -> Any:  # noqa: N802 (a Field factory)
    """A config field holding a file or folder path.

    In a config file, a relative path resolves against the file's folder, and
    ``${VAR}`` / ``${VAR:-default}`` / ``~`` expand (:func:`resolve_config_paths`).
    """
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    extra["path"] = True
    if "default_factory" in kwargs:
        return Field(description=description, json_schema_extra=extra, **kwargs)
    return Field(default, description=description, json_schema_extra=extra, **kwargs)


class RecipeConfig(BaseConfig):
    """Fields every recipe config has; each family's config subclasses it.

    Example:
        >>> RecipeConfig().output_dir is None
        True
    """

    recipe: ClassVar[str] = "recipe"  # its `personakit run` name; the default output folder is runs/<recipe>/...

    output_dir: Optional[str] = PathField(None, description=(
        "Where results, predictions, the manifest and checkpoints go; ``None``: ``runs/<recipe>/<UTC timestamp>`` "
        "under the current folder, chosen when the run starts."))
    seed: int = Field(0, description="Seed of subsampling, initialisation and data order.")
    device: Optional[str] = Field(None, description="'cpu', 'cuda', ... (None: the default device).")


def default_output_dir(recipe: str, now: Optional[datetime] = None) -> Path:
    """``runs/<recipe>/<UTC timestamp>`` under the current folder."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / recipe / stamp


def output_dir_of(config: RecipeConfig) -> Path:
    """The config's ``output_dir``, or a new ``runs/<recipe>/<timestamp>``; the config is updated to name it."""
    if config.output_dir is None:
        config.output_dir = str(default_output_dir(type(config).recipe))
    return Path(config.output_dir)


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_path(value: str, base: Optional[Path] = None, where: str = "path") -> str:
    """``${VAR}`` / ``${VAR:-default}`` and ``~`` expanded; a relative result joined to ``base``.

    Raises:
        ConfigError: a ``${VAR}`` without default whose variable is not set (the message
            names ``where`` and the variable).

    Example:
        >>> expand_path("${PK_DOC_UNSET:-data}/x.jsonl", Path("/cfg"))
        '/cfg/data/x.jsonl'
    """
    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        got = os.environ.get(name)
        if got:
            return got
        if default is not None:
            return default
        raise ConfigError(f"{where}: {value!r} uses ${{{name}}}, which is not set; export {name}=... or give the "
                          "field another value (personakit run ... --set FIELD=PATH)")

    text = os.path.expanduser(_VAR.sub(sub, value))
    if base is not None and text and not os.path.isabs(text):
        text = os.path.normpath(os.path.join(base, text))
    return text


def _config_classes(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic model classes inside an annotation (``X``, ``Optional[X]``, ``list[X]``, ``dict[str, X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out += _config_classes(arg)
    return out


def _is_path_field(info: Any) -> bool:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return bool(extra.get("path"))


def _resolve_value(value: Any, annotation: Any, is_path: bool, base: Optional[Path], where: str) -> Any:
    if value is None:
        return value
    if isinstance(value, str):
        if is_path:
            return expand_path(value, base, where)
        for cls in _config_classes(annotation):  # a bare string standing for a config with a `path` field
            info = cls.model_fields.get("path")
            if info is not None and _is_path_field(info):
                return expand_path(value, base, where)
        return value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        kinds = {dict: (dict, Mapping), list: (list, Sequence)}
        for arg in args:
            arg_origin = typing.get_origin(arg) or arg
            for kind, accepted in kinds.items():
                if isinstance(value, kind) and isinstance(arg_origin, type) and issubclass(arg_origin, accepted):
                    return _resolve_value(value, arg, is_path, base, where)
            if isinstance(value, dict) and isinstance(arg, type) and issubclass(arg, BaseModel):
                return resolve_config_paths(value, arg, base, where + ".")
        return value
    if isinstance(value, dict):
        if origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
            inner = args[1] if len(args) == 2 else Any
            return {k: _resolve_value(v, inner, is_path, base, f"{where}.{k}") for k, v in value.items()}
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return resolve_config_paths(value, annotation, base, where + ".")
        return value
    if isinstance(value, list) and origin in (list, tuple, Sequence, typing.Sequence):
        inner = args[0] if args else Any
        return [_resolve_value(v, inner, is_path, base, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def resolve_config_paths(data: Any, cls: type[BaseModel], base: Optional[Path], where: str = "") -> Any:
    """``data`` (a raw config mapping for ``cls``) with every :func:`PathField` value expanded (:func:`expand_path`).

    Nested configs are walked: fields typed as config classes, and lists, dicts and
    ``Optional`` / unions of them; a bare string given for a config whose ``path`` field is
    a :func:`PathField` (``test_sets: {convai2: file.jsonl}``) is expanded as that path.  A
    path field typed as a list or dict of strings has each string expanded.  Values of the
    wrong type are left for validation to report.
    """
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for name, info in cls.model_fields.items():
        if name in out:
            out[name] = _resolve_value(out[name], info.annotation, _is_path_field(info), base, f"{where}{name}")
    return out


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` with ``key.path=value`` overrides applied (values parsed as YAML: ``3e-4``, ``true``, ``[a, b]``).

    A list item is addressed by its index (``models.1.beta=0.1``).

    Raises:
        ConfigError: an override without ``=``, or a path through a value that is not a mapping or list.
    """
    out = json.loads(json.dumps(data))  # a deep copy of plain data
    for text in overrides:
        if "=" not in text:
            raise ConfigError(f"--set {text!r}: expected KEY=VALUE (e.g. training.epochs=2)")
        key, raw = text.split("=", 1)
        parts = [p for p in key.strip().split(".")]
        if not all(parts):
            raise ConfigError(f"--set {text!r}: empty part in key {key!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {text!r}: the value is not valid YAML ({err})") from None
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 3e-4 (no dot) as a string
        node: Any = out
        for i, part in enumerate(parts[:-1]):
            here = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {text!r}: {here} is not an item of a list of {len(node)}")
                node = node[int(part)]
            elif isinstance(node, dict):
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
            else:
                raise ConfigError(f"--set {text!r}: {'.'.join(parts[:i])} is {type(node).__name__}, not a mapping")
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"--set {text!r}: {key} is not an item of a list of {len(node)}")
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {text!r}: {'.'.join(parts[:-1])} is {type(node).__name__}, not a mapping")
    return out


def packaged_configs(recipe: str) -> dict[str, Path]:
    """``{name: path}`` of the configs shipped for ``recipe`` (``tiny``, ``default``, ...)."""
    folder = CONFIG_DIR / recipe.strip().lower().replace("_", "-")
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def find_config(recipe: str, config: Union[str, os.PathLike[str]]) -> Path:
    """The file a ``--config`` value names: an existing file, else a shipped config name.

    Raises:
        ConfigError: neither (the message lists the shipped names).
    """
    path = Path(config)
    if path.is_file():
        return path
    shipped = packaged_configs(recipe)
    name = str(config)
    if name in shipped and os.sep not in name and not name.endswith((".yaml", ".yml", ".json")):
        return shipped[name]
    raise ConfigError(f"--config {name!r}: no such file, and not a shipped {recipe} config "
                      f"(shipped: {', '.join(sorted(shipped)) or 'none'})")


def _read_mapping(path: Path) -> dict[str, Any]:
    from personakit.config import _no_duplicate_pairs, _UniqueKeyLoader

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text, object_pairs_hook=_no_duplicate_pairs)
        else:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except (yaml.YAMLError, ValueError) as err:
        raise ConfigError(f"{path}: invalid {'JSON' if path.suffix == '.json' else 'YAML'}: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config fields, got {type(data).__name__}")
    return data


def load_recipe_config(recipe: Union[str, type[RecipeConfig]], config: Union[str, os.PathLike[str], None] = "tiny",
                       overrides: Sequence[str] = (), output_dir: Union[str, os.PathLike[str], None] = None
                       ) -> RecipeConfig:
    """Read and check a recipe config: a file or shipped name, then ``overrides``, then ``output_dir``.

    Relative paths in the file resolve against the file's folder; paths given in
    ``overrides`` or ``output_dir`` resolve against the current folder.  Every key is
    validated here, so a misspelt one fails before anything trains.

    Args:
        recipe: a recipe name (:data:`RECIPES`) or its config class.
        config: a config file, a shipped name (``"tiny"``, ``"default"``) or ``None`` (the
            class defaults).
        overrides: ``key.path=value`` strings (:func:`apply_overrides`).
        output_dir: replaces ``output_dir``.

    Raises:
        ConfigError: an unknown file or name, invalid YAML, or a field that fails
            validation (the message names the file and the field).
    """
    if isinstance(recipe, str):
        cls: type[RecipeConfig] = recipe_parts(recipe)[0]
        name = recipe
    else:
        cls, name = recipe, recipe.recipe
    if config is None:
        data, source, base = {}, f"{cls.__name__} defaults", None
    else:
        path = find_config(name, config)
        data, source, base = _read_mapping(path), str(path), path.resolve().parent
        data = resolve_config_paths(data, cls, base)
    if overrides:
        data = apply_overrides(data, overrides)
        data = resolve_config_paths(data, cls, Path.cwd())
        source += " with --set " + " ".join(overrides)
    if output_dir is not None:
        data["output_dir"] = os.path.abspath(os.fspath(output_dir))
    return cls.from_dict(data, source=source)


# ------------------------------------------------------------------------------ stages
class Stages:
    """Timed stages of a run: ``[name   12.3s] message`` lines when ``progress``, and ``timings``.

    Example:
        >>> stages = Stages("demo", progress=False)
        >>> with stages("train"):
        ...     pass
        >>> sorted(stages.timings)
        ['train_s']
    """

    def __init__(self, name: str, progress: bool = True, width: int = 6):
        self.name = name
        self.progress = progress
        self.width = width
        self.start = time.perf_counter()
        self.timings: dict[str, float] = {}

    def log(self, message: str) -> None:
        """Print ``message`` with the seconds since the run began (when ``progress``)."""
        if self.progress:
            print(f"[{self.name} {time.perf_counter() - self.start:{self.width}.1f}s] {message}", flush=True)

    @contextlib.contextmanager
    def __call__(self, key: str, message: Optional[str] = None) -> Iterator["Stages"]:
        """Time the block as ``timings[key + "_s"]`` (added to an earlier stage of that key); print ``message``."""
        if message:
            self.log(message)
        t = time.perf_counter()
        try:
            yield self
        finally:
            self.timings[f"{key}_s"] = self.timings.get(f"{key}_s", 0.0) + time.perf_counter() - t

    def add(self, key: str, seconds: float) -> None:
        """Record a time measured elsewhere (e.g. a trainer's ``train_seconds``, which survives a resume)."""
        self.timings[f"{key}_s"] = self.timings.get(f"{key}_s", 0.0) + float(seconds)

    def total(self) -> dict[str, float]:
        """``timings`` with ``total_s`` (the wall time since the start) added."""
        return {**self.timings, "total_s": time.perf_counter() - self.start}


def subsample(items: Sequence[Any], n: Optional[int], seed: int) -> list[Any]:
    """A seeded sample of ``n`` items in their original order (all of them when ``n`` is ``None`` or large)."""
    items = list(items)
    if n is None or n >= len(items):
        return items
    if n < 0:
        raise ValueError(f"subsample: n must be >= 0, got {n}")
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


# ----------------------------------------------------------------------------- results
def jsonable(x: Any) -> Any:
    """``x`` with dict keys as strings, tuples as lists, NaN as ``None``, ±inf as strings, paths and tensors as plain values."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "to_dict") and callable(x.to_dict) and not isinstance(x, type):
        return jsonable(x.to_dict())
    if hasattr(x, "item") and callable(x.item):
        return jsonable(x.item())
    return x


@dataclass
class TestSetResult:
    """The systems scored on one named test set (:func:`score_test_set`).

    Attributes:
        name: the test set's name (``"test"``, ``"convai2"``...).
        ids: one id per example.
        references: one reference per example.
        predictions: ``{system: [prediction per example]}``.
        rows: ``{system: {metric: value}}`` (corpus scores, and any extra columns).
        per_example: ``{system: {metric: [value per example]}}`` for the compared metrics.
        baseline: the system the others are compared with (``None``: no comparison).
        significance: ``{system: {metric: PairedComparison.to_dict()}}`` against the baseline.
        inputs: optional per-example fields written beside each prediction (e.g. the question).
    """

    name: str
    ids: list[str]
    references: list[Any]
    predictions: dict[str, list[str]]
    rows: dict[str, dict[str, Any]]
    per_example: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    baseline: Optional[str] = None
    significance: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)

    def table(self, digits: int = 4) -> str:
        """The metrics table; a significant difference from the baseline is marked ↑ / ↓ in its cell."""
        from personakit.eval import format_metrics_table

        rows: dict[str, dict[str, Any]] = {}
        for system, row in self.rows.items():
            marked: dict[str, Any] = {}
            for key, value in row.items():
                sig = self.significance.get(system, {}).get(key)
                if sig and sig.get("significant") and isinstance(value, (int, float)):
                    arrow = "↑" if sig["mean_difference"] > 0 else "↓"
                    marked[key] = f"{value:.{digits}f} {arrow}"
                else:
                    marked[key] = value
            rows[system] = marked
        return format_metrics_table(rows, digits=digits)

    def significance_table(self, digits: int = 4) -> str:
        """``| system | metric | difference | 95% CI | p |`` against the baseline ('' without comparisons)."""
        lines = []
        for system, by_metric in self.significance.items():
            for metric, s in by_metric.items():
                p = s.get("p_value")
                p_text = "nan" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:.3g}"
                lines.append(f"| {system} | {metric} | {s['mean_difference']:+.{digits}f} | "
                             f"[{s['ci_low']:+.{digits}f}, {s['ci_high']:+.{digits}f}] | {p_text}"
                             f"{' *' if s.get('significant') else ''} |")
        if not lines:
            return ""
        conf = next(iter(next(iter(self.significance.values())).values())).get("confidence", 0.95)
        head = [f"| system | metric | difference vs {self.baseline} | {conf:.0%} CI (bootstrap) | p (paired t) |",
                "| --- | --- | ---: | ---: | ---: |"]
        return "\n".join(head + lines)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "n": len(self.ids), "rows": self.rows, "baseline": self.baseline,
                "significance": self.significance}


def score_test_set(name: str, ids: Sequence[Any], references: Sequence[Any], predictions: Mapping[str, Sequence[str]],
                   metrics: Sequence[Any], *, baseline: Optional[str] = None,
                   compare: Sequence[str] = (), significance_level: float = 0.05, confidence: float = 0.95,
                   n_resamples: int = 10_000, seed: int = 0, extra_rows: Optional[Mapping[str, Mapping[str, Any]]] = None,
                   inputs: Sequence[Mapping[str, Any]] = (), metric_options: Optional[Mapping[str, Any]] = None
                   ) -> TestSetResult:
    """Score every system's predictions on one test set, and compare each with ``baseline``.

    Args:
        name: the test set's name.
        ids, references: one per example.
        predictions: ``{system: [prediction per example]}``.
        metrics: metric names or instances (:func:`~personakit.eval.evaluate_texts`).
        baseline: the system the others are compared with (``None``: no comparisons).
        compare: the metric keys compared (``"rougeL"``, ``"bleu"``...): per-example scores
            (:func:`~personakit.eval.evaluate_per_example`) and :func:`~personakit.eval.paired_comparison`.
        significance_level, confidence, n_resamples, seed: of the comparison.
        extra_rows: further columns per system (e.g. BPC, reply statistics), added after the metrics.
        inputs: per-example fields written beside each prediction in ``predictions.jsonl``.
        metric_options: per-metric options (``{"bertscore": {"model": "minilm"}}``).

    Raises:
        ValueError: a system with a different number of predictions, an unknown baseline, or
            a compared key no metric produces.
    """
    from personakit.eval import build_metrics, evaluate_texts, paired_comparison

    n = len(references)
    if len(ids) != n:
        raise ValueError(f"test set {name!r}: {len(ids)} ids but {n} references")
    for system, preds in predictions.items():
        if len(preds) != n:
            raise ValueError(f"test set {name!r}: system {system!r} has {len(preds)} predictions for {n} examples")
    if baseline is not None and baseline not in predictions:
        raise ValueError(f"test set {name!r}: baseline {baseline!r} is not among the systems {list(predictions)}")
    options = dict(metric_options or {})
    built = build_metrics(list(metrics), options)
    rows: dict[str, dict[str, Any]] = {}
    for system, preds in predictions.items():
        rows[system] = dict(evaluate_texts(list(preds), list(references), metrics=built))
        rows[system].update(dict((extra_rows or {}).get(system, {})))
    per_example: dict[str, dict[str, list[float]]] = {}
    significance: dict[str, dict[str, dict[str, Any]]] = {}
    if compare:
        for system, preds in predictions.items():
            scores: dict[str, list[float]] = {}
            for metric in built:
                got = metric.per_example(list(preds), list(references))
                scores.update({k: v for k, v in got.items() if k in compare})
            missing = [k for k in compare if k not in scores]
            if missing:
                raise ValueError(f"test set {name!r}: no metric gives per-example {missing[0]!r}; "
                                 f"the metrics give {sorted(rows[system])}")
            per_example[system] = scores
        if baseline is not None:
            for system in predictions:
                if system == baseline:
                    continue
                significance[system] = {
                    key: paired_comparison(per_example[system][key], per_example[baseline][key],
                                           significance_level=significance_level, confidence=confidence,
                                           n_resamples=n_resamples, seed=seed).to_dict()
                    for key in compare}
    return TestSetResult(name=name, ids=[str(i) for i in ids], references=list(references),
                         predictions={k: list(v) for k, v in predictions.items()}, rows=rows,
                         per_example=per_example, baseline=baseline, significance=significance,
                         inputs=[dict(x) for x in inputs])


@dataclass
class RecipeResults:
    """What every recipe returns; a family's results class subclasses it and adds its sections.

    Attributes:
        recipe: the recipe's name.
        config: the full config (plain data).
        test_sets: ``{name: TestSetResult}``, in the order the config names them.
        timings: ``{stage_s: seconds}`` with ``total_s``; a resumed training stage reports
            the original training time.
        sizes: counts (training examples, test examples, users...).
        manifest: :func:`run_manifest`.
        details: family-specific results (training histories, costs...), saved in ``results.json``.
        output_dir: where :meth:`save` last wrote.
    """

    title: ClassVar[str] = "Results"

    recipe: str
    config: dict[str, Any]
    test_sets: dict[str, TestSetResult]
    timings: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    output_dir: Optional[Path] = None

    # -------------------------------------------------------------- views of the first test set
    @property
    def primary(self) -> TestSetResult:
        """The first test set."""
        if not self.test_sets:
            raise ValueError(f"{self.recipe}: the results hold no test set")
        return next(iter(self.test_sets.values()))

    @property
    def rows(self) -> dict[str, dict[str, Any]]:
        """``{system: {metric: value}}`` on the first test set."""
        return self.primary.rows

    @property
    def predictions(self) -> dict[str, list[str]]:
        """``{system: [prediction per example]}`` on the first test set."""
        return self.primary.predictions

    @property
    def systems(self) -> list[str]:
        return list(self.primary.predictions)

    # ----------------------------------------------------------------------------- rendering
    def sections(self) -> list[str]:
        """Markdown sections after the tables (a family adds its own: costs, diversity, controls...)."""
        return []

    def table(self, test_set: Optional[str] = None, digits: int = 4) -> str:
        """The metrics table of one test set (default: the first)."""
        return (self.test_sets[test_set] if test_set else self.primary).table(digits)

    def to_markdown(self) -> str:
        """``results.md``: one table (and its significance tests) per test set, the family's sections, sizes and times."""
        lines = [f"# {self.title}", ""]
        for ts in self.test_sets.values():
            if len(self.test_sets) > 1 or ts.name not in ("test", ""):
                lines += [f"## Test set: {ts.name} ({len(ts.ids)} examples)", ""]
            lines += [ts.table(), ""]
            sig = ts.significance_table()
            if sig:
                lines += [sig, "", "↑ / ↓ in the table, * here: p below the significance level "
                          f"({_level(ts)}), paired t-test against {ts.baseline}.", ""]
        for section in self.sections():
            lines += [section.rstrip(), ""]
        if self.sizes:
            lines.append("Sizes: " + ", ".join(f"{k} {v}" for k, v in self.sizes.items()) + ".")
        if self.timings:
            lines.append("Time: " + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in self.timings.items()
                                              if k.endswith("_s")) + ".")
        machine = self.manifest.get("machine", {})
        if machine:
            lines.append(f"Machine: {machine.get('cpu') or machine.get('platform')}, "
                         f"{machine.get('cores')} cores, AMX {'yes' if machine.get('amx_bf16') else 'no'}"
                         + (f", GPU {machine['gpu']}" if machine.get("gpu") else "") + ".")
        return "\n".join(lines).rstrip() + "\n"

    def to_dict(self) -> dict[str, Any]:
        """``results.json``."""
        return {"recipe": self.recipe, "test_sets": {k: v.to_dict() for k, v in self.test_sets.items()},
                "timings": self.timings, "sizes": self.sizes, "details": self.details, "config": self.config,
                "manifest": self.manifest}

    def prediction_records(self) -> Iterator[dict[str, Any]]:
        """One record per test set, system and example: ``test_set``, ``system``, ``id``, ``prediction``,
        ``reference`` and the test set's ``inputs`` (what ``personakit evaluate`` reads)."""
        for ts in self.test_sets.values():
            for system, preds in ts.predictions.items():
                for i, (ex_id, pred, ref) in enumerate(zip(ts.ids, preds, ts.references)):
                    rec = {"test_set": ts.name, "system": system, "id": ex_id, "prediction": pred, "reference": ref}
                    if ts.inputs:
                        rec.update({k: v for k, v in ts.inputs[i].items() if k not in rec})
                    yield rec

    def save(self, directory: Union[str, os.PathLike[str], None] = None) -> Path:
        """Write ``results.md``, ``results.json``, ``predictions.jsonl`` and ``manifest.json`` atomically.

        Args:
            directory: the folder (default: the config's ``output_dir``).

        Returns:
            The folder written to.
        """
        out = Path(directory) if directory is not None else Path(self.config.get("output_dir") or ".")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "results.json", json.dumps(jsonable(self.to_dict()), indent=2, ensure_ascii=False) + "\n")
        atomic_write_text(out / "results.md", self.to_markdown())
        atomic_write_text(out / "predictions.jsonl",
                          "".join(json.dumps(jsonable(r), ensure_ascii=False) + "\n" for r in self.prediction_records()))
        atomic_write_text(out / "manifest.json", json.dumps(jsonable(self.manifest), indent=2) + "\n")
        self.output_dir = out
        return out

    def __str__(self) -> str:
        return self.to_markdown()


def _level(ts: TestSetResult) -> Any:
    for by_metric in ts.significance.values():
        for s in by_metric.values():
            return s.get("significance_level", 0.05)
    return 0.05


# ----------------------------------------------------------------------------- manifest
_PACKAGES = ("personakit", "torch", "transformers", "peft", "sentence-transformers", "torch-geometric", "numpy",
             "pydantic", "rank-bm25", "sacrebleu", "rouge-score")


def _version(package: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _git_commit() -> Optional[dict[str, Any]]:
    """The commit of the git checkout personakit is imported from (an editable install), else ``None``."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
        if head.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=20, check=False)
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def _hash_path(path: Path) -> dict[str, Any]:
    """``{"sha256", "bytes"}`` of a file, or of a folder's files (relative names and contents, sorted)."""
    digest = hashlib.sha256()
    total = 0
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
                total += len(chunk)
    return {"sha256": digest.hexdigest(), "bytes": total, "files": len(files)}


def machine_info(device: Optional[str] = None) -> dict[str, Any]:
    """Platform, Python, CPU model and cores, the bf16 flags (``amx_bf16``), torch threads and the GPU if any."""
    from personakit.backbones.precision import cpu_bf16_support

    support = cpu_bf16_support()
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpu": support.get("cpu"), "cores": os.cpu_count(), "amx_bf16": support.get("amx_bf16"),
                            "avx512_bf16": support.get("avx512_bf16")}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available() and (device is None or str(device).startswith("cuda")):
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return info


def run_manifest(config: Union[BaseConfig, Mapping[str, Any]], recipe: str,
                 data_paths: Sequence[Union[str, os.PathLike[str], None]] = (), seed: Optional[int] = None,
                 started: Optional[datetime] = None) -> dict[str, Any]:
    """What reproduces a run: recipe, command, seed, full config, data file hashes, package versions, git commit, machine.

    Args:
        config: the run's config.
        recipe: the recipe's name.
        data_paths: the files or folders read (``None`` entries and missing paths are skipped:
            built-in data has no file).
        seed: the run's seed (default: the config's ``seed``).
        started: when the run began (default: now).
    """
    data = config.to_dict() if isinstance(config, BaseConfig) else dict(config)
    files = {}
    for p in data_paths:
        if p is None:
            continue
        path = Path(p)
        if path.exists():
            files[str(path)] = _hash_path(path)
    return {
        "recipe": recipe,
        "started": (started or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "seed": data.get("seed") if seed is None else seed,
        "config": data,
        "data_files": files,
        "packages": {name: _version(name) for name in _PACKAGES},
        "git": _git_commit(),
        "machine": machine_info(data.get("device")),
    }
