"""The documentation site, built as users get it (``scripts/docs``, strict) and opened in headless Chromium.

The op reference must list exactly the ops of ``archviz/spec/ops.py`` with their fields; the home page,
the gallery and a command page must load with no console error, the gallery's images must load, every
link between pages must land on a page that exists, and the search index must cover the command pages.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytest.importorskip("mkdocs", reason="the docs extra builds the site (scripts/setup --test installs it)")
pytest.importorskip("material", reason="the docs extra builds the site (scripts/setup --test installs it)")

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("list", "shapes", "cost", "explain", "compare", "diagram", "gallery", "train", "evaluate", "spec")


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.run([str(root / "scripts" / "docs"), "--strict", "-d", str(site)], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    result = build(ROOT, site)
    assert result.returncode == 0, result.stderr[-3000:]
    return site


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: list[tuple[str, str]] = []  # (tag, id)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag in ("link", "script", "img") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src"))
        if a.get("id"):
            self.ids.append((tag, a["id"]))


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_the_op_reference_is_generated_from_the_op_table():
    """The hook's page, without building: one section per op, in the table's order, with every field and its default."""
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import hooks
    finally:
        sys.path.remove(str(ROOT / "docs"))
    from archviz.spec.ops import OPS

    page = hooks.ops_page()
    sections = re.split(r"^## ", page, flags=re.M)[1:]
    assert [s.split("\n", 1)[0] for s in sections] == list(OPS) and len(OPS) >= 25
    for section in sections:
        op = OPS[section.split("\n", 1)[0]]
        fields = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, flags=re.M)
        assert [f for f, _ in fields] == list(op.fields), op.name
        for name, default in fields:
            field = op.fields[name]
            assert (default.strip() == "required") == field.required, (op.name, name)
            if not field.required and isinstance(field.default, int) and not isinstance(field.default, bool):
                assert default.strip() == f"`{field.default}`", (op.name, name)
    conv = next(s for s in sections if s.startswith("conv\n"))
    assert "`nn.Conv1d`, `nn.Conv2d`, `nn.Conv3d`" in conv and "| `stride` | `1` |" in conv and "| `out` | required |" in conv


@pytest.mark.slow
def test_the_built_op_reference_lists_exactly_the_op_table(site):
    from archviz.spec.ops import OPS

    ids = [i for tag, i in parse(site / "spec-ops.html").ids if tag == "h2"]
    assert ids == list(OPS)


@pytest.mark.slow
def test_every_page_is_built_and_every_link_lands(site):
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    for name in ("index.html", "getting-started.html", "gallery/index.html", "spec-ops.html", "memory.html", "api.html", "example.html", "json.html"):
        assert name in pages
    assert all(f"commands/{c}.html" in pages for c in COMMANDS)
    broken = []
    for page in pages:
        if page == "404.html":
            continue  # served only (a web server's not-found page): its links are absolute by design
        for href in parse(site / page).links:
            url = urlsplit(href)
            if url.scheme or href.startswith(("#", "mailto:", "//")):
                continue
            target = (site / page).parent / unquote(url.path)
            if not target.exists():
                broken.append(f"{page} -> {href}")
    assert broken == []


@pytest.mark.slow
def test_generated_parts_are_in_the_pages(site):
    cost = (site / "commands" / "cost.html").read_text()
    assert "Usage: archviz cost [OPTIONS]" in cost and "--budget" in cost  # its --help, generated
    memory = (site / "memory.html").read_text()
    results = (ROOT / "benchmarks" / "results" / "memory_accuracy_cpu_native_2t.md").read_text()
    first_row = next(line for line in results.splitlines() if line.startswith("| lenet |"))
    assert "<td>" + "</td>\n<td>".join(c.strip() for c in first_row.strip("|").split("|")[:2]) in memory.replace(' style="text-align: right;"', "")
    assert "date: " + re.search(r"date: (.+)", results)[1] in memory
    api = (site / "api.html").read_text()
    assert 'id="archviz.api.cost"' in api and "FLOPs, receptive fields and the predicted memory" in api  # from the docstring
    assert "<code>arch</code>" in (site / "json.html").read_text()
    example = (site / "example.html").read_text()  # the notebook's outputs, computed at build time up to its training run
    assert example.count('<div class="archviz-output"><div><table>') == 3 and "5,977,530" in example and "(61706, 416520)" in example
    assert '<div class="archviz-output"><svg' in example and "!{sys.executable} -m archviz train lenet" in re.sub("<[^>]+>", "", example)
    assert len(list((site / "gallery").glob("*.svg"))) == len(list((ROOT / "gallery").glob("*.svg"))) >= 32
    assert not any((ROOT / "docs").rglob("*.svg")), "the gallery is copied at build time, never kept in docs/"


@pytest.mark.slow
def test_home_gallery_and_a_command_page_load_in_chromium(site, browser):
    browser.console_errors()  # drop anything left by earlier tests
    browser.open(site / "index.html")
    assert browser.js("return document.querySelector('h1').textContent.replace('¶', '').trim()") == "archviz"
    assert browser.console_errors() == []
    # navigation works from disk: follow the nav link to the shapes page
    href = browser.js("return [...document.querySelectorAll('a')].find(a => a.getAttribute('href').endsWith('commands/shapes.html')).href")
    browser.driver.get(href)
    assert browser.js("return document.querySelector('h1').textContent.replace('¶', '').trim()").startswith("archviz shapes")
    assert browser.console_errors() == []

    browser.open(site / "gallery" / "index.html")
    browser.js("document.querySelectorAll('details').forEach(d => d.open = true)")
    browser.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.all([...document.images].map(i => i.complete ? 0 : new Promise(r => { i.onload = i.onerror = r; }))).then(done);"
    )
    images = browser.js("return [...document.images].filter(i => i.src.endsWith('.svg')).map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert len(images) == len(list((ROOT / "gallery").glob("*.svg")))
    assert [src for src, width in images if width <= 0] == []
    assert browser.console_errors() == []

    browser.open(site / "commands" / "index.html")
    headings = browser.js("return [...document.querySelectorAll('h1, h2')].map(h => h.textContent.replace('¶', '').trim())")
    assert headings == ["Commands", "What ARCH can be", "Inputs, outputs and -p"]
    rows = browser.js("return [...document.querySelectorAll('table')][0].querySelectorAll('tbody tr').length")
    assert rows == len(COMMANDS)
    assert browser.console_errors() == []


@pytest.mark.slow
def test_search_indexes_the_command_pages(site):
    """Material's search runs in a served site; its index is a file the test can read."""
    index = json.loads((site / "search" / "search_index.json").read_text())
    where = {d["location"].split("#")[0] for d in index["docs"]}
    assert {f"commands/{c}.html" for c in COMMANDS} <= where
    text = {d["location"]: d["text"] for d in index["docs"]}
    assert any("receptive" in t for loc, t in text.items() if loc.startswith("commands/cost.html"))
    assert "spec-ops.html" in where and any(loc.startswith("spec-ops.html#pixelshuffle") for loc in text)


@pytest.mark.slow
def test_a_broken_link_fails_the_strict_build(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("archviz", "gallery", "benchmarks", "scripts"):
        (root / name).symlink_to(ROOT / name)
    (root / "mkdocs.yml").write_text((ROOT / "mkdocs.yml").read_text())
    docs = root / "docs"
    subprocess.run(["cp", "-r", str(ROOT / "docs"), str(docs)], check=True)
    (docs / "limits.md").write_text((docs / "limits.md").read_text() + "\nSee [the page that is not there](no-such-page.md).\n")
    result = build(root, tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr and "limits.md" in result.stderr
