"""Local folders of the embedded models: locate, prepare once, report.

:func:`embedded_path` is the entry point: it returns a folder that
``from_pretrained`` (or ``SentenceTransformer``) loads offline.

- all-MiniLM-L6-v2: the package's own ``model/`` folder (nothing to prepare).
- SmolLM2-135M-Instruct: ``<cache>/embedded/smollm2-135m-instruct``, converted from
  the package's GGUF file on first use (about 40 s, once).
- all-mpnet-base-v2: ``<cache>/embedded/all-mpnet-base-v2``, unzipped from the five
  split parts on first use (a few seconds, once).

``<cache>`` is :func:`~personakit.backbones.cache.cache_dir`.  A prepared folder
carries a completion marker recording the source files' size, mtime and a hash of
their head and tail, the recipe and the library versions; it is rebuilt when the
installed package changes.

Example:
    >>> from personakit.backbones import list_embedded
    >>> [s.name for s in list_embedded()]
    ['smollm2-135m-instruct', 'all-minilm-l6-v2', 'all-mpnet-base-v2']
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from personakit.backbones.cache import cache_dir, file_fingerprint, folder_size, is_prepared, prepare_atomically
from personakit.backbones.registry import (
    EMBEDDED_MODELS,
    EmbeddedModel,
    EmbeddedModelNotInstalled,
    get_embedded,
    locate_sources,
    missing_packages,
)

__all__ = [
    "EmbeddedModelStatus",
    "embedded_path",
    "embedded_status",
    "install_embedded",
    "list_embedded",
    "prepared_dir",
]

logger = logging.getLogger("personakit.backbones")

# Bump when a recipe's output changes, so old caches are rebuilt.
RECIPE_VERSIONS = {"gguf-to-safetensors": 1, "unzip-split": 1}
_VERSIONED = ("personakit", "transformers", "torch", "gguf", "safetensors")


def prepared_dir(name: str | EmbeddedModel) -> Path:
    """Where the prepared folder of ``name`` lives (it may not exist yet)."""
    return cache_dir() / "embedded" / get_embedded(name).name


def _versions() -> dict[str, str]:
    out = {}
    for dist in _VERSIONED:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _expected_marker(model: EmbeddedModel, sources: list[Path]) -> dict[str, Any]:
    return {
        "model": model.name,
        "recipe": f"{model.recipe}/{RECIPE_VERSIONS[model.recipe]}",
        "sources": [file_fingerprint(p) for p in sources],
    }


def _builder(model: EmbeddedModel, sources: list[Path], progress: bool):
    from personakit.backbones import converters

    if model.recipe == "gguf-to-safetensors":
        return lambda tmp: converters.convert_gguf_to_safetensors(sources[0], tmp, progress=progress)
    if model.recipe == "unzip-split":
        return lambda tmp: converters.unzip_split(sources, tmp, progress=progress,
                                                  required=("config.json", "modules.json"))
    raise ValueError(f"embedded model {model.name!r} has no preparation recipe {model.recipe!r}")


def _check_modules(model: EmbeddedModel) -> None:
    from personakit._imports import is_available

    missing = tuple(m for m in model.modules if not is_available(m))
    if missing:
        raise EmbeddedModelNotInstalled(model, missing)


def embedded_path(name: str | EmbeddedModel = "smollm2-135m-instruct", *, install: bool = True,
                  force: bool = False, progress: bool = True, lock_timeout: float | None = None) -> Path:
    """Local Hugging Face folder of an embedded model.

    Args:
        name: An embedded name or alias (``"smollm2"``, ``"minilm"``, ``"mpnet"``).
        install: Prepare the folder (convert / unzip, once) if needed.  With
            ``install=False`` nothing is written: the package's presence is still
            checked, and the returned path is where the prepared folder lives, which
            may not exist yet (it is prepared lazily by the next call with
            ``install=True``, e.g. from :func:`~personakit.backbones.load_embedded`).
        force: Rebuild the prepared folder even if it is valid.
        progress: Show progress bars while preparing.
        lock_timeout: Seconds to wait for another process preparing the same model.

    Returns:
        The folder.

    Raises:
        EmbeddedModelNotInstalled: the model's package is missing (the message
            carries the ``pip`` command).
        KeyError: ``name`` is not an embedded model.
    """
    model = get_embedded(name)
    sources = locate_sources(model)
    if not model.needs_preparation:
        return sources[0]
    target = prepared_dir(model)
    if not install:
        return target
    expected = _expected_marker(model, sources)
    if not force and is_prepared(target, expected):
        return target
    _check_modules(model)
    logger.warning(
        "preparing the embedded model %s once into %s (%s, ~%d s); later loads reuse it",
        model.name, target,
        "converting the GGUF file to safetensors" if model.recipe == "gguf-to-safetensors" else "unzipping",
        model.approx_prepare_seconds,
    )
    start = time.monotonic()
    marker = {**expected, "versions": _versions(), "created": datetime.now(timezone.utc).isoformat()}
    prepare_atomically(target, _builder(model, sources, progress), marker, force=force,
                       lock_timeout=lock_timeout, what=model.name)
    logger.info("%s ready in %.1f s", model.name, time.monotonic() - start)
    return target


def install_embedded(name: str | EmbeddedModel, *, force: bool = False, progress: bool = True) -> Path:
    """Prepare an embedded model now (for ``personakit models install``); returns its folder."""
    return embedded_path(name, install=True, force=force, progress=progress)


@dataclass(frozen=True)
class EmbeddedModelStatus:
    """What ``personakit models list`` shows for one embedded model.

    Attributes:
        name: Canonical name.
        aliases: Other accepted names.
        kind: ``"causal-lm"`` or ``"sentence-encoder"``.
        packages: Distributions that carry it.
        installed: All packages are present.
        prepared: Ready to load without a one-time preparation step.
        path: The folder that loads (or will, once prepared); ``None`` when not installed.
        size_bytes: Size of ``path`` on disk when it exists, else ``None``.
        pip_command: Command that installs the packages.
        missing: Packages that are not installed.
        description: One line about the model.
    """

    name: str
    aliases: tuple[str, ...]
    kind: str
    packages: tuple[str, ...]
    installed: bool
    prepared: bool
    path: Path | None
    size_bytes: int | None
    pip_command: str
    missing: tuple[str, ...]
    description: str


def embedded_status(name: str | EmbeddedModel) -> EmbeddedModelStatus:
    """Status of one embedded model (cheap: no model is loaded, nothing is written)."""
    model = get_embedded(name)
    missing = missing_packages(model)
    installed = not missing
    path: Path | None = None
    prepared = False
    if installed:
        sources = locate_sources(model)
        if model.needs_preparation:
            path = prepared_dir(model)
            prepared = is_prepared(path, _expected_marker(model, sources))
        else:
            path, prepared = sources[0], True
    size = folder_size(path) if path is not None and path.exists() else None
    return EmbeddedModelStatus(
        name=model.name, aliases=model.aliases, kind=model.kind, packages=model.packages,
        installed=installed, prepared=prepared, path=path, size_bytes=size,
        pip_command=model.pip_command, missing=missing, description=model.description,
    )


def list_embedded() -> list[EmbeddedModelStatus]:
    """Status of every embedded model, in table order."""
    return [embedded_status(m) for m in EMBEDDED_MODELS]
