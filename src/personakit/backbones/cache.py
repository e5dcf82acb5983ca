"""The personakit cache folder and crash-safe, process-safe preparation of folders in it.

A prepared folder (a converted model, an unzipped archive) is built in a temporary
sibling folder, finished with a completion marker, and renamed into place, all while
holding an exclusive file lock.  Hence:

- a reader never sees a half-built folder: the final name only ever points at a
  complete build whose marker matches the sources;
- two processes (or threads) asking for the same folder build it once: the second
  waits for the lock, then finds the finished folder;
- an exception or a kill during the build leaves at most a temporary folder
  (``.NAME.tmp-*``) that never loads as valid and is removed by the next build.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> def build(tmp):
    ...     (tmp / "weights.txt").write_text("42")
    >>> path = prepare_atomically(root / "demo", build, {"recipe": "demo/1"})
    >>> (path / "weights.txt").read_text(), is_prepared(path, {"recipe": "demo/1"})
    ('42', True)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from personakit.config import atomic_write_text

__all__ = [
    "MARKER_NAME",
    "cache_dir",
    "file_lock",
    "file_fingerprint",
    "is_prepared",
    "read_marker",
    "prepare_atomically",
    "folder_size",
]

logger = logging.getLogger("personakit.backbones")

MARKER_NAME = "personakit-complete.json"
"""Completion marker written into a prepared folder just before it is renamed into place."""

_HASH_CHUNK = 1 << 18  # 256 KiB read from the head and from the tail of each source file


def cache_dir() -> Path:
    """The personakit cache folder (not created here).

    ``$PERSONAKIT_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/personakit``, else
    ``~/.cache/personakit``.
    """
    explicit = os.environ.get("PERSONAKIT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "personakit"
    return Path.home() / ".cache" / "personakit"


# ------------------------------------------------------------------------- locking
@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], *, timeout: float | None = None, poll: float = 0.1,
              what: str | None = None) -> Iterator[Path]:
    """Hold an exclusive advisory lock on ``path`` (created if needed).

    Uses ``fcntl.flock`` (``msvcrt.locking`` on Windows).  The lock belongs to an
    open file description, so it excludes other processes *and* other threads of
    this process, and the operating system releases it when a process dies.  The
    lock file itself is left in place (deleting it would race with waiters).

    Args:
        path: The lock file.
        timeout: Seconds to wait; ``None`` waits forever.
        poll: Seconds between attempts.
        what: Text for the "waiting for ..." log line.

    Raises:
        TimeoutError: the lock was not acquired within ``timeout`` seconds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        start = time.monotonic()
        announced = False
        while not _try_lock(fd):
            waited = time.monotonic() - start
            if timeout is not None and waited >= timeout:
                raise TimeoutError(
                    f"{path}: could not acquire the lock within {timeout:g} s "
                    f"(another process is preparing {what or path.stem}); remove the lock file only if no "
                    "personakit process is running"
                )
            if not announced and waited >= 1.0:
                logger.warning("waiting for another process to finish preparing %s (lock %s)", what or path, path)
                announced = True
            time.sleep(poll)
        try:
            yield path
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


# ------------------------------------------------------------------- fingerprints
def file_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A cheap identity of a source file: name, size, mtime and a "hash-lite".

    The hash-lite is the SHA-256 of the size, the first and the last 256 KiB, so a
    replaced file is detected without reading hundreds of megabytes.  The mtime is
    recorded for information only (a reinstall of the same file changes it).
    """
    path = Path(path)
    st = path.stat()
    digest = hashlib.sha256(str(st.st_size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(_HASH_CHUNK))
        if st.st_size > _HASH_CHUNK:
            fh.seek(max(_HASH_CHUNK, st.st_size - _HASH_CHUNK))
            digest.update(fh.read(_HASH_CHUNK))
    return {"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "hash_lite": digest.hexdigest()}


def _identity(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a marker that must match: everything except informational fields."""
    out = dict(fingerprint)
    for key in ("versions", "created", "model"):
        out.pop(key, None)
    if "sources" in out:
        out["sources"] = [{k: s[k] for k in ("name", "size", "hash_lite") if k in s} for s in out["sources"]]
    return out


def read_marker(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The completion marker of ``folder``, or ``None`` when absent or unreadable."""
    try:
        data = json.loads((Path(folder) / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_prepared(folder: str | os.PathLike[str], expected: Mapping[str, Any]) -> bool:
    """Whether ``folder`` is a finished build whose marker matches ``expected``.

    Fields ``versions``, ``created`` and ``model`` and the sources' ``mtime_ns``
    are informational and not compared.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return False
    marker = read_marker(folder)
    return marker is not None and _identity(marker) == _identity(json.loads(json.dumps(expected)))


def folder_size(folder: str | os.PathLike[str]) -> int:
    """Total size in bytes of the files under ``folder`` (0 when absent)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


# -------------------------------------------------------------------- preparation
def _clean_leftovers(target: Path) -> None:
    """Remove temporary/old siblings of ``target`` left by crashed builds (lock held)."""
    if not target.parent.is_dir():
        return
    for prefix in (f".{target.name}.tmp-", f".{target.name}.old-"):
        for stale in target.parent.glob(prefix + "*"):
            logger.info("removing leftover %s from an interrupted preparation", stale)
            shutil.rmtree(stale, ignore_errors=True)


def prepare_atomically(
    target: str | os.PathLike[str],
    build: Callable[[Path], None],
    marker: Mapping[str, Any],
    *,
    force: bool = False,
    lock_timeout: float | None = None,
    what: str | None = None,
) -> Path:
    """Build ``target`` once, atomically, under a file lock.

    ``build(tmp)`` writes the folder's content into an empty temporary sibling
    folder; then ``marker`` is written there as ``personakit-complete.json`` and the
    folder is renamed to ``target``.  If ``target`` already holds a build whose
    marker matches (see :func:`is_prepared`), nothing is built.  A stale or
    mismatching ``target`` is replaced (renamed aside, then removed).

    Args:
        target: The final folder.
        build: Writes the content into the folder it is given.
        marker: JSON-serialisable description of the sources and recipe.
        force: Rebuild even if ``target`` is valid.
        lock_timeout: Seconds to wait for another process's build (``None``: forever).
        what: Name used in log messages.

    Returns:
        ``target`` as a :class:`~pathlib.Path`.

    Raises:
        TimeoutError: another process held the lock for longer than ``lock_timeout``.
        Exception: whatever ``build`` raised; the temporary folder is removed first.
    """
    target = Path(target)
    marker = json.loads(json.dumps(marker))  # fail early on non-JSON values
    if not force and is_prepared(target, marker):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    with file_lock(lock_path, timeout=lock_timeout, what=what or target.name):
        if not force and is_prepared(target, marker):  # built by another process meanwhile
            return target
        _clean_leftovers(target)
        token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp = target.parent / f".{target.name}.tmp-{token}"
        tmp.mkdir()
        try:
            build(tmp)
            marker_path = atomic_write_text(tmp / MARKER_NAME, json.dumps(marker, indent=2, sort_keys=True) + "\n")
            os.chmod(marker_path, 0o644)  # mkstemp makes it 0600; a shared cache must be readable
            if target.exists() or target.is_symlink():
                old = target.parent / f".{target.name}.old-{token}"
                os.replace(target, old)
                os.replace(tmp, target)
                if old.is_dir() and not old.is_symlink():
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    old.unlink()
            else:
                os.replace(tmp, target)
            _fsync_dir(target.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk where the platform allows it."""
    if sys.platform == "win32":  # pragma: no cover
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
