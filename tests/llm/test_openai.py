import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from personakit.llm import GenerationError, GenerationSettings, OpenAICompatibleGenerator


class FakeServer:
    """A local chat-completions endpoint; ``script`` lists (status, body) to answer first."""

    def __init__(self):
        self.requests = []
        self.script = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                    status, reply = server.script.pop(0) if server.script else (200, None)
                if reply is None:
                    content = "echo: " + body["messages"][-1]["content"]
                    reply = {"choices": [{"message": {"role": "assistant", "content": content}}]}
                data = json.dumps(reply).encode() if not isinstance(reply, bytes) else reply
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    s = FakeServer()
    yield s
    s.close()


def test_posts_chat_completions_in_order(server):
    gen = OpenAICompatibleGenerator(server.url, "tiny", api_key="sk-test", concurrency=3)
    prompts = [f"q{i}" for i in range(7)] + [[{"role": "system", "content": "s"}, {"role": "user", "content": "chat"}]]
    out = gen.generate(prompts, GenerationSettings(max_new_tokens=9, stop=["\n"]))
    assert out == [f"echo: q{i}" for i in range(7)] + ["echo: chat"]
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "tiny" and req["body"]["max_tokens"] == 9
    assert req["body"]["stop"] == ["\n"] and req["body"]["temperature"] == 0.0
    assert "seed" not in req["body"]
    assert gen.model_id == "tiny"


def test_retries_on_429_and_5xx(server):
    server.script = [(429, {"error": {"message": "slow down"}}), (503, {"error": "busy"})]
    gen = OpenAICompatibleGenerator(server.url, "tiny", backoff=0.01, concurrency=1)
    assert gen.generate(["hello"]) == ["echo: hello"]
    assert len(server.requests) == 3


def test_gives_up_after_max_retries(server):
    server.script = [(500, {"error": "down"})] * 5
    gen = OpenAICompatibleGenerator(server.url, "tiny", backoff=0.01, max_retries=2)
    with pytest.raises(GenerationError, match="after 3 attempts.*HTTP 500"):
        gen.generate(["hello"])
    assert len(server.requests) == 3


def test_client_error_fails_at_once_with_server_message(server):
    server.script = [(401, {"error": {"message": "invalid api key"}})]
    gen = OpenAICompatibleGenerator(server.url, "tiny", backoff=0.01)
    with pytest.raises(GenerationError, match="HTTP 401: invalid api key"):
        gen.generate(["hello"])
    assert len(server.requests) == 1


def test_malformed_reply(server):
    server.script = [(200, {"unexpected": True})]
    gen = OpenAICompatibleGenerator(server.url, "tiny")
    with pytest.raises(GenerationError, match="malformed reply"):
        gen.generate(["hello"])


def test_connection_refused_is_retried_then_reported():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    gen = OpenAICompatibleGenerator(f"http://127.0.0.1:{port}/v1", "tiny", backoff=0.01, max_retries=1, timeout=2)
    with pytest.raises(GenerationError, match="after 2 attempts"):
        gen.generate(["hello"])


def test_sampling_sends_seed_and_top_p(server):
    gen = OpenAICompatibleGenerator(server.url, "tiny")
    gen.generate(["x"], {"temperature": 0.7, "top_p": 0.9, "seed": 5})
    body = server.requests[0]["body"]
    assert body["temperature"] == 0.7 and body["top_p"] == 0.9 and body["seed"] == 5


# ---------------------------------------------------------------- hardening (issue 23)
import socket
import time

GOOD_BODY = json.dumps({"choices": [{"message": {"role": "assistant", "content": "fine"}}]}).encode()


def _read_request(conn):
    """Read one HTTP request (headers and Content-Length body) from ``conn``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


def _ok(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                 b"Connection: close\r\n\r\n" % len(GOOD_BODY) + GOOD_BODY)


class RawServer:
    """A TCP server in a thread that answers the n-th connection with ``answers[n]`` (the last one repeats)."""

    def __init__(self, answers):
        self.answers = answers
        self.connections = 0
        self.stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            answer = self.answers[min(self.connections, len(self.answers) - 1)]
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn, answer), daemon=True).start()

    def _answer(self, conn, answer):
        with conn:
            try:
                _read_request(conn)
                answer(conn, self.stop)
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture()
def raw_server():
    servers = []

    def make(*answers):
        servers.append(RawServer(list(answers)))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def truncated(conn, stop):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
                 + GOOD_BODY[:20])  # then close: the body is cut off


def not_http(conn, stop):
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")


def good(conn, stop):
    _ok(conn)


def dripping(conn, stop):
    reply = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
             % len(GOOD_BODY) + GOOD_BODY)
    for i in range(len(reply)):  # one byte every 0.2 s: each read is quick, the reply takes ~30 s
        if stop.wait(0.2):
            return
        conn.sendall(reply[i:i + 1])


def test_truncated_body_is_retried(raw_server):
    server = raw_server(truncated, good)
    gen = OpenAICompatibleGenerator(server.url, "tiny", backoff=0.01, max_retries=2)
    assert gen.generate(["hello"]) == ["fine"]
    assert server.connections == 2


def test_truncated_body_reported_with_url(raw_server):
    server = raw_server(truncated)
    gen = OpenAICompatibleGenerator(server.url, "tiny", backoff=0.01, max_retries=1)
    with pytest.raises(GenerationError, match=r"POST http://127\.0\.0\.1:\d+/v1/chat/completions failed after 2 "
                                              r"attempts.*IncompleteRead"):
        gen.generate(["hello"])
    assert server.connections == 2


def test_non_http_reply_is_retried_then_reported_with_url(raw_server):
    server = raw_server(not_http, not_http, good)
    gen = OpenAICompatibleGenerator(server.url, "tiny", backoff=0.01, max_retries=2)
    assert gen.generate(["hello"]) == ["fine"]

    server = raw_server(not_http)
    gen = OpenAICompatibleGenerator(server.url, "tiny", backoff=0.01, max_retries=1)
    with pytest.raises(GenerationError, match=r"POST http://127\.0\.0\.1:\d+/v1/chat/completions failed after 2 "
                                              r"attempts.*not an HTTP reply"):
        gen.generate(["hello"])


def test_timeout_is_an_overall_deadline_per_request(raw_server):
    server = raw_server(dripping)
    gen = OpenAICompatibleGenerator(server.url, "tiny", timeout=0.8, backoff=0.01, max_retries=1)
    start = time.monotonic()
    with pytest.raises(GenerationError, match=r"POST http://127\.0\.0\.1:\d+/v1/chat/completions failed after 2 "
                                              r"attempts.*no complete reply within 0\.8 s"):
        gen.generate(["hello"])
    elapsed = time.monotonic() - start
    assert elapsed < 2.5, elapsed
    assert server.connections == 2
