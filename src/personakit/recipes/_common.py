"""Small helpers shared by the recipes: JSON-ready results, stage messages, the example scripts' command line."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional, Union

__all__ = ["StageLog", "jsonable", "example_parser", "add_run_options", "run_example"]


def jsonable(x: Any) -> Any:
    """``x`` with dict keys as strings, tuples as lists, NaN as ``None``, ±inf as strings, paths and tensors as plain values."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item") and callable(x.item):
        return jsonable(x.item())
    return x


class StageLog:
    """Print ``[name  12.3s] message`` lines (seconds since creation) when enabled."""

    def __init__(self, enabled: bool, name: str, width: int = 6):
        self.enabled = enabled
        self.name = name
        self.width = width
        self.start = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if self.enabled:
            print(f"[{self.name} {time.perf_counter() - self.start:{self.width}.1f}s] {msg}", flush=True)


def example_parser(doc: str, default_config: Union[str, Path],
                   config_help: Optional[str] = "recipe YAML (default: %(default)s)") -> argparse.ArgumentParser:
    """The argument parser of a recipe example script: description from ``doc``'s first paragraph and ``--config``.

    The script adds its own options, then ``--device`` and ``--quiet`` come from :func:`add_run_options`.

    Example:
        >>> example_parser("Run it.\n\nMore.", "tiny.yaml").parse_args([]).config
        'tiny.yaml'
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(default_config), help=config_help)
    return parser


def add_run_options(parser: argparse.ArgumentParser, quiet_help: Optional[str] = "no progress output") -> None:
    """``--device`` (e.g. cuda) and ``--quiet`` (no progress output)."""
    parser.add_argument("--device", help="e.g. cuda")
    parser.add_argument("--quiet", action="store_true", help=quiet_help)


def run_example(config_cls: Any, config: Any, update: dict, args: argparse.Namespace, run: Callable[..., Any],
                source: str, details: Optional[Callable[[Any], str]] = None) -> int:
    """Apply ``update`` (plus ``--device``) to ``config``, run the recipe and print its table and where it went.

    Args:
        config_cls: the recipe config class (``from_dict``).
        config: the config read from ``--config``.
        update: top-level fields that replace the config's (``data``, ``output_dir``, ...).
        args: the parsed arguments (``device``, ``quiet``).
        run: the recipe function, called as ``run(config, progress=not args.quiet)``.
        source: where the config came from, for error messages.
        details: extra text after the wall time in the last line (e.g. prompts generated).

    Returns:
        0, the script's exit status.
    """
    if args.device:
        update["device"] = args.device
    config = config_cls.from_dict({**config.to_dict(), **update}, source=source)
    results = run(config, progress=not args.quiet)
    print(results.to_markdown())
    extra = details(results) if details is not None else ""
    print(f"results written to {Path(config.output_dir) / 'results.md'} ({results.timings['total_s']:.0f} s{extra})")
    return 0
