"""Every image the docs show exists, is a real PNG/SVG/JPEG, and is served by mkdocs.

mkdocs serves only ``docs/``: the benchmark plots live in ``benchmarks/results/`` (where the
benchmark scripts write them) and are linked into ``docs/assets/benchmarks/`` by relative
symbolic links, which ``mkdocs build`` follows. These checks run without mkdocs or a browser
(``tests/docs/test_site.py``, marker ``browser``, checks that the built pages load them).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"
BENCH_ASSETS = DOCS / "assets" / "benchmarks"
RESULTS = REPO_ROOT / "benchmarks" / "results"

_MD_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_IMAGE = re.compile(r"<img\b[^>]*\bsrc=[\"']([^\"']+)[\"']", re.IGNORECASE)
_MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".jpg": b"\xff\xd8\xff", ".jpeg": b"\xff\xd8\xff"}


def _strip_code(text: str) -> str:
    """The markdown without fenced code blocks and inline code (an image there is only shown as text)."""
    text = re.sub(r"^(\s*)(`{3,}|~{3,}).*?^\1\2\s*$", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def image_references(text: str) -> list[str]:
    """Image targets of a markdown text: ``![alt](target)`` and ``<img src="target">``, outside code."""
    text = _strip_code(text)
    return [m.group(1) for m in _MD_IMAGE.finditer(text)] + [m.group(1) for m in _HTML_IMAGE.finditer(text)]


def _local_images() -> list[tuple[Path, str, Path]]:
    """(markdown file, target as written, resolved path) of every local image the docs reference."""
    out = []
    for md in sorted(DOCS.rglob("*.md")):
        for target in image_references(md.read_text(encoding="utf-8")):
            url = urlparse(target)
            if url.scheme or url.netloc or target.startswith("data:"):
                continue
            out.append((md, target, (md.parent / unquote(url.path)).resolve()))
    return out


def test_image_references_are_found():
    text = "\n".join([
        "![a plot](../assets/x.png){ loading=lazy }", '<img src="y.svg" alt="">', "`![not](code.png)`",
        "```markdown", "![not](fenced.png)", "```", '![t](z.png "title")',
    ])
    assert image_references(text) == ["../assets/x.png", "z.png", "y.svg"]


def test_the_family_pages_show_plots():
    shown = {path.name for md, _, path in _local_images() if md.parent.name == "families"}
    for name in ("grag_quality_curves.png", "grag_sweeps.png", "graph_scale.png", "bm25_speed.png",
                 "bf16_speed_speedup.png"):
        assert name in shown, f"no family page shows {name}"


@pytest.mark.parametrize("md,target,path", [pytest.param(*x, id=f"{x[0].relative_to(DOCS)}:{x[1]}")
                                            for x in _local_images()])
def test_every_referenced_image_exists_inside_docs(md, target, path):
    where = f"{md.relative_to(REPO_ROOT)} shows {target}"
    link = Path(os.path.normpath(md.parent / unquote(urlparse(target).path)))  # before following links
    assert path.is_file(), f"{where}: {path} does not exist"
    # mkdocs copies what is under docs/ (following symlinks); a target outside docs/ would 404 on the site
    assert DOCS in link.parents, f"{where}: outside docs/, mkdocs would not serve it"
    assert path.stat().st_size > 1000, f"{where}: suspiciously small ({path.stat().st_size} bytes)"
    magic = _MAGIC.get(path.suffix.lower())
    if magic is not None:
        assert path.read_bytes()[:len(magic)] == magic, f"{where}: not a {path.suffix} file"
    elif path.suffix.lower() == ".svg":
        assert b"<svg" in path.read_bytes()[:2000], f"{where}: not an SVG"


def test_benchmark_assets_link_to_the_committed_results():
    """``docs/assets/benchmarks/*`` are relative links into ``benchmarks/results/`` (one copy of each plot),
    and every one of them is shown on some page."""
    assets = sorted(BENCH_ASSETS.iterdir())
    assert assets, "docs/assets/benchmarks/ is empty"
    shown = {path for _, _, path in _local_images()}
    for asset in assets:
        assert asset.is_symlink(), f"{asset.relative_to(REPO_ROOT)}: expected a link to benchmarks/results/"
        target = Path(os.readlink(asset))
        assert not target.is_absolute(), f"{asset.relative_to(REPO_ROOT)}: absolute link {target}"
        assert asset.resolve().parent == RESULTS.resolve(), f"{asset.relative_to(REPO_ROOT)} -> {target}"
        assert asset.resolve() in shown, f"{asset.relative_to(REPO_ROOT)} is shown on no page"
