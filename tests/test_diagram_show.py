"""`archviz diagram --show`: the cost figures on every node, equal to what `archviz cost --format json` reports."""

from __future__ import annotations

import html
import json
import re
import shutil

import pytest

from archviz.arch import load_arch
from archviz.choices import NodeFigure
from archviz.errors import UsageError
from archviz.render.dot import Decoration, parse_figures, to_dot

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot program is not installed")
_VERTEX = re.compile(r'^\s+"((?:[^"\\]|\\.)*)" \[label=(<.*>), ', re.M)


def labels(source: str) -> dict[str, str]:
    """DOT source -> {vertex id: the label's text, tags stripped}."""
    return {m[1]: html.unescape(re.sub(r"<[^>]+>", " ", m[2])) for m in _VERTEX.finditer(source)}


def cost_blocks(cli, arch: str, depth: int, *extra: str) -> dict[str, dict]:
    code, stdout, stderr = cli("cost", arch, "--depth", str(depth), "--format", "json", *extra)
    assert code == 0, stderr
    return {b["name"]: b for b in json.loads(stdout)["blocks"]}


def expected(block: dict) -> str:
    rf = block["receptive_field"]
    rf_text = "RF whole input" if rf["whole_input"] else "RF " + "\u00d7".join(str(s) for s in rf["size"])
    return f"{block['params']:,} params \u00b7 {block['macs']:,} MACs \u00b7 {block['activation_bytes']:,} B out \u00b7 {rf_text}"


@pytest.mark.parametrize(("arch", "depth"), [("lenet", 2), ("googlenet", 1), ("resnet18", 1)])
def test_every_node_shows_the_numbers_cost_reports(cli, arch, depth):
    source = to_dot(load_arch(arch).trace(), depth, fold=False, decoration=Decoration(show=tuple(NodeFigure)))
    shown = labels(source)
    blocks = cost_blocks(cli, arch, depth)
    checked = 0
    for name, block in blocks.items():
        if name in shown:
            assert expected(block) in shown[name], (name, shown[name])
            checked += 1
    assert checked >= len(blocks) - 1  # every block is drawn (a Flatten at depth 1 too); the numbers were really compared
    assert checked >= 5


def test_lenet_conv_figures_are_the_known_numbers():
    """LeNet's first conv: 6x(5x5+1) = 156 params, 6x24x24 outputs x 25 MACs = 86,400 MACs, 3,456 floats = 13,824 bytes, RF 5x5."""
    shown = labels(to_dot(load_arch("lenet").trace(), 2, decoration=Decoration(show=parse_figures("params,macs,memory,rf"))))
    assert "156 params \u00b7 86,400 MACs \u00b7 13,824 B out \u00b7 RF 5\u00d75" in shown["conv.0"]


@pytest.mark.slow
def test_torchvision_blocks_show_cost_numbers(cli):
    arch = "torchvision:resnet18"
    source = to_dot(load_arch(arch).trace(), 1, decoration=Decoration(show=(NodeFigure.macs, NodeFigure.memory)))
    shown = labels(source)
    for name, block in cost_blocks(cli, arch, 1).items():
        if name in shown and block["output_shape"] is not None:
            assert f"{block['macs']:,} MACs \u00b7 {block['activation_bytes']:,} B out" in shown[name]
    assert f"{64 * 112 * 112 * 3 * 7 * 7:,} MACs" in shown["conv1"]  # 64 x 112 x 112 outputs, 3 x 7 x 7 MACs each


def test_subsets_keep_the_order_given_and_params_are_not_shown_twice():
    trace = load_arch("lenet").trace()
    shown = labels(to_dot(trace, 2, decoration=Decoration(show=parse_figures("rf, params"))))["conv.3"]
    assert "RF 14\u00d714 \u00b7 2,416 params" in shown
    assert shown.count("2,416") == 1
    only_macs = labels(to_dot(trace, 2, decoration=Decoration(show=parse_figures("macs"))))["conv.3"]
    assert "153,600 MACs" in only_macs and "2,416 params" in only_macs and "RF" not in only_macs


def test_default_output_is_unchanged():
    trace = load_arch("googlenet").trace()
    assert to_dot(trace, 2) == to_dot(trace, 2, decoration=Decoration()) == to_dot(trace, 2, decoration=Decoration(show=parse_figures("")))
    assert "MACs \u00b7" not in to_dot(trace, 2)


def test_folded_blocks_say_each():
    shown = labels(to_dot(load_arch("resnet18").trace(), 2, decoration=Decoration(show=(NodeFigure.params,))))
    folded = [text for text in shown.values() if "\u00d7 2" in text]
    assert folded and all("params each" in text for text in folded)


@pytest.mark.parametrize("text", ["flops", "params,bogus", "MACS,x"])
def test_unknown_figure_is_one_sentence(cli, tmp_path, text):
    with pytest.raises(UsageError, match="params, macs, memory, rf"):
        parse_figures(text)
    code, stdout, stderr = cli("diagram", "lenet", "--show", text, "-o", str(tmp_path / "l.svg"))
    assert code == 2 and "--show does not know" in stderr and "params, macs, memory, rf" in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not (tmp_path / "l.svg").exists()


@needs_dot
def test_svg_text_carries_the_figures(cli, tmp_path):
    out = tmp_path / "lenet.svg"
    code, _, stderr = cli("diagram", "lenet", "--depth", "2", "--show", "params,macs,memory,rf", "-o", str(out))
    assert code == 0, stderr
    text = out.read_text()
    assert "156 params · 86,400 MACs · 13,824 B out · RF 5×5" in html.unescape(text)
    assert "850 params · 840 MACs · 40 B out · RF whole input" in html.unescape(text)  # the last linear layer: 84x10+10, 10 floats
