"""`archviz diff`: pairing of sibling networks, exact totals against `archviz cost`, the drawing and its legend, errors."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import pytest

from archviz.arch import load_arch
from archviz.diff import diff_traces
from archviz.render.diff import diff_dot, diff_graph

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot program is not installed")
SVG = "{http://www.w3.org/2000/svg}"


def diff_of(a: str, b: str):
    return diff_traces(load_arch(a).trace(), load_arch(b).trace())


def rows_by(diff, status: str) -> list[str]:
    return [r["name"] for r in diff.rows if r["status"] == status]


def cost_json(cli, *args: str) -> dict:
    code, stdout, stderr = cli("cost", *args, "--format", "json")
    assert code == 0, stderr
    return json.loads(stdout)


def assert_rows_add_up(diff) -> None:
    totals = diff.totals()
    assert sum(r["params_delta"] for r in diff.rows) == totals["params"]["delta"] == diff.b.total_params - diff.a.total_params
    assert sum(r["macs_delta"] for r in diff.rows) == totals["macs"]["delta"] == (diff.b.flops - diff.a.flops) // 2


def test_lenet_bn_adds_four_batch_norms_and_nothing_else():
    diff = diff_of("lenet", "lenet_bn")
    assert rows_by(diff, "added") == ["conv.1", "conv.5", "fc.2", "fc.5"]
    assert [r["type_b"] for r in diff.rows] == ["BatchNorm2d", "BatchNorm2d", "BatchNorm1d", "BatchNorm1d"]
    assert [r["params_delta"] for r in diff.rows] == [12, 32, 240, 168]  # 2 x channels each
    assert [r["memory_delta"] for r in diff.rows] == [6 * 24 * 24 * 4, 16 * 8 * 8 * 4, 120 * 4, 84 * 4]
    assert rows_by(diff, "removed") == rows_by(diff, "changed") == []
    assert_rows_add_up(diff)


def test_cli_totals_equal_the_difference_of_two_cost_runs(cli):
    code, stdout, stderr = cli("diff", "lenet", "lenet", "--input-b", "4x1x28x28", "--format", "json")
    assert code == 0, stderr
    report = json.loads(stdout)  # pure JSON on stdout
    a, b = cost_json(cli, "lenet"), cost_json(cli, "lenet", "--input", "4x1x28x28")
    assert report["totals"]["params"]["delta"] == b["total_params"] - a["total_params"] == 0
    assert report["totals"]["macs"]["delta"] == b["macs"] - a["macs"] == 3 * a["macs"]
    assert report["totals"]["peak_bytes"] == {
        "a": a["memory"]["peak_bytes"],
        "b": b["memory"]["peak_bytes"],
        "delta": b["memory"]["peak_bytes"] - a["memory"]["peak_bytes"],
    }
    assert sum(r["macs_delta"] for r in report["rows"]) == report["totals"]["macs"]["delta"]
    conv = next(r for r in report["rows"] if r["name"] == "conv.0")
    assert conv["status"] == "changed" and conv["shape_a"] == [1, 6, 24, 24] and conv["shape_b"] == [4, 6, 24, 24]


def test_cli_params_per_side(cli):
    code, stdout, stderr = cli("diff", "vgg11", "vgg11", "--pb", "ratio=8", "--no-peak", "--format", "json")
    assert code == 0, stderr
    report = json.loads(stdout)
    narrow = cost_json(cli, "vgg11", "-p", "ratio=8")
    wide = cost_json(cli, "vgg11")
    assert report["totals"]["params"]["delta"] == narrow["total_params"] - wide["total_params"]
    assert report["totals"]["macs"]["delta"] == narrow["macs"] - wide["macs"]
    assert report["counts"]["added"] == report["counts"]["removed"] == 0 and report["counts"]["changed"] > 0
    assert sum(r["params_delta"] for r in report["rows"]) == report["totals"]["params"]["delta"]


@pytest.mark.slow
def test_torchvision_resnet18_and_resnet50_pair_their_blocks(cli):
    diff = diff_of("torchvision:resnet18", "torchvision:resnet50")
    changed = {r["name"]: (r["type_a"], r["type_b"]) for r in diff.rows if r["status"] == "changed"}
    assert changed["layer1.0"] == ("BasicBlock", "Bottleneck")  # paired by name, replaced
    assert changed["layer4.1"] == ("BasicBlock", "Bottleneck")
    assert changed["fc"] == ("Linear", "Linear")  # 512 -> 2048 inputs
    assert rows_by(diff, "added") == ["layer1.2", "layer2.2", "layer2.3", "layer3.2", "layer3.3", "layer3.4", "layer3.5", "layer4.2"]
    assert rows_by(diff, "removed") == []
    assert diff.a.total_params == 11_689_512 and diff.b.total_params == 25_557_032  # torchvision's num_params
    assert_rows_add_up(diff)
    assert {"conv1", "bn1", "relu", "maxpool"} <= {a for a, b in diff.pairs.items() if a == b}


@pytest.mark.slow
def test_torchvision_vgg11_and_vgg16_align_by_type():
    diff = diff_of("torchvision:vgg11", "torchvision:vgg16")
    added = {r["name"]: r["type_b"] for r in diff.rows if r["status"] == "added"}
    assert {n for n, t in added.items() if t == "Conv2d"} == {"features.2", "features.7", "features.12", "features.21", "features.28"}
    assert sum(1 for t in added.values() if t == "ReLU") == 5
    assert rows_by(diff, "changed") == rows_by(diff, "removed") == []  # every vgg11 layer has its twin in vgg16
    assert diff.b.total_params - diff.a.total_params == 138_357_544 - 132_863_336
    assert_rows_add_up(diff)


def test_builtin_vgg16_to_vgg11_removes_five_conv_relu_pairs():
    diff = diff_of("vgg16", "vgg11")
    removed = [r for r in diff.rows if r["status"] == "removed"]
    assert [r["type_a"] for r in removed].count("Conv2d") == 5 and [r["type_a"] for r in removed].count("ReLU") == 5
    assert_rows_add_up(diff)


def test_builtin_resnets_pair_stages_by_position():
    diff = diff_of("resnet18", "resnet50")
    pairs = {r["name_a"]: r["name_b"] for r in diff.rows if r["status"] == "changed"}
    assert pairs["b2"] == "layer1" and pairs["b5"] == "layer4"
    assert_rows_add_up(diff)


def test_own_parameters_keep_totals_exact():
    """A parameter held by a block itself (not by a child) is a row of its own, so the rows still add up."""
    import torch
    from torch import nn

    class Scaled(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.scale = nn.Parameter(torch.ones(n))

        def forward(self, x):
            return self.fc(x) * self.scale[:1]

    a = load_arch(Scaled(1)).trace((2, 4))
    b = load_arch(Scaled(7)).trace((2, 4))
    diff = diff_traces(a, b)
    assert sum(r["params_delta"] for r in diff.rows) == 6
    assert_rows_add_up(diff)


def test_the_graph_marks_every_status():
    diff = diff_of("vgg16", "vgg11")
    graph, status = diff_graph(diff, 2)
    removed = [v for v in graph.vertices if status.get(v.id) == "removed"]
    assert len(removed) == 10 and all(v.id.startswith("@removed:") for v in removed)
    assert status["VGG_0.0"] == "changed"  # 1 -> 64 channels in vgg16 on 3 channels, vs 1 in vgg11's default
    ids = {v.id for v in graph.vertices}
    assert all(a in ids and b in ids for a, b, _ in graph.edges)
    source = diff_dot(diff, 2)
    assert source.count('color="#D55E00", style="rounded,filled,dashed"') == 10


@needs_dot
def test_drawing_has_a_legend_in_okabe_ito_colours_and_line_styles(cli, tmp_path):
    out = tmp_path / "diff.svg"
    code, stdout, stderr = cli("diff", "torchvision:vgg11", "torchvision:vgg16", "-o", str(out), "--depth", "2", "--no-peak")
    assert code == 0, stderr
    assert "diff torchvision:vgg11 → torchvision:vgg16" in stdout
    root = ET.fromstring(out.read_bytes())
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "added (bold)" in texts and "removed (dashed)" in texts and "changed (double)" in texts
    strokes = [p.get("stroke") for p in root.iter() if p.tag in (f"{SVG}path", f"{SVG}polygon")]
    assert strokes.count("#009e73") + strokes.count("#009E73") >= 10  # the added convs and ReLUs (and their edges)
    assert "#D55E00" in strokes or "#d55e00" in strokes  # the legend's removed swatch


@needs_dot
def test_png_drawing(cli, tmp_path):
    out = tmp_path / "d.png"
    assert cli("diff", "lenet", "lenet_bn", "-o", str(out), "--no-peak")[0] == 0
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["lenet", "nope"], 2, "unknown architecture 'nope'"),
        (["lenet", "lenet_bn", "-o", "-"], 2, "give -o a file name"),
        (["lenet", "lenet_bn", "-o", "{tmp}/x.jpg"], 2, "cannot tell the diagram format"),
        (["lenet", "lenet", "--input-b", "1x1x4x4"], 1, "cannot run on input"),
        (["lenet", "lenet[bogus=1]"], 2, "bogus"),
        (["lenet", "lenet", "--pb", "x"], 2, "KEY=VALUE"),
    ],
)
def test_errors_are_one_sentence(cli, tmp_path, args, code, message):
    got, stdout, stderr = cli("diff", *[a.format(tmp=tmp_path) for a in args])
    assert got == code, stderr
    assert message in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1
