"""`archviz diagram`: the dataflow graph, depth and fold, DOT golden files, rendering and errors.

Golden DOT files live in tests/golden/; regenerate them with ARCHVIZ_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from archviz import zoo
from archviz.arch import load_arch
from archviz.render import graphviz as gvmod
from archviz.render.dot import Direction, to_dot
from archviz.render.graph import build_graph
from archviz.render.graphviz import DiagramFormat, default_filename, output_format
from archviz.spec import ops as O

GOLDEN = Path(__file__).parent / "golden"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot program is not installed")
SVG = "{http://www.w3.org/2000/svg}"


def trace(name: str):
    return load_arch(name).trace()


def svg_node_count(data: bytes) -> int:
    root = ET.fromstring(data)  # also proves the SVG is well-formed XML
    return sum(1 for g in root.iter(f"{SVG}g") if g.get("class") == "node")


def edges_into(graph, vertex: str) -> list[str]:
    return [a for a, b, _ in graph.edges if b == vertex]


def edges_from(graph, vertex: str) -> list[str]:
    return [b for a, b, _ in graph.edges if a == vertex]


# --- golden DOT files -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "depth", "fold"),
    [("lenet", 1, True), ("lenet", 2, True), ("googlenet", 1, True), ("googlenet", 4, True), ("resnet18", 2, True), ("resnet18", 2, False)],
)
def test_dot_matches_golden_file(name, depth, fold):
    golden = GOLDEN / f"{name}_depth{depth}{'' if fold else '_nofold'}.dot"
    text = to_dot(trace(name), depth, Direction.TB, fold)
    if os.environ.get("ARCHVIZ_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"{golden} is missing; run with ARCHVIZ_UPDATE_GOLDEN=1 to create it"
    assert text == golden.read_text(encoding="utf-8"), f"DOT for {name} changed; if intended, rerun with ARCHVIZ_UPDATE_GOLDEN=1"


def test_dot_is_deterministic_and_direction_is_applied():
    t = trace("googlenet")
    assert to_dot(t, 4) == to_dot(trace("googlenet"), 4)
    assert "rankdir=TB" in to_dot(t, 1)
    assert "rankdir=LR" in to_dot(t, 1, Direction.LR)


# --- the graph is the real dataflow ---------------------------------------------------


def test_googlenet_inception_paths_fan_out_and_meet_at_the_concat():
    graph = build_graph(trace("googlenet"), depth=4)
    # The four paths of the first Inception block all read b2's max-pool...
    assert edges_from(graph, "b2.2") == ["b3.0.p1.0", "b3.0.p2.0", "b3.0.p3.0", "b3.0.p4.0"]
    # ...and meet at one concat, which feeds the four paths of the next block.
    assert edges_into(graph, "b3.0:cat") == ["b3.0.p1.1", "b3.0.p2.3", "b3.0.p3.3", "b3.0.p4.2"]
    assert edges_from(graph, "b3.0:cat") == ["b3.1.p1.0", "b3.1.p2.0", "b3.1.p3.0", "b3.1.p4.0"]
    shapes = {(a, b): s for a, b, s in graph.edges}
    assert shapes[("b3.0:cat", "b3.1.p1.0")] == (1, 256, 12, 12)
    # Every op is drawn (no two Inception blocks are identical, so nothing folds).
    assert len(graph.vertices) == len(trace("googlenet").ops) == 139


def test_resnet_shortcut_joins_at_the_add():
    graph = build_graph(trace("resnet18"), depth=4, fold=False)
    assert edges_into(graph, "b2.0:add") == ["b2.0.body.4", "b1.3"]  # body, then identity shortcut
    assert edges_into(graph, "b3.0:add") == ["b3.0.body.4", "b3.0.shortcut.0"]  # projection shortcut
    assert edges_from(graph, "b2.1.act") == ["b3.0.body.0", "b3.0.shortcut.0"]


def test_fan_out_is_labelled_once():
    text = to_dot(trace("googlenet"), 4)
    edges = [line for line in text.splitlines() if line.lstrip().startswith('"b2.2" ->')]
    assert len(edges) == 4
    assert ["label=" in e for e in edges] == [True, False, False, False]


# --- depth and fold -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "depth", "vertices"),
    [
        ("lenet", 1, 4),  # input, conv, fc, output
        ("lenet", 2, 14),  # input, 12 layers, output
        ("googlenet", 1, 8),  # input, b1..b5, head, output
        ("googlenet", 2, 22),  # input, b1: 3 layers, b2: 3, b3: 2 Inception + pool, b4: 5 + pool, b5: 2 + gap + flatten, head, output
        ("googlenet", 3, 58),  # each of the 9 Inception blocks opens into its 4 paths and the concat: 22 + 9 x 4
        ("resnet18", 1, 8),
    ],
)
def test_depth_collapses_blocks(name, depth, vertices):
    assert len(build_graph(trace(name), depth).vertices) == vertices


def test_depth_one_collapses_inception_edges_to_one():
    graph = build_graph(trace("googlenet"), depth=2)
    # b2.2 feeds four ops inside b3.0, but one tensor: one edge to the collapsed block.
    assert edges_from(graph, "b2.2") == ["b3.0"]
    assert edges_into(graph, "b3.1") == ["b3.0"]
    assert {v.id: v.clusters for v in graph.vertices}["b3.0"] == ("b3",)


def test_fold_draws_identical_consecutive_blocks_once():
    t = trace("resnet18")
    folded, unfolded = build_graph(t, 2, fold=True), build_graph(t, 2, fold=False)
    assert len(unfolded.vertices) == 17 and len(folded.vertices) == 16
    by_id = {v.id: v for v in folded.vertices}
    assert "b2.1" not in by_id and by_id["b2.0"].count == 2 and by_id["b2.0"].last == "b2.1"
    # The folded block is rewired: fed by b1, feeding b3 directly.
    assert edges_into(folded, "b2.0") == ["b1.3"] and edges_from(folded, "b2.0") == ["b3.0"]
    assert edges_from(unfolded, "b2.0") == ["b2.1"]
    # b3.0 projects its shortcut and b3.1 does not: they differ, so they do not fold.
    assert by_id["b3.0"].count == 1 and "b3.1" in by_id
    assert "BasicBlock \u00d7 2" in to_dot(t, 2) and "\u00d7 2" not in to_dot(t, 2, fold=False)


def test_fold_at_full_depth_drops_the_copy_and_its_edges():
    t = trace("resnet18")
    folded, unfolded = build_graph(t, 4, fold=True), build_graph(t, 4, fold=False)
    # b2.1 holds 7 ops: body (conv, bn, relu, conv, bn), add, act.
    assert len(unfolded.vertices) - len(folded.vertices) == 7
    assert folded.folds["b2.0"].paths == ["b2.0", "b2.1"]
    assert edges_from(folded, "b2.0.act") == ["b3.0.body.0", "b3.0.shortcut.0"]
    assert not [e for e in folded.edges if e[0].startswith("b2.1") or e[1].startswith("b2.1")]
    assert "b2.0 \u2013 b2.1</B>  BasicBlock \u00d7 2" in to_dot(t, 4)


def test_depth_below_one_is_a_usage_error():
    from archviz.errors import UsageError

    with pytest.raises(UsageError):
        build_graph(trace("lenet"), 0)


# --- labels ---------------------------------------------------------------------------


def test_layer_labels_show_hyperparameters_and_params():
    t = trace("googlenet")
    assert O.label(t.node("b1.0").type, t.node("b1.0").attrs) == "1\u219264 \u00b7 7\u00d77 s2 p3"
    assert O.label(t.node("b1.2").type, t.node("b1.2").attrs) == "3\u00d73 s2 p1"
    assert O.label(t.node("head").type, t.node("head").attrs) == "1024\u219210"
    text = to_dot(t, 4)
    assert "1\u219264 \u00b7 7\u00d77 s2 p3" in text and "3,200 params" in text
    assert "legend" in text and ">conv</TD>" in text and ">merge</TD>" in text


def test_layer_kinds():
    assert O.layer_kind("module", "Conv2d") == "conv"
    assert O.layer_kind("module", "BatchNorm2d") == "norm"
    assert O.layer_kind("module", "AdaptiveAvgPool2d") == "pool"
    assert O.layer_kind("module", "LeakyReLU") == "activation"
    assert O.layer_kind("function", "cat") == "merge"
    assert O.layer_kind("function", "flatten") == "reshape"
    assert O.layer_kind("module", "MultiheadAttention") == "other"


# --- rendering: SVG node counts, formats, determinism ---------------------------------


@needs_dot
@pytest.mark.parametrize("name", zoo.list_models())
def test_every_builtin_renders_to_svg_with_one_node_per_vertex(name):
    t = trace(name)
    for depth in (1, t.max_depth):
        data = gvmod.render(to_dot(t, depth), DiagramFormat.svg)
        assert svg_node_count(data) == len(build_graph(t, depth).vertices) + 1  # + the legend


@needs_dot
@pytest.mark.parametrize(
    ("args", "nodes"),
    [
        (["lenet"], 5),
        (["lenet", "--depth", "2"], 15),
        (["googlenet"], 9),
        (["googlenet", "--depth", "4"], 140),
        (["resnet18", "--depth", "2"], 17),
        (["resnet18", "--depth", "2", "--no-fold"], 18),
        pytest.param(["usermodels:tiny_cnn", "--input", "1x3x32x32"], 9, marks=pytest.mark.slow),  # 6 layers, imports torch
    ],
)
def test_cli_svg_node_counts(cli, tmp_path, args, nodes):
    out = tmp_path / "d.svg"
    code, stdout, stderr = cli("diagram", *args, "-o", str(out))
    assert code == 0, stderr
    assert stdout.strip() == f"wrote {out}"
    assert svg_node_count(out.read_bytes()) == nodes


@needs_dot
@pytest.mark.parametrize("suffix", ["svg", "png", "pdf", "dot"])
def test_same_command_gives_byte_identical_files(cli, tmp_path, suffix):
    a, b = tmp_path / f"a.{suffix}", tmp_path / f"b.{suffix}"
    assert cli("diagram", "googlenet", "--depth", "3", "-o", str(a))[0] == 0
    assert cli("diagram", "googlenet", "--depth", "3", "-o", str(b))[0] == 0
    assert a.read_bytes() == b.read_bytes()


@needs_dot
def test_format_follows_extension_unless_format_says_otherwise(cli, tmp_path):
    magic = {"svg": b"<?xml", "png": b"\x89PNG", "pdf": b"%PDF", "dot": b'// archviz diagram "lenet"\ndigraph'}  # a DOT file opens with archviz's mark
    for fmt, start in magic.items():
        out = tmp_path / f"lenet.{fmt}"
        assert cli("diagram", "lenet", "-o", str(out))[0] == 0
        assert out.read_bytes().startswith(start), fmt
    forced = tmp_path / "forced.svg"
    assert cli("diagram", "lenet", "-o", str(forced), "--format", "dot")[0] == 0
    assert forced.read_text() == '// archviz diagram "lenet"\n' + to_dot(trace("lenet"))


def test_dot_to_stdout_and_default_file_name(cli, tmp_path, monkeypatch):
    code, stdout, _ = cli("diagram", "lenet", "-f", "dot", "-o", "-")
    assert code == 0 and stdout == to_dot(trace("lenet"))
    monkeypatch.chdir(tmp_path)
    assert cli("diagram", "lenet", "-f", "dot", "-d", "2")[0] == 0
    assert (tmp_path / "lenet.dot").read_text() == '// archviz diagram "lenet"\n' + to_dot(trace("lenet"), 2)  # a file carries archviz's mark
    assert default_filename("torchvision:resnet18", DiagramFormat.svg) == "torchvision_resnet18.svg"
    assert default_filename("pkg.models:make_net", DiagramFormat.png) == "pkg.models_make_net.png"


def test_output_format_rules():
    assert output_format(None, None) is DiagramFormat.svg
    assert output_format("a/b.PDF", None) is DiagramFormat.pdf
    assert output_format("a.gv", None) is DiagramFormat.dot
    assert output_format("a.png", "svg") is DiagramFormat.svg


# --- errors: one sentence, the right exit code, never a traceback ----------------------


def test_missing_dot_writes_the_dot_file_and_says_how_to_install(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no `dot` anywhere on PATH
    out = tmp_path / "lenet.svg"
    code, stdout, stderr = cli("diagram", "lenet", "-o", str(out))
    assert code == 1
    assert not out.exists()
    assert (tmp_path / "lenet.dot").read_text() == '// archviz diagram "lenet"\n' + to_dot(trace("lenet"))
    assert "apt-get install graphviz" in stderr and "brew install graphviz" in stderr
    assert str(tmp_path / "lenet.dot") in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def test_missing_dot_via_lookup_function(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(gvmod, "find_dot", lambda: None)
    code, _, stderr = cli("diagram", "googlenet", "-o", str(tmp_path / "g.png"), "--depth", "2")
    assert code == 1 and "install graphviz" in stderr
    assert (tmp_path / "g.dot").read_text() == '// archviz diagram "googlenet"\n' + to_dot(trace("googlenet"), 2)
    # DOT output needs no graphviz at all.
    assert cli("diagram", "lenet", "-o", str(tmp_path / "l.dot"))[0] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "{tmp}/x.jpg"], "cannot tell the diagram format from"),
        (["-o", "{tmp}/missing/x.svg"], "does not exist"),
        (["-o", "{tmp}"], "is a directory"),
        (["--input", "1x1x8x8"], "cannot run on input"),
        (["-p", "nope=1"], "nope"),
    ],
)
def test_bad_requests_are_one_sentence(cli, tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    code, stdout, stderr = cli("diagram", "lenet", *args)
    assert code in (1, 2)
    assert message in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.svg"))


def test_bad_format_and_direction_are_usage_errors(cli):
    code, _, stderr = cli("diagram", "lenet", "--format", "gif")
    assert code == 2 and "gif" in stderr and "Traceback" not in stderr
    code, _, stderr = cli("diagram", "lenet", "--direction", "up")
    assert code == 2 and "Traceback" not in stderr


def test_unwritable_output_is_a_run_error(cli, tmp_path, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    code, _, stderr = cli("diagram", "lenet", "-f", "dot", "-o", str(tmp_path / "x.dot"))
    assert code == 1
    assert re.fullmatch(r"archviz: error: cannot write '.*x\.dot' \(Permission denied\); nothing was written\.", stderr.strip())


# --- torch models (torchvision:NAME, module:callable) ---------------------------------


@pytest.mark.slow
def test_torchvision_resnet18_folds_and_draws_function_ops():
    t = load_arch("torchvision:resnet18").trace()
    graph = build_graph(t, 2)
    by_id = {v.id: v for v in graph.vertices}
    assert by_id["layer1.0"].count == 2  # layer1.0 and layer1.1 are identical BasicBlocks
    assert by_id["layer2.0"].count == 1 and "layer2.1" in by_id  # layer2.0 downsamples
    assert edges_from(graph, "avgpool") == [":flatten"] and edges_from(graph, ":flatten") == ["fc"]
    full = build_graph(t, 3, fold=False)
    assert edges_into(full, "layer1.0:add") == ["layer1.0.bn2", "maxpool"]
    assert edges_into(full, "layer2.0:add") == ["layer2.0.bn2", "layer2.0.downsample"]


def fake_dot(tmp_path: Path, body: str) -> None:
    script = tmp_path / "dot"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)


def test_graphviz_failure_and_timeout_are_run_errors(tmp_path, monkeypatch):
    from archviz.errors import RunError

    sleep = shutil.which("sleep")
    monkeypatch.setenv("PATH", str(tmp_path))
    fake_dot(tmp_path, "echo 'Error: <stdin>: syntax error in line 1' >&2; exit 3")
    with pytest.raises(RunError, match=r"dot failed to render svg \(Error: <stdin>: syntax error in line 1\)"):
        gvmod.render("digraph {", DiagramFormat.svg)
    fake_dot(tmp_path, f"exec {sleep} 5")
    with pytest.raises(RunError, match=r"within 0.2 s; draw fewer boxes with a smaller --depth"):
        gvmod.render("digraph {}", DiagramFormat.svg, timeout_s=0.2)


# --- issue 16: print quality, titles, partial diagrams; issue 20: names never collide ------------


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@needs_dot
def test_png_is_144_dpi_by_default_and_scales(cli, tmp_path):
    sizes = {}
    for name, args in {"72": ["--dpi", "72"], "default": [], "x3": ["--scale", "3"]}.items():
        out = tmp_path / f"{name}.png"
        code, _, stderr = cli("diagram", "lenet", "-o", str(out), *args)
        assert code == 0, stderr
        sizes[name] = png_size(out.read_bytes())
    w72, h72 = sizes["72"]
    assert abs(sizes["default"][0] - 2 * w72) <= 2 and abs(sizes["default"][1] - 2 * h72) <= 2
    assert abs(sizes["x3"][0] - 3 * w72) <= 3
    assert (tmp_path / "default.png").read_bytes() == gvmod.render(to_dot(trace("lenet")), DiagramFormat.png, dpi=144)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--dpi", "72", "--scale", "2"], "give one of them"), (["--dpi", "5"], "--dpi must be between"), (["--scale", "0"], "--scale must be between")],
)
def test_bad_resolution_is_one_sentence(cli, tmp_path, args, message):
    code, _, stderr = cli("diagram", "lenet", "-o", str(tmp_path / "l.png"), *args)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_input_node_shows_a_non_float_dtype():
    source = to_dot(load_arch("usermodels:TextClassifier").trace("8x128:int64"))
    line = next(x for x in source.splitlines() if x.startswith('  "@input" ['))
    assert "8×128 int64" in line
    assert "float32" not in to_dot(trace("lenet"))  # float32, the usual case, is not spelled out


def test_layer_names_never_collide_with_the_diagrams_own_nodes():
    from torch import nn

    net = nn.Sequential()
    for name in ("@input", "legend", "@output", "%x"):
        net.add_module(name, nn.Linear(4, 4))
    source = to_dot(load_arch(net).trace((1, 4)), 2)
    ids = re.findall(r'^  ("(?:[^"\\]|\\.)*"|legend) \[', source, re.M)
    assert sorted(ids) == sorted(['"@input"', '"@output"', "legend", '"%@input"', '"%legend"', '"%@output"', '"%%x"'])
    edges = re.findall(r'^  ("[^"]*") -> ("[^"]*")', source, re.M)
    assert edges == [('"@input"', '"%@input"'), ('"%@input"', '"%legend"'), ('"%legend"', '"%@output"'), ('"%@output"', '"%%x"'), ('"%%x"', '"@output"')]


@pytest.mark.slow
def test_callable_is_titled_by_what_it_builds(cli, tmp_path):
    code, stdout, stderr = cli("shapes", "usermodels:make", "-p", "model_name=small", "--input", "2x3", "--format", "json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["arch"] == "usermodels:make" and report["title"] == "usermodels small"
    code, stdout, _ = cli("shapes", "usermodels:make", "-p", "model_name=small", "--input", "2x3")
    assert stdout.startswith("usermodels small @ 2x3")
    out = tmp_path / "m.dot"
    assert cli("diagram", "usermodels:make", "-p", "model_name=small", "--input", "2x3", "-o", str(out))[0] == 0
    assert "<B>usermodels small</B>" in out.read_text() and '\ndigraph "usermodels:make" {' in out.read_text()
    assert cli("diagram", "usermodels:make", "--input", "2x3", "--title", "My MLP", "-o", str(out))[0] == 0
    assert "<B>My MLP</B>" in out.read_text()
    code, stdout, _ = cli("cost", "lenet", "--title", "LeNet-5", "--format", "json")
    assert json.loads(stdout)["title"] == "LeNet-5" and json.loads(stdout)["arch"] == "lenet"
    code, _, stderr = cli("cost", "lenet", "--title", " ")
    assert code == 2 and "--title is empty" in stderr


@pytest.mark.slow
def test_skip_edge_into_the_add_is_labelled():
    source = to_dot(load_arch("torchvision:resnet18").trace(), 3)
    assert '"maxpool" -> "layer1.0:add" [label=" 1×64×56×56", weight=0];' in source
    assert '"maxpool" -> "layer1.0.conv1" [label=" 1×64×56×56"];' in source


@needs_dot
@pytest.mark.slow
def test_partial_diagram_when_a_layer_fails(cli, tmp_path):
    out = tmp_path / "half.svg"
    code, stdout, stderr = cli("diagram", "usermodels:FailsHalfway", "--input", "1x3x32x32", "--depth", "2", "-o", str(out))
    assert code == 1
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("archviz: error: ") and "Traceback" not in stderr
    assert "layer 'head.1' (Linear) expects 100 input features but gets 4096" in lines[-1]
    assert f"the diagram up to that layer, marked in red, was written to {out}" in lines[-1]
    root = ET.fromstring(out.read_bytes())
    nodes = {g.find(f"{SVG}title").text: g for g in root.iter(f"{SVG}g") if g.get("class") == "node"}
    # the five feature layers, the mean and the add, Flatten, the failing Linear, the input and the legend; no output
    assert set(nodes) == {"@input", "features.0", "features.1", "features.2", "features.3", "features.4", ":mean", ":add", "head.0", "head.1", "legend"}
    failed = nodes["head.1"]
    assert any(p.get("stroke") == "#d62728" for p in failed.iter() if p.tag in (f"{SVG}path", f"{SVG}polygon"))
    assert "expects 100 input features" in " ".join(t.text or "" for t in failed.iter(f"{SVG}text"))


@pytest.mark.slow
def test_partial_diagram_of_a_failing_forward_to_stdout(cli):
    code, stdout, stderr = cli("diagram", "usermodels:BrokenForward", "-f", "dot", "-o", "-")
    assert code == 1 and "bad forward" in stderr and "written to stdout" in stderr
    assert '":forward" [' in stdout and "#d62728" in stdout


@pytest.mark.parametrize(("name", "depth"), [("googlenet", 4), ("resnet18", 3), ("densenet", 2), ("unet", 3)])
@needs_dot
def test_no_node_boxes_overlap(name, depth):
    from archviz.render.svgcheck import node_boxes, overlapping

    boxes = node_boxes(gvmod.render(to_dot(trace(name), depth), DiagramFormat.svg))
    assert len(boxes) == len(build_graph(trace(name), depth).vertices) + 1  # and the legend
    assert overlapping(boxes) == []


def test_overlap_check_finds_overlaps():
    from archviz.render.svgcheck import overlapping

    boxes = {"a": (0, 0, 10, 10), "b": (9, 9, 20, 20), "c": (10, 0, 20, 8), "d": (30, 30, 40, 40)}
    assert overlapping(boxes) == [("a", "b")]


@needs_dot
def test_unet_is_drawn_as_a_u():
    """unet.yaml says `layout: u`: the encoder runs down the left, the decoder back up the right, skips go straight across."""
    from archviz.render.svgcheck import node_boxes

    unet = trace("unet")
    assert unet.layout == "u" and trace("lenet").layout == ""
    source = to_dot(unet, unet.max_depth)
    skips = re.findall(r'^  \{rank=same; ("[^"]+"); ("[^"]+");\}$', source, re.M)
    assert len(skips) == 3  # one per level: 96x96, 48x48, 24x24
    boxes = node_boxes(gvmod.render(source, DiagramFormat.svg))

    def centre(name: str) -> tuple[float, float]:
        x0, y0, x1, y1 = boxes[name]
        return (x0 + x1) / 2, (y0 + y1) / 2

    for a, b in skips:  # the identity branch and its concat: one row, the concat to the right
        (xa, ya), (xb, yb) = centre(a.strip('"')), centre(b.strip('"'))
        assert abs(ya - yb) < 1 and xb > xa
    bottom = max(boxes, key=lambda n: centre(n)[1])  # lowest on the page (SVG y grows downwards)
    assert "p2" in bottom  # deep inside the nested levels, not the output
    assert centre("@output")[1] < centre(bottom)[1] and centre("@output")[0] > centre("@input")[0]
    assert "dir=back" not in to_dot(unet, 1)  # collapsed to one resolution: drawn as usual
    assert "rank=same" not in to_dot(trace("resnet18"), 3)


class _DenseLike:
    """A torchvision-style dense block: every layer concatenates every earlier feature map (torch.cat(prev_features))."""

    @staticmethod
    def make():
        import torch
        from torch import nn

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.convs = nn.ModuleList(nn.Conv2d(4 + 2 * i, 2, 3, padding=1) for i in range(4))

            def forward(self, x):
                features = [x]
                for conv in self.convs:
                    features.append(conv(torch.cat(features, 1)))
                return torch.cat(features, 1)

        return Block()


def test_dense_concats_read_the_previous_concat():
    """Concatenation is associative: a concat that repeats an earlier concat's inputs reads that concat (d2l's DenseNet drawing)."""
    t = load_arch(_DenseLike.make()).trace((1, 4, 8, 8))
    graph = build_graph(t, 3)
    into = {b: [a for a, bb, _ in graph.edges if bb == b] for b in {b for _, b, _ in graph.edges}}
    assert into[":cat#1"] == ["@input", "convs.0"]  # x and the first layer's output
    assert into[":cat#2"] == [":cat#1", "convs.1"]  # instead of x, convs.0, convs.1
    assert into[":cat#4"] == [":cat#3", "convs.3"]
    assert len(graph.edges) == 1 + 4 + 2 * 4 + 1  # O(n), not O(n^2): the dataflow has 20
    shapes = {(a, b): s for a, b, s in graph.edges}
    assert shapes[(":cat#1", ":cat#2")] == (1, 6, 8, 8)  # the growing tensor the next concat extends
    real = {(src, op.id) for op in t.ops for src in op.inputs}
    assert len(real) == 1 + 4 + (2 + 3 + 4 + 5) + 1  # the dataflow itself is unchanged in the trace


@needs_dot
@pytest.mark.slow
def test_torchvision_densenet_at_full_depth_lays_out_quickly():
    t = load_arch("torchvision:densenet121").trace()
    source = to_dot(t, t.max_depth)
    assert source.count(" -> ") < 520  # 967 edges when every concat reads every earlier map
    gvmod.render(source, DiagramFormat.svg, timeout_s=120)  # took graphviz more than 180 s before


@needs_dot
@pytest.mark.parametrize(
    ("name", "depth"), [("resnet18", 3), ("resnet50", 3), ("mobilenet_v2", 3), pytest.param("torchvision:resnet18", 3, marks=pytest.mark.slow)]
)
def test_skip_edges_stay_out_of_unrelated_blocks(name, depth):
    from archviz.render.svgcheck import edge_points, foreign_crossings

    svg = gvmod.render(to_dot(load_arch(name).trace(), depth), DiagramFormat.svg)
    skips = [(a, b) for a, b in edge_points(svg) if b.endswith(":add")]
    assert len(skips) >= 10  # every residual add has its shortcut drawn
    assert foreign_crossings(svg, skips) == []


def test_crossing_check_finds_an_edge_through_a_foreign_block():
    from archviz.render.svgcheck import foreign_crossings

    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg"><g class="cluster"><title>cluster_b2</title><polygon points="0,0 100,0 100,100 0,100 0,0"/></g>'
        '<g class="edge"><title>b1.x&#45;&gt;b3:add</title><path d="M-50,50C20,50 40,50 150,50"/></g>'
        '<g class="edge"><title>b2.y&#45;&gt;b3:add</title><path d="M50,50C60,50 80,50 150,50"/></g></svg>'
    )
    assert foreign_crossings(svg, [("b1.x", "b3:add"), ("b2.y", "b3:add")]) == [("b1.x", "b3:add", "b2")]
