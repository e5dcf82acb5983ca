"""The documentation site builds strictly and renders in a real browser.

Builds the site with ``mkdocs build --strict`` into a temporary folder, serves it on
127.0.0.1 (random port, a thread), and renders pages in headless Chromium
(``--dump-dom`` and ``--screenshot``). Checks that the pages carry their titles and
headings, and that KaTeX, served from the site itself (no network), turned every
arithmatex span into rendered math. Skips with a reason when mkdocs or Chromium is
missing (``bash scripts/setup.sh`` installs both).
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]


def _chromium() -> str | None:
    for cand in (os.environ.get("PERSONAKIT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None:
        pytest.skip("mkdocs / mkdocstrings are not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    elsewhere = tmp_path_factory.mktemp("cwd")  # built from another folder: `mkdocs build -f path/to/mkdocs.yml`
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO_ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=elsewhere, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert (out / "index.html").is_file()
    return out


@pytest.fixture(scope="module")
def server(site) -> str:
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


@pytest.fixture(scope="module")
def chromium() -> str:
    path = _chromium()
    if path is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; scripts/setup.sh does it as root)")
    return path


def _chromium_cmd(chromium: str, profile: Path, *extra: str) -> list[str]:
    return [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=5000", *extra,
    ]


def dump_dom(chromium: str, url: str, profile: Path) -> str:
    proc = subprocess.run(_chromium_cmd(chromium, profile, "--dump-dom", url), capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"chromium failed on {url}:\n{proc.stderr[-3000:]}"
    assert "<html" in proc.stdout, f"chromium printed no DOM for {url}:\n{proc.stderr[-3000:]}"
    return proc.stdout


class MathScan(HTMLParser):
    """Collects the title, h1/h2 texts, the number of ``.katex`` elements and the raw
    text left inside ``.arithmatex`` elements (outside KaTeX's TeX annotation)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.headings: list[str] = []
        self.katex = 0
        self.arithmatex = 0
        self.raw_math: list[str] = []
        self._stack: list[tuple[str, bool, bool]] = []  # (tag, in_math, in_annotation)
        self._heading: list[str] | None = None
        self._in_title = False

    _VOID = {"br", "img", "hr", "meta", "link", "input", "source", "wbr", "col", "area", "base", "embed", "param",
             "track", "path", "line", "rect", "circle", "use"}

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        in_math = self._stack[-1][1] if self._stack else False
        in_ann = self._stack[-1][2] if self._stack else False
        if "arithmatex" in classes:
            self.arithmatex += 1
            in_math = True
        if "katex" in classes:
            self.katex += 1
        if tag == "annotation":
            in_ann = True
        if tag == "title":
            self._in_title = True
        if tag in ("h1", "h2"):
            self._heading = []
        if tag not in self._VOID:
            self._stack.append((tag, in_math, in_ann))

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        if tag in ("h1", "h2") and self._heading is not None:
            self.headings.append(" ".join("".join(self._heading).split()).rstrip("¶").strip())
            self._heading = None
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._heading is not None:
            self._heading.append(data)
        if self._stack and self._stack[-1][1] and not self._stack[-1][2]:
            self.raw_math.append(data)


def scan(html: str) -> MathScan:
    parser = MathScan()
    parser.feed(html)
    return parser


def _assert_math_rendered(page: MathScan, where: str) -> None:
    assert page.arithmatex > 0, f"{where}: no math on the page"
    assert page.katex >= page.arithmatex, f"{where}: {page.arithmatex} math spans but {page.katex} rendered by KaTeX"
    raw = "".join(page.raw_math)
    for delim in ("\\(", "\\)", "\\[", "\\]", "$$"):
        assert delim not in raw, f"{where}: raw TeX delimiter {delim!r} left unrendered: {raw[:300]!r}"


def _pages_with_math(site: Path, under: str) -> list[Path]:
    return sorted(p for p in (site / under).rglob("index.html") if 'class="arithmatex"' in p.read_text("utf-8"))


def test_katex_is_served_locally(site):
    for rel in ("assets/katex/katex.min.js", "assets/katex/katex.min.css",
                "assets/katex/contrib/auto-render.min.js", "assets/katex/fonts/KaTeX_Main-Regular.woff2"):
        assert (site / rel).is_file() and (site / rel).stat().st_size > 0, rel
    home = (site / "index.html").read_text("utf-8")
    assert "assets/katex/katex.min.js" in home
    # no page pulls scripts, styles or fonts from the network (a rel="canonical" link is only a URL)
    remote = [tag for tag in re.findall(r"<(?:script|link)\b[^>]*>", home)
              if re.search(r"""(src|href)=["']https?://""", tag) and 'rel="canonical"' not in tag]
    assert not remote, remote


def test_home_page_renders(site, server, chromium, tmp_path):
    page = scan(dump_dom(chromium, f"{server}/", tmp_path / "profile"))
    assert "personakit" in page.title
    assert any("personakit" in h.lower() for h in page.headings), page.headings
    assert any("quick" in h.lower() for h in page.headings), page.headings
    _assert_math_rendered(page, "home page")


def test_api_page_with_math_renders(site, server, chromium, tmp_path):
    pages = _pages_with_math(site, "api")
    assert pages, "no API reference page shows math: a docstring with $...$ should be rendered"
    rel = pages[0].parent.relative_to(site).as_posix()
    page = scan(dump_dom(chromium, f"{server}/{rel}/", tmp_path / "profile"))
    assert "personakit" in page.title
    assert any(h.startswith("personakit.") for h in page.headings), page.headings
    _assert_math_rendered(page, rel)


def test_evaluation_page_renders_formulas(site, server, chromium, tmp_path):
    page = scan(dump_dom(chromium, f"{server}/evaluation/", tmp_path / "profile"))
    assert any("Evaluation" in h for h in page.headings), page.headings
    _assert_math_rendered(page, "evaluation page")


def test_screenshot_is_a_nonempty_png(server, chromium, tmp_path):
    shot = tmp_path / "home.png"
    proc = subprocess.run(
        _chromium_cmd(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,900",
                      "--hide-scrollbars", f"{server}/"),
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000, f"screenshot is suspiciously small ({len(data)} bytes)"
    keep = os.environ.get("PERSONAKIT_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def _inventory(site: Path) -> set[str]:
    """Object names in the site's ``objects.inv`` (the Sphinx inventory mkdocstrings writes)."""
    import zlib

    raw = (site / "objects.inv").read_bytes()
    body = zlib.decompress(raw.split(b"\n", 4)[4]).decode("utf-8")
    return {line.split(" ", 1)[0] for line in body.splitlines() if line.strip()}


def test_api_reference_covers_every_public_class_and_function(site):
    """Every class and function in a sub-package's ``__all__`` (and so at the top level) has a reference entry."""
    import importlib
    import inspect

    documented = _inventory(site)
    packages = ["personakit"] + [f"personakit.{name}" for name in (
        "augment", "backbones", "config", "data", "eval", "facets", "functional", "graph", "llm", "losses",
        "models", "modules", "retrieval", "training", "recipes", "types")]
    missing = []
    for package in packages:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not getattr(obj, "__module__", "").startswith("personakit"):
                continue
            if f"{obj.__module__}.{obj.__qualname__}" not in documented:
                missing.append(f"{package}.{name} (defined in {obj.__module__})")
    assert len(documented) > 300 and not missing, "no API reference entry for:\n" + "\n".join(sorted(set(missing)))


_IMAGE_CHECK_PAGE = """<!doctype html>
<html><head><title>image check</title></head><body>
<pre id="result">pending</pre>
<script>
// Load every page of PAGES in a same-origin iframe, collect the <img> of its article and load each
// one eagerly (the pages mark them loading=lazy); write "src<TAB>naturalWidth" lines into #result.
var PAGES = __PAGES__;
var lines = [];
function checkImages(doc, page, done) {
  var imgs = Array.prototype.slice.call(doc.querySelectorAll("article img"));
  if (!imgs.length) { lines.push(page + "\\tNO-IMAGES"); return done(); }
  var left = imgs.length;
  imgs.forEach(function (img) {
    var probe = new Image();
    var finish = function () {
      lines.push(page + "\\t" + img.getAttribute("src") + "\\t" + probe.naturalWidth);
      if (--left === 0) { done(); }
    };
    probe.onload = finish;
    probe.onerror = finish;
    probe.src = img.src;
  });
}
function next(i) {
  if (i >= PAGES.length) { document.getElementById("result").textContent = "DONE\\n" + lines.join("\\n"); return; }
  var frame = document.createElement("iframe");
  frame.onload = function () { checkImages(frame.contentDocument, PAGES[i], function () { next(i + 1); }); };
  frame.src = PAGES[i];
  document.body.appendChild(frame);
}
next(0);
</script></body></html>
"""


def _pages_with_images(site: Path) -> dict[str, list[str]]:
    """``{page url path: [img src, ...]}`` of the built pages whose article shows images."""
    pages = {}
    for html in sorted(site.rglob("index.html")):
        srcs = re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', html.read_text("utf-8"))
        if srcs:
            rel = html.parent.relative_to(site).as_posix()
            pages["/" + (rel + "/" if rel != "." else "")] = srcs
    return pages


def test_images_load_in_the_browser(site, server, chromium, tmp_path):
    """Every image of the built pages is served and decodes in Chromium (a broken link or a file that is
    not an image gives naturalWidth 0); the family pages show the benchmark plots."""
    import json

    pages = _pages_with_images(site)
    assert any(p.startswith("/families/") for p in pages), f"no family page shows an image: {sorted(pages)}"
    (site / "_image_check.html").write_text(_IMAGE_CHECK_PAGE.replace("__PAGES__", json.dumps(sorted(pages))),
                                             encoding="utf-8")
    dom = dump_dom(chromium, f"{server}/_image_check.html", tmp_path / "profile")
    result = re.search(r'<pre id="result">(.*?)</pre>', dom, re.DOTALL)
    assert result and result.group(1).startswith("DONE"), f"the image check did not finish: {dom[-2000:]}"
    rows = [line.split("\t") for line in result.group(1).splitlines()[1:]]
    loaded = {(row[0], row[1]): int(row[2]) for row in rows if len(row) == 3}
    expected = {(page, src) for page, srcs in pages.items() for src in srcs}
    assert expected <= set(loaded), f"not checked: {sorted(expected - set(loaded))}"
    broken = sorted(f"{page} {src}" for (page, src), width in loaded.items() if width == 0)
    assert not broken, "images that did not load:\n" + "\n".join(broken)
    shown = {src.rsplit("/", 1)[-1] for (page, src) in loaded if page.startswith("/families/")}
    assert {"grag_quality_curves.png", "graph_scale.png", "bm25_speed.png"} <= shown, shown
