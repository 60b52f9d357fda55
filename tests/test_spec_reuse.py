"""Reuse in the spec language: `repeat` with its index, and blocks a spec file defines with parameters."""

import textwrap

import pytest

from archviz.arch import load_arch
from archviz.errors import UsageError
from archviz.spec import dump_spec, parse_spec, resolve
from archviz.trace.from_module import trace_module
from archviz.trace.from_spec import trace_spec


def spec(body: str, params: str = "{w: 8, n: 3}") -> str:
    return f"name: t\ndefault_input: 1x1x32x32\nparams: {params}\n" + textwrap.dedent(body)


def trace(text: str, overrides=None, shape=(1, 1, 32, 32)):
    resolved = resolve(parse_spec(text, source="net.yaml"), overrides)
    return trace_spec(resolved, shape)


def error_of(text: str) -> str:
    with pytest.raises(UsageError) as info:
        resolve(parse_spec(text, source="net.yaml"))
    return str(info.value)


REPEAT = spec("""\
    layers:
      - repeat:
          times: n
          layers:
            - conv: {out: w * (i + 1), kernel: 3, stride: 2 if i == 0 else 1, padding: 1, act: relu}
      - gap
      - flatten
      - linear: {out: num_classes}
    """)


def test_repeat_index_in_expressions():
    t = trace(REPEAT)
    convs = [n for n in t.nodes if n.type == "Conv2d"]
    assert [(n.path, n.output_shape) for n in convs] == [
        ("0", (1, 8, 16, 16)),
        ("2", (1, 16, 16, 16)),
        ("4", (1, 24, 16, 16)),
    ]
    assert [n.attrs["stride"] for n in convs] == [(2, 2), (1, 1), (1, 1)]
    # Unnamed layers are numbered by their place after expansion, like nn.Sequential.
    assert [n.path for n in t.blocks(1)] == ["0", "1", "2", "3", "4", "5", "6", "7", "8"]
    # times follows -p like any other field.
    assert len([n for n in trace(REPEAT, ["n=5"]).nodes if n.type == "Conv2d"]) == 5
    assert [n.type for n in trace(REPEAT, ["n=0"], (1, 1, 4, 4)).nodes[1:]] == ["AdaptiveAvgPool2d", "Flatten", "Linear"]


def test_nested_repeats_and_named_layers_get_the_index():
    text = spec("""\
        layers:
          - repeat:
              times: 2
              index: s
              layers:
                - seq:
                    name: stage
                    layers:
                      - repeat:
                          times: s + 1
                          layers:
                            - conv: {name: c, out: w * (s + 1), kernel: 1, bias: i == 0}
        """)
    t = trace(text)
    assert [n.path for n in t.blocks(1)] == ["stage_0", "stage_1"]
    assert [n.path for n in t.children("stage_1")] == ["stage_1.c_0", "stage_1.c_1"]
    assert t.node("stage_1.c_0").attrs["out_channels"] == 16
    assert [t.node(p).attrs["bias"] for p in ("stage_1.c_0", "stage_1.c_1")] == [True, False]


BLOCKS = spec(
    """\
    blocks:
      unit:
        params: {out: ~, stride: 1}
        layers:
          - conv: {out: out, kernel: 3, stride: stride, padding: 1, bias: false, norm: batch, act: relu}
      res_unit:
        params: {out: ~, stride: 1, proj: false}
        layers:
          - residual:
              act: relu
              layers:
                - unit: {out: out, stride: stride}
                - conv: {out: out, kernel: 3, padding: 1, bias: false, norm: batch}
              shortcut:
                - repeat:
                    times: 1 if proj else 0
                    layers: [conv: {out: out, kernel: 1, stride: stride, bias: false}]
    layers:
      - unit: {name: stem, out: w}
      - repeat:
          times: n
          layers:
            - res_unit: {out: 'w * 2 ** min(i, 1)', stride: 2 if i == 1 else 1, proj: i == 1}
      - gap
      - flatten
      - linear: {name: fc, out: num_classes}
    """
)


def test_blocks_with_parameters_are_used_like_macros():
    t = trace(BLOCKS)
    assert [(n.path, n.type, n.output_shape) for n in t.blocks(1)] == [
        ("stem", "Unit", (1, 8, 32, 32)),
        ("1", "ResUnit", (1, 8, 32, 32)),
        ("2", "ResUnit", (1, 16, 16, 16)),
        ("3", "ResUnit", (1, 16, 16, 16)),
        ("4", "AdaptiveAvgPool2d", (1, 16, 1, 1)),
        ("5", "Flatten", (1, 16)),
        ("fc", "Linear", (1, 10)),
    ]
    # One projection (block 2), identity shortcuts elsewhere; the inner `unit` is a block of its own.
    assert [n.path for n in t.nodes if n.path.endswith(".shortcut")] == ["2.shortcut"]
    assert t.node("2.body.0").type == "Unit" and t.node("2.body.0.0").attrs["stride"] == (2, 2)
    # stem 8*9 + bn 16; each res_unit: two 3x3 convs without bias + two bns; projection 8*16
    assert t.total_params == (72 + 16) + 2 * (576 + 16) + (1152 + 32 + 2304 + 32 + 128) + 2 * (2304 + 32) + 170
    text_back = dump_spec(parse_spec(BLOCKS, source="net.yaml"))
    assert parse_spec(text_back).blocks == parse_spec(BLOCKS).blocks
    assert trace_spec(resolve(parse_spec(text_back)), (1, 1, 32, 32)) == t


def test_blocks_build_the_same_module_the_spec_traces(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(BLOCKS)
    arch = load_arch(str(path))
    shape = (2, 1, 32, 32)
    assert arch.trace(shape) == trace_module(arch.build(shape, device="meta"), shape, arch.name)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "blocks:\n  u:\n    params: {out: ~}\n    layers: [conv: {out: out, kernel: 1}]\nlayers:\n  - u: {kernel: 3}\n",
            "net.yaml:9: 'u' has no field 'kernel' (fields: name, out)",
        ),
        (
            "blocks:\n  u:\n    params: {out: ~, k: 1}\n    layers: [conv: {out: out, kernel: k}]\nlayers:\n  - u: {k: 3}\n",
            "net.yaml:9: block 'u' needs a value for 'out', e.g. u: {out: ...}",
        ),
        (
            "blocks:\n  u:\n    params: {out: ~}\n    layers: [conv: {out: outt, kernel: 1}]\nlayers:\n  - u: {out: 3}\n",
            "net.yaml:7: 'outt' uses unknown parameter 'outt'; did you mean 'out'?",
        ),
        (
            # A block's body does not see the caller's repeat index.
            "blocks:\n  u:\n    layers: [conv: {out: i + 1, kernel: 1}]\nlayers:\n  - repeat: {times: 2, layers: [u]}\n",
            "net.yaml:6: 'i + 1' uses unknown parameter 'i'",
        ),
        (
            "blocks:\n  a:\n    layers: [b]\n  b:\n    layers: [flatten]\nlayers: [a]\n",
            "net.yaml:6: block 'b' is used inside itself or above its definition; define a block below the blocks it uses",
        ),
        ("blocks:\n  conv:\n    layers: [flatten]\nlayers: [conv]\n", "net.yaml:5: block name 'conv' is already a built-in op; choose another name"),
        ("blocks:\n  u:\n    param: {}\n    layers: [flatten]\nlayers: [u]\n", "net.yaml:6: block 'u' has unknown key 'param'; did you mean 'params'?"),
        ("blocks:\n  u:\n    params: {out: 3}\nlayers: [u]\n", "net.yaml:6: block 'u' has no 'layers' list"),
        ("blocks:\n  u:\n    params: {act: relu}\n    layers: [flatten]\nlayers: [u]\n", "net.yaml:6: block parameter 'act' needs a name and a default number"),
        (
            "blocks:\n  u:\n    params: {name: 1}\n    layers: [flatten]\nlayers: [u]\n",
            "net.yaml:6: block parameter 'name' has a reserved name (name, int, round, abs, min, max)",
        ),
        ("layers:\n  - repeat: {layers: [flatten]}\n", "net.yaml:5: 'repeat' is missing its required field 'times'"),
        ("layers:\n  - repeat: {times: 2, layer: [flatten]}\n", "net.yaml:5: 'repeat' has no field 'layer'; did you mean 'layers'?"),
        ("layers:\n  - repeat: {times: 2, index: 3, layers: [flatten]}\n", "net.yaml:5: the index of 'repeat' must be a name such as i or j, not 3"),
        ("layers:\n  - repeat: {times: -1, layers: [flatten]}\n", "net.yaml:5: field 'times' of 'repeat' must be a whole number >= 0"),
        ("layers:\n  - repeat: {times: n - 4, layers: [flatten]}\n", "net.yaml:5: field 'times' of 'repeat' evaluates to -1; it must be a whole number >= 0."),
        (
            "layers:\n  - repeat: {times: 10 ** 7, layers: [flatten]}\n",
            "net.yaml:5: 'repeat' has times = 10,000,000; a spec may expand to at most 100,000 layers.",
        ),
        (
            "layers:\n  - repeat: {times: 1000, layers: [repeat: {times: 1001, layers: [flatten]}]}\n",
            "net.yaml:5: the spec expands to more than 100,000 layers; use fewer repeats.",
        ),
        (
            "layers:\n  - repeat: {times: 2, layers: [conv: {name: a, out: 1, kernel: 1}]}\n  - conv: {name: a_1, out: 1, kernel: 1}\n",
            "two layers in the same block are named 'a_1'",
        ),
        (
            "layers:\n  - conv: {out: max(8, w), kernel: 1}\n",
            "net.yaml:5: 'max(8' is not an arithmetic expression (allowed: numbers, parameter names, + - * / // % **, comparisons, "
            "and/or/not, `a if cond else b` and int, round, abs, min, max); inside {...} an expression with a comma must be quoted, e.g. out: 'max(8, w)'",
        ),
        ("layers:\n  - conv: {out: 1, kernel: 1, bias: n}\n", "net.yaml:5: field 'bias' of 'conv' evaluates to 3; it must be true or false (e.g. i == 0)."),
    ],
)
def test_reuse_errors_name_the_line_and_the_fix(body, expected):
    assert expected in error_of(spec(body))


def test_resnet50_in_under_50_lines_is_exact():
    """The built-in ResNet-50 is written with repeat and a block; it matches torchvision."""
    from archviz import zoo

    lines = zoo.spec_path("resnet50").read_text().splitlines()
    assert len(lines) < 50
    t = load_arch("resnet50").trace()
    assert t.total_params == 25_557_032
    assert [n.output_shape for n in t.blocks(1)][-1] == (1, 1000)
