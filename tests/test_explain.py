"""`archviz explain`: every formula of the walkthrough recomputed here, independently, from the
layer's attributes and input shape, and every number compared with `shapes` and `cost`."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

USER_SPEC = str(Path(__file__).parent / "data" / "explain_user.yaml")
ALL_LAYERS = "32"  # --depth: every leaf of these networks
CASES = [
    ("lenet", []),
    ("vgg11", []),
    ("nin", []),
    ("googlenet", ["--input", "1x1x96x96"]),
    ("resnet18", []),
    (USER_SPEC, []),
]


def explain_json(cli, arch, *args):
    code, out, err = cli("explain", arch, *args, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def axes(value, n):
    return [value] * n if isinstance(value, int) else list(value)


def evaluate(text):
    """A formula's text as Python arithmetic (floor/ceil of exact quotients; thousands separators dropped)."""
    code = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    assert re.fullmatch(r"[\d\s+\-*/().a-z]*", code), text
    return eval(code, {"__builtins__": {}, "floor": math.floor, "ceil": math.ceil})  # noqa: S307 - digits and operators only, checked above


def expected(step):
    """(output spatial sizes, params, MACs) recomputed from the step's attributes, or None for a layer with no rule here."""
    t, a, x, y = step["type"], step["attrs"], step["input_shapes"][0], step["output_shape"]
    n = len(x) - 2
    if re.fullmatch(r"Conv[123]d", t):
        k, s, p, d = (axes(a[key], n) for key in ("kernel_size", "stride", "padding", "dilation"))
        out = [(x[2 + i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(n)]
        cin, cout, g = a["in_channels"], a["out_channels"], a["groups"]
        params = cout * (cin // g) * math.prod(k) + (cout if a["bias"] else 0)
        return out, params, y[0] * math.prod(out) * cout * (cin // g) * math.prod(k)
    if re.fullmatch(r"(Max|Avg)Pool[123]d", t):
        k, s, p = (axes(a[key], n) for key in ("kernel_size", "stride", "padding"))
        d = axes(a.get("dilation", 1), n)
        out = []
        for i in range(n):
            span = x[2 + i] + 2 * p[i] - d[i] * (k[i] - 1) - 1
            o = (-(-span // s[i]) if a["ceil_mode"] else span // s[i]) + 1
            if a["ceil_mode"] and (o - 1) * s[i] >= x[2 + i] + p[i]:
                o -= 1
            out.append(o)
        return out, 0, 0
    if t == "Linear":
        i, o = a["in_features"], a["out_features"]
        return None, i * o + (o if a["bias"] else 0), math.prod(x[:-1]) * i * o
    if re.fullmatch(r"BatchNorm[123]d", t):
        return None, 2 * x[1], 0
    return None


def check_step(step):
    """Every formula evaluates to its value; each value is the recomputed one and the step's own number."""
    rf = step["receptive_field"]
    for f in step["formulas"]:
        if isinstance(f["value"], int):
            assert evaluate(f["text"]) == f["value"], (step["name"], f)
        if f["what"].startswith("receptive field r"):
            assert f["value"] in rf["size"], step["name"]
        if f["what"].startswith("jump j"):
            assert f["value"] in rf["jump"], step["name"]
    got = expected(step)
    if got is None:
        return 0
    out, params, macs = got
    assert step["params"] == params and step["macs"] == macs, step["name"]
    by_what = {f["what"]: f["value"] for f in step["formulas"]}
    if params:  # every layer with parameters shows their formula
        assert by_what["params"] == params, step["name"]
    if "MACs" in by_what or macs:
        assert by_what["MACs"] == macs, step["name"]
    if out is not None:
        assert step["output_shape"][2:] == out, step["name"]
        names = {1: ["L"], 2: ["H", "W"], 3: ["D", "H", "W"]}[len(out)]
        shown = {}
        for f in step["formulas"]:
            if f["what"].startswith("output "):
                for axis in f["what"].removeprefix("output ").split(", "):
                    shown[axis] = f["value"]
        assert shown == dict(zip(names, out, strict=True)), step["name"]  # every axis has its formula
    return 1


@pytest.mark.parametrize("arch,args", CASES, ids=[c[0].rsplit("/", 1)[-1] for c in CASES])
def test_every_formula_recomputed(cli, arch, args):
    report = explain_json(cli, arch, *args, "--depth", ALL_LAYERS)
    checked = sum(check_step(s) for s in report["steps"])
    assert checked >= 5
    for depth in ("1", "2"):  # blocks: sums of their parts, receptive fields of their chains
        for step in explain_json(cli, arch, *args, "--depth", depth)["steps"]:
            check_step(step)
    assert sum(s["params"] for s in report["steps"]) == report["total_params"]
    assert sum(s["macs"] for s in report["steps"]) == report["macs"] == report["flops"] // 2


@pytest.mark.parametrize("arch,args", CASES, ids=[c[0].rsplit("/", 1)[-1] for c in CASES])
def test_receptive_field_lines(cli, arch, args):
    """r = r_in + d*(k-1)*j_in and j = j_in*s hold with the previous step's field, per axis."""
    report = explain_json(cli, arch, *args, "--depth", ALL_LAYERS)
    by_output = {}
    lines = 0
    for step in report["steps"]:
        rf = step["receptive_field"]
        if re.fullmatch(r"(Conv[123]d|(Max|Avg)Pool[123]d)", step["type"]) and rf and not rf["whole_input"]:
            before = by_output.get(tuple(step["input_shapes"][0]))
            a, n = step["attrs"], len(rf["size"])
            k, s, d = axes(a["kernel_size"], n), axes(a["stride"], n), axes(a.get("dilation", 1), n)
            if before is not None and not before["whole_input"]:
                assert rf["size"] == [before["size"][i] + d[i] * (k[i] - 1) * before["jump"][i] for i in range(n)], step["name"]
                assert rf["jump"] == [before["jump"][i] * s[i] for i in range(n)], step["name"]
                shown = [f for f in step["formulas"] if f["what"].startswith(("receptive field", "jump"))]
                assert shown, step["name"]
                for f in shown:
                    assert evaluate(f["text"]) == f["value"]
                    assert f["value"] in (rf["size"] if f["what"].startswith("receptive") else rf["jump"])
                    lines += 1
        if step["output_shape"] is not None:
            by_output[tuple(step["output_shape"])] = rf
    assert lines >= 2


def test_chain_receptive_fields_from_scratch(cli):
    """vgg11 is a chain: r and j propagated here from 1 and 1 give every step's field."""
    report = explain_json(cli, "vgg11", "--depth", ALL_LAYERS)
    r = j = 1
    for step in report["steps"]:
        a = step["attrs"]
        if "kernel_size" in a:
            r += (a["kernel_size"][0] - 1) * j
            j *= a["stride"][0]
        rf = step["receptive_field"]
        if len(step["output_shape"]) == 4:
            assert rf["size"] == [r, r] and rf["jump"] == [j, j], step["name"]
    # by hand: 3, 4 | 8, 10 | 18, 26, 30 | 46, 62, 70 | 102, 134, 150; five 2x2 poolings make j = 2^5
    assert r == 150 and j == 32


@pytest.mark.parametrize(
    "arch,args,depth",
    [("lenet", [], "2"), ("vgg11", [], "1"), ("nin", [], "1"), ("googlenet", ["--input", "1x1x96x96"], "2"), ("resnet18", [], "3"), (USER_SPEC, [], "2")],
)
def test_numbers_equal_shapes_and_cost(cli, arch, args, depth):
    report = explain_json(cli, arch, *args, "--depth", depth)
    _, out, _ = cli("shapes", arch, *args, "--depth", depth, "--format", "json")
    shapes = {b["name"]: b for b in json.loads(out)["blocks"]}
    _, out, _ = cli("cost", arch, *args, "--depth", depth, "--format", "json")
    cost = json.loads(out)
    blocks = {b["name"]: b for b in cost["blocks"]}
    steps = {s["name"]: s for s in report["steps"] if s["kind"] != "merge"}
    assert steps.keys() == shapes.keys() == blocks.keys()
    for name, step in steps.items():
        assert step["output_shape"] == shapes[name]["output_shape"] == blocks[name]["output_shape"]
        assert step["params"] == shapes[name]["params"] == blocks[name]["params"]
        assert step["macs"] == blocks[name]["macs"] == blocks[name]["flops"] // 2
        assert step["activation_bytes"] == blocks[name]["activation_bytes"]
        assert step["receptive_field"] == blocks[name]["receptive_field"]
    assert report["total_params"] == cost["total_params"] and report["macs"] == cost["macs"]


def test_merges_show_their_rule(cli):
    steps = explain_json(cli, USER_SPEC, "--depth", ALL_LAYERS)["steps"]
    merges = {s["type"]: s for s in steps if s["kind"] == "merge"}
    assert set(merges) == {"add", "mul", "cat"}
    cat = merges["cat"]
    channels = [x[1] for x in cat["input_shapes"]]
    (f,) = cat["formulas"]
    assert f["what"] == "cat: channels" and f["text"] == " + ".join(map(str, channels)) and f["value"] == sum(channels) == cat["output_shape"][1]
    assert merges["mul"]["formulas"][0]["value"] == merges["mul"]["output_shape"] and "broadcast" in merges["mul"]["formulas"][0]["rule"]
    inception = {s["name"]: s for s in explain_json(cli, "googlenet", "--input", "1x1x96x96", "--depth", "2")["steps"]}["b3.0"]
    cat = [f for f in inception["formulas"] if f["what"] == "cat: channels"]
    assert cat and cat[0]["text"] == "64 + 128 + 32 + 32" and cat[0]["value"] == 256 == inception["output_shape"][1]


def test_layers_without_formula_show_shapes_only(cli):
    steps = explain_json(cli, "lenet", "--depth", "2")["steps"]
    sigmoid = [s for s in steps if s["type"] == "Sigmoid"]
    assert sigmoid and all(s["formulas"] == [] and "keeps the shape" in s["note"] for s in sigmoid)
    bn = [s for s in explain_json(cli, "resnet18", "--depth", ALL_LAYERS)["steps"] if s["type"] == "BatchNorm2d"]
    assert bn and all("buffers, not parameters" in s["formulas"][0]["rule"] for s in bn)


def test_conclusions_from_the_trace(cli):
    report = explain_json(cli, "vgg11")
    c = {x["topic"]: x for x in report["conclusions"]}
    assert c["spatial"]["sizes"] == [[224, 224], [112, 112], [56, 56], [28, 28], [14, 14], [7, 7]] and c["spatial"]["halvings"] == 5
    assert c["spatial"]["text"] == "H and W halve 5 times, 224 -> 7"
    assert c["channels"]["channels"] == [1, 64, 128, 256, 512] and c["channels"]["doublings"] == 3
    steps = report["steps"]
    top = max(steps, key=lambda s: s["params"])
    assert c["most_params"]["name"] == top["name"] == "fc" and c["most_params"]["value"] == top["params"]
    assert c["most_macs"]["name"] == max(steps, key=lambda s: s["macs"])["name"]
    assert c["most_activation_bytes"]["name"] == max(steps, key=lambda s: s["activation_bytes"])["name"]
    split = c["conv_vs_linear"]
    deep = explain_json(cli, "vgg11", "--depth", ALL_LAYERS)["steps"]
    for kind, types in (("conv", ("Conv2d",)), ("linear", ("Linear",))):
        assert split[kind]["params"] == sum(s["params"] for s in deep if s["type"] in types)
        assert split[kind]["macs"] == sum(s["macs"] for s in deep if s["type"] in types)
    assert sum(v["params"] for v in (split["conv"], split["linear"], split["other"])) == report["total_params"]


def test_block_receptive_field_grows_window_by_window(cli):
    vgg = {s["name"]: s for s in explain_json(cli, "vgg11")["steps"]}
    block = {f["what"]: f for f in vgg["VGG_2"]["formulas"]}
    assert block["receptive field r"]["text"] == "10 + (3-1)*4 + (3-1)*4 + (2-1)*4" and block["receptive field r"]["value"] == 30
    assert block["jump j"]["text"] == "4*1*1*2" and block["jump j"]["value"] == 8 == vgg["VGG_2"]["receptive_field"]["jump"][0]


def lenet_steps() -> list[list]:
    """LeNet's layers at depth 2 from first principles: [name, type, output shape, params, MACs] (d2l 7.6)."""
    steps, c, hw = [], 1, 28

    def conv(name, out, k=5):
        nonlocal c, hw
        hw = hw - k + 1  # padding 0, stride 1
        steps.append([name, "Conv2d", [1, out, hw, hw], k * k * c * out + out, hw * hw * out * k * k * c])
        c = out

    def layer(name, kind, shape=None):
        nonlocal hw
        hw = hw // 2 if kind == "MaxPool2d" else hw
        steps.append([name, kind, shape or [1, c, hw, hw], 0, 0])

    def linear(name, n_in, n_out):
        steps.append([name, "Linear", [1, n_out], n_in * n_out + n_out, n_in * n_out])

    conv("conv.0", 6), layer("conv.1", "Sigmoid"), layer("conv.2", "MaxPool2d")
    conv("conv.3", 16), layer("conv.4", "Sigmoid"), layer("conv.5", "MaxPool2d")
    layer("fc.0", "Flatten", [1, c * hw * hw])
    linear("fc.1", c * hw * hw, 120), layer("fc.2", "Sigmoid", [1, 120]), linear("fc.3", 120, 84), layer("fc.4", "Sigmoid", [1, 84])
    linear("fc.5", 84, 10)
    return steps


def _summary(rows: list[list[str]]) -> list[list]:
    return [[name, kind, json.loads(shape), int(params.replace(",", "")), int(macs.replace(",", ""))] for name, kind, shape, params, macs, *_ in rows]


def test_table_and_markdown(cli):
    expected = lenet_steps()
    total = sum(step[3] for step in expected)
    assert total == 44_426  # d2l's LeNet
    code, out, err = cli("explain", "lenet", "--depth", "2")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "lenet @ 1x1x28x28: 12 steps (blocks and layers to depth 2)"
    heads = [line for line in lines if re.match(r"^ ?\d+\. ", line)]
    assert [h.split(". ", 1)[1].split(":")[0] for h in heads] == [f"{name} ({kind})" for name, kind, *_ in expected]
    formulas = {line.split("    [")[0].strip() for line in lines if line.startswith("      ")}
    assert {
        "params = 5*5*1*6 + 6 = 156",
        "output H, W = floor((28 + 2*0 - 1*(5-1) - 1)/1) + 1 = 24",
        "MACs = 24*24*6 * 5*5*1 = 86,400",
        "features = 16*4*4 = 256",
        "receptive field r = 6 + (5-1)*2 = 14",  # 5 after conv.0, 6 after the 2x2 pool (jump 2), 6 + 4*2 after conv.3
    } <= formulas
    assert _summary([[c.strip() for c in line.strip("│").split("│")] for line in lines if line.startswith("│")]) == expected
    assert lines[lines.index("Summary") + 1].startswith("┏") and f"Total params: {total:,}" in lines and "Conclusions:" in lines

    code, out, _ = cli("explain", "lenet", "--depth", "2", "--format", "markdown")
    lines = out.splitlines()
    assert code == 0
    assert "   - params: `120*84 + 84 = 10,164` (in\\*out weights + out biases)" in lines
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines if line.startswith("| ")]
    assert rows[0] == ["Name", "Type", "Output shape", "Params", "MACs", "Output bytes", "Receptive field"]
    assert _summary(rows[1:]) == expected
    name, kind, _, most, _ = max(expected, key=lambda step: step[3])
    assert f"- '{name}' ({kind}) holds the most parameters: {most:,} of {total:,} params ({most / total:.1%})" in lines
    assert "**Conclusions**" in lines


@pytest.mark.parametrize(
    "args,code,words",
    [
        (["nosuchnet"], 2, "unknown architecture 'nosuchnet'"),
        (["lenet", "--depth", "0"], 2, "--depth"),
        (["lenet", "--input", "1xtwo"], 2, "is not a whole number"),
        (["lenet", "--input", "1x28x28"], 2, "takes a 4-D input"),
        (["lenet", "--input", "1x1x8x8"], 1, "the smallest input that works is 1x1x16x16"),
        (["lenet", "--format", "html"], 2, "--format"),
    ],
)
def test_bad_input_is_one_sentence(cli, args, code, words):
    got, out, err = cli("explain", *args)
    assert got == code and out == ""
    assert err.startswith("archviz: error: ") and words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_builtin_explain_does_not_import_torch():
    code = (
        "import sys; from typer.testing import CliRunner; from archviz.cli import app; "
        "r = CliRunner().invoke(app, ['explain', 'googlenet', '--depth', '3']); assert r.exit_code == 0, r.output; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_torchvision_convs_have_formulas(cli):
    """A traced torch model: formulas from the modules' attributes (ceil_mode pooling included), numbers from the trace."""
    report = explain_json(cli, "torchvision:googlenet", "--depth", ALL_LAYERS)
    _, out, _ = cli("shapes", "torchvision:googlenet", "--depth", ALL_LAYERS, "--format", "json")
    shapes = json.loads(out)
    convs = [s for s in report["steps"] if s["type"] == "Conv2d" and s["output_shape"] is not None]
    assert len(convs) == sum(b["type"] == "Conv2d" and b["called"] for b in shapes["blocks"]) > 50
    assert all(check_step(s) for s in convs)
    assert all({"params", "MACs"} <= {f["what"] for f in s["formulas"]} for s in convs)
    pools = [s for s in report["steps"] if s["type"] == "MaxPool2d"]
    assert any(f["text"].startswith("ceil(") for s in pools for f in s["formulas"])
    assert all(check_step(s) for s in pools)
    assert report["total_params"] == shapes["total_params"]


def test_unknown_or_misleading_modules_get_shapes_only():
    """A module type archviz has no rule for, padding='same', and a Conv2d whose forward ignores its own stride:
    shapes only where a formula would be wrong, formulas where the attributes hold."""
    from torch import nn

    import archviz

    class Scale(nn.Module):  # no rule in the op table
        def forward(self, x):
            return x * 2

    class Dense(nn.Conv2d):  # says stride 2, runs at stride 1
        def forward(self, x):
            return nn.functional.conv2d(x, self.weight, self.bias, 1, self.padding)

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding="same"), Scale(), Dense(8, 8, 3, stride=2, padding=1))
    steps = {s["name"]: s for s in archviz.explain(net, input_size=(1, 3, 16, 16)).to_dict()["steps"]}
    same, scale, dense = steps["0"], steps["1"], steps["2"]
    assert [f["what"] for f in same["formulas"]][:2] == ["params", "MACs"]  # no output-size formula for "same"
    assert same["formulas"][0]["value"] == same["params"] == 3 * 3 * 3 * 8 + 8
    assert scale["formulas"] == [] and scale["note"] == "no formula (an unknown module type): it keeps the shape"
    assert dense["output_shape"] == [1, 8, 16, 16]
    assert not any(f["what"].startswith("output") for f in dense["formulas"])  # stride 2 would give 8: left out
    macs = [f for f in dense["formulas"] if f["what"] == "MACs"]  # over the output the trace saw: right
    assert macs[0]["text"] == "16*16*8 * 3*3*8" and macs[0]["value"] == dense["macs"] == 16 * 16 * 8 * 9 * 8
    assert "disagrees with the trace" in dense["note"]
    assert dense["formulas"][0] == {"what": "params", "text": "3*3*8*8 + 8", "value": 584, "rule": "k*k*C_in*C_out weights + C_out biases"}


def test_python_api_html_and_dict(cli):
    import archviz

    expl = archviz.explain("lenet", depth=2)
    html = expl._repr_html_()
    assert "<table>" in html and "<ol>" in html and "5*5*1*6 + 6 = 156" in html
    assert not any(ch in html for ch in "┏┃│━") and "<pre>" not in html
    assert "params = 5*5*1*6 + 6 = 156" in str(expl) == repr(expl)
    _, out, _ = cli("explain", "lenet", "--depth", "2", "--format", "json")
    assert expl.to_dict() == json.loads(out)
    assert expl.total_params == 44_426


@pytest.mark.parametrize("args", [["lenet", "--depth", "2"], ["lenet"]])
def test_docs_example_is_the_real_output(cli, args):
    """docs/commands/explain.md shows `archviz explain lenet` (and --depth 2) as it prints today."""
    page = (Path(__file__).parent.parent / "docs" / "commands" / "explain.md").read_text()
    shown = page.split(f"$ archviz explain {' '.join(args)}\n", 1)[1].split("\n```", 1)[0]
    code, out, _ = cli("explain", *args)
    assert code == 0 and shown == out.rstrip("\n")


def test_module_callable_with_a_parameter(cli):
    """`module:callable` with -p: traced on the meta device, formulas from the modules' attributes."""
    report = explain_json(cli, "usermodels:tiny_cnn", "-p", "num_classes=7", "--input", "2x3x20x20")
    steps = {s["name"]: s for s in report["steps"]}
    assert [check_step(steps[n]) for n in ("0", "1", "5")] == [1, 1, 1]
    assert steps["5"]["output_shape"] == [2, 7] and steps["5"]["formulas"][0]["text"] == "8*7 + 7"
    assert steps["0"]["formulas"][2]["text"] == "2*20*20*8 * 3*3*3"  # MACs of a batch of 2
    assert steps["3"]["formulas"] == [] and steps["3"]["note"] == "no formula (a pool layer): input and output shapes only"
