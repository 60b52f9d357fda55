"""`archviz shapes`, `list` and `spec` through typer's runner, including every bad-input case."""

import json
import re
import shlex

import pytest
import torch
import yaml

from archviz import zoo


def box_rows(out: str) -> list[list[str]]:
    """The body rows of a terminal box table, each a list of its stripped cells."""
    return [[c.strip() for c in line.strip("│").split("│")] for line in out.splitlines() if line.startswith("│")]


def footer(out: str) -> dict[str, str]:
    """The "Label: text" lines under a table (or "- Label: text" under a Markdown one)."""
    pairs = (line.removeprefix("- ").split(": ", 1) for line in out.splitlines() if ": " in line and not line.startswith(("│", "|")))
    return {label: text for label, text in pairs}


def markdown_rows(out: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in out.splitlines() if line.startswith("| ")]


SEED_VGG = [[1, 64, 112, 112], [1, 128, 56, 56], [1, 256, 28, 28], [1, 512, 14, 14], [1, 512, 7, 7], [1, 10]]


def test_shapes_table_reproduces_the_seed(cli):
    code, out, err = cli("shapes", "googlenet", "--input", "1x1x96x96")
    assert code == 0 and err == ""
    assert out.splitlines()[0] == "googlenet @ 1x1x96x96"
    rows = {name: (kind, shape, int(params.replace(",", ""))) for name, kind, shape, params in box_rows(out)}
    # the seed chapter's shapes; b1 is a 7x7 conv 1->64, the head a linear 1024->10 (weights + biases)
    shapes = {"b1": "[1, 64, 24, 24]", "b2": "[1, 192, 12, 12]", "b3": "[1, 480, 6, 6]", "b4": "[1, 832, 3, 3]", "b5": "[1, 1024]", "head": "[1, 10]"}
    assert {name: shape for name, (_, shape, _) in rows.items()} == shapes
    assert rows["b1"] == ("Sequential", "[1, 64, 24, 24]", 7 * 7 * 1 * 64 + 64) and rows["head"] == ("Linear", "[1, 10]", 1024 * 10 + 10)
    total = sum(params for _, _, params in rows.values())
    assert total == 5_977_530  # the seed's GoogLeNet count
    assert footer(out) == {"Input": "1x1x96x96", "Output": "1x10", "Total params": f"{total:,}", "Trainable params": f"{total:,}", "Non-trainable params": "0"}


def test_shapes_json_contract(cli):
    code, out, _ = cli("shapes", "vgg11", "--format", "json")
    report = json.loads(out)
    assert code == 0
    assert report["arch"] == "vgg11" and report["input_shape"] == [1, 1, 224, 224]
    assert [b["name"] for b in report["blocks"]] == ["VGG_0", "VGG_1", "VGG_2", "VGG_3", "VGG_4", "fc"]
    assert [b["output_shape"] for b in report["blocks"]] == SEED_VGG
    assert all(set(b) >= {"name", "type", "depth", "output_shape", "params"} for b in report["blocks"])
    assert report["total_params"] == report["trainable_params"] == 128_806_154
    assert sum(b["params"] for b in report["blocks"]) == 128_806_154


def test_depth_expands_blocks(cli):
    _, out, _ = cli("shapes", "nin", "--depth", "2", "--format", "json")
    blocks = json.loads(out)["blocks"]
    assert [b["name"] for b in blocks[:7]] == ["0.0", "0.1", "0.2", "0.3", "0.4", "0.5", "1"]
    assert blocks[0]["type"] == "Conv2d" and blocks[0]["output_shape"] == [1, 96, 58, 58]
    assert blocks[6] == {"name": "1", "type": "MaxPool2d", "depth": 1, "output_shape": [1, 96, 28, 28], "params": 0, "trainable_params": 0, "called": True}


def test_csv_and_markdown(cli):
    _, out, _ = cli("shapes", "lenet", "--format", "csv")
    assert out.splitlines() == ["name,type,output_shape,params", "conv,Sequential,1x16x4x4,2572", "fc,Sequential,1x10,41854"]
    conv = (5 * 5 * 1 * 6 + 6) + (5 * 5 * 6 * 16 + 16)  # two 5x5 convs, 1->6->16
    fc = (16 * 4 * 4 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)  # 256-120-84-10
    _, out, _ = cli("shapes", "lenet", "-f", "markdown")
    assert markdown_rows(out) == [
        ["Name", "Type", "Output shape", "Params"],
        ["conv", "Sequential", "[1, 16, 4, 4]", f"{conv:,}"],
        ["fc", "Sequential", "[1, 10]", f"{fc:,}"],
    ]
    assert out.splitlines()[0] == "**lenet @ 1x1x28x28**" and footer(out)["Total params"] == f"{conv + fc:,}"


def test_batch_size_does_not_change_anything_but_the_batch(cli):
    _, small, _ = cli("shapes", "vgg11", "--input", "1x1x224x224", "-f", "json")
    _, big, _ = cli("shapes", "vgg11", "--input", "256x1x224x224", "-f", "json")
    small, big = json.loads(small), json.loads(big)
    assert [b["output_shape"][1:] for b in small["blocks"]] == [b["output_shape"][1:] for b in big["blocks"]]
    assert {b["output_shape"][0] for b in big["blocks"]} == {256}


def test_params_option(cli):
    _, out, _ = cli("shapes", "vgg11", "-p", "ratio=8", "-p", "num_classes=3", "-f", "json")
    report = json.loads(out)
    assert report["blocks"][0]["output_shape"] == [1, 8, 112, 112] and report["blocks"][-1]["output_shape"] == [1, 3]


def test_list(cli):
    code, out, _ = cli("list", "--format", "json")
    rows = json.loads(out)
    assert code == 0
    assert [r["name"] for r in rows][:7] == ["lenet", "lenet_bn", "alexnet", "vgg11", "nin", "googlenet", "resnet18"]
    assert [r["name"] for r in rows] == zoo.list_models()
    assert rows[0]["default_input"] == [1, 1, 28, 28] and rows[0]["params"] == 44_426
    code, out, _ = cli("list")
    table = box_rows(out)
    assert code == 0 and [r[0] for r in table] == zoo.list_models()
    assert [[name, shape, int(params.replace(",", ""))] for name, shape, params, _ in table] == [
        [r["name"], "x".join(map(str, r["default_input"])), r["params"]] for r in rows
    ]
    assert table[5][:3] == ["googlenet", "1x1x96x96", "5,977,530"]


def test_spec_prints_yaml_that_loads_back(cli, tmp_path):
    code, out, _ = cli("spec", "vgg11")
    spec = yaml.safe_load(out)
    assert code == 0 and spec["name"] == "vgg11" and spec["default_input"] == "1x1x224x224"
    # the seed's VGG-11: (1, 64), (1, 128), (2, 256), (2, 512), (2, 512), widths divided by ratio
    blocks = [layer["vgg_block"] for layer in spec["layers"] if "vgg_block" in layer]
    assert blocks == [
        {"name": f"VGG_{i}", "convs": convs, "out": f"{width} // ratio"} for i, (convs, width) in enumerate([(1, 64), (1, 128), (2, 256), (2, 512), (2, 512)])
    ]
    path = tmp_path / "mine.yaml"
    _, out, _ = cli("spec", "vgg11", "-p", "ratio=4")
    path.write_text(out)
    _, shown, _ = cli("shapes", str(path), "-f", "json")
    assert json.loads(shown)["blocks"][0]["output_shape"] == [1, 16, 112, 112]


def examples(help_text: str) -> list[list[str]]:
    lines = help_text.split("Examples:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return [shlex.split(line.split(" > ")[0].split(" && ")[0]) for line in lines]


def test_help_shows_examples(cli):
    code, out, _ = cli("--help")
    commands = {e[1] for e in examples(out)}
    assert code == 0 and len(commands) >= 6  # most commands shown, each one that exists
    assert all(cli(command, "--help")[0] == 0 for command in commands)
    assert cli("no-such-command", "--help")[0] == 2
    for command in ("shapes", "list", "spec"):
        code, out, _ = cli(command, "--help")
        shown = examples(out)
        assert code == 0 and len(shown) >= 2 and all(e[:2] == ["archviz", command] for e in shown)
        for option in {a.split("=")[0] for e in shown for a in e if a.startswith("-")}:
            assert re.search(rf"(^|[ ,]){re.escape(option)}[ ,\n]", out, re.M), f"{command} example uses {option}, which its help does not list"


def test_torchvision_model(cli):
    code, out, _ = cli("shapes", "torchvision:resnet18", "-f", "json")
    report = json.loads(out)
    assert code == 0 and report["input_shape"] == [1, 3, 224, 224]
    assert report["total_params"] == 11_689_512  # torchvision's num_params metadata
    assert report["blocks"][-1] == {
        "name": "fc",
        "type": "Linear",
        "depth": 1,
        "output_shape": [1, 1000],
        "params": 513_000,
        "trainable_params": 513_000,
        "called": True,
    }
    code, out, _ = cli("shapes", "torchvision:resnet18", "-p", "num_classes=10", "-f", "json")
    assert json.loads(out)["output_shape"] == [1, 10]


def test_torchvision_regnet_computes_in_its_constructor(cli):
    code, out, _ = cli("shapes", "torchvision:regnet_y_400mf", "-f", "json")
    assert code == 0 and json.loads(out)["total_params"] == 4_344_144


def test_user_callable_is_never_mutated(cli):
    import usermodels

    model = usermodels.SHARED
    before = {k: v.clone() for k, v in model.state_dict().items()}
    code, out, _ = cli("shapes", "usermodels:shared_model", "--input", "4x3x16x16", "-f", "json")
    assert code == 0 and json.loads(out)["output_shape"] == [4, 10]
    assert model.training and all(not t.is_meta for t in model.state_dict().values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats untouched too
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert not torch.nn.modules.module._global_forward_hooks


def test_user_callable_with_params(cli):
    code, out, _ = cli("shapes", "usermodels:tiny_cnn", "-p", "num_classes=4", "--input", "1x3x8x8", "-f", "json")
    report = json.loads(out)
    assert code == 0 and report["output_shape"] == [1, 4]
    assert report["total_params"] == 224 + 16 + 36


BAD_INPUTS = [
    (["shapes", "googlenet", "--input", "1x1x96"], 2, "googlenet takes a 4-D input such as --input 1x1x96x96, not 1x1x96 (3-D)"),
    (["shapes", "googlenet", "--input", "axbxcxd"], 2, "'a' is not a whole number"),
    (["shapes", "googlenet", "--input", "0x1x96x96"], 2, "every size must be at least 1, got 0"),
    (["shapes", "googlenet", "--input", "1x1x-96x96"], 2, "every size must be at least 1, got -96"),
    (["shapes", "googlenet", "--input", ""], 2, "--input '' is empty; write it as SHAPE[:DTYPE]"),
    (["shapes", "googlnet"], 2, "unknown architecture 'googlnet'; did you mean 'googlenet'"),
    (["shapes", "torchvision:resnet19"], 2, "torchvision has no model 'resnet19'; did you mean 'resnet18'"),
    (["shapes", "usermodels:NOT_CALLABLE"], 2, "'usermodels:NOT_CALLABLE' is a int, not a callable"),
    (["shapes", "usermodels:not_a_module"], 2, "usermodels:not_a_module returned a str, not a torch.nn.Module"),
    (["shapes", "usermodels:nothing"], 2, "module 'usermodels' has no attribute 'nothing'"),
    (["shapes", "no_such_module_xyz:f"], 2, "cannot import module 'no_such_module_xyz'"),
    (["shapes", "lenet", "--input", "1x3x28x28"], 1, "its first layer 'conv.0' (Conv2d) expects 1 input channel(s) but the input has 3"),
    (["shapes", "torchvision:resnet18", "--input", "1x1x224x224"], 1, "layer 'conv1' (Conv2d) expects 3 input channels but gets 1"),
    (
        ["shapes", "lenet", "--input", "1x1x8x8"],
        1,
        "layer 'conv.3' (Conv2d) gets a 2-pixel side, too small for its kernel 5 (padding 0); the smallest input that works is 1x1x16x16",
    ),
    (["shapes", "torchvision:vgg11", "--input", "1x3x20x20"], 1, "layer 'features.20' (MaxPool2d) gets [1, 512, 1, 1], too small"),
    (["shapes", "missing.yaml"], 2, "spec file 'missing.yaml' does not exist"),
    (["shapes", "lenet", "-p", "ratio=2"], 2, "lenet has no parameter 'ratio'"),
    (["shapes", "vgg11", "-p", "ratio=two"], 2, "vgg11's parameter ratio must be a whole number"),
    (["shapes", "lenet", "--depth", "0"], 2, "Invalid value for '--depth'"),
    (["shapes", "lenet", "--depth", "x"], 2, "Invalid value for '--depth'"),
    (["shapes", "lenet", "--format", "xml"], 2, "'xml' is not one of 'table', 'json', 'csv', 'markdown'; see `archviz shapes --help`."),
    (["shapes"], 2, "archviz: error: Missing argument 'ARCH'; see `archviz shapes --help`."),
    (["shapes", "lenet", "--fromat", "json"], 2, "No such option: --fromat (Possible options: --format)"),
    (["shpes", "lenet"], 2, "No such command 'shpes'"),
]


@pytest.mark.parametrize(("args", "code", "message"), BAD_INPUTS, ids=[" ".join(a[1:]) for a, _, _ in BAD_INPUTS])
def test_bad_input_is_one_sentence_and_an_exit_code(cli, args, code, message):
    got, out, err = cli(*args)
    assert got == code
    assert message in err
    assert "Traceback" not in err + out
    if code == 1 or "archviz: error:" in err:
        assert err.count("\n") == 1 and err.startswith("archviz: error: ")


def test_spec_file_errors_through_the_cli(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nlayers:\n  - conv: {out: 6, kernel: 5}\n  - maxpol: {kernel: 2}\n")
    code, _, err = cli("shapes", str(bad))
    sentence, known = err.removesuffix(")\n").split(" (known ops: ")
    assert code == 2 and sentence == f"archviz: error: {bad}:4: unknown op 'maxpol'; did you mean 'maxpool' or 'avgpool' or 'adaptive_maxpool'?"
    assert known.split(", ") == sorted(known.split(", ")) and {"conv", "maxpool", "linear"} <= set(known.split(", "))
    bad.write_text("name: bad\nlayers:\n  - conv: {out: 6, kernel: 5\n")
    code, _, err = cli("shapes", str(bad))
    expected = f"{bad}:3: not valid YAML (while parsing a flow mapping: expected ',' or '}}', but got '<stream end>'); check indentation and brackets there."
    assert code == 2 and err == f"archviz: error: {expected}\n"
    bad.write_text("name: bad\nlayers:\n  - conv: {out: 6, kernel: true}\n")
    code, _, err = cli("shapes", str(bad))
    expected = f"{bad}:3: field 'kernel' of 'conv' must be a whole number >= 1 or a list of one to three (one per spatial axis), e.g. 3 or [3, 5]"
    assert code == 2 and err == f"archviz: error: {expected}\n"
    assert bad.read_text() == "name: bad\nlayers:\n  - conv: {out: 6, kernel: true}\n"  # never rewritten


def test_residual_shape_mismatch_is_explained():
    from archviz.errors import RunError
    from archviz.spec import parse_spec, resolve
    from archviz.trace.from_spec import trace_spec

    text = "name: r\ndefault_input: 1x1x8x8\nlayers:\n  - basic_block: {name: blk, out: 4, stride: 2}\n"
    resolved = resolve(parse_spec(text))
    with pytest.raises(
        RunError,
        match=r"residual block 'blk' adds shapes that differ: its layers give \[1, 4, 4, 4\] but the shortcut gives \[1, 1, 8, 8\] \(set projection: true on the basic_block\)",
    ):
        trace_spec(resolved, (1, 1, 8, 8))


def test_trace_never_allocates_real_tensors():
    """A 256x3x224x224 torchvision VGG traces on meta: no 147 MiB input, no 507 MiB of weights.

    In a fresh process (a high-water mark never grows after a heavier earlier test), after a
    batch-1 trace has paid for the meta machinery, the batch-256 trace must not raise the peak RSS.
    """
    import subprocess
    import sys

    probe = (
        "import resource, json\n"
        "from archviz.arch import load_arch\n"
        "arch = load_arch('torchvision:vgg11')\n"
        "arch.trace((1, 3, 224, 224))\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "trace = arch.trace((256, 3, 224, 224))\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps([list(trace.output_shape), trace.total_params, (after - before) / 1024]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    shape, params, grown_mib = json.loads(done.stdout.strip().splitlines()[-1])
    assert shape == [256, 1000] and params == 132_863_336
    assert grown_mib < 100  # real weights alone would be 507 MiB, a real input 147 MiB
