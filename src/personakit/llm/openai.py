"""Any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server, TGI, OpenAI)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from personakit.llm.base import GenerationError, GenerationSettings, Prompt, TextGenerator, prompt_to_messages

__all__ = ["OpenAICompatibleGenerator"]

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAICompatibleGenerator(TextGenerator):
    """Generate through an OpenAI-compatible ``POST {base_url}/chat/completions`` endpoint.

    Uses only the standard library (``urllib``).  Each prompt is one request (a string
    prompt becomes a single user message); up to ``concurrency`` requests run at once.
    Rate limits (429), server errors (5xx), connection failures, replies cut off before
    their end, replies that are not HTTP and requests past their deadline are retried up
    to ``max_retries`` times with exponential backoff (``backoff * 2**attempt`` seconds,
    or the server's ``Retry-After`` when it sends one); any other HTTP error fails at
    once with the status and the server's message.  Every failure is a
    :class:`~personakit.llm.GenerationError` naming the URL.

    ``timeout`` is an overall deadline for each attempt (connecting, sending, waiting
    and reading the whole reply), not only a limit on each socket read: a server that
    trickles its reply a byte at a time cannot hold a request for longer.

    Settings map to the request body as ``max_tokens``, ``temperature``, ``top_p``,
    ``seed`` and ``stop`` (at most 4 stop sequences are sent; all are applied locally as
    well).  ``top_k`` and ``repetition_penalty`` are not part of the OpenAI API and are
    ignored.

    Args:
        base_url: the API root, e.g. ``"http://localhost:8000/v1"``.
        model: the model name the server expects.
        api_key: sent as ``Authorization: Bearer <api_key>`` when given.
        timeout: seconds per attempt, the whole reply included.
        max_retries: retries after the first attempt.
        concurrency: parallel requests.
        backoff: first retry delay in seconds.
        batch_size: prompts handed to the thread pool at once.
        model_id: name used in cache keys; defaults to ``model`` (the server address
            does not change the model, so a cache survives a move to another host).

    Example:
        >>> gen = OpenAICompatibleGenerator("http://localhost:8000/v1", "Qwen2.5-7B-Instruct")  # doctest: +SKIP
        >>> gen.generate(["Say hi."], {"max_new_tokens": 8})  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: Optional[str] = None,
        timeout: float = 60,
        max_retries: int = 3,
        concurrency: int = 4,
        backoff: float = 1.0,
        batch_size: int = 32,
        model_id: Optional[str] = None,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        super().__init__(model_id=model_id or model, batch_size=batch_size)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.backoff = backoff

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def request_body(self, prompt: Prompt, settings: GenerationSettings) -> dict[str, Any]:
        """The JSON body sent for ``prompt``."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": prompt_to_messages(prompt),
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
        }
        if settings.do_sample:
            body["top_p"] = settings.top_p
            body["seed"] = settings.seed
        if settings.stop:
            body["stop"] = list(settings.stop[:4])
        return body

    def _post(self, body: dict[str, Any]) -> str:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last_error = ""
        for attempt in range(self.max_retries + 1):
            req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            retry_after: float | None = None
            watchdog = _Watchdog(self.timeout)
            detail = ""
            try:
                with watchdog:
                    try:
                        with watchdog.opener().open(req, timeout=self.timeout) as resp:
                            payload = resp.read()
                    except urllib.error.HTTPError as err:
                        detail = _error_detail(err)  # the error body is read under the deadline too
                        raise
                return self._parse(payload)
            except urllib.error.HTTPError as err:
                if err.code not in _RETRY_STATUS:
                    raise GenerationError(f"POST {self.url} failed with HTTP {err.code}: {detail}") from err
                last_error = f"HTTP {err.code}: {detail}"
                retry_after = _retry_after(err)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
                last_error = _describe(err)
                if watchdog.fired:
                    last_error = f"no complete reply within {self.timeout:g} s ({last_error})"
            if attempt < self.max_retries:
                time.sleep(retry_after if retry_after is not None else self.backoff * (2 ** attempt))
        raise GenerationError(f"POST {self.url} failed after {self.max_retries + 1} attempts; last error: {last_error}")

    def _parse(self, payload: bytes) -> str:
        try:
            data = json.loads(payload.decode("utf-8"))
            content = data["choices"][0]["message"]["content"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError) as err:
            snippet = payload[:200].decode("utf-8", "replace")
            raise GenerationError(
                f"POST {self.url}: malformed reply (expected choices[0].message.content): {snippet!r}"
            ) from err
        if content is None:
            return ""
        if not isinstance(content, str):
            raise GenerationError(f"POST {self.url}: choices[0].message.content is a {type(content).__name__}, expected str")
        return content

    def _generate_batch(self, prompts: list[Prompt], settings: GenerationSettings) -> list[str]:
        bodies = [self.request_body(p, settings) for p in prompts]
        if self.concurrency == 1 or len(bodies) == 1:
            return [self._post(b) for b in bodies]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(bodies))) as pool:
            return list(pool.map(self._post, bodies))

    def __repr__(self) -> str:
        return f"OpenAICompatibleGenerator(base_url={self.base_url!r}, model={self.model!r})"


def _error_detail(err: urllib.error.HTTPError) -> str:
    try:
        raw = err.read()[:500].decode("utf-8", "replace")
    except Exception:  # pragma: no cover - a broken error body
        raw = ""
    try:
        data = json.loads(raw)
        msg = data.get("error", data)
        if isinstance(msg, dict):
            msg = msg.get("message", msg)
        return str(msg)
    except (json.JSONDecodeError, AttributeError):
        return raw or str(err.reason)


def _retry_after(err: urllib.error.HTTPError) -> float | None:
    value = err.headers.get("Retry-After") if err.headers else None
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None


def _describe(err: BaseException) -> str:
    """A one-line account of a transport error."""
    reason = getattr(err, "reason", None) if isinstance(err, urllib.error.URLError) else None
    if isinstance(reason, BaseException):
        err = reason
    if isinstance(err, http.client.IncompleteRead):
        return f"the reply was cut off (IncompleteRead: {len(err.partial)} bytes read, {err.expected} more expected)"
    if isinstance(err, http.client.BadStatusLine) and not isinstance(err, http.client.RemoteDisconnected):
        return f"not an HTTP reply (BadStatusLine: {str(err)[:100]!r})"
    return f"{type(err).__name__}: {reason if reason is not None else err}"


class _Watchdog:
    """An overall deadline for one request: when it passes, the request's sockets are shut down.

    ``opener()`` is a urllib opener whose HTTP(S) connections register their socket
    here; entering starts a timer that shuts every registered socket down after
    ``seconds``, so a blocked read returns at once whatever the server does.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.fired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def add(self, sock: Any) -> None:
        with self._lock:
            self._socks.append(sock)
            if self.fired:
                _shutdown(sock)

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._socks:
                _shutdown(sock)

    def __enter__(self) -> "_Watchdog":
        self._timer = threading.Timer(self.seconds, self.fire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def opener(self) -> urllib.request.OpenerDirector:
        watchdog = self

        class HTTPConnection(http.client.HTTPConnection):
            def connect(self) -> None:
                super().connect()
                watchdog.add(self.sock)

        class HTTPSConnection(http.client.HTTPSConnection):
            def connect(self) -> None:
                super().connect()
                watchdog.add(self.sock)

        class HTTPHandler(urllib.request.HTTPHandler):
            def http_open(self, req: urllib.request.Request) -> Any:
                return self.do_open(HTTPConnection, req)

        class HTTPSHandler(urllib.request.HTTPSHandler):
            def https_open(self, req: urllib.request.Request) -> Any:
                return self.do_open(HTTPSConnection, req, context=self._context)

        return urllib.request.build_opener(HTTPHandler(), HTTPSHandler())


def _shutdown(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
