"""Cache folder resolution and atomic, process-safe preparation."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from personakit.backbones import cache
from personakit.backbones.cache import (
    MARKER_NAME,
    cache_dir,
    file_fingerprint,
    file_lock,
    is_prepared,
    prepare_atomically,
    read_marker,
)

MARKER = {"recipe": "test/1", "sources": [{"name": "src.bin", "size": 3, "hash_lite": "abc", "mtime_ns": 1}]}


def _leftovers(target: Path) -> list[Path]:
    return sorted(p for p in target.parent.glob(f".{target.name}.*") if not p.name.endswith(".lock"))


# ------------------------------------------------------------------ cache_dir
def test_cache_dir_prefers_personakit_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSONAKIT_CACHE_DIR", str(tmp_path / "pk"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "pk"


def test_cache_dir_uses_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("PERSONAKIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "personakit"


def test_cache_dir_defaults_to_home(monkeypatch, tmp_path):
    monkeypatch.delenv("PERSONAKIT_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "personakit"


def test_cache_dir_expands_user(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PERSONAKIT_CACHE_DIR", "~/pk")
    assert cache_dir() == tmp_path / "pk"


# ---------------------------------------------------------------- fingerprint
def test_fingerprint_sees_a_changed_tail_of_same_size(tmp_path):
    path = tmp_path / "big.bin"
    data = bytearray(b"x" * (3 * cache._HASH_CHUNK))
    path.write_bytes(bytes(data))
    before = file_fingerprint(path)
    data[-1:] = b"y"
    path.write_bytes(bytes(data))
    after = file_fingerprint(path)
    assert before["size"] == after["size"] and before["hash_lite"] != after["hash_lite"]


# ------------------------------------------------------------ atomic prepare
def test_prepare_builds_once_and_writes_marker(tmp_path):
    calls = []

    def build(tmp: Path) -> None:
        calls.append(tmp)
        (tmp / "weights.bin").write_bytes(b"123")

    target = tmp_path / "model"
    assert prepare_atomically(target, build, MARKER) == target
    assert prepare_atomically(target, build, MARKER) == target
    assert len(calls) == 1
    assert calls[0] != target and calls[0].parent == target.parent  # built in a sibling, then renamed
    assert (target / "weights.bin").read_bytes() == b"123"
    assert read_marker(target) == MARKER
    assert _leftovers(target) == []


def test_failed_build_leaves_nothing_and_next_call_succeeds(tmp_path):
    target = tmp_path / "model"

    def failing(tmp: Path) -> None:
        (tmp / "config.json").write_text("{}")
        (tmp / "weights.part").write_bytes(b"half")
        raise RuntimeError("disk full halfway")

    with pytest.raises(RuntimeError, match="halfway"):
        prepare_atomically(target, failing, MARKER)
    assert not target.exists()
    assert not is_prepared(target, MARKER)
    assert _leftovers(target) == []

    prepare_atomically(target, lambda tmp: (tmp / "config.json").write_text('{"ok": 1}'), MARKER)
    assert is_prepared(target, MARKER)
    assert json.loads((target / "config.json").read_text()) == {"ok": 1}
    assert not (target / "weights.part").exists()


def test_keyboard_interrupt_during_build_is_cleaned(tmp_path):
    target = tmp_path / "model"

    def interrupted(tmp: Path) -> None:
        (tmp / "x").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_atomically(target, interrupted, MARKER)
    assert not target.exists() and _leftovers(target) == []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_killed_build_leaves_stale_temp_that_is_cleaned(tmp_path):
    target = tmp_path / "model"
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from personakit.backbones.cache import prepare_atomically
        def build(tmp):
            (tmp / "config.json").write_text("{{}}")
            (tmp / "{MARKER_NAME}").write_text('{json.dumps(MARKER)}')  # even a marker: still never valid
            os.kill(os.getpid(), signal.SIGKILL)
        prepare_atomically(Path({str(target)!r}), build, {MARKER!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    stale = _leftovers(target)
    assert len(stale) == 1 and ".tmp-" in stale[0].name
    assert not target.exists() and not is_prepared(target, MARKER)

    # the dead process's lock is released by the OS; the next build removes the stale folder
    prepare_atomically(target, lambda tmp: (tmp / "config.json").write_text("{}"), MARKER, lock_timeout=10)
    assert is_prepared(target, MARKER)
    assert _leftovers(target) == []


def test_stale_old_swap_folder_is_cleaned(tmp_path):
    target = tmp_path / "model"
    (tmp_path / ".model.old-123-abc").mkdir()
    (tmp_path / ".model.old-123-abc" / "f").write_text("x")
    prepare_atomically(target, lambda tmp: None, MARKER)
    assert _leftovers(target) == []


def test_mismatching_or_missing_marker_is_rebuilt(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("copied by hand, no marker")
    assert not is_prepared(target, MARKER)
    prepare_atomically(target, lambda tmp: (tmp / "config.json").write_text("v1"), MARKER)
    assert (target / "config.json").read_text() == "v1"

    changed = {**MARKER, "sources": [{**MARKER["sources"][0], "size": 4}]}
    assert not is_prepared(target, changed)
    prepare_atomically(target, lambda tmp: (tmp / "config.json").write_text("v2"), changed)
    assert (target / "config.json").read_text() == "v2"
    assert is_prepared(target, changed) and _leftovers(target) == []


def test_informational_fields_do_not_invalidate(tmp_path):
    target = tmp_path / "model"
    prepare_atomically(target, lambda tmp: None, {**MARKER, "versions": {"torch": "1"}, "created": "then"})
    moved = {**MARKER, "sources": [{**MARKER["sources"][0], "mtime_ns": 999}], "versions": {"torch": "2"}}
    assert is_prepared(target, moved)


def test_force_rebuilds(tmp_path):
    target = tmp_path / "model"
    prepare_atomically(target, lambda tmp: (tmp / "v").write_text("1"), MARKER)
    prepare_atomically(target, lambda tmp: (tmp / "v").write_text("2"), MARKER, force=True)
    assert (target / "v").read_text() == "2"


def test_non_json_marker_is_rejected_before_building(tmp_path):
    with pytest.raises(TypeError):
        prepare_atomically(tmp_path / "m", lambda tmp: pytest.fail("built"), {"x": object()})


# ----------------------------------------------------------------------- lock
def test_concurrent_threads_build_once(tmp_path):
    target = tmp_path / "model"
    builds = []
    started = threading.Event()

    def slow_build(tmp: Path) -> None:
        builds.append(tmp)
        started.set()
        time.sleep(0.5)
        (tmp / "weights").write_text("done")

    results = []
    first = threading.Thread(target=lambda: results.append(prepare_atomically(target, slow_build, MARKER)))
    first.start()
    assert started.wait(10)
    # the second caller arrives while the first is building: it must wait, then reuse
    second = threading.Thread(target=lambda: results.append(prepare_atomically(target, slow_build, MARKER)))
    second.start()
    first.join(20)
    second.join(20)
    assert results == [target, target]
    assert len(builds) == 1
    assert (target / "weights").read_text() == "done"


@pytest.mark.skipif(sys.platform == "win32", reason="uses a POSIX subprocess holding the lock")
def test_lock_held_by_another_process_times_out(tmp_path):
    target = tmp_path / "model"
    lock = tmp_path / ".model.lock"
    script = textwrap.dedent(f"""
        import sys, time
        from personakit.backbones.cache import file_lock
        with file_lock({str(lock)!r}):
            print("locked", flush=True)
            time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="another process"):
            prepare_atomically(target, lambda tmp: pytest.fail("built under a held lock"), MARKER, lock_timeout=0.3)
        assert time.monotonic() - t0 >= 0.3
        assert not target.exists()
    finally:
        proc.kill()
        proc.wait()
    # once the holder is gone, the lock is free
    prepare_atomically(target, lambda tmp: None, MARKER, lock_timeout=5)
    assert is_prepared(target, MARKER)


def test_file_lock_excludes_within_one_process(tmp_path):
    lock = tmp_path / "x.lock"
    with file_lock(lock):
        with pytest.raises(TimeoutError):
            with file_lock(lock, timeout=0.05):
                pass
    with file_lock(lock, timeout=0.05):
        pass
