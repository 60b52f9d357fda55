"""Expressions in specs: the functions and conditionals they allow, what they refuse, and their bounds."""

import subprocess
import sys
import textwrap
import time

import pytest

from archviz.errors import UsageError
from archviz.spec import parse_spec, resolve
from archviz.spec.expr import ExprError, evaluate, names_in


@pytest.mark.parametrize(
    ("text", "params", "expected"),
    [
        ("int(64 * alpha)", {"alpha": 0.75}, 48),
        ("int(-2.7)", {}, -2),
        ("round(2.5)", {}, 2),  # Python rounds halves to even
        ("round(w * 1.5)", {"w": 5}, 8),
        ("max(8, 64 // 16)", {}, 8),
        ("min(a, b, 3)", {"a": 7, "b": 5}, 3),
        ("abs(-3) + abs(2.5)", {}, 5.5),
        ("2 if i == 0 else 1", {"i": 0}, 2),
        ("2 if i == 0 else 1", {"i": 3}, 1),
        ("1 if 0 < i <= 2 else 0", {"i": 2}, 1),
        ("1 if 0 < i <= 2 else 0", {"i": 3}, 0),
        ("1 if proj and not i else 0", {"proj": True, "i": 0}, 1),
        ("1 if proj or i else 0", {"proj": False, "i": 0}, 0),
        ("i != 0", {"i": 1}, True),
        ("2 ** 62", {}, 2**62),
        ("-(2 ** 62) - (2 ** 62 - 1)", {}, -(2**63) + 1),
        ("64 // ratio", {"ratio": 8}, 8),
    ],
)
def test_functions_and_conditionals(text, params, expected):
    value = evaluate(text, params)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os')", "calls '__import__'; the functions are int, round, abs, min, max"),
        ("pow(2, 3)", "calls 'pow'"),
        ("ratio.real", "may only use numbers, parameter names"),
        ("[1][0]", "may only use"),
        ("lambda: 1", "may only use"),
        ("'a' * 3", "contains 'a'"),
        ("int(x=1)", "calls int() with 1 argument(s); it takes 1, by position"),
        ("max(1)", "calls max() with 1 argument(s); it takes 2 or more"),
        ("round(2.5, 1)", "calls round() with 2 argument(s)"),
        ("(1).bit_length()", "calls '1 .bit_length'"),
        ("x := 3", "is not an arithmetic expression"),
    ],
)
def test_anything_else_is_refused_before_evaluation(text, message):
    with pytest.raises(ExprError, match=None) as info:
        names_in(text)
    assert message in str(info.value)


def test_names_exclude_functions():
    assert names_in("max(8, int(w * alpha)) if i == 0 else abs(d)") == {"w", "alpha", "i", "d"}
    with pytest.raises(ExprError, match="uses the function 'max' without calling it"):
        evaluate("max + 1", {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9**9**9", "raises 9 to the power 387420489, which is above 2**63"),
        ("2 ** 63", "raises 2 to the power 63"),
        ("(2 ** 62) * 2", "gives a number above 2**63"),
        ("-(2 ** 62) * 2 - 1", "gives a number above 2**63"),
        ("10.0 ** 400", "too large for a float"),
        ("int(1e308 * 10)", "gives an infinite or undefined number"),
        ("int(1e300)", "gives a number above 2**63"),
        ("(-8) ** 0.5", "gives complex"),
        ("1 // 0", "divides by zero"),
        ("1.5 % 0", "divides by zero"),
        ("x" + "+1" * 300, "is longer than 500 characters"),
        ("1" * 5000, "is longer than 500 characters"),
    ],
)
def test_results_are_bounded(text, message):
    start = time.perf_counter()
    with pytest.raises(ExprError) as info:
        evaluate(text, {"x": 1})
    assert time.perf_counter() - start < 0.05
    assert message in str(info.value)
    assert len(str(info.value)) < 200


SPEC = """\
name: t
default_input: 1x1x28x28
params: {w: 8}
layers:
  - conv: {out: OUT, kernel: 3}
"""


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("'9**9**9'", "t.yaml:5: field 'out' of 'conv': '9**9**9' raises 9 to the power 387420489, which is above 2**63"),
        ("1" + "0" * 5000, "t.yaml:5: the number 10000000000000000000... (5001 characters) is too large; spec numbers must stay below 2**63"),
        ("100000000000000000000", "t.yaml:5: the number '100000000000000000000' is too large"),
        ("'w * 1e400'", "t.yaml:5: the expression"),  # 1e400 parses as inf: refused when used
        ("'int(w ** 40.0)'", "gives a number above 2**63"),
        ("'max(8, w // 16)'", None),
    ],
)
def test_huge_numbers_in_spec_files_are_one_sentence(out, message, tmp_path):
    text = SPEC.replace("OUT", out)
    if message is None:
        assert resolve(parse_spec(text, source="t.yaml")).layers[0].args["out"] == 8
        return
    with pytest.raises(UsageError) as info:
        resolve(parse_spec(text, source="t.yaml"))
    if "1e400" in out:
        assert "gives an infinite or undefined number" in str(info.value)
    else:
        assert str(info.value).startswith(message) or message in str(info.value)


def test_huge_p_values_are_one_sentence():
    spec = parse_spec(SPEC.replace("OUT", "w"), source="t.yaml")
    with pytest.raises(UsageError, match=r"-p w: the number has 5000 digits; parameters must stay below 2\*\*63"):
        resolve(spec, ["w=" + "9" * 5000])
    with pytest.raises(UsageError, match=r"-p w: '99999999999999999999' is too large"):
        resolve(spec, ["w=99999999999999999999"])


def test_cli_refuses_9_9_9_in_milliseconds(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(textwrap.dedent(SPEC.replace("OUT", "'9**9**9'")))
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "archviz", "shapes", str(path)], capture_output=True, text=True, timeout=60)
    assert time.perf_counter() - start < 20  # interpreter start-up included; the refusal itself is microseconds
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.strip() == (
        f"archviz: error: {path}:5: field 'out' of 'conv': '9**9**9' raises 9 to the power 387420489, which is above 2**63; spec numbers must stay below that."
    )


def test_a_parameter_cannot_shadow_a_function():
    with pytest.raises(UsageError, match=r"t.yaml:3: parameter 'max' has the name of an expression function; call it something else"):
        parse_spec(SPEC.replace("{w: 8}", "{max: 8}").replace("OUT", "8"), source="t.yaml")
