"""The spec language: parsing, parameters, expressions and the errors users see."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from archviz.arch import load_arch
from archviz.errors import UsageError
from archviz.spec import load_spec_file, parse_spec, resolve
from archviz.spec.expr import ExprError, evaluate

DATA = Path(__file__).parent / "data"


def spec_text(layers: str, params: str = "") -> str:
    head = "name: t\ndefault_input: 1x1x28x28\n"
    if params:
        head += "params:\n" + textwrap.indent(textwrap.dedent(params), "  ")
    return head + "layers:\n" + textwrap.indent(textwrap.dedent(layers), "  ")


def error_of(text: str) -> str:
    with pytest.raises(UsageError) as info:
        resolve(parse_spec(text, source="net.yaml"))
    return str(info.value)


def test_user_spec_with_residual_concat_and_params():
    trace = load_arch(str(DATA / "small.yaml")).trace()
    assert trace.input_shape == (2, 3, 32, 32)
    shapes = {n.path: n.output_shape for n in trace.blocks(1)}
    assert shapes == {
        "stem": (2, 16, 32, 32),
        "1": (2, 16, 32, 32),
        "2": (2, 16, 32, 32),
        "res": (2, 32, 16, 16),
        "mix": (2, 40, 16, 16),
        "5": (2, 40, 1, 1),
        "6": (2, 40),
        "7": (2, 10),
    }
    wide = load_arch(str(DATA / "small.yaml"), ["width=32", "num_classes=5"]).trace()
    assert wide.node("res").output_shape == (2, 64, 16, 16) and wide.output_shape == (2, 5)
    # stem 3*16*9+16, bn 32, res body 16*32*9+32, shortcut 16*32+32, mix p1 32*8+8, head 40*10+10
    assert trace.total_params == 448 + 32 + 4640 + 544 + 264 + 410


def test_expressions_are_arithmetic_only():
    assert evaluate("64 // ratio", {"ratio": 8}) == 8
    assert evaluate("2 * (w + 1)", {"w": 3}) == 8
    for bad in ("__import__('os')", "ratio.real", "[1][0]", "lambda: 1"):
        with pytest.raises(ExprError):
            evaluate(bad, {"ratio": 1})


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ("- conv: {out: 6, kernal: 5}\n", "net.yaml:4: 'conv' has no field 'kernal'; did you mean 'kernel'?"),
        ("- cnov: {out: 6, kernel: 5}\n", "net.yaml:4: unknown op 'cnov'; did you mean 'conv'?"),
        ("- conv: {out: six, kernel: 5}\n", "net.yaml:4: 'six' uses unknown parameter 'six'"),
        ("- conv: {out: 6.5, kernel: 5}\n", "net.yaml:4: field 'out' of 'conv' must be a whole number >= 1"),
        ("- conv: {kernel: 5}\n", "net.yaml:4: 'conv' is missing its required field 'out'"),
        ("- conv: {out: 6, kernel: 5, act: relux}\n", "net.yaml:4: field 'act' of 'conv' is 'relux', not one of: relu, sigmoid"),
        ("- flatten\n- conv: {out: 6, kernel: [1, 2, 3, 4]}\n", "net.yaml:5: field 'kernel' of 'conv' must be a whole number >= 1 or a list of one to three"),
        ("- dropout: {p: 1.5}\n", "net.yaml:4: field 'p' of 'dropout' must be a probability between 0 and 1"),
        ("- conv: {out: 6, kernel: 5}\n  flatten: {}\n", "net.yaml:4: a layer is written '- op: {field: value, ...}' with exactly one op name"),
        ("- conv: {out: 6, kernel: 5, name: a}\n- conv: {out: 6, kernel: 1, name: a}\n", "two layers in the same block are named 'a'"),
    ],
)
def test_validation_errors_name_file_line_and_field(layers, expected):
    assert expected in error_of(spec_text(layers))


def test_yaml_syntax_error_has_a_line():
    message = error_of("name: t\nlayers:\n  - conv: {out: 6, kernel: 5\n  - flatten\n")
    assert (
        message
        == "net.yaml:3: not valid YAML (while parsing a flow mapping: expected ',' or '}', but got '<stream end>'); check indentation and brackets there."
    )


def test_unknown_top_level_key_and_missing_layers():
    assert error_of("name: t\nlayer: []\n") == (
        "net.yaml:2: unknown top-level key 'layer'; did you mean 'layers' or 'layout'? (known: name, description, default_input, params, blocks, layers, layout)"
    )
    assert error_of("name: t\n") == "net.yaml:1: the spec has no 'layers' list"


def test_undeclared_parameter_in_expression():
    message = error_of(spec_text("- conv: {out: 64 // ratoi, kernel: 3}\n", "ratio: 1\n"))
    assert message == "net.yaml:6: '64 // ratoi' uses unknown parameter 'ratoi'; did you mean 'ratio'?; declare it under 'params'"


def test_parameter_overrides_are_typed():
    spec = load_spec_file(DATA / "small.yaml")
    assert resolve(spec, ["width=8"]).params["width"] == 8
    with pytest.raises(UsageError, match="small has no parameter 'widht'; did you mean 'width'"):
        resolve(spec, ["widht=8"])
    with pytest.raises(UsageError, match="parameter width must be a whole number"):
        resolve(spec, ["width=eight"])
    with pytest.raises(UsageError, match="must be written KEY=VALUE"):
        resolve(spec, ["width"])


def test_expression_that_evaluates_to_a_bad_value_names_the_line():
    spec = parse_spec(spec_text("- conv: {out: 64 // ratio, kernel: 3}\n", "ratio: 1\n"), source="net.yaml")
    with pytest.raises(UsageError, match="net.yaml:6: field 'out' of 'conv' evaluates to 0"):
        resolve(spec, ["ratio=100"])


def test_reading_specs_does_not_import_torch():
    code = "import sys; from archviz.arch import load_arch; t = load_arch('googlenet').trace(); assert t.output_shape == (1, 10); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_shapes_command_does_not_import_torch():
    """Every command module is imported at start-up; none may pull torch in for `archviz shapes`."""
    code = (
        "import sys; from typer.testing import CliRunner; from archviz.cli import app; "
        "r = CliRunner().invoke(app, ['shapes', 'googlenet']); assert r.exit_code == 0, r.output; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_layout_hint_is_checked_and_kept():
    from archviz.spec.loader import dump_spec

    assert error_of("name: t\nlayout: v\nlayers:\n  - flatten\n") == (
        "net.yaml:2: layout 'v' is not one archviz knows; write 'layout: u' to draw an encoder-decoder as a U, or leave it out"
    )
    spec = parse_spec("name: t\nlayout: u\nlayers:\n  - flatten\n")
    assert spec.layout == "u" and "layout: u" in dump_spec(spec)
