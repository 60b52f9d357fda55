"""`archviz diagram -o net.html`: the offline interactive page, opened in headless Chromium.

The page draws in the browser what render/graph.py's ``build_graph`` draws in the SVG, so the
oracle for what is visible is ``build_graph`` itself (same vertices, same edges, at every
depth); the oracle for the numbers on a card is ``archviz cost --format json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import archviz
from archviz.arch import load_arch
from archviz.errors import UsageError
from archviz.render.graph import build_graph
from archviz.render.html import page_data, to_html

SMALL_SPEC = str(Path(__file__).parent / "data" / "small.yaml")
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # createElementNS's argument: a name, never fetched


def trace(name: str):
    return load_arch(name).trace()


def graph_of(tr, depth: int, fold: bool = True) -> tuple[set[str], set[tuple[str, str]]]:
    g = build_graph(tr, depth, fold)
    return {v.id for v in g.vertices}, {(a, b) for a, b, _ in g.edges}


def write_page(tmp_path: Path, cli, arch: str, *args: str) -> Path:
    path = tmp_path / (re.sub(r"\W", "_", arch) + "-".join(args) + ".html")
    code, out, err = cli("diagram", arch, "-o", str(path), *args)
    assert code == 0, err
    assert out.strip() == f"wrote {path}"
    return path


def open_page(browser, path: Path) -> None:
    browser.console_errors()  # drop what an earlier page logged
    browser.open(path)
    assert browser.js("return window.archviz && window.archviz.ready") is True
    assert browser.console_errors() == []


def visible(browser) -> tuple[set[str], set[tuple[str, str]]]:
    return set(browser.js("return archviz.visibleNodes()")), {tuple(e) for e in browser.js("return archviz.edges()")}


# --- without a browser: the file itself --------------------------------------------------


def test_page_is_one_offline_file_with_the_mark_and_the_data(tmp_path, cli):
    path = write_page(tmp_path, cli, "googlenet")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert '<meta name="generator" content="archviz ' in text[:1000]
    assert '<meta name="archviz-graph" content="googlenet">' in text[:1000]
    # Nothing to fetch: no src/href attributes, no url(), no import; the only URL is the SVG namespace.
    assert re.findall(r"https?://[^\s\"'<>)]+", text) == [SVG_NAMESPACE]
    assert not re.search(r"""\b(src|href)\s*=\s*["']|url\((?!#)|@import|\bimport\s*\(|fetch\(|XMLHttpRequest""", text)  # url(#arrow): in the page
    assert "Copyright (c) 2012-2014 Chris Pettitt" in text  # dagre's licence travels with it
    data = json.loads(re.search(r'<script type="application/json" id="archviz-data">(.*?)</script>', text, re.S).group(1))
    tr = trace("googlenet")
    assert data == json.loads(json.dumps(page_data(tr, 1)))
    assert len(data["nodes"]) == len(tr.nodes) and len(data["ops"]) == len(tr.ops)
    assert 100_000 < path.stat().st_size < 400_000


def test_format_flag_stdout_and_bad_depth(tmp_path, cli):
    code, out, err = cli("diagram", "lenet", "--format", "html", "-o", "-")
    assert code == 0 and out.startswith("<!DOCTYPE html>") and '<meta name="archviz-graph" content="lenet">' in out
    code, out, err = cli("diagram", "lenet", "-o", str(tmp_path / "x.html"), "--depth", "0")
    assert code == 2 and "--depth" in err and "Traceback" not in err
    assert not (tmp_path / "x.html").exists()


def test_never_replaces_a_users_html_without_force(tmp_path, cli):
    mine = tmp_path / "index.html"
    mine.write_text("<!DOCTYPE html><p>my notes</p>")
    code, out, err = cli("diagram", "lenet", "-o", str(mine))
    assert code == 2 and "already exists and is not a file archviz recognises as its own" in err and "--force" in err
    assert mine.read_text() == "<!DOCTYPE html><p>my notes</p>"
    assert cli("diagram", "lenet", "-o", str(mine), "--force")[0] == 0
    assert '<meta name="archviz-graph" content="lenet">' in mine.read_text()
    first = mine.read_bytes()
    assert cli("diagram", "lenet", "-o", str(mine))[0] == 0  # its own page: replaced without --force
    assert mine.read_bytes() == first  # and byte-identical
    # A page archviz drew of another graph is not this command's to replace either.
    code, _, err = cli("diagram", "googlenet", "-o", str(mine))
    assert code == 2 and "--force" in err


def test_default_name_keeps_a_users_file(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lenet.html").write_text("<!DOCTYPE html><p>mine</p>")
    code, out, err = cli("diagram", "lenet", "-f", "html")
    assert code == 2 and "it is the default output name" in err
    assert (tmp_path / "lenet.html").read_text() == "<!DOCTYPE html><p>mine</p>"
    (tmp_path / "lenet.html").unlink()
    assert cli("diagram", "lenet", "-f", "html") == (0, "wrote lenet.html\n", "")
    assert cli("diagram", "lenet", "-f", "html")[0] == 0  # its own: replaced


def test_notebook_view_and_save(tmp_path):
    d = archviz.diagram("lenet", interactive=True)
    shown = d._repr_html_()
    assert shown.startswith('<iframe srcdoc="&lt;!DOCTYPE html&gt;') and 'sandbox="allow-scripts"' in shown
    assert "<script" not in shown  # the page's markup is all inside the attribute, escaped
    assert d._repr_svg_() is None  # Jupyter shows the page, not the SVG
    assert archviz.diagram("lenet")._repr_html_() is None  # not asked for: the SVG as before
    out = d.save(tmp_path / "net.html")
    assert out.read_text(encoding="utf-8") == d.html() == to_html(trace("lenet"), 1)
    (tmp_path / "user.html").write_text("mine")
    with pytest.raises(UsageError, match="already exists and is not a file archviz recognises as its own"):
        d.save(tmp_path / "user.html")
    assert (tmp_path / "user.html").read_text() == "mine"


# --- in the browser ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "depth", "fold"),
    [
        ("lenet", 1, True),
        ("googlenet", 1, True),
        ("googlenet", 3, True),
        ("resnet18", 1, True),
        ("resnet18", 2, True),
        ("resnet18", 2, False),
        (SMALL_SPEC, 1, True),
    ],
)
def test_page_shows_the_svgs_graph_and_expanding_reaches_the_next_depth(browser, tmp_path, cli, arch, depth, fold):
    args = ["--depth", str(depth)] + ([] if fold else ["--no-fold"])
    open_page(browser, write_page(tmp_path, cli, arch, *args))
    tr = trace(arch)
    assert visible(browser) == graph_of(tr, depth, fold)
    # Expanding every block at this depth shows the SVG's graph one level deeper.
    for path in {n.path for n in tr.nodes if n.depth == depth and not n.is_leaf}:
        browser.js("archviz.expand(arguments[0])", path)
    assert visible(browser) == graph_of(tr, depth + 1, fold)
    assert browser.console_errors() == []


def test_expand_collapse_and_a_real_click(browser, tmp_path, cli):
    open_page(browser, write_page(tmp_path, cli, "googlenet"))
    before = browser.js("return archviz.visibleNodes()")
    assert before == ["@input", "b1", "b2", "b3", "b4", "b5", "head", "@output"]
    # A click on b3's "+" through selenium, as a user would.
    from selenium.webdriver.common.by import By

    toggle = browser.driver.find_element(By.CSS_SELECTOR, '.vertex[data-id="b3"] .toggle')
    toggle.click()
    after = browser.js("return archviz.visibleNodes()")
    assert after == ["@input", "b1", "b2", "b3.0", "b3.1", "b3.2", "b4", "b5", "head", "@output"]
    assert browser.js("return archviz.visibleClusters()") == ["b3"]
    # Down to single layers: one Inception, then its third path.
    assert browser.js("return archviz.expand('b3.0.p3')") is True  # expands its parents too
    nodes = browser.js("return archviz.visibleNodes()")
    assert {"b3.0.p1", "b3.0.p2", "b3.0.p4", "b3.0.p3.0", "b3.0.p3.1", "b3.0.p3.2", "b3.0.p3.3", "b3.0:cat"} <= set(nodes)
    assert browser.js("return archviz.card('b3.0.p3.2')")["type"] == "Conv2d"
    assert browser.js("return archviz.collapse('b3')") is True
    assert browser.js("return archviz.visibleNodes()") == before
    # Hovering shows a box's card; clicking pins it.
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser.driver).move_to_element(browser.driver.find_element(By.CSS_SELECTOR, '.vertex[data-id="b4"]')).perform()
    assert browser.js("return archviz.cardText()").startswith("Sequentialb4")
    assert f"{trace('googlenet').node('b4').params:,}" in browser.js("return archviz.cardText()")
    browser.driver.find_element(By.CSS_SELECTOR, '.vertex[data-id="b2"]').click()
    assert browser.js("return archviz.cardText()").startswith("Sequentialb2")
    ActionChains(browser.driver).move_to_element(browser.driver.find_element(By.CSS_SELECTOR, '.vertex[data-id="b5"]')).perform()
    assert browser.js("return archviz.cardText()").startswith("Sequentialb2")  # pinned: hovering elsewhere keeps it
    browser.js("archviz.expand('b4')")
    browser.js("archviz.show('b4')")
    frame = browser.driver.find_element(By.CSS_SELECTOR, '.cluster[data-id="b4"] > rect.frame')
    # A click on the open block's frame, in its margin left of the first layer (offsets are from the frame's centre).
    ActionChains(browser.driver).move_to_element_with_offset(frame, -frame.rect["width"] / 2 + 3, -frame.rect["height"] / 2 + 30).click().perform()
    assert browser.js("return archviz.cardText()").startswith("Sequentialb4")
    assert browser.console_errors() == []


def _cost_blocks(cli, arch: str, depth: int) -> dict[str, dict]:
    code, out, err = cli("cost", arch, "--format", "json", "--depth", str(depth))
    assert code == 0, err
    return {b["name"]: b for b in json.loads(out)["blocks"]}


@pytest.mark.parametrize(
    ("arch", "depth", "paths"),
    [
        ("googlenet", 2, ["b3.0", "b5.1", "b1.0"]),
        ("googlenet", 4, ["b3.0.p2.2", "b4.4.p3.0"]),
        ("resnet18", 1, ["b2", "b3"]),
        ("lenet", 2, ["conv.0", "conv.3", "fc.1"]),
        (SMALL_SPEC, 1, ["res", "mix", "stem"]),
    ],
)
def test_card_numbers_are_costs(browser, tmp_path, cli, arch, depth, paths):
    open_page(browser, write_page(tmp_path, cli, arch))
    blocks = _cost_blocks(cli, arch, depth)
    for path in paths:
        card = browser.js("return archviz.card(arguments[0])", path)
        want = blocks[path]
        assert card["type"] == want["type"]
        assert card["params"] == want["params"] and card["macs"] == want["macs"]
        assert card["output"] == want["output_shape"]
        assert card["activation_bytes"] == want["activation_bytes"]
        assert {k: card["receptive_field"][k] for k in want["receptive_field"]} == want["receptive_field"]
    # The card as a user reads it.
    browser.js("archviz.select(arguments[0])", paths[0])
    shown = browser.js("return archviz.cardText()")
    want = blocks[paths[0]]
    assert f"{want['params']:,}" in shown and f"{want['macs']:,}" in shown and "\u00d7".join(map(str, want["output_shape"])) in shown


def test_search_by_name_and_by_type_reveals_the_layers(browser, tmp_path, cli):
    open_page(browser, write_page(tmp_path, cli, "googlenet"))
    found = browser.js("return archviz.search('b4.2.p3')")
    assert found["matches"] == ["b4.2.p3", "b4.2.p3.0", "b4.2.p3.1", "b4.2.p3.2", "b4.2.p3.3"]
    nodes = set(browser.js("return archviz.visibleNodes()"))
    assert {"b4.2.p3.0", "b4.2.p3.1", "b4.2.p3.2", "b4.2.p3.3"} <= nodes
    assert browser.js("return [...document.querySelectorAll('.vertex.hit')].map(e => e.dataset.id)") == ["b4.2.p3.0", "b4.2.p3.1", "b4.2.p3.2", "b4.2.p3.3"]
    tr = trace("googlenet")
    pools = [n.path for n in tr.nodes if n.type == "MaxPool2d"]
    found = browser.js("return archviz.search('maxpool2d')")  # by type, any case
    assert found["matches"] == pools and set(found["shown"]) == set(pools)
    assert set(pools) <= set(browser.js("return archviz.visibleNodes()"))
    # Typed into the box, as a user would.
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = browser.driver.find_element(By.ID, "search")
    box.clear()
    box.send_keys("b5.3", Keys.ENTER)
    assert browser.driver.find_element(By.ID, "hits").text == "1 found"
    assert browser.js("return archviz.search('no such layer')")["matches"] == []
    assert browser.console_errors() == []


def test_folded_run_unfolds_into_its_members(browser, tmp_path, cli):
    open_page(browser, write_page(tmp_path, cli, "resnet18", "--depth", "2"))
    tr = trace("resnet18")
    assert browser.js("return archviz.card('b2.0')")["copies"] == 2
    nodes = browser.js("return archviz.visibleNodes()")
    assert "b2.0" in nodes and "b2.1" not in nodes
    from selenium.webdriver.common.by import By

    browser.driver.find_element(By.CSS_SELECTOR, '.vertex[data-id="b2.0"] .toggle[data-action="unfold:b2.0"]').click()
    assert visible(browser) == graph_of(tr, 2, fold=False)
    assert browser.js("return archviz.card('b2.0')")["copies"] == 1
    assert browser.js("return archviz.fold('b2.0')") is True
    assert visible(browser) == graph_of(tr, 2)


def test_pan_and_zoom_change_the_transform(browser, tmp_path, cli):
    open_page(browser, write_page(tmp_path, cli, "googlenet"))
    start = browser.js("return archviz.transform()")
    zoomed = browser.js("return archviz.zoom(2)")
    assert zoomed["k"] == pytest.approx(start["k"] * 2)
    panned = browser.js("return archviz.pan(40, -25)")
    assert (panned["x"], panned["y"]) == pytest.approx((zoomed["x"] + 40, zoomed["y"] - 25))
    viewport = browser.js("return document.getElementById('viewport').getAttribute('transform')")
    assert viewport == f"translate({panned['x']},{panned['y']}) scale({panned['k']})"
    # A real mouse wheel and a real drag.
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.by import By

    canvas = browser.driver.find_element(By.ID, "canvas")
    ActionChains(browser.driver).scroll_from_origin(ScrollOrigin.from_element(canvas), 0, 200).perform()
    wheeled = browser.js("return archviz.transform()")
    assert wheeled["k"] < panned["k"]
    ActionChains(browser.driver).move_to_element_with_offset(canvas, -500, 300).click_and_hold().move_by_offset(60, 30).release().perform()
    dragged = browser.js("return archviz.transform()")
    assert (dragged["x"] - wheeled["x"], dragged["y"] - wheeled["y"]) == pytest.approx((60, 30), abs=1)


def test_no_request_leaves_the_page(browser, tmp_path, cli):
    open_page(browser, write_page(tmp_path, cli, "resnet18", "--depth", "3"))
    browser.js("archviz.expandAll(true)")
    assert browser.js("return performance.getEntriesByType('resource').length") == 0
    assert browser.console_errors() == []


class Hostile(nn.Module):
    """Names a user's model may have: markup, a closing script tag, quotes."""

    def __init__(self):
        super().__init__()
        body = nn.Sequential()
        body.add_module("</script><script>pwned_by_name=1</script>", nn.Conv2d(3, 4, 3))
        body.add_module("<img src=x onerror=pwned_by_img=2>", type("<b onmouseover=alert(1)>Evil", (nn.ReLU,), {})())
        self.add_module("'\"&amp;<!--", body)

    def forward(self, x):
        return getattr(self, "'\"&amp;<!--")(x)


def test_names_from_the_model_stay_inert(browser, tmp_path):
    torch.manual_seed(0)
    named = type("{{DATA}}</title><script>pwned_by_name=3</script>", (Hostile,), {})  # the model's name is its title
    d = archviz.diagram(named(), input_size=(1, 3, 8, 8), interactive=True, depth=2)
    path = d.save(tmp_path / "hostile.html")
    text = path.read_text(encoding="utf-8")
    assert text.count("</script>") == 3  # the data, dagre and the app: no name closed a script element
    open_page(browser, path)
    assert browser.js("return [window.pwned_by_name, window.pwned_by_img]") == [None, None]
    assert browser.js("return document.querySelectorAll('img, b').length") == 0
    assert browser.js("return document.title") == "{{DATA}}</title><script>pwned_by_name=3</script> \u00b7 archviz"
    nodes = browser.js("return archviz.visibleNodes()")
    conv = "'\"&amp;<!--.</script><script>pwned_by_name=1</script>"
    assert conv in nodes
    browser.js("archviz.select(arguments[0])", conv)
    assert conv in browser.js("return archviz.cardText()")  # shown as text, exactly
    found = browser.js("return archviz.search('<img')")["matches"]
    assert found == ["'\"&amp;<!--.<img src=x onerror=pwned_by_img=2>"]
    assert browser.js("return [window.pwned_by_name, window.pwned_by_img]") == [None, None]
    assert browser.console_errors() == []


def test_notebook_iframe_runs_the_page(browser, tmp_path):
    host = tmp_path / "notebook.html"
    host.write_text("<!DOCTYPE html><html><body>" + archviz.diagram("lenet", interactive=True)._repr_html_() + "</body></html>", encoding="utf-8")
    browser.open(host)
    browser.driver.switch_to.frame(0)
    try:
        assert browser.js("return window.archviz && window.archviz.ready") is True
        assert set(browser.js("return archviz.visibleNodes()")) == graph_of(trace("lenet"), 1)[0]
    finally:
        browser.driver.switch_to.default_content()
    assert browser.console_errors() == []


def test_googlenet_expanded_screenshot(browser, tmp_path, cli):
    open_page(browser, write_page(tmp_path, cli, "googlenet"))
    ms = browser.js("return archviz.expandAll(false)")
    assert len(browser.js("return archviz.visibleNodes()")) == len(graph_of(trace("googlenet"), 9)[0])
    assert ms < 2000
    browser.js("archviz.fit(); archviz.zoom(2.5)")
    shot = tmp_path / "googlenet.png"
    browser.screenshot(shot)
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000


@pytest.mark.slow
def test_torchvision_model_in_the_browser(browser, tmp_path, cli):
    open_page(browser, write_page(tmp_path, cli, "torchvision:resnet18"))
    tr = trace("torchvision:resnet18")
    assert visible(browser) == graph_of(tr, 1)
    browser.js("archviz.expand('layer2')")
    inside = {v for v in graph_of(tr, 2)[0] if v.startswith("layer2.")}
    assert inside == {"layer2.0", "layer2.1"}
    assert visible(browser)[0] == graph_of(tr, 1)[0] - {"layer2"} | inside
    browser.js("archviz.expandAll(false)")
    assert visible(browser) == graph_of(tr, tr.max_depth)
    card = browser.js("return archviz.card('layer2.0.conv1')")
    # 3x3 convolution, 64 -> 128 channels, stride 2 on 56x56: 28x28 outputs, 64*9 MACs per output value.
    assert (card["params"], card["macs"], card["output"]) == (128 * 64 * 9, 128 * 28 * 28 * 64 * 9, [1, 128, 28, 28])
    assert browser.js("return archviz.search('downsample')")["shown"]
    assert browser.console_errors() == []


def test_a_failing_forward_writes_a_partial_page_with_the_layer_in_red(tmp_path, cli, browser):
    out = tmp_path / "half.html"
    code, stdout, stderr = cli("diagram", "usermodels:FailsHalfway", "--input", "1x3x32x32", "--depth", "2", "-o", str(out))
    assert code == 1 and "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert "layer 'head.1' (Linear) expects 100 input features but gets 4096" in last
    assert f"the diagram up to that layer, marked in red, was written to {out}" in last
    data = json.loads(re.search(r'<script type="application/json"[^>]*>(.*?)</script>', out.read_text(), re.S)[1])
    assert data["failed"]["op"] == "head.1" and "expects 100 input features" in data["failed"]["error"]
    assert [o["id"] for o in data["ops"]][-1] == "head.1"  # up to the failing layer, no output
    open_page(browser, out)
    assert browser.js("return archviz.failed()") == ["head.1"]
    colour = browser.js("return getComputedStyle(document.querySelector('g.vertex.failed rect.box')).stroke")
    assert colour == "rgb(214, 39, 40)"  # #d62728, as drawn (not only as an attribute a stylesheet could override)
    assert "failed: layer 'head.1' (Linear) expects 100 input features" in browser.js("return document.querySelector('g.vertex.failed').textContent")
    assert "partial: the forward failed at head.1" in browser.js("return document.getElementById('facts').textContent")
    browser.js("archviz.collapse('head')")
    assert browser.js("return archviz.failed()") == ["head"]  # the closed block around it is red too
