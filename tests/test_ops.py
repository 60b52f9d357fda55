"""The op table: every op's fields, shapes, params, FLOPs and torch module, and the errors users see."""

import textwrap

import pytest

from archviz.errors import RunError, UsageError
from archviz.spec import parse_spec, resolve
from archviz.trace.from_spec import trace_spec


def spec(layers: str, default_input: str = "1x1x28x28", params: str = "") -> str:
    head = f"name: t\ndefault_input: {default_input}\n"
    if params:
        head += f"params: {{{params}}}\n"
    return head + "layers:\n" + textwrap.indent(textwrap.dedent(layers), "  ")


def trace_of(layers: str, default_input: str = "1x1x28x28", params: str = "", overrides=None):
    resolved = resolve(parse_spec(spec(layers, default_input, params), source="net.yaml"), overrides)
    return trace_spec(resolved, resolved.default_input)


def error_of(layers: str, default_input: str = "1x1x28x28", params: str = "", overrides=None) -> str:
    with pytest.raises((UsageError, RunError)) as info:
        trace_of(layers, default_input, params, overrides)
    return str(info.value)


# --- issue 11: zero kernels and strides are refused when the spec is read ------------


@pytest.mark.parametrize(
    ("layer", "field"),
    [
        ("conv: {out: 6, kernel: 0}", "kernel"),
        ("conv: {out: 6, kernel: 3, stride: 0}", "stride"),
        ("conv: {out: 6, kernel: [3, 0]}", "kernel"),
        ("conv: {out: 6, kernel: 3, dilation: 0}", "dilation"),
        ("maxpool: {kernel: 0}", "kernel"),
        ("avgpool: {kernel: 2, stride: 0}", "stride"),
    ],
)
def test_zero_kernel_or_stride_is_one_sentence_at_load_time(layer, field):
    op = layer.split(":")[0]
    message = error_of(f"- {layer}\n")
    assert message.startswith(f"net.yaml:4: field {field!r} of {op!r} must be a whole number >= 1")
    assert message.count("\n") == 0


def test_zero_kernel_from_an_expression_is_refused_when_resolved():
    message = error_of("- maxpool: {kernel: k}\n", params="k: 2", overrides=["k=0"])
    assert message == "net.yaml:5: field 'kernel' of 'maxpool' evaluates to 0; it must be a whole number >= 1."


def test_huge_dilation_is_blamed_on_the_dilation():
    message = error_of("- conv: {out: 6, kernel: 3, dilation: 100}\n")
    assert "too small for its kernel 3 at dilation 100, which spans 201 pixels" in message
    assert "the smallest input that works is 1x1x201x201" in message


def test_relu6_for_mobilenet():
    trace = trace_of("- conv: {out: 6, kernel: 3, act: relu6}\n")
    assert [n.type for n in trace.nodes[1:]] == ["Conv2d", "ReLU6"]


# --- every op: the spec trace equals the module tracer and a real forward -------------

import torch  # noqa: E402
from forward_shapes import real_output_shapes  # noqa: E402

from archviz.build import build  # noqa: E402
from archviz.estimate.flops import uncounted_ops  # noqa: E402
from archviz.estimate.receptive import receptive_fields, unknown_ops  # noqa: E402
from archviz.spec import ops as O  # noqa: E402
from archviz.trace.from_module import trace_module  # noqa: E402

layer_kind = O.layer_kind

# One small net per op and rank; the second element is the input shape.
NETS = {
    "conv1d": ("- conv: {out: 4, kernel: 3, stride: 2, padding: 1, dilation: 2, act: relu6}\n", "2x2x33"),
    "conv3d": ("- conv: {out: 4, kernel: [3, 1, 3], stride: [1, 2, 2], groups: 2, norm: batch}\n", "2x2x5x6x7"),
    "convtranspose2d": ("- convtranspose: {out: 3, kernel: 4, stride: 2, padding: 1, output_padding: 1, act: relu}\n", "2x2x7x9"),
    "convtranspose1d": ("- convtranspose: {out: 3, kernel: 3, stride: 3, groups: 1, bias: false}\n", "2x2x10"),
    "pool1d": ("- maxpool: {kernel: 3, stride: 2, padding: 1}\n- avgpool: {kernel: 2}\n- gap\n- flatten\n", "2x3x20"),
    "pool3d": ("- maxpool: {kernel: 2}\n- avgpool: {kernel: [1, 2, 2]}\n- gap\n", "2x3x4x8x8"),
    "upsample": ("- upsample: {scale: 2}\n- upsample: {size: [9, 20], mode: bilinear}\n- upsample: {scale: [1, 2]}\n", "2x3x4x5"),
    "upsample1d": ("- upsample: {scale: 3, mode: linear}\n", "2x3x4"),
    "pixelshuffle": ("- conv: {out: 8, kernel: 1}\n- pixelshuffle: {factor: 2}\n", "2x3x4x5"),
    "norms": ("- layernorm\n- groupnorm: {groups: 2}\n- lrn: {size: 3, alpha: 0.001}\n- batchnorm\n- identity\n", "2x4x6x6"),
    "layernorm_last": ("- flatten\n- linear: {out: 8}\n- layernorm: {dims: 1}\n- batchnorm\n", "2x3x4x4"),
    "se_gate": (
        "- conv: {out: 8, kernel: 3, padding: 1}\n"
        "- multiply:\n    branches:\n      - []\n      - [gap, {conv: {out: 2, kernel: 1, act: relu}}, {conv: {out: 8, kernel: 1, act: sigmoid}}]\n",
        "2x3x8x8",
    ),
    "add3": ("- add:\n    branches:\n      - [{conv: {out: 3, kernel: 3, padding: 1}}]\n      - []\n      - [identity]\n", "2x3x8x8"),
    "concat_empty": ("- concat:\n    branches:\n      - []\n      - [{conv: {out: 4, kernel: 1}}]\n", "2x3x8x8"),
    # issue 19: channel split and shuffle, ceil_mode, padding: same/valid, adaptive pooling to N, `in`
    "split_shuffle": (
        "- conv: {out: 8, kernel: 1}\n"
        "- split:\n    branches:\n      - []\n      - [{conv: {out: in, kernel: 3, padding: 1, groups: in}}, {conv: {out: in * 2, kernel: 1}}]\n"
        "- shuffle: {groups: 3}\n",
        "2x3x8x8",
    ),
    "split3_empty": ("- split:\n    branches:\n      - []\n      - [identity]\n      - []\n- shuffle\n", "2x6x5x5"),
    "ceil_mode": ("- maxpool: {kernel: 3, stride: 2, ceil_mode: true}\n- avgpool: {kernel: 2, ceil_mode: true, padding: 1}\n", "2x3x225x225"),
    "ceil_mode1d": ("- maxpool: {kernel: 2, ceil_mode: true}\n", "2x3x9"),
    "padding_same": (
        "- conv: {out: 4, kernel: 4, padding: same}\n- conv: {out: 4, kernel: [3, 5], padding: same, dilation: 2}\n- conv: {out: 2, kernel: 3, padding: valid}\n",
        "2x3x9x10",
    ),
    "adaptive": ("- adaptive_avgpool: {size: [3, 5]}\n- adaptive_maxpool: {size: 2}\n- adaptive_avgpool: {size: 7}\n", "2x3x13x11"),
    "adaptive1d": ("- adaptive_maxpool: {size: 5}\n- adaptive_avgpool: {size: 4}\n", "2x3x17"),
    "in_mobilenet": (
        "- conv: {out: in * 6, kernel: 1, bias: false, norm: batch, act: relu6}\n"
        "- conv: {out: in, kernel: 3, padding: 1, groups: in, bias: false, norm: batch, act: relu6}\n"
        "- conv: {out: 'max(8, in // 4)', kernel: 1, bias: in > 100}\n"
        "- flatten\n- linear: {out: in // 8}\n",
        "2x4x6x6",
    ),
    "unet_step": (
        "- conv: {out: 4, kernel: 3, padding: 1, act: relu}\n"
        "- concat:\n    branches:\n      - []\n"
        "      - [{maxpool: {kernel: 2}}, {conv: {out: 8, kernel: 3, padding: 1}}, {upsample: {scale: 2}}]\n"
        "      - [{maxpool: {kernel: 2}}, {convtranspose: {out: 2, kernel: 2, stride: 2}}]\n",
        "2x1x16x16",
    ),
}


def _resolved(layers: str, shape: str):
    channels = shape.split("x")[1]
    return resolve(parse_spec(spec(layers, shape, f"in_channels: {channels}"), source="net.yaml"))


@pytest.mark.parametrize("name", NETS)
def test_spec_trace_equals_module_trace_and_real_forward(name):
    layers, shape = NETS[name]
    resolved = _resolved(layers, shape)
    input_shape = resolved.default_input
    trace = trace_spec(resolved, input_shape, name)
    assert trace == trace_module(build(resolved, input_shape, device="meta"), input_shape, name)
    model = build(resolved, input_shape).eval()
    Y, seen = real_output_shapes(model, torch.randn(input_shape))
    assert tuple(Y.shape) == trace.output_shape
    assert {n.path: n.output_shape for n in trace.nodes} == seen
    assert trace.total_params == sum(p.numel() for p in model.parameters())
    assert uncounted_ops(trace) == []
    # `archviz spec` writes it back in the same language
    from archviz.spec import dump_spec

    assert parse_spec(dump_spec(resolved.spec)).layers == resolved.spec.layers


def test_conv1d_by_hand():
    trace = trace_spec(_resolved(*NETS["conv1d"]), (2, 2, 33))
    conv = trace.node("0")
    # (33 + 2*1 - 2*(3-1) - 1) // 2 + 1 = 16
    assert conv.type == "Conv1d" and conv.output_shape == (2, 4, 16)
    assert conv.attrs["kernel_size"] == (3,) and conv.params == 4 * 2 * 3 + 4
    assert conv.flops == 2 * 2 * 4 * 16 * 2 * 3
    assert trace.node("1").type == "ReLU6"
    rf = receptive_fields(trace)["0"]
    assert rf.size == (5,) and rf.jump == (2,)


def test_convtranspose_doubles_and_counts_like_the_flop_counter():
    trace = trace_spec(_resolved(*NETS["convtranspose2d"]), (2, 2, 7, 9))
    node = trace.node("0")
    # (7-1)*2 - 2 + 3 + 1 + 1 = 15; (9-1)*2 - 2 + 3 + 1 + 1 = 19
    assert node.type == "ConvTranspose2d" and node.output_shape == (2, 3, 15, 19)
    assert node.params == 2 * 3 * 16 + 3
    assert node.flops == 2 * 2 * 2 * 7 * 9 * 3 * 16


def test_unet_step_receptive_fields_through_upsample_and_convtranspose():
    trace = trace_spec(_resolved(*NETS["unet_step"]), (1, 1, 16, 16))
    assert trace.output_shape == (1, 4 + 8 + 2, 16, 16)
    fields = receptive_fields(trace)
    # conv 3 -> 3; pool 2 -> 4 (jump 2); conv 3 -> 8; nearest x2 -> 8, jump back to 1
    assert fields["2.p2.2"].size == (8, 8) and fields["2.p2.2"].jump == (1, 1)
    # pool 2 -> 4 (jump 2); transposed 2, stride 2: (2-1)//2 = 0 more -> 4, jump 1
    assert fields["2.p3.1"].size == (4, 4) and fields["2.p3.1"].jump == (1, 1)
    assert unknown_ops(trace) == []


def test_se_gate_broadcasts_and_multiply_mismatch_names_the_line():
    trace = trace_spec(_resolved(*NETS["se_gate"]), (2, 3, 8, 8))
    mul = next(op for op in trace.ops if op.type == "mul")
    assert mul.inputs == ("0", "1.p2.4") and mul.output_shape == (2, 8, 8, 8)
    message = error_of("- multiply:\n    branches:\n      - []\n      - [{conv: {out: 2, kernel: 1}}]\n", "1x3x8x8", "in_channels: 3")
    assert message.startswith("net.yaml:5: block '0' cannot multiply its branches: p1..p1 give [1, 3, 8, 8] but p2 gives [1, 2, 8, 8]")


def test_new_ops_are_in_the_table_with_kinds_and_flop_rules():
    assert {"add", "multiply", "identity", "upsample", "convtranspose", "layernorm", "groupnorm", "lrn"} <= set(O.OPS)
    assert layer_kind("module", "ConvTranspose2d") == "conv"
    assert layer_kind("module", "LocalResponseNorm") == "norm"
    assert layer_kind("module", "Conv3d") == "conv" and layer_kind("module", "MaxPool1d") == "pool"
    assert layer_kind("function", "mul") == "merge"
    assert layer_kind("module", "SomethingElse") == "other"
    assert layer_kind("module", "LayerNorm2d") == "norm" and layer_kind("module", "Conv2dSame") == "conv"
    for op in O.OPS.values():  # every primitive's torch classes have a diagram kind and a FLOP rule
        for name in op.torch:
            assert O.TORCH_TYPES[name].flops in (O.COUNTED, O.ZERO)


@pytest.mark.parametrize(
    ("layers", "shape", "expected"),
    [
        ("- flatten\n- conv: {out: 4, kernel: 3}\n", "1x1x8x8", "net.yaml:6: layer '1' (Conv1d) needs a 3-, 4- or 5-D input"),
        (
            "- conv: {out: 4, kernel: [3, 3]}\n",
            "1x1x16",
            "net.yaml:5: layer '0' (Conv1d) has kernel [3, 3] with 2 entries but its NxCxL input has 1 spatial axis",
        ),
        ("- upsample: {scale: 2, size: 4}\n", "1x1x8x8", "needs exactly one of `scale`"),
        ("- upsample: {scale: 2, mode: bilinear}\n", "1x1x8", "has mode 'bilinear', which needs a NxCxHxW input; use mode: linear"),
        ("- groupnorm: {groups: 3}\n", "1x4x8x8", "has groups=3, which must divide its 4 channels"),
        ("- convtranspose: {out: 2, kernel: 3, stride: 2, output_padding: 2}\n", "1x1x8x8", "output_padding 2, which must be smaller than its stride 2"),
    ],
)
def test_op_errors_are_one_sentence_with_file_and_line(layers, shape, expected):
    channels = shape.split("x")[1]
    message = error_of(layers, shape, f"in_channels: {channels}")
    assert expected in message and "\n" not in message


# --- hints that lead to the right fix (issue 10, deliverable 6) ----------------------


def test_plain_residual_channel_mismatch_says_which_shortcut_to_add():
    message = error_of("- residual:\n    name: res\n    layers:\n      - conv: {out: 8, kernel: 3, stride: 2, padding: 1}\n", "1x3x16x16", "in_channels: 3")
    assert message == (
        "net.yaml:5: residual block 'res' adds shapes that differ: its layers give [1, 8, 8, 8] but the shortcut gives [1, 3, 16, 16]; "
        "add a shortcut with a 1x1 conv to 8 channels and stride 2, e.g. `shortcut: [{conv: {out: 8, kernel: 1, stride: 2}}]`."
    )
    assert "projection" not in message  # a basic_block-only field


def test_the_suggested_shortcut_works():
    layers = "- residual:\n    layers:\n      - conv: {out: 8, kernel: 3, stride: 2, padding: 1}\n    shortcut: [{conv: {out: 8, kernel: 1, stride: 2}}]\n"
    assert trace_of(layers, "1x3x15x15", "in_channels: 3").output_shape == (1, 8, 8, 8)


def test_basic_block_mismatch_still_suggests_projection():
    message = error_of("- basic_block: {name: blk, out: 4, stride: 2}\n", "1x1x8x8")
    assert message.endswith("(set projection: true on the basic_block).")


def test_concat_mismatch_names_the_spec_line():
    layers = "- conv: {out: 4, kernel: 3}\n- concat:\n    name: mix\n    branches:\n      - [{conv: {out: 2, kernel: 1}}]\n      - [{maxpool: {kernel: 2}}]\n"
    message = error_of(layers)
    assert message == (
        "net.yaml:5: block 'mix' cannot concatenate its branches: p1 gives [1, 2, 26, 26] but p2 gives [1, 4, 13, 13]; all but the channel size must agree."
    )


def test_linear_on_a_4d_tensor_warns_and_suggests_flatten(cli, tmp_path):
    net = tmp_path / "noflat.yaml"
    net.write_text(spec("- conv: {out: 6, kernel: 5, padding: 2, act: relu}\n- linear: {out: num_classes}\n"))
    code, out, err = cli("shapes", str(net), "--format", "json")
    assert code == 0
    import json

    assert json.loads(out)["output_shape"] == [1, 6, 28, 10]  # stdout stays pure JSON
    assert err == (
        f"archviz: warning: {net}:5: layer '2' (Linear) gets a 4-D input [1, 6, 28, 28] and acts on its last axis only, "
        "giving [1, 6, 28, 10]; put a `flatten` before it to feed it all 4704 features\n"
    )
    with pytest.warns(UserWarning, match="put a `flatten` before it"):
        trace_of("- linear: {out: 10}\n")
    # after a flatten there is nothing to say
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trace_of("- flatten\n- linear: {out: 10}\n")


AUDIO = "- conv: {out: 8, kernel: 80, stride: 16, act: relu}\n- maxpool: {kernel: 4}\n- conv: {out: 16, kernel: 3}\n- gap\n- flatten\n- linear: {out: num_classes}\n"


def test_conv1d_audio_net_with_a_1d_default_input(cli, tmp_path):
    net = tmp_path / "audio.yaml"
    net.write_text(spec(AUDIO, "1x1x16000"))
    code, out, err = cli("shapes", str(net), "--depth", "1", "--format", "json")
    assert code == 0, err
    import json

    report = json.loads(out)
    assert report["input_shape"] == [1, 1, 16000] and report["output_shape"] == [1, 10]
    # (16000 - 80) // 16 + 1 = 996 -> pool 4: 249 -> conv 3: 247
    assert [b["output_shape"] for b in report["blocks"]][:5] == [[1, 8, 996], [1, 8, 996], [1, 8, 249], [1, 16, 247], [1, 16, 1]]


def test_a_1d_net_too_small_gets_a_1d_smallest_input():
    resolved = resolve(parse_spec(spec(AUDIO, "1x1x16000"), source="net.yaml"))
    with pytest.raises(RunError) as info:
        trace_spec(resolved, (1, 1, 100))
    message = str(info.value)
    # conv 80/16 then pool 4 then conv 3: needs (3 * 4 - 1) * 16 + 80 = 256 samples at least
    assert message.endswith("the smallest input that works is 1x1x256.")
    assert "128x128" not in message
    assert trace_spec(resolved, (1, 1, 256)).output_shape == (1, 10)


@pytest.mark.parametrize("bad", ["16000", "1x1x2x2x2x2", "1x0x16"])
def test_default_input_of_any_rank_but_not_any_string(bad):
    message = error_of("- flatten\n", bad)
    assert "must be NxC, NxCxL, NxCxHxW or NxCxDxHxW" in message or "channels but in_channels" in message


def test_diagram_labels_of_the_new_ops():
    trace = trace_spec(_resolved(*NETS["upsample"]), (2, 3, 4, 5))
    assert [O.label(n.type, n.attrs) for n in trace.nodes[1:]] == ["\u00d72 nearest", "\u2192 9\u00d720 bilinear", "\u00d71\u00d72 nearest"]
    trace = trace_spec(_resolved(*NETS["norms"]), (2, 4, 6, 6))
    assert [O.label(n.type, n.attrs) for n in trace.nodes[1:4]] == ["over 4\u00d76\u00d76", "4 ch \u00b7 2 groups", "size 3"]


def test_labels_merge_symbols_and_channel_reads_come_from_the_table():
    """Issue 18: a layer's diagram label, a merge's symbol and which ops check in_channels are fields of the op entries."""
    import torch.nn as nn

    from archviz.trace.from_module import module_attrs

    class Smoother(nn.Conv2d):  # a subclass whose name is no known one: its base class's entry labels it
        pass

    attrs = module_attrs(Smoother(3, 8, 3, stride=2, padding=1, groups=1))
    assert O.label("Smoother", attrs) == "3\u21928 \u00b7 3\u00d73 s2 p1" == O.label("Conv2d", attrs)
    assert O.label("Dropout2d", {"p": 0.25}) == "p=0.25" and O.label("StochasticDepth", {"p": 0.25}) == ""
    assert O.label("ReLU", {}) == "" and O.label("Unknown", {}) == ""
    assert [O.FUNCTIONS[f].symbol for f in ("cat", "add", "sub", "mul", "div", "stack", "concatenate")] == ["concat", "+", "\u2212", "\u00d7", "\u00f7", "", ""]
    assert {name for name, op in O.OPS.items() if op.reads_channels} == {"conv", "convtranspose", "batchnorm", "groupnorm"}


# --- issue 19: the ops ShuffleNetV2, SqueezeNet and EfficientNet-style specs need ------


def test_new_ops_have_docs_and_field_docs():
    """The docs site builds its op reference from the table: every new op and field is described."""
    for name in ("split", "shuffle", "adaptive_avgpool", "adaptive_maxpool"):
        assert O.OPS[name].doc
    assert O.OPS["maxpool"].fields["ceil_mode"].doc and O.OPS["conv"].fields["padding"].doc
    assert "same" in O.OPS["conv"].fields["padding"].kind.describe
    assert O.OPS["adaptive_avgpool"].fields["size"].doc


def test_split_shuffle_by_hand():
    trace = trace_spec(_resolved(*NETS["split_shuffle"]), (2, 3, 8, 8))
    split = next(op for op in trace.ops if op.type == "split")
    assert split.id == "1:split" and split.output_shape == (2, 4, 8, 8)
    assert trace.node("1").type == "Split" and trace.node("1").output_shape == (2, 4 + 8, 8, 8)
    dw = trace.node("1.p2.0")
    assert (dw.attrs["in_channels"], dw.attrs["out_channels"], dw.attrs["groups"]) == (4, 4, 4)
    assert trace.node("1.p2.1").attrs["out_channels"] == 8
    cat = next(op for op in trace.ops if op.type == "cat")
    assert cat.inputs == ("1:split", "1.p2.1")
    assert trace.node("2").attrs == {"groups": 3}


def test_channel_shuffle_permutes_like_torchvision():
    from torchvision.models.shufflenetv2 import channel_shuffle

    model = build(_resolved("- shuffle: {groups: 4}\n", "1x8x2x2"))
    X = torch.arange(8.0).reshape(1, 8, 1, 1).expand(1, 8, 2, 2).contiguous()
    assert torch.equal(model(X), channel_shuffle(X, 4))
    assert model(X)[0, :, 0, 0].tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


def test_squeezenet_style_ceil_mode_gives_56_at_225_like_torchvision():
    """torchvision's SqueezeNet 1.0: conv 7x7/2 (96) then MaxPool2d(3, 2, ceil_mode=True): 109 -> 54 would be floor."""
    from torchvision.models import squeezenet1_1

    layers = "- conv: {out: 64, kernel: 3, stride: 2, act: relu}\n- maxpool: {kernel: 3, stride: 2, ceil_mode: CEIL}\n"
    ceil = trace_spec(_resolved(layers.replace("CEIL", "true"), "1x3x225x225"), (1, 3, 225, 225))
    floor = trace_spec(_resolved(layers.replace("CEIL", "false"), "1x3x225x225"), (1, 3, 225, 225))
    _, seen = real_output_shapes(squeezenet1_1().eval(), torch.randn(1, 3, 225, 225))
    assert ceil.output_shape == seen["features.2"] == (1, 64, 56, 56)
    assert floor.output_shape == (1, 64, 55, 55)


@pytest.mark.parametrize("side", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
@pytest.mark.parametrize(("k", "s", "p"), [(3, 2, 0), (3, 2, 1), (2, 2, 0), (3, 3, 1), (4, 3, 2), (2, 1, 1)])
def test_ceil_mode_size_equals_torch_on_every_small_side(side, k, s, p):
    pool = torch.nn.MaxPool1d(k, s, p, ceil_mode=True)
    try:
        expected = tuple(pool(torch.zeros(1, 1, side)).shape)
    except RuntimeError:
        expected = None  # torch refuses: the spec must refuse too
    layers = f"- maxpool: {{kernel: {k}, stride: {s}, padding: {p}, ceil_mode: true}}\n"
    if expected is None:
        with pytest.raises(RunError):
            trace_spec(_resolved(layers, f"1x1x{side}"), (1, 1, side))
    else:
        assert trace_spec(_resolved(layers, f"1x1x{side}"), (1, 1, side)).output_shape == expected


def test_padding_same_keeps_the_size_and_refuses_a_stride():
    trace = trace_spec(_resolved(*NETS["padding_same"]), (2, 3, 9, 10))
    assert trace.node("0").output_shape == (2, 4, 9, 10) and trace.node("0").attrs["padding"] == "same"
    assert trace.node("1").output_shape == (2, 4, 9, 10)
    assert trace.node("2").output_shape == (2, 2, 7, 8) and trace.node("2").attrs["padding"] == "valid"
    message = error_of("- conv: {out: 4, kernel: 3, stride: 2, padding: same}\n", "1x1x8x8")
    assert message.startswith("net.yaml:4: layer '0' (Conv2d) has padding: same with stride [2, 2]; PyTorch allows `same` only with stride 1")
    assert "\n" not in message
    assert error_of("- conv: {out: 4, kernel: 3, padding: half}\n").startswith("net.yaml:4: field 'padding' of 'conv' must be a whole number >= 0, a list")


def test_adaptive_pooling_to_any_size():
    trace = trace_spec(_resolved(*NETS["adaptive"]), (2, 3, 13, 11))
    assert [n.output_shape for n in trace.nodes[1:]] == [(2, 3, 3, 5), (2, 3, 2, 2), (2, 3, 7, 7)]
    assert [n.type for n in trace.nodes[1:]] == ["AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "AdaptiveAvgPool2d"]
    assert trace.node("1").attrs == {"output_size": (2, 2)}


def test_split_needs_divisible_channels():
    message = error_of("- split:\n    branches: [[], [identity]]\n", "1x3x8x8", "in_channels: 3")
    assert message == "net.yaml:5: block '0' splits its input's channels into 2 equal parts for its 2 branches, but gets 3 channels."


def test_shuffle_needs_divisible_channels():
    message = error_of("- shuffle: {groups: 2}\n", "1x3x8x8", "in_channels: 3")
    assert "has groups=2, which must divide the channels" in message and message.startswith("net.yaml:5: layer '0' (ChannelShuffle)")


# --- `in`: a layer reads its input's channels ----------------------------------------


def test_in_expressions_in_a_mobilenet_style_block():
    trace = trace_spec(_resolved(*NETS["in_mobilenet"]), (2, 4, 6, 6))
    convs = [n for n in trace.nodes if n.type == "Conv2d"]
    assert [(c.attrs["in_channels"], c.attrs["out_channels"], c.attrs["groups"]) for c in convs] == [(4, 24, 1), (24, 24, 24), (24, 8, 1)]
    assert convs[2].attrs["bias"] is False  # `in > 100` with in = 24
    assert trace.node("8").attrs == {"in_features": 8 * 36, "out_features": 36, "bias": True}


INVERTED = """
name: effnet_style
default_input: 1x3x32x32
params: {in_channels: 3}
blocks:
  inverted_residual:
    params: {t: 6}
    layers:
      - residual:
          kind: InvertedResidual
          layers:
            - conv: {out: in * t, kernel: 1, bias: false, norm: batch, act: silu}
            - conv: {out: in, kernel: 3, padding: 1, groups: in, bias: false, norm: batch, act: silu}
            - conv: {out: in // t, kernel: 1, bias: false, norm: batch}
layers:
  - conv: {out: 16, kernel: 3, padding: 1}
  - inverted_residual
  - conv: {out: 24, kernel: 1}
  - inverted_residual: {t: 4}
"""


def test_in_infers_the_widths_of_a_block_used_at_two_widths():
    resolved = resolve(parse_spec(INVERTED, source="eff.yaml"))
    trace = trace_spec(resolved, (2, 3, 32, 32))
    widths = [(n.attrs["in_channels"], n.attrs["out_channels"]) for n in trace.nodes if n.type == "Conv2d"]
    assert widths == [(3, 16), (16, 96), (96, 96), (96, 16), (16, 24), (24, 96), (96, 96), (96, 24)]
    assert trace == trace_module(build(resolved, (2, 3, 32, 32), device="meta"), (2, 3, 32, 32), "effnet_style")
    model = build(resolved, (2, 3, 32, 32))
    assert trace.total_params == sum(p.numel() for p in model.parameters())


def test_a_wrong_in_value_is_one_sentence_with_file_and_line():
    message = error_of("- conv: {out: 4, kernel: 1}\n- conv: {out: in // 8, kernel: 1}\n")
    assert message == "net.yaml:5: field 'out' of 'conv' evaluates to 0; it must be a whole number >= 1."
    message = error_of("- conv: {out: 4, kernel: 1}\n- conv: {out: in / 3, kernel: 1}\n")
    assert message.startswith("net.yaml:5: field 'out' of 'conv' evaluates to 1.333") and "\n" not in message


def test_in_is_refused_where_no_input_is_known():
    assert error_of("- vgg_block: {convs: 1, out: in}\n").startswith("net.yaml:4: 'in' uses `in`, the input's channels, which only the fields of a primitive")
    text = "name: t\nblocks:\n  b:\n    params: {w: ~}\n    layers: [conv: {out: w, kernel: 1}]\nlayers:\n  - b: {w: in * 2}\n"
    with pytest.raises(UsageError, match=r"^net.yaml:7: 'in \* 2' uses `in`"):
        parse_spec(text, source="net.yaml")
    with pytest.raises(UsageError, match=r"^net.yaml:4: 'in' uses `in`"):
        parse_spec(spec("- repeat: {times: in, layers: [identity]}\n"), source="net.yaml")
    assert "unknown parameter 'inn'" in error_of("- conv: {out: inn, kernel: 1}\n")
    # a parameter named like `in` is still itself
    assert trace_of("- conv: {out: in_channels * 2, kernel: 1}\n").node("0").attrs["out_channels"] == 2


def test_in_round_trips_through_dump_spec():
    from archviz.spec import dump_spec

    again = parse_spec(dump_spec(parse_spec(INVERTED, source="eff.yaml")), source="again")
    assert trace_spec(resolve(again), (1, 3, 32, 32)) == trace_spec(resolve(parse_spec(INVERTED)), (1, 3, 32, 32))


def test_shufflenet_v2_stage_shapes_equal_torchvision():
    from torchvision.models import shufflenet_v2_x1_0

    from archviz.arch import load_arch

    net = shufflenet_v2_x1_0(weights=None).eval()
    _, seen = real_output_shapes(net, torch.randn(1, 3, 224, 224))
    trace = load_arch("shufflenet_v2").trace((1, 3, 224, 224))
    ours = {n.path: n.output_shape for n in trace.blocks(1)}
    for name in ("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5"):
        assert ours[name] == seen[name], name
    assert ours["head"] == seen["fc"] == (1, 1000)
    assert trace.total_params == sum(p.numel() for p in net.parameters()) == 2_278_604
    # unit by unit: every conv of torchvision's has the same in/out channels, groups and stride, in order
    theirs = [(m.in_channels, m.out_channels, m.groups, m.stride) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    mine = [(n.attrs["in_channels"], n.attrs["out_channels"], n.attrs["groups"], n.attrs["stride"]) for n in trace.nodes if n.type == "Conv2d"]
    assert sorted(mine) == sorted(theirs) and len(mine) == len(theirs) == 56


def test_torch_names_point_to_the_spec_op():
    message = error_of("- chunk:\n    branches: [[], [identity]]\n")
    assert message.startswith("net.yaml:4: unknown op 'chunk'; the spec language calls it 'split': branches on equal slices of the input's channels")
    assert "\n" not in message
