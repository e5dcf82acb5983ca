import json

import pytest

from personakit.llm import CachedGenerator, CallableGenerator, GenerationSettings, ResponseCache, cache_key


class Boom(RuntimeError):
    pass


def counting(fail_after=None):
    calls = []

    def fn(prompt):
        if fail_after is not None and len(calls) >= fail_after:
            raise Boom("killed")
        calls.append(prompt)
        return f"reply to {prompt}"

    return fn, calls


PROMPTS = [f"p{i}" for i in range(10)]


def test_interrupted_run_resumes_without_regenerating(tmp_path):
    path = tmp_path / "cache.jsonl"
    fn, calls = counting(fail_after=5)
    gen = CachedGenerator(CallableGenerator(fn, model_id="m", batch_size=2), path)
    with pytest.raises(Boom):
        gen.generate(PROMPTS)
    # two complete batches (4 prompts) are durable; the 5th prompt's batch was never completed
    assert len(ResponseCache(path)) == 4

    fn2, calls2 = counting()
    gen2 = CachedGenerator(CallableGenerator(fn2, model_id="m", batch_size=2), path)
    out = gen2.generate(PROMPTS)
    assert out == [f"reply to {p}" for p in PROMPTS]
    assert calls2 == PROMPTS[4:]
    assert (gen2.hits, gen2.misses) == (4, 6)

    fn3, calls3 = counting()
    assert CachedGenerator(CallableGenerator(fn3, model_id="m"), path).generate(PROMPTS) == out
    assert calls3 == []


def test_torn_last_line_is_skipped_with_warning_and_never_cut(tmp_path):
    path = tmp_path / "cache.jsonl"
    ResponseCache(path).put_many({"a": "A", "b": "B"})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"key": "c", "resp')  # a kill in the middle of a write
    before = path.read_bytes()
    with pytest.warns(RuntimeWarning, match="incomplete last line"):
        cache = ResponseCache(path)
    assert len(cache) == 2 and cache.get("a") == "A" and "c" not in cache
    assert path.read_bytes() == before  # skipped, not cut: another process may still be writing it
    cache.put("d", "D")  # the torn fragment is closed off first: "d" lands on a line of its own
    with pytest.warns(RuntimeWarning, match=r"cache\.jsonl: line 3: skipped"):
        again = ResponseCache(path)
    assert again.get("d") == "D" and len(again) == 3


def test_bad_middle_line_is_skipped_with_a_warning_naming_file_and_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_text('{"key": "a", "response": "A"}\nnot json\n{"key": "b", "response": "B"}\n[1]\n'
                    '{"key": "c"}\n{"key": "d", "response": "D"}\n')
    with pytest.warns(RuntimeWarning) as record:
        cache = ResponseCache(path)
    assert sorted(cache.keys()) == ["a", "b", "d"]
    messages = [str(w.message) for w in record]
    assert any("cache.jsonl: line 2: skipped" in m for m in messages)
    assert any("cache.jsonl: line 4: skipped" in m for m in messages)
    assert any("cache.jsonl: line 5: skipped" in m and "'response'" in m for m in messages)


def test_key_depends_on_prompt_model_and_settings():
    s = GenerationSettings(max_new_tokens=8)
    base = cache_key("hi", "m", s)
    assert base == cache_key("hi", "m", GenerationSettings(max_new_tokens=8))
    assert base != cache_key("hi!", "m", s)
    assert base != cache_key("hi", "m2", s)
    assert base != cache_key("hi", "m", GenerationSettings(max_new_tokens=9))
    assert base != cache_key([{"role": "user", "content": "hi"}], "m", s)
    sampled = GenerationSettings(temperature=1.0)
    assert cache_key("hi", "m", sampled) != cache_key("hi", "m", sampled.model_copy(update={"seed": 1}))


def test_duplicates_in_one_call_generate_once(tmp_path):
    fn, calls = counting()
    gen = CachedGenerator(CallableGenerator(fn, model_id="m"), tmp_path / "c.jsonl")
    assert gen.generate(["x", "y", "x"]) == ["reply to x", "reply to y", "reply to x"]
    assert calls == ["x", "y"]


def test_different_settings_miss(tmp_path):
    fn, calls = counting()
    gen = CachedGenerator(CallableGenerator(fn, model_id="m"), tmp_path / "c.jsonl")
    gen.generate(["x"], {"max_new_tokens": 5})
    gen.generate(["x"], {"max_new_tokens": 6})
    gen.generate(["x"], {"max_new_tokens": 5})
    assert calls == ["x", "x"]


# ---------------------------------------------------------------- several processes (issue 23)
import os
import subprocess
import sys
import textwrap
import time


def _spawn(code, *args):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=60):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


HALF_LINE_WRITER = """
    import json, sys
    path = sys.argv[1]
    line = json.dumps({"key": "late", "response": "x" * 2000}) + "\\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line[:1000]); fh.flush()      # the first half of the line is on disk
        print("half", flush=True)
        sys.stdin.readline()                    # wait while the other process opens the cache
        fh.write(line[1000:]); fh.flush()
"""


def test_opening_never_cuts_a_line_another_process_is_writing(tmp_path):
    path = tmp_path / "cache.jsonl"
    ResponseCache(path).put_many({f"k{i}": f"v{i}" for i in range(5)})
    writer = _spawn(HALF_LINE_WRITER, path)
    assert writer.stdout.readline().strip() == "half"
    with pytest.warns(RuntimeWarning, match="incomplete last line"):
        cache = ResponseCache(path)  # sees the unfinished line: skips it, must not cut it
    assert len(cache) == 5
    writer.stdin.write("go\n")
    writer.stdin.flush()
    _finish(writer)
    final = ResponseCache(path)
    assert len(final) == 6 and final.get("late") == "x" * 2000


APPENDER = """
    import sys
    from personakit.llm import ResponseCache
    cache = ResponseCache(sys.argv[1])
    for b in range(12):
        cache.put_many({f"k{b}-{i}": "r" * 100_000 for i in range(10)})  # 1 MB a batch: a long write
"""


def test_concurrent_opens_lose_no_entries_of_a_running_writer(tmp_path):
    import warnings

    for round in range(3):  # the race is timing-dependent: before the fix, most rounds lost entries
        path = tmp_path / f"cache{round}.jsonl"
        writer = _spawn(APPENDER, path)
        while writer.poll() is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ResponseCache(path)
            time.sleep(0.01)  # let the writer take the lock between two opens
        _finish(writer)
        assert len(ResponseCache(path)) == 120, round


RUNNER = """
    import json, os, sys, time
    from personakit.llm import CachedGenerator, CallableGenerator
    path, log, go = sys.argv[1], sys.argv[2], sys.argv[3]
    calls = []
    def fn(prompt):
        calls.append(prompt)
        time.sleep(0.03)
        return "reply to " + prompt
    gen = CachedGenerator(CallableGenerator(fn, model_id="m", batch_size=4), path)
    while not os.path.exists(go):
        time.sleep(0.005)
    out = gen.generate([f"p{i}" for i in range(48)])
    assert out == [f"reply to p{i}" for i in range(48)], out
    with open(log, "w") as fh:
        json.dump({"calls": calls, "hits": gen.hits, "misses": gen.misses}, fh)
"""


def test_two_processes_on_one_cache_do_not_generate_the_same_prompts(tmp_path):
    path, go = tmp_path / "cache.jsonl", tmp_path / "go"
    logs = [tmp_path / "a.json", tmp_path / "b.json"]
    procs = [_spawn(RUNNER, path, log, go) for log in logs]
    time.sleep(0.5)  # both have imported personakit and opened the cache
    go.touch()
    for proc in procs:
        _finish(proc)
    runs = [json.loads(log.read_text()) for log in logs]
    calls = runs[0]["calls"] + runs[1]["calls"]
    assert sorted(calls) == sorted(f"p{i}" for i in range(48))  # every prompt generated exactly once
    for run in runs:
        assert run["hits"] + run["misses"] == 48 and run["misses"] == len(run["calls"])
    assert len(ResponseCache(path)) == 48


def test_claims_of_a_dead_process_do_not_block(tmp_path):
    path = tmp_path / "cache.jsonl"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claim = {"op": "claim", "owner": "gone", "pid": dead.pid, "host": os.uname().nodename, "time": time.time(),
             "keys": [cache_key(p, "m", GenerationSettings()) for p in PROMPTS]}
    path.with_name(path.name + ".claims").write_text(json.dumps(claim) + "\n")
    fn, calls = counting()
    start = time.monotonic()
    out = CachedGenerator(CallableGenerator(fn, model_id="m", batch_size=3), path).generate(PROMPTS)
    assert out == [f"reply to {p}" for p in PROMPTS] and calls == PROMPTS
    assert time.monotonic() - start < 5
