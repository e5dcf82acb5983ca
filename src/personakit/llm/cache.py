"""A persistent, crash-safe, process-safe response cache and a generator that only generates the misses."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import socket
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from personakit.backbones.cache import file_lock
from personakit.llm.base import (
    GenerationSettings,
    Prompt,
    TextGenerator,
    _coerce_settings,
    validate_prompt,
)

__all__ = ["ResponseCache", "CachedGenerator", "cache_key"]

logger = logging.getLogger("personakit.llm")

_HOST = socket.gethostname()


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
    """Completed responses stored in an append-only JSON-lines file, safe to share between processes.

    Each line is one finished entry ``{"key": ..., "response": ..., "model_id": ...}``.
    :meth:`put_many` appends a batch of lines and flushes and fsyncs the file once, so a
    crash or a kill loses at most the batch being written.  When a key is written twice,
    the last entry wins.

    Several processes may read and append to one cache at once.  Reads and appends hold
    an exclusive lock on a sibling file ``<name>.lock`` (:func:`personakit.backbones.file_lock`),
    and the file is never truncated: an incomplete last line (a write in progress, or
    one cut short by a kill) is skipped with a warning and left in place; the next
    append first ends it with a newline, so it becomes a bad line.  A line that is not
    a valid entry, anywhere in the file, is skipped with a warning naming the file and
    the line (delete the line to silence it).  :meth:`refresh` reads the entries other
    processes appended since the last read; :class:`CachedGenerator` uses it, and the
    claims file ``<name>.claims``, so that two runs on one cache do not generate the
    same prompts.

    Args:
        path: the JSON-lines file (created with its folder on the first write).
        claim_ttl: seconds after which another process's claim on prompts (see
            :meth:`claim`) is ignored even if that process still runs.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "cache.jsonl")
        >>> cache = ResponseCache(path)
        >>> cache.put_many({"k1": "hello"}, model_id="m")
        >>> ResponseCache(path).get("k1")
        'hello'
    """

    def __init__(self, path: str | os.PathLike[str], *, claim_ttl: float = 3600.0):
        self.path = Path(path)
        self.claim_ttl = claim_ttl
        self._entries: dict[str, str] = {}
        self._offset = 0  # bytes of complete lines read so far
        self._lineno = 0  # complete lines read so far
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file read
        self._torn_warned: int | None = None  # offset of the incomplete line already warned about
        self.refresh()

    @property
    def lock_path(self) -> Path:
        """The lock file held while reading or appending (``<name>.lock``)."""
        return self.path.with_name(self.path.name + ".lock")

    @property
    def claims_path(self) -> Path:
        """The file of prompts claimed by running generators (``<name>.claims``)."""
        return self.path.with_name(self.path.name + ".claims")

    @contextlib.contextmanager
    def _locked(self, *, for_writing: bool) -> Iterator[None]:
        if for_writing:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(file_lock(self.lock_path, what=f"the response cache {self.path.name}"))
            except OSError as err:
                if for_writing or isinstance(err, TimeoutError):
                    raise
                # no lock file can be made (a read-only folder): nobody appends here, so reading is safe
            yield

    # ------------------------------------------------------------------ load
    def refresh(self) -> int:
        """Read the entries appended since the last read, by this or any other process.

        Returns:
            The number of entries read.
        """
        if not self.path.exists():
            return 0
        with self._locked(for_writing=False):
            return self._read_new()

    def _read_new(self) -> int:
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return 0
        with fh:
            st = os.fstat(fh.fileno())
            identity = (st.st_dev, st.st_ino)
            if identity != self._identity or st.st_size < self._offset:  # a new or replaced file
                self._identity, self._offset, self._lineno, self._torn_warned = identity, 0, 0, None
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # 0 when no line is complete yet
        count = 0
        for raw in data[:end].split(b"\n")[:-1]:
            self._lineno += 1
            if not raw.strip():
                continue
            entry, problem = _parse_entry(raw)
            if entry is None:
                warnings.warn(
                    f"{self.path}: line {self._lineno}: skipped, {problem}; delete the line to silence this warning",
                    RuntimeWarning,
                    stacklevel=3,
                )
                continue
            self._entries[entry["key"]] = entry["response"]
            count += 1
        self._offset += end
        torn = data[end:]
        if torn.strip() and self._torn_warned != self._offset:
            self._torn_warned = self._offset
            warnings.warn(
                f"{self.path}: ignoring an incomplete last line ({len(torn)} bytes): another process may still "
                "be writing it, or an interrupted run left it; it is left in the file",
                RuntimeWarning,
                stacklevel=3,
            )
        return count

    # ------------------------------------------------------------- access
    def get(self, key: str, default: str | None = None) -> str | None:
        return self._entries.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str]:
        return list(self._entries)

    def put_many(self, entries: Mapping[str, str], model_id: str | None = None, *, release: str | None = None) -> None:
        """Append ``entries`` (key → response) and make them durable (flush + fsync).

        Holds the cache's lock while appending, reads what other processes appended
        meanwhile, and ends an incomplete last line left by an interrupted write with a
        newline first, so the new entries start on a line of their own.

        Args:
            entries: key → response.
            model_id: recorded with every entry.
            release: a claim owner (see :meth:`claim`) whose claims on these keys end
                with this write.
        """
        if not entries:
            return
        lines = []
        for key, response in entries.items():
            record: dict[str, Any] = {"key": key, "response": response}
            if model_id is not None:
                record["model_id"] = model_id
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        payload = "".join(lines).encode("utf-8")
        with self._locked(for_writing=True):
            self._read_new()  # up to the end, or to an incomplete last line (warned about there)
            with open(self.path, "a+b") as fh:
                size = fh.seek(0, os.SEEK_END)
                closed_off = False
                if size:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":  # an incomplete line left by an interrupted write
                        payload = b"\n" + payload
                        closed_off = True
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            self._entries.update(entries)
            if closed_off and self._offset < size:  # step over the line just closed off: already reported
                self._offset, self._lineno = size + 1, self._lineno + 1
            self._read_new()
            if release is not None:
                self._release_claims(release, list(entries))

    def put(self, key: str, response: str, model_id: str | None = None) -> None:
        self.put_many({key: response}, model_id=model_id)

    # ------------------------------------------------------------- claims
    def claim(self, keys: Sequence[str], owner: str, limit: int) -> tuple[list[str], int]:
        """Claim up to ``limit`` of ``keys`` to generate, skipping those done or claimed by others.

        Under the cache's lock: reads the entries other processes appended, then the
        live claims (a claim is dropped when its process has ended, or after
        ``claim_ttl`` seconds), and records a claim by ``owner`` on the first ``limit``
        keys that are neither in the cache nor claimed by another owner.  End a claim
        with ``put_many(..., release=owner)`` or :meth:`release`.

        Args:
            keys: the keys wanted, in order of preference.
            owner: a token unique to the caller.
            limit: the most keys to claim.

        Returns:
            The keys claimed, and how many wanted keys are claimed by other owners.
        """
        with self._locked(for_writing=True):
            self._read_new()
            claims = self._live_claims()
            mine: list[str] = []
            busy = 0
            for key in keys:
                if key in self._entries:
                    continue
                holder = claims.get(key)
                if holder is not None and holder["owner"] != owner:
                    busy += 1
                elif len(mine) < limit:
                    mine.append(key)
            if mine:
                record = {"op": "claim", "owner": owner, "pid": os.getpid(), "host": _HOST,
                          "time": time.time(), "keys": mine}
                with open(self.claims_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record) + "\n")
            return mine, busy

    def release(self, owner: str) -> None:
        """End every claim of ``owner`` (after a failure: the keys become free for others)."""
        if not self.claims_path.exists():
            return
        with self._locked(for_writing=True):
            self._release_claims(owner, None)

    def _release_claims(self, owner: str, keys: list[str] | None) -> None:
        if not self.claims_path.exists():
            return
        claims = self._live_claims()
        ended = None if keys is None else set(keys)
        remaining = [k for k, c in claims.items() if c["owner"] != owner or (ended is not None and k not in ended)]
        if not remaining:
            self.claims_path.write_text("")  # safe: every claim writer holds the lock
            return
        with open(self.claims_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"op": "release", "owner": owner, "keys": keys}) + "\n")

    def _live_claims(self) -> dict[str, dict[str, Any]]:
        try:
            text = self.claims_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        claims: dict[str, dict[str, Any]] = {}
        for line in text.splitlines():
            try:
                record = json.loads(line)
                if record["op"] == "claim":
                    for key in record["keys"]:
                        claims[key] = record
                elif record["op"] == "release":
                    released = record["keys"]
                    for key in list(claims) if released is None else released:
                        if key in claims and claims[key]["owner"] == record["owner"]:
                            del claims[key]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # an interrupted write to the claims file: claims are only hints
        alive: dict[tuple[str, int], bool] = {}
        now = time.time()
        live = {}
        for key, record in claims.items():
            try:
                fresh = now - float(record["time"]) < self.claim_ttl
                proc = (str(record["host"]), int(record["pid"]))
            except (KeyError, TypeError, ValueError):
                continue
            if proc not in alive:
                alive[proc] = proc[0] != _HOST or _pid_alive(proc[1])
            if fresh and alive[proc]:
                live[key] = record
        return live

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r}, entries={len(self)})"


def _parse_entry(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        entry = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"not a valid cache entry ({err})"
    if not isinstance(entry, dict):
        return None, "expected a JSON object"
    for field in ("key", "response"):
        if not isinstance(entry.get(field), str):
            return None, f"field {field!r} is missing or not a string"
    return entry, ""


def _pid_alive(pid: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - no cheap check there: rely on claim_ttl
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CachedGenerator(TextGenerator):
    """Serve completions from a :class:`ResponseCache`; generate and store only the misses.

    Cache keys are :func:`cache_key` of (prompt, the wrapped generator's ``model_id``,
    settings).  Misses are deduplicated, put in the wrapped generator's batch order, and
    generated ``batch_size`` at a time; every batch is stored as soon as it completes,
    so an interrupted run keeps its finished batches and a rerun only generates the
    rest.

    Several processes can share one cache: before each batch, the generator reads the
    entries the others appended and claims the prompts it is about to generate
    (:meth:`ResponseCache.claim`), so two runs over the same prompts split the work
    instead of both generating everything.  Prompts claimed by another live process are
    left to it and read from the cache when it stores them (this run waits for them at
    the end); if that process fails or dies, this run generates them.

    Args:
        generator: the generator to wrap.
        cache: a :class:`ResponseCache` or a path to its file.
        poll: seconds between checks while waiting for prompts another process claimed.

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

    def __init__(
        self, generator: TextGenerator, cache: ResponseCache | str | os.PathLike[str], *, poll: float = 0.2
    ):
        super().__init__(model_id=generator.model_id, batch_size=generator.batch_size)
        self.generator = generator
        self.cache = cache if isinstance(cache, ResponseCache) else ResponseCache(cache)
        self.poll = poll
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
        size = batch_size or self.generator.batch_size
        if size < 1:
            raise ValueError(f"batch_size must be >= 1, got {size}")
        keys = [cache_key(p, self.model_id, settings) for p in prompts]
        miss_keys: list[str] = []
        miss_prompts: list[Prompt] = []
        seen: set[str] = set()
        for key, prompt in zip(keys, prompts):
            if key not in self.cache and key not in seen:
                seen.add(key)
                miss_keys.append(key)
                miss_prompts.append(prompt)
        generated = 0
        if miss_keys:
            order = self.generator._batch_order(miss_prompts)
            if sorted(order) != list(range(len(miss_prompts))):
                raise RuntimeError(f"{type(self.generator).__name__}._batch_order did not return a permutation")
            todo = [miss_keys[i] for i in order]
            prompt_of = dict(zip(miss_keys, miss_prompts))
            generated = self._generate_misses(todo, prompt_of, settings, size, progress)
        self.misses += generated
        self.hits += len(prompts) - generated
        outputs = [self.cache.get(k) for k in keys]
        if on_batch is not None:
            on_batch(list(range(len(prompts))), outputs)
        return outputs  # type: ignore[return-value]

    def _generate_misses(
        self,
        todo: list[str],
        prompt_of: dict[str, Prompt],
        settings: GenerationSettings,
        size: int,
        progress: bool | None,
    ) -> int:
        owner = f"{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        show = progress if progress is not None else math.ceil(len(todo) / size) > 4
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=f"generating ({self.model_id})", unit="prompt")
        generated = 0
        announced = False
        try:
            while todo:
                batch, busy = self.cache.claim(todo, owner, size)
                before = len(todo)
                if batch:
                    texts = self.generator.generate(
                        [prompt_of[k] for k in batch], settings, batch_size=len(batch), progress=False
                    )
                    self.cache.put_many(dict(zip(batch, texts)), model_id=self.model_id, release=owner)
                    generated += len(batch)
                elif busy:  # the rest is being generated by other processes: wait for their entries
                    if not announced:
                        logger.info(
                            "waiting for %d prompts another process is generating into %s", busy, self.cache.path
                        )
                        announced = True
                    time.sleep(self.poll)
                    self.cache.refresh()
                todo = [k for k in todo if k not in self.cache]
                if bar is not None:
                    bar.update(before - len(todo))
        finally:
            if todo:
                self.cache.release(owner)
            if bar is not None:
                bar.close()
        return generated

    def __repr__(self) -> str:
        return f"CachedGenerator({self.generator!r}, {self.cache!r})"
