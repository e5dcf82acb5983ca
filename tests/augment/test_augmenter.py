import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from personakit.augment import (
    GenericResponseAugmenter,
    GenericResponseAugmenterConfig,
    load_examples,
    save_examples,
)
from personakit.data import dialogues_to_examples, load_builtin_corpus
from personakit.llm import CallableGenerator, GenerationSettings, OpenAICompatibleGenerator, ResponseCache
from personakit.testing import assert_config_matches


def _last_line(chat):
    """The isolated last user utterance of a prompt built with the builtin template."""
    return [line for line in chat[-1]["content"].splitlines() if line.startswith("User: ")][-1][6:]


def _reply(chat):
    return f'Agent: "Generic answer to: {_last_line(chat)}"\nUser: more'


class Recorder:
    """A generator function that records its prompts and can fail after ``fail_after`` calls (a kill)."""

    def __init__(self, fail_after=None):
        self.prompts = []
        self.fail_after = fail_after

    def __call__(self, chat):
        if self.fail_after is not None and len(self.prompts) >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.prompts.append(json.dumps(chat, sort_keys=True))
        return _reply(chat)


@pytest.fixture(scope="module")
def examples():
    return dialogues_to_examples(load_builtin_corpus("test"), "agent")[:11]


def test_augment_fills_generic_response_on_copies(examples):
    rec = Recorder()
    aug = GenericResponseAugmenter(CallableGenerator(rec, model_id="rec"), template="builtin", batch_size=4)
    out = aug.augment(examples, progress=False)
    assert len(out) == len(examples) == len(rec.prompts)
    for ex, new in zip(examples, out):
        assert ex.generic_response is None  # inputs untouched
        assert new.generic_response == f"Generic answer to: {ex.history[-1].text}"
        assert new.model_dump(exclude={"generic_response"}) == ex.model_dump(exclude={"generic_response"})
        assert new.history is not ex.history
    stats = aug.last_stats
    assert (stats.examples, stats.generated, stats.cached, stats.empty) == (11, 11, 0, 0)


def test_settings_reach_the_generator(examples):
    seen = []
    gen = CallableGenerator(lambda chat, s: seen.append(s.max_new_tokens) or "x", model_id="s")
    GenericResponseAugmenter(gen, "builtin", settings=GenerationSettings(max_new_tokens=7)).augment(
        examples[:2], progress=False)
    assert seen == [7, 7]


def test_batches_follow_batch_size(examples):
    sizes = []
    gen = CallableGenerator(lambda chats: sizes.append(len(chats)) or ["x"] * len(chats), batched=True, batch_size=99)
    GenericResponseAugmenter(gen, "builtin", batch_size=4).augment(examples, progress=False)
    assert sizes == [4, 4, 3]


def test_rejects_a_non_generator():
    with pytest.raises(TypeError, match="CallableGenerator"):
        GenericResponseAugmenter(lambda chat: "x")
    with pytest.raises(ValueError, match="batch_size"):
        GenericResponseAugmenter(CallableGenerator(str), batch_size=0)


def test_cache_resume_after_a_kill(tmp_path, examples):
    reference = GenericResponseAugmenter(CallableGenerator(Recorder(), model_id="m"), "builtin").augment(
        examples, progress=False)

    cache_path = tmp_path / "cache.jsonl"
    first = Recorder(fail_after=7)
    aug = GenericResponseAugmenter(CallableGenerator(first, model_id="m"), "builtin", cache=cache_path, batch_size=3)
    with pytest.raises(KeyboardInterrupt):
        aug.augment(examples, progress=False)
    # two complete batches (6 prompts) were stored; the third, in flight, was lost
    assert len(first.prompts) == 7
    assert len(ResponseCache(cache_path)) == 6

    second = Recorder()
    aug = GenericResponseAugmenter(CallableGenerator(second, model_id="m"), "builtin", cache=cache_path, batch_size=3)
    resumed = aug.augment(examples, progress=False)
    assert resumed == reference
    all_prompts = {json.dumps(aug.build_prompt(ex), sort_keys=True) for ex in examples}
    assert set(second.prompts) == all_prompts - set(first.prompts[:6])  # only the missing ones
    assert len(second.prompts) == len(examples) - 6
    assert (aug.last_stats.generated, aug.last_stats.cached) == (5, 6)

    # a finished run costs nothing to rerun
    third = Recorder()
    aug = GenericResponseAugmenter(CallableGenerator(third, model_id="m"), "builtin", cache=str(cache_path))
    assert aug.augment(examples, progress=False) == reference
    assert third.prompts == [] and aug.last_stats.cached == len(examples)


def test_cache_key_includes_model_and_settings(tmp_path, examples):
    cache = ResponseCache(tmp_path / "c.jsonl")
    rec = Recorder()
    GenericResponseAugmenter(CallableGenerator(rec, model_id="m"), "builtin", cache=cache).augment(
        examples[:3], progress=False)
    GenericResponseAugmenter(CallableGenerator(rec, model_id="other"), "builtin", cache=cache).augment(
        examples[:3], progress=False)
    GenericResponseAugmenter(CallableGenerator(rec, model_id="m"), "builtin", cache=cache,
                             settings=GenerationSettings(max_new_tokens=5)).augment(examples[:3], progress=False)
    GenericResponseAugmenter(CallableGenerator(rec, model_id="m"), "spc", cache=cache).augment(
        examples[:3], progress=False)  # another template is another prompt
    assert len(rec.prompts) == 12
    GenericResponseAugmenter(CallableGenerator(rec, model_id="m"), "builtin", cache=cache).augment(
        examples[:3], progress=False)
    assert len(rec.prompts) == 12


def test_torn_cache_line_is_regenerated(tmp_path, examples):
    path = tmp_path / "c.jsonl"
    rec = Recorder()
    GenericResponseAugmenter(CallableGenerator(rec, model_id="m"), "builtin", cache=path).augment(
        examples[:4], progress=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])  # the last entry torn by a kill mid-write
    rec2 = Recorder()
    with pytest.warns(RuntimeWarning, match="incomplete last line"):
        aug = GenericResponseAugmenter(CallableGenerator(rec2, model_id="m"), "builtin", cache=path)
    out = aug.augment(examples[:4], progress=False)
    assert len(rec2.prompts) == 1
    assert [o.generic_response for o in out] == [f"Generic answer to: {e.history[-1].text}" for e in examples[:4]]


def test_duplicate_prompts_generated_once_with_cache(tmp_path, examples):
    rec = Recorder()
    aug = GenericResponseAugmenter(CallableGenerator(rec, model_id="m"), "builtin", cache=tmp_path / "c.jsonl")
    out = aug.augment([examples[0], examples[1], examples[0]], progress=False)
    assert len(rec.prompts) == 2 and out[0] == out[2]
    assert aug.last_stats.prompts == 2


def test_save_and_load_examples(tmp_path, examples):
    aug = GenericResponseAugmenter(CallableGenerator(_reply), "builtin")
    out = aug.augment(examples[:3], progress=False)
    path = save_examples(tmp_path / "aug.jsonl", out)
    assert load_examples(path) == out
    path.write_text(path.read_text() + '{"id": "x", "history": [], "response": "r"}\n')
    with pytest.raises(ValueError, match=r"aug\.jsonl: line 4: field '<record>'|aug\.jsonl: line 4"):
        load_examples(path)


def test_config_matches_and_builds():
    assert_config_matches(GenericResponseAugmenterConfig, exclude=["generator"])
    cfg = GenericResponseAugmenterConfig.from_yaml("template: pfg\nbatch_size: 2\nsettings: {max_new_tokens: 9}\n")
    aug = cfg.build(generator=CallableGenerator(str))
    assert (aug.template.name, aug.batch_size, aug.settings.max_new_tokens) == ("pfg", 2, 9)


# ---------------------------------------------------------------- OpenAI-compatible endpoint
class _Handler(BaseHTTPRequestHandler):
    requests: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/chat/completions":
            self.send_response(404)
            self.end_headers()
            return
        type(self).requests.append(body)
        content = f"Agent: Generic answer to: {_last_line(body['messages'])}"
        payload = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
        data = payload.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def openai_server():
    _Handler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", _Handler.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_openai_compatible_endpoint(openai_server, tmp_path, examples):
    url, requests = openai_server
    gen = OpenAICompatibleGenerator(url, "served-model", concurrency=3, max_retries=0, timeout=10)
    aug = GenericResponseAugmenter(gen, "builtin", settings=GenerationSettings(max_new_tokens=20),
                                   cache=tmp_path / "c.jsonl", batch_size=4)
    out = aug.augment(examples[:6], progress=False)
    assert [o.generic_response for o in out] == [f"Generic answer to: {e.history[-1].text}" for e in examples[:6]]
    assert len(requests) == 6
    body = requests[0]
    assert body["model"] == "served-model" and body["max_tokens"] == 20 and body["temperature"] == 0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"] in [aug.build_prompt(e) for e in examples[:6]]
    # rerun: all from the cache, no request
    aug.augment(examples[:6], progress=False)
    assert len(requests) == 6


# ---------------------------------------------------------------- empty replies: retries and fallback
class Flaky:
    """A fake generic LLM whose replies to some prompts clean up to nothing.

    ``bad`` maps a last user utterance to the call (1-based) of that prompt from which the
    reply is usable (``None``: never); other prompts get a usable reply at once.
    """

    def __init__(self, bad):
        self.bad = dict(bad)
        self.calls = []  # (last utterance, temperature, seed)

    def __call__(self, chat, settings):
        last = _last_line(chat)
        self.calls.append((last, settings.temperature, settings.seed))
        n = sum(1 for c in self.calls if c[0] == last)
        heals = self.bad.get(last, 1)
        if heals is None or n < heals:
            return "User: " + last  # a reply that only echoes a user turn cleans up to nothing
        return f"Agent: Reply {n} to: {last}"


def test_empty_replies_are_retried_sampling_then_fall_back(examples):
    lasts = [e.history[-1].text for e in examples[:6]]
    fake = Flaky({lasts[1]: 3, lasts[4]: None})  # the 2nd heals on its second retry, the 5th never
    aug = GenericResponseAugmenter(CallableGenerator(fake, model_id="f"), "builtin", batch_size=4,
                                   settings=GenerationSettings(max_new_tokens=9, seed=5))
    out = aug.generate(examples[:6], progress=False)
    assert out == [f"Reply 1 to: {t}" for t in lasts[:1]] + [f"Reply 3 to: {lasts[1]}"] + [
        f"Reply 1 to: {t}" for t in lasts[2:4]] + ["Okay."] + [f"Reply 1 to: {lasts[5]}"]
    # first pass greedy, then each retry samples with its own seed
    assert [(t, s) for last, t, s in fake.calls if last == lasts[4]] == [(0.0, 5), (0.7, 6), (0.7, 7)]
    stats = aug.last_stats
    assert (stats.examples, stats.first_empty, stats.retried, stats.fallback, stats.empty) == (6, 2, 2, 1, 0)
    assert (stats.generated, stats.cached) == (6 + 2 + 2, 0)


def test_retries_and_fallback_are_configurable(examples):
    echo = CallableGenerator(lambda chat: "User: " + _last_line(chat), model_id="e")
    aug = GenericResponseAugmenter(echo, "builtin", empty_retries=0, fallback=None)
    assert aug.generate(examples[:3], progress=False) == ["", "", ""]
    stats = aug.last_stats
    assert (stats.first_empty, stats.retried, stats.fallback, stats.empty, stats.generated) == (3, 0, 0, 3, 3)
    aug = GenericResponseAugmenter(echo, "builtin", empty_retries=1, fallback="I see.")
    assert aug.generate(examples[:3], progress=False) == ["I see."] * 3
    assert (aug.last_stats.retried, aug.last_stats.fallback, aug.last_stats.generated) == (3, 3, 6)
    for bad in ({"empty_retries": -1}, {"retry_temperature": 0.0}, {"fallback": "  "}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            GenericResponseAugmenter(echo, **bad)
    cfg = GenericResponseAugmenterConfig(empty_retries=0, fallback=None, retry_temperature=0.9)
    built = cfg.build(generator=echo)
    assert (built.empty_retries, built.fallback, built.retry_temperature) == (0, None, 0.9)


def test_retries_are_cached_under_their_own_keys_and_a_rerun_is_free(tmp_path, examples):
    bad = {examples[0].history[-1].text: None, examples[2].history[-1].text: None}
    first = Flaky(bad)
    path = tmp_path / "c.jsonl"
    aug = GenericResponseAugmenter(CallableGenerator(first, model_id="f"), "builtin", cache=path, batch_size=2)
    out = aug.generate(examples[:5], progress=False)
    assert out[0] == out[2] == "Okay."
    assert len(first.calls) == 5 + 2 * 2 and len(ResponseCache(path)) == 9
    again = Flaky(bad)
    aug = GenericResponseAugmenter(CallableGenerator(again, model_id="f"), "builtin", cache=path, batch_size=2)
    assert aug.generate(examples[:5], progress=False) == out
    assert again.calls == []
    stats = aug.last_stats
    assert (stats.generated, stats.cached, stats.retried, stats.fallback) == (0, 9, 2, 2)


def test_label_leaks_are_counted_and_self_naming_dropped(examples):
    replies = iter(["I'm Agent in a friendly chat. Pets are nice.", "Sure thing.", "Agent: Fine.",
                    "My travel agent said so."])
    aug = GenericResponseAugmenter(CallableGenerator(lambda chat: next(replies), model_id="l"), "builtin",
                                   batch_size=1)
    out = aug.generate(examples[:4], progress=False)
    assert out == ["Pets are nice.", "Sure thing.", "Fine.", "My travel agent said so."]
    assert aug.last_stats.label_leaks == 2
