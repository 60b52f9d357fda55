"""Issue 9: any input rank and dtype, several inputs, every output, containers, every torchvision model,
-p values as YAML, and errors that say whose code failed."""

import json
import re
import socket

import pytest
import torch
from torchvision import models

from archviz.arch import load_arch
from archviz.errors import RunError, UsageError
from archviz.params import parse_value
from archviz.shape import InputSpec, parse_input, parse_inputs


def error_line(err: str) -> str:
    """The one error sentence on stderr, without its "archviz: error: " prefix (a "building X ..." sign of life aside)."""
    lines = [line for line in err.strip().splitlines() if not line.endswith(" ...")]
    assert len(lines) == 1 and lines[0].startswith("archviz: error: "), err
    return lines[0].removeprefix("archviz: error: ")


def dot_edges(dot: str) -> set[tuple[str, str, str]]:
    """(tail, head, label) of every edge in DOT text; the label is "" when there is none."""
    return {(a, b, label or "") for a, b, label in re.findall(r'^\s*"([^"]+)" -> "([^"]+)"(?: \[label=" ([^"]*)"\])?;$', dot, re.M)}


# --- the --input grammar --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shape", "dtype"),
    [
        ("1x3x224x224", (1, 3, 224, 224), "float32"),
        ("2x32:int64", (2, 32), "int64"),
        ("4x1x16000", (4, 1, 16000), "float32"),
        ("1x3x16x112x112", (1, 3, 16, 112, 112), "float32"),
        ("8x128x256:bf16", (8, 128, 256), "bfloat16"),
        ("8x128x256:BFloat16", (8, 128, 256), "bfloat16"),
        ("10:long", (10,), "int64"),
        ("2x5:fp16", (2, 5), "float16"),
        ("3x3:bool", (3, 3), "bool"),
    ],
)
def test_input_grammar(text, shape, dtype):
    spec = parse_input(text)
    assert spec == InputSpec(shape, dtype)
    assert parse_input(str(spec)) == spec  # str() writes the same grammar back


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2x32:int46", "unknown dtype 'int46'; did you mean 'int64'"),
        ("2xx32", "'' is not a whole number"),
        ("1x3x-5", "every size must be at least 1, got -5"),
        ("1x0x5", "every size must be at least 1, got 0"),
        ("1x1x4000000000x4000000000", "has 1.6e+19 elements, more than archviz accepts per input (9,007,199,254,740,992 = 2^53)"),
        ("1x1x1x1x1x1x1x1x1", "has 9 dimensions; archviz accepts at most 8"),
    ],
)
def test_bad_input_grammar(text, message):
    with pytest.raises(UsageError, match=None) as info:
        parse_input(text)
    assert message in str(info.value)


def test_huge_input_is_one_sentence_not_cpp_frames(cli):
    code, out, err = cli("shapes", "torchvision:resnet18", "--input", "1x1x4000000000x4000000000")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "more than archviz accepts per input" in err and "Traceback" not in err and "c10" not in err


def test_repeated_inputs_keep_their_order():
    assert parse_inputs(["1x8", "1x6:int32"]) == (InputSpec((1, 8)), InputSpec((1, 6), "int32"))
    assert parse_inputs(None) is None


# --- any rank, any dtype, several inputs, every output ---------------------------------------------


def test_token_ids_through_embedding_and_lstm(cli):
    code, out, err = cli("shapes", "usermodels:TextClassifier", "--input", "2x32:int64", "-f", "json")
    report = json.loads(out)
    assert code == 0, err
    assert report["inputs"] == [{"name": "input", "shape": [2, 32], "dtype": "int64"}]
    assert [(b["name"], b["output_shape"]) for b in report["blocks"]] == [("emb", [2, 32, 16]), ("lstm", [2, 32, 32]), ("head", [2, 2])]
    assert report["output_shape"] == [2, 2] and report["total_params"] == 100 * 16 + 4 * (32 * 16 + 32 * 32 + 2 * 32) + 33 * 2


def test_conv1d_audio_and_3d_transformer_inputs():
    audio = load_arch("usermodels:audio_net").trace(["4x1x16000"])
    assert audio.node("0").output_shape == (4, 8, (16000 - 80) // 16 + 1) and audio.output_shape == (4, 5)
    encoder = load_arch("usermodels:transformer").trace((2, 10, 32))
    assert encoder.output_shape == (2, 10, 32) and encoder.node("layers.1").output_shape == (2, 10, 32)


def test_bf16_input_gives_bf16_outputs():
    trace = load_arch("usermodels:audio_net").trace("2x1x4000:bf16")
    assert trace.inputs[0].dtype == "bfloat16" and trace.outputs[0].dtype == "bfloat16"


def test_two_inputs_and_a_dict_output(cli):
    code, out, err = cli("shapes", "usermodels:TwoInputs", "--input", "2x8", "--input", "2x6", "-f", "json")
    report = json.loads(out)
    assert code == 0, err
    assert report["inputs"] == [{"name": "x", "shape": [2, 8], "dtype": "float32"}, {"name": "y", "shape": [2, 6], "dtype": "float32"}]
    assert report["outputs"] == [{"name": "cls", "shape": [2, 3], "dtype": "float32"}, {"name": "reg", "shape": [2, 1], "dtype": "float32"}]
    assert report["output_shape"] is None  # several outputs: `outputs` has them all
    code, out, _ = cli("shapes", "usermodels:TwoInputs", "--input", "2x8", "--input", "2x6")
    lines = out.splitlines()
    rows = [[c.strip() for c in line.strip("│").split("│")] for line in lines if line.startswith("│")]
    params = {"fx": 8 * 4 + 4, "fy": 6 * 4 + 4, "heads": (4 * 3 + 3) + (4 * 1 + 1)}
    kinds = [("fx", "Linear", "[2, 4]"), ("fy", "Linear", "[2, 4]"), ("heads", "ModuleDict", "-")]  # a ModuleDict has no one output
    assert code == 0 and rows == [[name, kind, shape, str(params[name])] for name, kind, shape in kinds]
    total = sum(params.values())
    assert lines[0] == "usermodels:TwoInputs @ 2x8, 2x6"
    assert lines[-5:] == [
        "Inputs: x 2x8, y 2x6",
        "Outputs: cls 2x3, reg 2x1",
        f"Total params: {total}",
        f"Trainable params: {total}",
        "Non-trainable params: 0",
    ]


def test_keyword_inputs_from_a_dict():
    trace = load_arch("usermodels:TwoInputs").trace({"y": (5, 6), "x": (5, 8)})
    assert [(i.name, i.shape) for i in trace.inputs] == [("y", (5, 6)), ("x", (5, 8))]
    assert [o.shape for o in trace.outputs] == [(5, 3), (5, 1)]


def test_diagram_draws_every_input_and_output(cli):
    code, out, err = cli("diagram", "usermodels:TwoInputs", "--input", "2x8", "--input", "2x6", "-f", "dot", "-o", "-")
    assert code == 0, err
    # fx: 8->4 and fy: 6->4 added, then two heads 4->3 and 4->1; each edge carries its tensor's shape
    assert dot_edges(out) == {
        ("@input:x", "fx", "2×8"),
        ("@input:y", "fy", "2×6"),
        ("fx", ":add", "2×4"),
        ("fy", ":add", "2×4"),
        (":add", "heads", "2×4"),
        ("heads", "@output:cls", "2×3"),
        ("heads", "@output:reg", "2×1"),
    }
    for vertex, text in [
        ("@input:x", "<B>Input</B> x"),
        ("@input:y", "<B>Input</B> y"),
        ("@output:cls", "<B>Output</B> cls"),
        ("@output:reg", "<B>Output</B> reg"),
    ]:
        assert re.search(f'^  "{vertex}" \\[label=<<TABLE[^\\n]*<TD>{text}</TD>', out, re.M), vertex  # drawn, with its own label


def test_tuple_output_of_a_module_list_model():
    trace = load_arch("usermodels:Stack").trace((2, 3))
    assert [(o.name, o.shape) for o in trace.outputs] == [("0", (2, 8)), ("1", (2,))]


def test_wrong_rank_for_a_spec_is_a_usage_error(cli):
    code, _, err = cli("shapes", "lenet", "--input", "1x784")
    assert code == 2 and error_line(err) == "lenet takes a 4-D input such as --input 1x1x28x28, not 1x784 (2-D)."
    code, _, err = cli("shapes", "lenet", "--input", "1x1x28x28:int64")
    assert code == 2 and error_line(err) == "lenet takes one floating-point input (e.g. --input 1x1x28x28), not 1x1x28x28:int64."


def test_channel_hint_keeps_the_rank_and_dtype(cli):
    code, _, err = cli("shapes", "usermodels:audio_net", "--input", "4x2x16000")
    assert code == 1
    assert (
        error_line(err) == "usermodels:audio_net cannot run on input 4x2x16000: layer '0' (Conv1d) expects 1 input channels but gets 2; use --input 4x1x16000."
    )


def test_smallest_input_search_works_on_1d_inputs(cli):
    code, _, err = cli("shapes", "usermodels:audio_net", "--input", "1x1x50")
    assert code == 1 and "the smallest input that works is 1x1x" in err
    smallest = int(err.split("the smallest input that works is 1x1x")[1].split(".")[0])
    # conv 80/16 -> L1, maxpool 4 -> L1 // 4, conv 3 needs >= 3: L1 >= 12, so samples >= 80 + 16 * 11
    assert smallest == 80 + 16 * 11


# --- containers and unused modules -------------------------------------------------------------------


def test_module_list_is_a_block_with_its_children(cli):
    trace = load_arch("usermodels:Stack").trace((2, 3))
    assert [(n.path, n.type, n.called) for n in trace.blocks(1)] == [
        ("scale", "Parameter", False),
        ("stem", "Linear", True),
        ("blocks", "ModuleList", False),
        ("unused", "Linear", False),
    ]
    assert [n.path for n in trace.children("blocks")] == ["blocks.0", "blocks.1", "blocks.2", "blocks.3"]
    assert sum(n.params for n in trace.blocks(1)) == trace.total_params == 8 + 32 + 4 * 72 + 9
    assert sum(n.params for n in trace.blocks(2)) == trace.total_params
    assert trace.node("blocks").flops == 4 * 2 * (2 * 8 * 8) == sum(n.flops for n in trace.children("blocks"))  # a container's FLOPs are its children's
    code, out, _ = cli("shapes", "usermodels:Stack", "--input", "2x3", "-f", "json")
    blocks = json.loads(out)["blocks"]
    assert blocks[2] == {"name": "blocks", "type": "ModuleList", "depth": 1, "output_shape": None, "params": 288, "trainable_params": 288, "called": False}


def test_folding_applies_to_a_module_lists_children(cli):
    code, out, err = cli("diagram", "usermodels:Stack", "--input", "2x3", "--depth", "2", "-f", "dot", "-o", "-")
    assert code == 0, err
    vertices = re.findall(r'^\s*"([^"]+)" \[label=', out, re.M)
    assert vertices == ["@input", "stem", "blocks.0", ":mul", ":sum", "@output:0", "@output:1"]  # blocks.1-3 folded into blocks.0
    folded = re.search(r'"blocks.0" \[label=<(.*)>, fillcolor', out).group(1)
    each = 8 * 8 + 8  # Linear(8, 8) + ReLU
    assert "<B>Sequential × 4</B>" in folded and f"{each} params each" in folded and "blocks.0 – blocks.3" in folded
    total = 3 * 8 + 8 + 4 * each + 8 + (8 * 1 + 1)  # stem, the 4 blocks, scale, and the unused Linear(8, 1): the model holds it
    assert f"input 2×3 · {total} params · " in out
    assert dot_edges(out) >= {("@input", "stem", "2×3"), ("stem", "blocks.0", "2×8"), ("blocks.0", ":mul", "2×8"), ("blocks.0", ":sum", "")}


def test_maxvit_blocks_appear_at_depth_1(cli):
    code, out, _ = cli("shapes", "torchvision:maxvit_t", "-f", "json")
    blocks = {b["name"]: b for b in json.loads(out)["blocks"]}
    assert list(blocks) == ["stem", "blocks", "classifier"]
    assert blocks["blocks"]["type"] == "ModuleList" and blocks["blocks"]["params"] == 30_105_160
    code, out, _ = cli("diagram", "torchvision:maxvit_t", "-f", "dot", "-o", "-")
    assert out.count("[label=<") < 20  # three blocks, input, output (878 vertices before)


def _row_params(model: torch.nn.Module, trace, depth: int) -> list[set[int]]:
    rows = []
    for node in trace.blocks(depth):
        if node.type == "Parameter":
            rows.append({id(model.get_parameter(node.path))})
        else:
            rows.append({id(p) for p in model.get_submodule(node.path).parameters()})
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("name", models.list_models(module=models))
def test_every_classification_model_rows_hold_every_parameter_once(name):
    arch = load_arch(f"torchvision:{name}")
    model = arch.build(device="meta")
    trace = arch.trace()
    rows = _row_params(model, trace, 1)
    every = {id(p) for p in model.parameters()}
    assert sum(n.params for n in trace.blocks(1)) == trace.total_params
    assert sum(len(r) for r in rows) == len(every) and set().union(*rows) == every


# --- every torchvision model, never the network -----------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("archviz tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


DEFAULT_INPUTS = {
    "fcn_resnet50": [(1, 3, 520, 520)],
    "fasterrcnn_resnet50_fpn": [(1, 3, 480, 640)],
    "r3d_18": [(1, 3, 16, 112, 112)],
    "mvit_v2_s": [(1, 3, 16, 224, 224)],
    "raft_small": [(1, 3, 224, 224), (1, 3, 224, 224)],
    "inception_v3": [(1, 3, 299, 299)],
    "quantized_resnet18": [(1, 3, 224, 224)],
}


@pytest.mark.parametrize(("name", "inputs"), DEFAULT_INPUTS.items())
def test_each_family_has_a_sensible_default_input(name, inputs):
    assert [s.shape for s in load_arch(f"torchvision:{name}").inputs] == inputs


@pytest.mark.slow
@pytest.mark.parametrize("name", models.list_models())
def test_every_torchvision_model_builds_without_the_network_and_traces_or_says_why(name, no_network):
    arch = load_arch(f"torchvision:{name}")
    try:
        trace = arch.trace()
    except RunError as exc:  # detection: data-dependent ops
        assert "cannot be traced on the meta device" in str(exc) and "--compute" in str(exc)
        assert models.get_model_builder(name).__module__.startswith("torchvision.models.detection")
        return
    assert trace.total_params > 0 and trace.outputs


def test_detection_names_the_op_that_stopped_the_meta_trace(cli):
    code, _, err = cli("shapes", "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn")
    assert code == 1 and err.count("\n") == 1
    assert "layer 'rpn' (RegionProposalNetwork) calls torch.where(), whose output shape depends on the values" in err and "--compute" in err


@pytest.mark.slow
def test_detection_traces_with_compute(cli):
    code, out, err = cli("shapes", "torchvision:ssdlite320_mobilenet_v3_large", "--compute", "-f", "json")
    report = json.loads(out)
    assert code == 0, err
    assert report["total_params"] == 3_440_060  # torchvision's num_params for SSDlite320
    assert [o["name"] for o in report["outputs"]] == ["0.boxes", "0.scores", "0.labels"]
    assert report["outputs"][2]["dtype"] == "int64"


def test_data_dependent_if_says_so_and_compute_traces_it(cli):
    code, _, err = cli("shapes", "usermodels:DataDependent", "--input", "1x4")
    assert code == 1 and "uses a tensor's value in Python (Tensor.__bool__, e.g. an `if` on a tensor)" in err and "--compute" in err
    code, out, err = cli("shapes", "usermodels:DataDependent", "--input", "1x4", "--compute", "-f", "json")
    assert code == 0, err
    assert json.loads(out)["output_shape"] == [1, 4]


# --- -p values as YAML scalars ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [("None", None), ("null", None), ("~", None), ("true", True), ("False", False), ("3", 3), ("0.5", 0.5), ("[1, 2]", [1, 2]), ("relu", "relu"), ("'3'", "3")],
)
def test_param_values_are_yaml_scalars(raw, value):
    assert parse_value(raw) == value and type(parse_value(raw)) is type(value)


def test_param_values_reach_a_callable_typed(cli):
    code, out, err = cli(
        "shapes", "usermodels:configurable", "-p", "widths=[5, 7]", "-p", "dropout=0.5", "-p", "bias=false", "-p", "norm=true", "-p", "act=gelu",
        "--input", "1x3", "-d", "1", "-f", "json",
    )  # fmt: skip
    assert code == 0, err
    types = [b["type"] for b in json.loads(out)["blocks"]]
    assert types == ["Linear", "LayerNorm", "GELU", "Dropout"] * 2
    assert json.loads(out)["total_params"] == 3 * 5 + 2 * 5 + 5 * 7 + 2 * 7  # no biases


def test_none_reaches_torchvision(cli):
    code, out, err = cli("shapes", "torchvision:googlenet", "-p", "aux_logits=false", "-p", "init_weights=None", "-f", "json")
    assert code == 0, err
    assert json.loads(out)["total_params"] == 6_624_904  # googlenet without its two auxiliary heads


def test_spec_params_parse_as_yaml_too(cli):
    code, out, _ = cli("shapes", "vgg11", "-p", "ratio=8", "-f", "json")
    assert code == 0 and json.loads(out)["total_params"] == 2_018_346
    code, _, err = cli("shapes", "vgg11", "-p", "ratio=[8]")
    assert code == 2 and error_line(err) == "-p ratio='[8]': vgg11's parameter ratio must be a whole number (default 1)."


def test_bad_yaml_value_is_one_sentence(cli):
    code, _, err = cli("shapes", "usermodels:configurable", "-p", "widths=[1, 2")
    assert code == 2 and error_line(err) == (
        "-p 'widths=[1, 2': the value is not valid YAML (expected ',' or ']', but got '<stream end>'); quote text, e.g. -p 'name=\"a: b\"'."
    )


# --- whose code failed ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["usermodels:broken_init"], 1, "usermodels:broken_init raised ValueError: boom while building the model (in its constructor, not in archviz)."),
        (
            ["usermodels:BrokenForward", "-i", "1x4"],
            1,
            "usermodels:BrokenForward cannot run on input 1x4: the forward of BrokenForward raised ValueError: bad forward",
        ),
        (["usermodels:exits_in_init"], 1, "usermodels:exits_in_init called sys.exit(3) while building the model"),
        (["usermodels:ExitsInForward", "-i", "1x4"], 1, "usermodels:ExitsInForward's forward called sys.exit('stop')"),
        (["exits_on_import:anything"], 1, "importing 'exits_on_import' called sys.exit(5)"),
        (["usermodels:tiny_cnn", "-p", "widht=3"], 2, "usermodels:tiny_cnn does not accept the parameters ['widht']"),
    ],
)
def test_user_code_errors_name_the_callable(cli, args, code, message):
    got, out, err = cli("shapes", *args)
    assert got == code and out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_user_prints_go_to_stderr_so_json_stays_pure(cli):
    code, out, err = cli("shapes", "usermodels:Chatty", "--input", "1x4", "-f", "json")
    assert code == 0
    assert json.loads(out)["output_shape"] == [1, 2]
    assert "hello from __init__" in err and "hello from forward" in err


def test_slow_callable_gets_a_sign_of_life(cli, monkeypatch):
    import archviz.arch

    monkeypatch.setattr(archviz.arch, "_signalled", [])
    code, out, err = cli("shapes", "usermodels:slow", "--input", "1x4", "-f", "json")
    assert code == 0 and json.loads(out)["output_shape"] == [1, 2]
    assert "building usermodels:slow ..." in err


def test_debug_shows_the_users_traceback_then_the_sentence(cli, monkeypatch):
    monkeypatch.setenv("ARCHVIZ_DEBUG", "1")
    code, _, err = cli("shapes", "usermodels:BrokenForward", "-i", "1x4")
    assert code == 1
    assert "Traceback (most recent call last)" in err and 'raise ValueError("bad forward")' in err
    assert err.rstrip().splitlines()[-1].startswith("archviz: error: usermodels:BrokenForward cannot run on input 1x4")


def test_several_inputs_get_no_guessed_hint(cli):
    code, _, err = cli("shapes", "usermodels:TwoInputs", "--input", "2x8", "--input", "2x5")
    assert code == 1  # no "smallest input" search, no "use --input" hint: with two inputs neither could be guessed
    assert error_line(err) == "usermodels:TwoInputs cannot run on input 2x8, 2x5: layer 'fy' (Linear) expects 6 input features but gets 5 (from shape [2, 5])."


def test_a_constructor_that_computes_with_tensors_still_builds_weightless():
    """regnet derives its widths with torch ops and .tolist(): not on meta; its weights go to meta as they register."""
    register_parameter = torch.nn.Module.register_parameter
    model = load_arch("torchvision:regnet_x_400mf").build(device="meta")
    assert torch.nn.Module.register_parameter is register_parameter  # the patch is gone
    assert all(t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert sum(p.numel() for p in model.parameters()) == 5_495_976  # torchvision's num_params


def test_video_and_optical_flow_trace_at_their_default_inputs():
    video = load_arch("torchvision:r3d_18").trace()
    assert video.input_shape == (1, 3, 16, 112, 112) and video.output_shape == (1, 400)
    assert video.node("layer4").output_shape == (1, 512, 2, 7, 7)
    flow = load_arch("torchvision:raft_small").trace(["1x3x128x128", "1x3x128x128"])
    assert [i.name for i in flow.inputs] == ["image1", "image2"]
    assert len(flow.outputs) == 12 and {o.shape for o in flow.outputs} == {(1, 2, 128, 128)}  # one flow estimate per refinement step


# --- cost and compare take the same inputs ---------------------------------------------------------


def test_cost_simulates_every_input_at_its_dtype(cli):
    code, out, err = cli("cost", "usermodels:TwoInputs", "-i", "4x8", "-i", "4x6", "-f", "json")
    report = json.loads(out)
    assert code == 0, err
    assert [i["name"] for i in report["inputs"]] == ["x", "y"] and [o["name"] for o in report["outputs"]] == ["cls", "reg"]
    assert report["memory"]["input_bytes"] == (4 * 8 + 4 * 6) * 4 + 4 * 8  # both inputs at fp32, and the int64 labels
    code, out, err = cli("cost", "usermodels:TextClassifier", "-i", "8x32:int64", "--dtype", "bf16", "-f", "json")
    assert code == 0, err
    assert json.loads(out)["memory"]["input_bytes"] == 8 * 32 * 8 + 8 * 8  # token ids stay int64 under bf16 weights
    code, out, _ = cli("cost", "usermodels:TwoInputs", "-i", "4x8", "-i", "4x6")
    lines = out.splitlines()
    macs = 4 * (8 * 4 + 6 * 4 + 4 * 3 + 4 * 1)  # batch 4 through each Linear, in*out MACs an example
    assert code == 0 and lines[0] == "usermodels:TwoInputs @ 4x8, 4x6" and "Input: 4x8, 4x6 -> output 4x3, 4x1" in lines
    assert f"Forward: {macs} MACs = {2 * macs} FLOPs (FLOPs = 2 x MACs)" in lines


def test_cost_budget_scales_every_input():
    from archviz.estimate.report import cost_report

    report = cost_report(load_arch("usermodels:TwoInputs"), ["2x8", "2x6"], budget_bytes=2**20)
    assert report.budget.largest_batch > 2 and report.budget.peak_bytes <= 2**20
    assert report.to_dict()["budget"]["largest_batch"] == report.budget.largest_batch


def test_memory_reads_every_input_from_the_trace():
    """Predicting at another batch rebatches the trace's inputs (every one, with its dtype): the same bytes as tracing at that batch."""
    from archviz.estimate.memory import predict_memory
    from archviz.estimate.settings import StepSettings

    settings = StepSettings.parse("adam", dtype="bf16")
    for name, inputs, later in (("usermodels:TwoInputs", ["2x8", "2x6"], ["5x8", "5x6"]), ("usermodels:TextClassifier", ["2x32:int64"], ["5x32:int64"])):
        arch = load_arch(name)
        rebatched = predict_memory(arch, settings=settings, trace=arch.trace(inputs), batch=5)
        traced = predict_memory(arch, later, settings)
        assert rebatched.input_shape == traced.input_shape == (5, *traced.input_shape[1:])
        assert (rebatched.input_bytes, rebatched.peak_bytes) == (traced.input_bytes, traced.peak_bytes)
    assert traced.input_bytes == 5 * 32 * 8 + 5 * 8  # int64 token ids stay int64 under bf16 weights, and int64 labels


def test_compare_takes_typed_inputs(cli):
    code, out, err = cli("compare", "usermodels:TextClassifier", "usermodels:TextClassifier[embed=32]", "-i", "8x32:int64", "-f", "json")
    rows = json.loads(out)["archs"]
    assert code == 0, err
    assert [r["inputs"] for r in rows] == [[{"name": "input", "shape": [8, 32], "dtype": "int64"}]] * 2
    assert rows[1]["total_params"] - rows[0]["total_params"] == 100 * 16 + 4 * 32 * 16  # wider embedding and LSTM input


def test_cost_rows_of_containers_have_no_output():
    from archviz.estimate.report import cost_report

    blocks = {b["name"]: b for b in cost_report(load_arch("usermodels:Stack"), (4, 3)).to_dict()["blocks"]}
    assert blocks["blocks"]["output_shape"] is None and blocks["blocks"]["activation_bytes"] == 0
    assert blocks["blocks"]["macs"] == 4 * 4 * 8 * 8 and blocks["stem"]["activation_bytes"] == 4 * 8 * 4


class _SkipThroughIdentity(torch.nn.Module):
    """x feeds an Identity branch and a conv branch, which are added."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.skip = torch.nn.ReLU(inplace=True) if inplace else torch.nn.Identity()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.skip(x) + self.conv(x)


def _edges(trace) -> set[tuple[str, str]]:
    return {(src, op.id) for op in trace.ops for src in op.inputs}


def test_identity_returning_its_input_keeps_the_other_readers_of_that_input():
    from archviz.render.dot import to_dot
    from archviz.trace.from_module import trace_module

    trace = trace_module(_SkipThroughIdentity(), (InputSpec((1, 3, 8, 8)),), "skip")
    assert [(op.id, op.type, op.inputs) for op in trace.ops] == [
        ("input", "Input", ()),
        ("skip", "Identity", ("input",)),
        ("conv", "Conv2d", ("input",)),  # not ("skip",): the Identity did not produce x
        (":add", "add", ("skip", "conv")),
        ("output", "Output", (":add",)),
    ]
    dot = to_dot(trace, depth=2)
    assert '"@input" -> "skip"' in dot and '"@input" -> "conv"' in dot and '"skip" -> "conv"' not in dot
    assert '"skip" -> ":add"' in dot and '"conv" -> ":add"' in dot


def test_in_place_layer_still_produces_the_tensor_it_changed():
    from archviz.trace.from_module import trace_module

    trace = trace_module(_SkipThroughIdentity(inplace=True), (InputSpec((1, 3, 8, 8)),), "skip")
    # ReLU(inplace=True) changed x before the conv read it: the conv reads the ReLU's output
    assert _edges(trace) == {("input", "skip"), ("skip", "conv"), ("skip", ":add"), ("conv", ":add"), (":add", "output")}
