r"""Quiet, honest model loading: transformers' progress bars and its *expected* load reports.

Two kinds of noise come from transformers 5.x when personakit loads a model:

* the ``Loading weights`` tqdm bar of every ``from_pretrained``. :func:`loading_progress`
  (a context manager; ``personakit ... --no-progress`` and ``run_demo(progress=False)`` use
  it) turns it off, together with huggingface_hub's bars, for the loaders of
  :mod:`personakit.backbones` called inside it;
* the ``LOAD REPORT`` table (and a *"This checkpoint seem corrupted"* line about tied
  weights) printed when a checkpoint is loaded into a model with other weights: e.g. the
  MiniLM encoder warm-started as the decoder of a BERT2BERT encoder-decoder, whose
  cross-attention and LM head are new by design. :func:`capture_load_reports` collects
  them, and :func:`summarise_load_reports` turns them into one line of ours when every
  reported weight is one the caller expected, and gives them back to transformers' log,
  unchanged, when one is not: an unexpected missing weight is never hidden.

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

__all__ = ["LoadReports", "capture_load_reports", "loading_progress", "loading_progress_enabled",
           "summarise_load_reports", "transformers_progress"]

logger = logging.getLogger("personakit.backbones")

_PROGRESS: contextvars.ContextVar[Optional[bool]] = contextvars.ContextVar("personakit_loading_progress",
                                                                           default=None)

# the loggers transformers' ``from_pretrained`` writes its load report and tied-weight warnings to
_REPORT_LOGGERS = ("transformers.modeling_utils", "transformers.modeling_layers", "transformers.utils.loading_report")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ROW = re.compile(r"^(?P<key>[^|\s][^|]*?)\s*\|\s*(?P<status>[A-Z][A-Z_ ]*[A-Z])\s*\|")
_TIED = re.compile(r"to tie (?P<a>\S+) to (?P<b>\S+), but both are absent")


@contextlib.contextmanager
def loading_progress(enabled: Optional[bool]) -> Iterator[None]:
    """Show (``True``) or hide (``False``) transformers' ``Loading weights`` bars in personakit's loaders
    called inside the block (``None``: transformers' own setting). Nests; per thread / task.

    Example:
        >>> from personakit.backbones.quiet import loading_progress, loading_progress_enabled
        >>> with loading_progress(False):
        ...     loading_progress_enabled()
        False
    """
    token = _PROGRESS.set(enabled)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def loading_progress_enabled() -> Optional[bool]:
    """What the innermost :func:`loading_progress` asked for (``None`` outside any)."""
    return _PROGRESS.get()


@contextlib.contextmanager
def transformers_progress(enabled: Optional[bool]) -> Iterator[None]:
    """transformers' (and huggingface_hub's) tqdm bars on or off inside the block, restored after it
    (``None``: unchanged). Used by the loaders around ``from_pretrained``."""
    if enabled is None:
        yield
        return
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    if before == enabled:
        yield
        return
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if before else hf_logging.disable_progress_bar)()


def _expand(key: str) -> int:
    """How many weights a report key stands for: ``layer.{0, 1, 2}.x`` is three."""
    count = 1
    for group in re.findall(r"\{([^}]*)\}", key):
        count *= max(1, len([part for part in group.split(",") if part.strip()]))
    return count


@dataclass
class LoadReports:
    """What :func:`capture_load_reports` collected.

    Attributes:
        records: the captured log records, in order.
        keys: ``(status, key)`` of every row of the report tables (``MISSING``, ``UNEXPECTED``,
            ``MISMATCH`` ...; a key may stand for several weights: ``layer.{0, 1}.w``).
        tied: ``(source, target)`` of every "both tied weights are absent" warning.
        models: the model classes the reports were about.
    """

    records: list[logging.LogRecord] = field(default_factory=list)
    keys: list[tuple[str, str]] = field(default_factory=list)
    tied: list[tuple[str, str]] = field(default_factory=list)
    models: list[str] = field(default_factory=list)

    def add(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        text = _ANSI.sub("", record.getMessage())
        tied = _TIED.search(text)
        if tied:
            self.tied.append((tied.group("a"), tied.group("b")))
            return
        head = re.search(r"(\w+) LOAD REPORT", text)
        if head:
            self.models.append(head.group(1))
        for line in text.splitlines()[1:]:
            row = _ROW.match(line.strip())
            if row and row.group("key") != "Key":
                self.keys.append((row.group("status").strip(), row.group("key").strip()))

    def count(self, status: str) -> int:
        """Weights reported with ``status`` (keys expanded)."""
        return sum(_expand(k) for s, k in self.keys if s == status)

    def release(self) -> None:
        """Hand the captured records back to their loggers unchanged (as if never captured)."""
        for record in self.records:
            logging.getLogger(record.name).handle(record)
        self.records = []


class _Capture(logging.Filter):
    def __init__(self, reports: LoadReports):
        super().__init__()
        self.reports = reports

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" in message or "seem corrupted" in message:
            self.reports.add(record)
            return False
        return True


@contextlib.contextmanager
def capture_load_reports() -> Iterator[LoadReports]:
    """Hold back transformers' load reports and tied-weight warnings logged inside the block.

    Other messages pass as usual. Pass the result to :func:`summarise_load_reports` (or call
    ``release()`` to let them through after all).
    """
    reports = LoadReports()
    capture = _Capture(reports)
    loggers = [logging.getLogger(name) for name in _REPORT_LOGGERS]
    for lg in loggers:
        lg.addFilter(capture)
    try:
        yield reports
    finally:
        for lg in loggers:
            lg.removeFilter(capture)


def _matches(key: str, patterns: Sequence[str]) -> bool:
    return any(re.search(p, key) for p in patterns)


def summarise_load_reports(reports: LoadReports, what: str, *, expected_missing: Sequence[str] = (),
                           expected_unexpected: Sequence[str] = (), show: Optional[bool] = None) -> Optional[str]:
    """One line about an expected load report, or the report itself when something was not expected.

    Args:
        reports: from :func:`capture_load_reports`.
        what: what was loaded, for the line (``"MiniLM warm-started as BERT2BERT"``).
        expected_missing: regular expressions of weight names that may be newly initialised.
        expected_unexpected: regular expressions of checkpoint weights that may go unused.
        show: print the line to stderr (``None``: unless :func:`loading_progress` is off). It
            is also logged at INFO on the ``personakit.backbones`` logger.

    Returns:
        The line, or ``None`` when there was nothing to report or the report was handed back
        to transformers' log (a weight outside the expected patterns, or another status such as
        a size mismatch).
    """
    if not reports.records:
        return None
    allowed = {"MISSING": expected_missing, "UNEXPECTED": expected_unexpected}
    surprising = [(s, k) for s, k in reports.keys if not _matches(k, allowed.get(s, ()))]
    surprising += [t for t in reports.tied if not (_matches(t[0], expected_missing) and _matches(t[1], expected_missing))]
    if surprising:
        reports.release()
        return None
    new, unused = reports.count("MISSING"), reports.count("UNEXPECTED")
    parts = [f"{new} new weight{'s' if new != 1 else ''} initialised" if new else "",
             f"{unused} checkpoint weight{'s' if unused != 1 else ''} unused" if unused else ""]
    detail = " and ".join(p for p in parts if p) or "transformers' load report"
    line = f"personakit: {what}: {detail}, as expected (transformers' load report held back)"
    reports.records = []
    logger.info(line)
    if show is None:
        show = loading_progress_enabled() is not False
    if show and not (logger.isEnabledFor(logging.INFO) and logger.hasHandlers()):
        print(line, file=sys.stderr, flush=True)
    return line
