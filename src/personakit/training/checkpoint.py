r"""Crash-safe training checkpoints: weights, optimizer, scheduler, RNG streams and trainer state.

Every personakit trainer saves and resumes through these three functions (one
implementation, so every trainer resumes the same way):

* :func:`save_checkpoint` writes ``directory/checkpoint-{step:08d}/`` **atomically**: all
  files go to a hidden temporary sibling folder (``.tmp-checkpoint-…``), are flushed and
  fsynced, and the folder is renamed into place with :func:`os.replace`.  A crash or an
  exception mid-write leaves the previous checkpoints untouched and no partial
  ``checkpoint-*`` folder.  Older checkpoints beyond ``keep_last`` are then removed,
  their ``trainer_state.json`` first, so a kill during the pruning never leaves a
  checkpoint that is listed as complete but whose weights are gone.
* :func:`latest_checkpoint` returns the newest *complete* checkpoint (temporary and
  incomplete folders are ignored; complete means a valid ``trainer_state.json`` and
  every file it lists present).
* :func:`load_checkpoint` restores module weights, optimizer and scheduler state and
  (by default) the RNG streams, and returns ``{"step": ..., "extra": ...}``.  A
  truncated, empty or garbled file raises :class:`CheckpointError` naming the file.

Layout of one checkpoint::

    checkpoint-00000120/
        modules/<name>.safetensors   one per entry of ``modules`` (state_dict; shared/tied tensors stored once)
        optimizer.pt                 torch.save(optimizer.state_dict()), read back with weights_only=True
        scheduler.pt                 torch.save(scheduler.state_dict()), idem
        rng_state.pt                 Python ``random``, NumPy global, torch CPU (+ CUDA) generator states
        trainer_state.json           {"format": 1, "step", "modules", "optimizer", "scheduler", "extra"}

``trainer_state.json`` is written last, so a folder without it is never treated as a
checkpoint.  One writer per ``directory`` is assumed: leftover ``.tmp-checkpoint-*``
folders (from a killed process) are removed by the next :func:`save_checkpoint`.

Example:
    >>> import tempfile, torch
    >>> from personakit.training.checkpoint import save_checkpoint, latest_checkpoint, load_checkpoint
    >>> net = torch.nn.Linear(2, 1)
    >>> opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = save_checkpoint(tmp, step=3, modules={"net": net}, optimizer=opt, extra={"epoch": 1})
    ...     latest = latest_checkpoint(tmp)
    ...     state = load_checkpoint(latest, modules={"net": net}, optimizer=opt)
    >>> latest.name, state
    ('checkpoint-00000003', {'step': 3, 'extra': {'epoch': 1}})
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_PREFIX",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "read_checkpoint_state",
    "get_rng_state",
    "set_rng_state",
]

CHECKPOINT_PREFIX = "checkpoint-"
_TMP_PREFIX = ".tmp-checkpoint-"
_OLD_PREFIX = ".old-checkpoint-"
_STATE_FILE = "trainer_state.json"
_NAME_RE = re.compile(r"^checkpoint-(\d{8,})$")
_MODULE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, or does not match what is being restored."""


# --------------------------------------------------------------------------- RNG
def get_rng_state() -> dict[str, Any]:
    """States of the Python ``random``, NumPy global and torch (CPU, CUDA) generators.

    The result holds only ints, floats, lists and tensors, so it can be saved with
    :func:`torch.save` and read back with ``torch.load(..., weights_only=True)``.
    """
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generator states returned by :func:`get_rng_state`.

    CUDA states are restored only when CUDA is available and the device count matches.
    """
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["internal"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# ------------------------------------------------------------------------ helpers
def _step_of(path: Path) -> int | None:
    m = _NAME_RE.match(path.name)
    return int(m.group(1)) if m else None


def _is_complete(path: Path) -> bool:
    """A valid ``trainer_state.json`` for this step, and every file it lists present."""
    state_file = path / _STATE_FILE
    if not path.is_dir() or not state_file.is_file():
        return False
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(state, dict) or state.get("step") != _step_of(path):
        return False
    return all(file.is_file() for file in _listed_files(path, state))


def _listed_files(path: Path, state: Mapping[str, Any]) -> list[Path]:
    """The files a checkpoint's state says it holds (the weights, optimizer, scheduler and RNG files)."""
    modules = state.get("modules")
    files = [path / "modules" / f"{name}.safetensors" for name in (modules if isinstance(modules, list) else [])
             if isinstance(name, str)]
    files += [path / fname for key, fname in (("optimizer", "optimizer.pt"), ("scheduler", "scheduler.pt"))
              if state.get(key) is True]
    return files + [path / "rng_state.pt"]


def _remove_checkpoint(path: Path) -> None:
    """Remove a checkpoint so that a kill at any moment never leaves a listed one with files missing.

    The completeness marker (``trainer_state.json``) goes first, then the folder is
    renamed to a hidden ``.old-checkpoint-*`` name (removed by the next
    :func:`save_checkpoint` if this removal is cut short), then deleted.
    """
    try:
        (path / _STATE_FILE).unlink()
    except FileNotFoundError:
        pass
    _fsync_dir(path)
    target = path
    try:
        aside = Path(tempfile.mkdtemp(prefix=f"{_OLD_PREFIX}{path.name[len(CHECKPOINT_PREFIX):]}-", dir=path.parent))
        os.replace(path, aside / path.name)
        target = aside
    except OSError:  # e.g. a file held open on Windows: delete in place (the marker is already gone)
        pass
    shutil.rmtree(target, ignore_errors=True)


def list_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints in ``directory``, oldest (lowest step) first.

    Temporary (``.tmp-checkpoint-*``) folders, folders without a valid
    ``trainer_state.json`` and folders missing a file that it lists (a weights,
    optimizer, scheduler or RNG file) are skipped.  A missing ``directory`` gives ``[]``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for child in directory.iterdir():
        step = _step_of(child)
        if step is not None and _is_complete(child):
            found.append((step, child))
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint in ``directory`` (``None`` when there is none)."""
    found = list_checkpoints(directory)
    return found[-1] if found else None


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. platforms that cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_modules(modules: Mapping[str, torch.nn.Module]) -> None:
    if not isinstance(modules, Mapping):
        raise TypeError(f"modules must be a mapping name -> nn.Module, got {type(modules).__name__}")
    for name, module in modules.items():
        if not isinstance(name, str) or not _MODULE_NAME_RE.match(name):
            raise ValueError(f"module name {name!r}: use letters, digits, '_', '-' or '.' (it names a file)")
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module {name!r}: expected torch.nn.Module, got {type(module).__name__}")


# --------------------------------------------------------------------------- save
def save_checkpoint(
    directory: str | os.PathLike[str],
    *,
    step: int,
    modules: Mapping[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    extra: dict[str, Any] | None = None,
    keep_last: int | None = 2,
) -> Path:
    """Write ``directory/checkpoint-{step:08d}/`` atomically and prune older checkpoints.

    Args:
        directory: Folder holding the checkpoints (created if needed).
        step: Global step (optimizer updates so far); names the checkpoint.  Saving
            the same step again replaces that checkpoint.
        modules: ``name -> nn.Module``; each ``state_dict`` is stored as
            ``modules/<name>.safetensors`` (tied/shared tensors stored once).
        optimizer: Optimizer whose ``state_dict`` is saved (``None``: skipped).
        scheduler: LR scheduler (anything with ``state_dict``; ``None``: skipped).
        extra: JSON-serialisable trainer state (epoch, config, history, ...).
        keep_last: How many complete checkpoints to keep (newest by step, this one
            included); ``None`` keeps all.

    Returns:
        The path of the new checkpoint.

    Raises:
        ValueError: ``step`` negative, ``keep_last`` < 1, or a bad module name.
        TypeError: ``extra`` is not JSON-serialisable (raised before anything is written).
    """
    from safetensors.torch import save_model

    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    step = int(step)
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
    _check_modules(modules)
    state = {
        "format": _FORMAT,
        "step": step,
        "modules": sorted(modules),
        "optimizer": optimizer is not None,
        "scheduler": scheduler is not None,
        "extra": extra if extra is not None else {},
    }
    try:
        state_text = json.dumps(state, indent=2, sort_keys=False, allow_nan=True)
    except TypeError as err:
        raise TypeError(f"save_checkpoint: `extra` must be JSON-serialisable: {err}") from err

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(f"{_TMP_PREFIX}*"):  # left by a killed writer
        shutil.rmtree(stale, ignore_errors=True)
    for stale in directory.glob(f"{_OLD_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)

    final = directory / f"{CHECKPOINT_PREFIX}{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{step:08d}-", dir=directory))
    try:
        (tmp / "modules").mkdir()
        for name, module in modules.items():
            path = tmp / "modules" / f"{name}.safetensors"
            save_model(module, str(path), metadata={"module": name, "class": type(module).__qualname__})
            _fsync_file(path)
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            _fsync_file(tmp / "optimizer.pt")
        if scheduler is not None:
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            _fsync_file(tmp / "scheduler.pt")
        torch.save(get_rng_state(), tmp / "rng_state.pt")
        _fsync_file(tmp / "rng_state.pt")
        with open(tmp / _STATE_FILE, "w", encoding="utf-8") as fh:  # last: marks the folder complete
            fh.write(state_text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(tmp / "modules")
        _fsync_dir(tmp)
        old: Path | None = None
        if final.exists():  # re-saving a step: move the old one aside, then swap
            old = Path(tempfile.mkdtemp(prefix=f"{_OLD_PREFIX}{step:08d}-", dir=directory))
            os.replace(final, old / final.name)
        os.replace(tmp, final)
        _fsync_dir(directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    if keep_last is not None:
        complete = list_checkpoints(directory)
        for path in complete[:-keep_last]:
            if path != final:
                _remove_checkpoint(path)
    return final


# --------------------------------------------------------------------------- load
def read_checkpoint_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``trainer_state.json`` of a checkpoint, without loading anything else.

    Returns:
        ``{"format", "step", "modules", "optimizer", "scheduler", "extra"}``.

    Raises:
        CheckpointError: the folder is not a complete checkpoint (naming the file).
    """
    state_file = Path(path) / _STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(f"{Path(path)}: not a complete checkpoint (no {_STATE_FILE})")
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except ValueError as err:
        raise CheckpointError(f"{state_file}: invalid JSON: {err}") from err
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{state_file}: field 'step' is missing or not an integer")
    return state


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    modules: Mapping[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_checkpoint` (in place).

    Args:
        path: A ``checkpoint-*`` folder (e.g. from :func:`latest_checkpoint`).
        modules: ``name -> nn.Module`` to load into (strict: every key must match); a
            subset of the saved modules is allowed.
        optimizer: Optimizer to restore (the checkpoint must hold one).
        scheduler: Scheduler to restore (the checkpoint must hold one).
        restore_rng: Also restore the Python, NumPy and torch RNG streams, so that the
            run continues exactly as if it had not stopped.

    Returns:
        ``{"step": int, "extra": dict}``.

    Raises:
        CheckpointError: the folder is not a complete checkpoint, lacks a requested
            module, optimizer or scheduler state, or one of its files is truncated, empty
            or garbled (the message names the file).
    """
    from personakit.models._save import fill_tied_keys, read_safetensors

    path = Path(path)
    state = read_checkpoint_state(path)
    _check_modules(modules)
    for name, module in modules.items():
        file = path / "modules" / f"{name}.safetensors"
        if not file.is_file():
            raise CheckpointError(f"{file}: no weights for module {name!r}; saved modules: {state.get('modules')}")
        try:
            device = next(module.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
        weights, _ = read_safetensors(file, device, error=CheckpointError)
        try:  # save_model keeps one name of each tied tensor: the others are filled from it
            module.load_state_dict(fill_tied_keys(weights, module.state_dict()), strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"{file}: cannot load into module {name!r}: {err}") from err
    for obj, fname in ((optimizer, "optimizer.pt"), (scheduler, "scheduler.pt")):
        if obj is None:
            continue
        file = path / fname
        if not file.is_file():
            raise CheckpointError(f"{file}: missing; the checkpoint was saved without this state")
        obj.load_state_dict(_load_torch_file(file))
    if restore_rng:
        file = path / "rng_state.pt"
        if not file.is_file():
            raise CheckpointError(f"{file}: missing RNG state")
        set_rng_state(_load_torch_file(file))
    return {"step": int(state["step"]), "extra": state.get("extra", {})}


def _load_torch_file(file: Path) -> Any:
    """``torch.load(file, weights_only=True)``; an unreadable file raises a :class:`CheckpointError` naming it."""
    import pickle

    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as err:
        reason = str(err).strip().split(". ")[0].splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{file}: cannot read the saved state ({reason}); the file is truncated, empty or "
                              "garbled (a copy or a save cut short?), or holds objects that "
                              "torch.load(weights_only=True) refuses: load another checkpoint") from err
