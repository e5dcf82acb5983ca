"""A persistent, crash-safe response cache and a generator that only generates the misses."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from personakit.llm.base import (
    GenerationSettings,
    Prompt,
    TextGenerator,
    _coerce_settings,
    validate_prompt,
)

__all__ = ["ResponseCache", "CachedGenerator", "cache_key"]


def cache_key(prompt: Prompt, model_id: str, settings: GenerationSettings) -> str:
    """sha256 of the canonical JSON of (prompt, model id, output-relevant settings).

    Example:
        >>> s = GenerationSettings(max_new_tokens=8)
        >>> cache_key("hi", "m", s) == cache_key("hi", "m", s.model_copy(update={"seed": 3}))  # greedy: seed ignored
        True
        >>> cache_key("hi", "m", s) == cache_key("hi", "other", s)
        False
    """
    if not isinstance(prompt, str):
        prompt = [{"role": m["role"], "content": m["content"]} for m in prompt]
    payload = {"prompt": prompt, "model_id": model_id, "settings": settings.cache_fields()}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    """Completed responses stored in an append-only JSON-lines file.

    Each line is one finished entry ``{"key": ..., "response": ..., "model_id": ...}``.
    :meth:`put_many` appends a batch of lines and flushes and fsyncs the file once, so a
    crash or a kill loses at most the batch being written.  A torn last line left by an
    interruption is dropped on load (with a warning) and cut from the file, so later
    appends start on a fresh line; a malformed line anywhere else is an error naming the
    file and the line.  When a key is written twice, the last entry wins.

    Args:
        path: the JSON-lines file (created with its folder on the first write).

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "cache.jsonl")
        >>> cache = ResponseCache(path)
        >>> cache.put_many({"k1": "hello"}, model_id="m")
        >>> ResponseCache(path).get("k1")
        'hello'
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._entries: dict[str, str] = {}
        self._load()

    # ------------------------------------------------------------------ load
    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if not data:
            return
        good_end = len(data)
        if not data.endswith(b"\n"):
            good_end = data.rfind(b"\n") + 1  # 0 when the only line is torn
            torn = data[good_end:]
            warnings.warn(
                f"{self.path}: ignoring an incomplete last line ({len(torn)} bytes), "
                "probably left by an interrupted run; it is removed from the file",
                RuntimeWarning,
                stacklevel=3,
            )
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())
        for lineno, raw in enumerate(data[:good_end].split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ValueError(f"{self.path}: line {lineno}: not a valid cache entry ({err})") from err
            if not isinstance(entry, dict):
                raise ValueError(f"{self.path}: line {lineno}: expected a JSON object")
            for field in ("key", "response"):
                if not isinstance(entry.get(field), str):
                    raise ValueError(f"{self.path}: line {lineno}: field {field!r} is missing or not a string")
            self._entries[entry["key"]] = entry["response"]

    # ------------------------------------------------------------- access
    def get(self, key: str, default: str | None = None) -> str | None:
        return self._entries.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str]:
        return list(self._entries)

    def put_many(self, entries: Mapping[str, str], model_id: str | None = None) -> None:
        """Append ``entries`` (key → response) and make them durable (flush + fsync)."""
        if not entries:
            return
        lines = []
        for key, response in entries.items():
            record: dict[str, Any] = {"key": key, "response": response}
            if model_id is not None:
                record["model_id"] = model_id
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write("".join(lines))
            fh.flush()
            os.fsync(fh.fileno())
        self._entries.update(entries)

    def put(self, key: str, response: str, model_id: str | None = None) -> None:
        self.put_many({key: response}, model_id=model_id)

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r}, entries={len(self)})"


class CachedGenerator(TextGenerator):
    """Serve completions from a :class:`ResponseCache`; generate and store only the misses.

    Cache keys are :func:`cache_key` of (prompt, the wrapped generator's ``model_id``,
    settings).  Misses are deduplicated and sent to the wrapped generator in one
    ``generate`` call (so it can still sort and batch them); every batch is stored as
    soon as it completes, so an interrupted run keeps its finished batches and a rerun
    only generates the rest.

    Args:
        generator: the generator to wrap.
        cache: a :class:`ResponseCache` or a path to its file.

    Example:
        >>> import tempfile, os
        >>> from personakit.llm import CallableGenerator
        >>> calls = []
        >>> gen = CallableGenerator(lambda p: calls.append(p) or p.upper(), model_id="upper")
        >>> path = os.path.join(tempfile.mkdtemp(), "cache.jsonl")
        >>> cached = CachedGenerator(gen, path)
        >>> cached.generate(["a", "b", "a"])
        ['A', 'B', 'A']
        >>> cached.generate(["a", "b"]), calls
        (['A', 'B'], ['a', 'b'])
    """

    def __init__(self, generator: TextGenerator, cache: ResponseCache | str | os.PathLike[str]):
        super().__init__(model_id=generator.model_id, batch_size=generator.batch_size)
        self.generator = generator
        self.cache = cache if isinstance(cache, ResponseCache) else ResponseCache(cache)
        self.hits = 0
        self.misses = 0

    def _generate_batch(self, prompts: list[Prompt], settings: GenerationSettings) -> list[str]:
        return self.generate(prompts, settings, progress=False)

    def generate(
        self,
        prompts: Sequence[Prompt],
        settings: GenerationSettings | Mapping[str, Any] | None = None,
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
        on_batch: Any = None,
    ) -> list[str]:
        if isinstance(prompts, (str, bytes)):
            raise TypeError("generate() takes a list of prompts; use generate_one(prompt) for a single prompt")
        prompts = [validate_prompt(p, i) for i, p in enumerate(prompts)]
        settings = _coerce_settings(settings)
        keys = [cache_key(p, self.model_id, settings) for p in prompts]
        miss_keys: list[str] = []
        miss_prompts: list[Prompt] = []
        seen: set[str] = set()
        for key, prompt in zip(keys, prompts):
            if key not in self.cache and key not in seen:
                seen.add(key)
                miss_keys.append(key)
                miss_prompts.append(prompt)
        self.hits += len(prompts) - len(miss_keys)
        self.misses += len(miss_keys)

        def store(indices: list[int], texts: list[str]) -> None:
            self.cache.put_many({miss_keys[i]: t for i, t in zip(indices, texts)}, model_id=self.model_id)

        if miss_prompts:
            self.generator.generate(
                miss_prompts, settings, batch_size=batch_size, progress=progress, on_batch=store
            )
        outputs = [self.cache.get(k) for k in keys]
        if on_batch is not None:
            on_batch(list(range(len(prompts))), outputs)
        return outputs  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"CachedGenerator({self.generator!r}, {self.cache!r})"
