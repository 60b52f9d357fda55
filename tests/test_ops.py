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
