"""Checkpoint-folder helpers shared by the models' ``save_pretrained`` / ``from_pretrained``.

The models wrap some backbone layers (style-injection layers, specific-stream layers)
as ``<layer>.wrapped_layer``; their checkpoints store the keys *without* that segment so
that the backbone's part is the backbone's own state dict.  The wrappers are transparent
(their ``state_dict()`` already leaves the segment out, see
:class:`~personakit.modules._wrapper.LayerWrapper`); :func:`strip_wrapper_keys` also
cleans state dicts written before that, whose keys have ``wrapped_layer.`` or the old
name ``base_layer.`` after a wrapper's path.  Tied tensors (e.g. input
and output embeddings) are written once and listed in the safetensors metadata under
``personakit_aliases``.  Every weights file is read by :func:`read_safetensors` (the
training checkpoints too), so a truncated, empty or garbled file raises an error that
names it (:class:`WeightsFileError`) rather than safetensors' bare ``SafetensorError``.

Checkpoint folder:
    * ``config.json``: the model config (``to_json_string(use_diff=False)``);
    * ``model.safetensors``: the state dict (see :func:`save_state_dict`);
    * ``generation_config.json``: the backbone's generation defaults, when it has some;
    * the tokenizer files, when the model holds a tokenizer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from personakit.modules._wrapper import LEGACY_WRAPPED, WRAPPED, LayerWrapper

__all__ = [
    "ALIAS_KEY", "strip_wrapper_keys", "add_wrapper_keys", "save_state_dict", "load_state_dict_file",
    "write_config_files", "load_saved_tokenizer", "load_saved_generation_config", "WrappedCheckpointMixin",
    "WeightsFileError", "read_safetensors", "fill_tied_keys",
]

ALIAS_KEY = "personakit_aliases"
_SEGMENTS = (WRAPPED, LEGACY_WRAPPED)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def _strip_key(key: str, wrappers: frozenset[str]) -> str:
    # walk the module path: `wrapped_layer` / `base_layer` segments right after a wrapper's path are dropped
    # (a wrapped layer has its wrapper's path: `named_modules` of a LayerWrapper lists it there)
    kept: list[str] = []
    path = ""
    for part in key.split("."):
        if part in _SEGMENTS and path in wrappers:
            wrapped = path + "." + WRAPPED
            if wrapped not in wrappers:
                continue  # path stays: the next segment may belong to a nested wrapper
            path = wrapped  # a nested wrapper listed under the `wrapped_layer` path
            continue
        kept.append(part)
        path = part if not path else path + "." + part
    return ".".join(kept)


def strip_wrapper_keys(state: Mapping[str, Tensor], wrappers: Sequence[str]) -> dict[str, Tensor]:
    """``state`` with ``<wrapper>.wrapped_layer.`` renamed ``<wrapper>.`` for every wrapper module path.

    The old segment name ``base_layer.`` (state dicts written before the rename) is removed
    too, and nested wrappers lose every segment.  Keys that are already clean are unchanged
    (the wrappers' own ``state_dict()`` writes clean keys).

    Args:
        state: a module's state dict.
        wrappers: module paths of the wrapper layers (``named_modules`` names).

    Returns:
        A new dict, same order and tensors, clean keys.
    """
    paths = frozenset(wrappers)
    return {_strip_key(key, paths) if paths else key: value for key, value in state.items()}


def add_wrapper_keys(state: Mapping[str, Tensor], wrappers: Sequence[str]) -> dict[str, Tensor]:
    """Inverse of :func:`strip_wrapper_keys`: ``<wrapper>.`` becomes ``<wrapper>.wrapped_layer.``.

    Keys with the old ``base_layer.`` segment are mapped to ``wrapped_layer.``.  Nested
    wrappers listed under their ``wrapped_layer`` paths get one segment each; as listed by
    ``named_modules`` (all under the outer wrapper's path) they get one in all, which
    ``load_state_dict`` completes: a wrapped model accepts clean keys, these keys and the
    old ones, so this mapping is optional.

    Args:
        state: a state dict with clean keys (or keys in the old format).
        wrappers: module paths of the wrapper layers (``named_modules`` names).

    Returns:
        A new dict, same order and tensors, keys of the wrapped model's module tree.
    """
    paths = frozenset(wrappers)
    ordered = sorted(paths, key=len)  # outer wrappers first: an inner wrapper's path contains the outer's segment
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        key = _strip_key(key, paths) if paths else key
        for p in ordered:
            if key.startswith(p + ".") and not key.startswith(p + "." + WRAPPED + "."):
                key = p + "." + WRAPPED + key[len(p):]
        out[key] = value
    return out


def save_state_dict(state: Mapping[str, Tensor], path: Union[str, os.PathLike]) -> Path:
    """Write ``state`` to a safetensors file atomically, each shared tensor once.

    A tensor whose storage, offset, shape, stride and dtype equal an earlier one's is an
    alias: it is not written, and the ``personakit_aliases`` metadata entry (a JSON
    object ``{alias: stored key}``) records it for :func:`load_state_dict_file`.

    Args:
        state: name -> tensor (any device; written as contiguous CPU tensors).
        path: the ``.safetensors`` file to write (``<path>.tmp`` then renamed).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from safetensors.torch import save_file

    path = Path(path)
    kept: dict[tuple, str] = {}
    aliases: dict[str, str] = {}
    tensors: dict[str, Tensor] = {}
    for key, value in state.items():
        ident = (value.device.type, value.untyped_storage().data_ptr(), value.storage_offset(),
                 tuple(value.shape), tuple(value.stride()), value.dtype)
        if value.numel() and ident in kept:
            aliases[key] = kept[ident]
            continue
        kept[ident] = key
        tensors[key] = value.detach().contiguous().cpu()
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt", ALIAS_KEY: json.dumps(aliases)})
    os.replace(tmp, path)
    return path


class WeightsFileError(RuntimeError):
    """A weights file cannot be read: it is truncated, empty or not a safetensors file (the message names it)."""


def read_safetensors(path: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu",
                     error: type[Exception] = WeightsFileError) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors and the metadata of a safetensors file; an unreadable file raises an error that names it.

    The one reader of weight files: :func:`load_state_dict_file` (every ``from_pretrained``)
    and :func:`~personakit.training.checkpoint.load_checkpoint` use it.  safetensors' own
    errors (``SafetensorError: ... incomplete metadata``, ``header too small``...) do not
    say which file they are about.

    Args:
        path: the ``.safetensors`` file.
        map_location: device the tensors are loaded to.
        error: the exception class raised for an unreadable file (``load_checkpoint``
            passes its ``CheckpointError``).

    Returns:
        ``(tensors, metadata)``; ``metadata`` is ``{}`` when the file has none.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        WeightsFileError: (or ``error``) the file is truncated, empty or not a safetensors
            file; the message names it and keeps safetensors' reason.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:  # not RuntimeError: a bad device must stay a device error
        raise error(f"{path}: cannot read the weights ({err}); the file is truncated, empty or not a safetensors "
                    "file (a copy or a save cut short?): save it again or load another checkpoint") from err
    return tensors, metadata


def load_state_dict_file(path: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu"
                         ) -> dict[str, Tensor]:
    """Read a file written by :func:`save_state_dict`, aliases restored (sharing the stored tensor).

    Args:
        path: the ``.safetensors`` file.
        map_location: device the tensors are loaded to.

    Returns:
        name -> tensor, the aliases included.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        WeightsFileError: the file cannot be read, or its ``personakit_aliases`` table is
            not valid (the message names the file).
    """
    state, metadata = read_safetensors(path, map_location)
    try:
        aliases = json.loads(metadata.get(ALIAS_KEY, "{}"))
        if not isinstance(aliases, dict):
            raise ValueError(f"expected a JSON object, got {type(aliases).__name__}")
        for alias, source in aliases.items():
            state[alias] = state[source]
    except (ValueError, KeyError, TypeError) as err:
        raise WeightsFileError(f"{Path(path)}: the metadata entry {ALIAS_KEY!r} is not a valid alias table "
                               f"({type(err).__name__}: {err}); save the weights again") from err
    return state


def fill_tied_keys(state: dict[str, Tensor], own: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Fill, in place, the keys of tied tensors that ``state`` lacks from the key they are tied to.

    A file written by ``safetensors.torch.save_model`` keeps one name of each shared
    tensor; ``own`` (the target module's state dict) tells which names share storage.

    Args:
        state: the state dict read from the file.
        own: the state dict of the module it is loaded into.

    Returns:
        ``state``.
    """
    by_storage: dict[tuple, list[str]] = {}
    for key, value in own.items():
        if value.numel():
            by_storage.setdefault((value.device.type, value.untyped_storage().data_ptr(), value.storage_offset(),
                                   tuple(value.shape), tuple(value.stride())), []).append(key)
    for keys in by_storage.values():
        present = [k for k in keys if k in state]
        for key in keys:
            if key not in state and present:
                state[key] = state[present[0]]
    return state


def write_config_files(directory: Union[str, os.PathLike], config: Any, base_model: Optional[nn.Module] = None,
                       tokenizer: Any = None) -> None:
    """Write ``config.json``, the backbone's ``generation_config.json`` (if any) and the tokenizer (if given).

    Args:
        directory: an existing checkpoint folder.
        config: a transformers ``PreTrainedConfig`` (written in full, ``use_diff=False``).
        base_model: the backbone whose ``generation_config`` is saved; ``None`` saves none.
        tokenizer: saved with ``save_pretrained`` unless ``None``.
    """
    from personakit.config import atomic_write_text

    directory = Path(directory)
    atomic_write_text(directory / "config.json", config.to_json_string(use_diff=False))
    gen = getattr(base_model, "generation_config", None) if base_model is not None else None
    if gen is not None:
        atomic_write_text(directory / "generation_config.json", gen.to_json_string(use_diff=True))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))


def load_saved_tokenizer(directory: Union[str, os.PathLike], tokenizer: Any = None,
                         names: Sequence[str] = TOKENIZER_FILES) -> Any:
    """``tokenizer`` if given, else the tokenizer saved in ``directory`` (one of ``names`` exists), else ``None``."""
    directory = Path(directory)
    if tokenizer is None and any((directory / n).exists() for n in names):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    return tokenizer


def load_saved_generation_config(directory: Union[str, os.PathLike], base_model: nn.Module) -> None:
    """Set ``base_model.generation_config`` from ``directory/generation_config.json`` when that file exists."""
    directory = Path(directory)
    if (directory / "generation_config.json").is_file():
        from transformers import GenerationConfig

        base_model.generation_config = GenerationConfig.from_pretrained(str(directory))


class WrappedCheckpointMixin:
    """``clean_state_dict`` / ``load_clean_state_dict`` / ``save_pretrained`` for a model whose wrapper layers hold
    the backbone's layer as ``wrapped_layer``.

    The model class sets :attr:`WRAPPER_TYPE` (the wrapper layer class; any
    :class:`~personakit.modules._wrapper.LayerWrapper` in the model counts too) and has ``config``,
    ``base_model`` and ``tokenizer``; its ``from_pretrained`` reads the weights back with
    :meth:`load_weights`.
    """

    WRAPPER_TYPE: type = LayerWrapper
    WEIGHTS_NAME = "model.safetensors"

    def _wrapper_prefixes(self) -> list[str]:
        types = (self.WRAPPER_TYPE, LayerWrapper)
        return [name for name, m in self.named_modules() if isinstance(m, types)]  # type: ignore[attr-defined]

    def clean_state_dict(self) -> dict[str, Tensor]:
        """The state dict with the layer wrappers' ``wrapped_layer.`` segment removed."""
        return strip_wrapper_keys(self.state_dict(), self._wrapper_prefixes())  # type: ignore[attr-defined]

    def load_clean_state_dict(self, state: Mapping[str, Tensor], strict: bool = True) -> Any:
        """Load a state dict written by :meth:`clean_state_dict` (inverse key mapping)."""
        return self.load_state_dict(add_wrapper_keys(state, self._wrapper_prefixes()), strict=strict)  # type: ignore

    def save_pretrained(self, directory: Union[str, os.PathLike], save_tokenizer: bool = True) -> Path:
        """Write ``config.json``, ``model.safetensors`` (atomically), ``generation_config.json`` and the tokenizer."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_state_dict(self.clean_state_dict(), directory / self.WEIGHTS_NAME)
        tokenizer = self.tokenizer if save_tokenizer else None  # type: ignore[attr-defined]
        write_config_files(directory, self.config, self.base_model, tokenizer)  # type: ignore[attr-defined]
        return directory

    def load_weights(self, directory: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu") -> None:
        """Load ``directory``'s generation config (if any) and ``model.safetensors`` (strict key check).

        Raises:
            FileNotFoundError: no ``model.safetensors``.
            WeightsFileError: ``model.safetensors`` is truncated, empty or not a safetensors file.
        """
        load_saved_generation_config(directory, self.base_model)  # type: ignore[attr-defined]
        self.load_clean_state_dict(load_state_dict_file(Path(directory) / self.WEIGHTS_NAME, map_location), strict=True)
