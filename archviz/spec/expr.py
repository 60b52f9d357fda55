"""Arithmetic on spec parameters, such as ``64 // ratio``: a whitelist over ``ast``, never ``eval``.

Besides ``+ - * / // % **`` an expression may call ``int``, ``round``, ``min``, ``max``
and ``abs``, compare (``i == 0``), combine with ``and``/``or``/``not``, and choose
(``2 if i == 0 else 1``). Every intermediate result is bounded (integers below 2**63,
floats finite), and a power that would exceed the bound is refused before it is
computed, so ``9**9**9`` fails in microseconds instead of running for hours.

``in`` names the input's channel count where a layer's field is written (``out: in * 6``).
It is a Python keyword, so the text is rewritten to a reserved name (``__in__``) before
parsing; messages show it as ``in``.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping

# Integers stay below 2**63 (what torch sizes hold); 19 digits is far beyond any layer size.
MAX_INT = 2**63 - 1
# Longer expressions are refused before parsing (bounds parse time and recursion depth).
MAX_LENGTH = 500

Number = int | float | bool

IN = "in"  # the spec's word for the input's channels (axis 1) of the layer being built
_IN_NAME = "__in__"
_IN_WORD = re.compile(r"(?<![\w.])in(?![\w])")

_BINARY: dict[type, Callable] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type, Callable] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def _round(x: Number) -> int:
    return round(x)  # one argument: a whole number (Python rounds halves to even)


# name -> (function, smallest and largest number of arguments)
FUNCTIONS: dict[str, tuple[Callable, int, int]] = {
    "int": (int, 1, 1),
    "round": (_round, 1, 1),
    "abs": (abs, 1, 1),
    "min": (min, 2, 64),
    "max": (max, 2, 64),
}
_ALLOWED = "numbers, parameter names, + - * / // % **, comparisons, and/or/not, `a if cond else b` and " + ", ".join(FUNCTIONS)


class ExprError(ValueError):
    """The expression is not valid arithmetic over the known parameters."""


def show(text: str, limit: int = 40) -> str:
    """The expression as quoted in messages, cut to ``limit`` characters."""
    text = text.strip()
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def names_in(text: str) -> set[str]:
    """The parameter names an expression refers to; ExprError if it uses anything not whitelisted."""
    tree = _parse(text)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in FUNCTIONS:
            names.add(IN if node.id == _IN_NAME else node.id)
    return names


def evaluate(text: str, params: Mapping[str, object]) -> Number:
    """Evaluate ``text`` with ``params`` as the only names; ints stay ints."""
    return _Evaluator(text, params).eval(_parse(text).body)


def _parse(text: str) -> ast.Expression:
    if len(text) > MAX_LENGTH:
        raise ExprError(f"the expression {show(text)} is longer than {MAX_LENGTH} characters; use a shorter one")
    try:
        tree = ast.parse(_IN_WORD.sub(_IN_NAME, text.strip()), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # Python refuses integer literals over 4300 digits with a SyntaxError/ValueError too.
        raise ExprError(f"{show(text)} is not an arithmetic expression (allowed: {_ALLOWED})") from None
    for node in ast.walk(tree):
        _check_node(node, text)
    return tree


def _check_node(node: ast.AST, text: str) -> None:
    """The whitelist, checked once on the whole tree before anything is evaluated."""
    allowed = (
        ast.Expression,
        ast.Constant,
        ast.Name,
        ast.Load,
        ast.BinOp,
        ast.UnaryOp,
        ast.BoolOp,
        ast.Compare,
        ast.IfExp,
        ast.Call,
        ast.USub,
        ast.UAdd,
        ast.Not,
        ast.And,
        ast.Or,
        *_BINARY,
        *_COMPARE,
    )
    if not isinstance(node, allowed):
        raise ExprError(f"{show(text)} may only use {_ALLOWED}")
    if isinstance(node, ast.Constant) and type(node.value) not in (int, float, bool):
        raise ExprError(f"{show(text)} contains {node.value!r}; only numbers, true and false are allowed")
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS:
            called = name or ast.unparse(node.func)
            raise ExprError(f"{show(text)} calls {called!r}; the functions are {', '.join(FUNCTIONS)}")
        low, high = FUNCTIONS[name][1:]
        if node.keywords or not low <= len(node.args) <= high:
            count = f"{low}" if low == high else f"{low} or more"
            raise ExprError(f"{show(text)} calls {name}() with {len(node.args) + len(node.keywords)} argument(s); it takes {count}, by position")


class _Evaluator:
    def __init__(self, text: str, params: Mapping[str, object]):
        self.text, self.params = text, params

    def fail(self, why: str) -> ExprError:
        return ExprError(f"{show(self.text)} {why}")

    def bounded(self, value: object) -> Number:
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            if abs(value) > MAX_INT:
                raise self.fail("gives a number above 2**63 (about 9.2e18); spec numbers must stay below that")
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.fail("gives an infinite or undefined number; spec numbers must be finite")
            return value
        raise self.fail(f"gives {type(value).__name__} {value!r}, not a real number")

    def eval(self, node: ast.AST) -> Number:
        if isinstance(node, ast.Constant):
            return self.bounded(node.value)
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.UnaryOp):
            value = self.eval(node.operand)
            if isinstance(node.op, ast.Not):
                return not value
            return self.bounded(-value if isinstance(node.op, ast.USub) else +value)
        if isinstance(node, ast.BinOp):
            left, right = self.eval(node.left), self.eval(node.right)
            if isinstance(node.op, ast.Pow):
                self.check_power(left, right)
            try:
                value = _BINARY[type(node.op)](left, right)
            except ZeroDivisionError:
                raise self.fail("divides by zero") from None
            except OverflowError:
                raise self.fail("gives a number too large for a float; spec numbers must stay below 2**63") from None
            return self.bounded(value)
        if isinstance(node, ast.BoolOp):
            # Short-circuit like Python: `and` returns the first false value, `or` the first true one.
            value = self.eval(node.values[0])
            for sub in node.values[1:]:
                if bool(value) == isinstance(node.op, ast.Or):
                    return value
                value = self.eval(sub)
            return value
        if isinstance(node, ast.Compare):
            left = self.eval(node.left)
            for op, sub in zip(node.ops, node.comparators, strict=True):
                right = self.eval(sub)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)
        if isinstance(node, ast.Call):
            function = FUNCTIONS[node.func.id][0]
            args = [self.eval(a) for a in node.args]
            try:
                value = function(*args)
            except (OverflowError, ValueError):
                raise self.fail(f"cannot apply {node.func.id}() to {', '.join(map(str, args))}") from None
            return self.bounded(value)
        raise self.fail(f"may only use {_ALLOWED}")  # pragma: no cover - _check_node refused it already

    def name(self, name: str) -> Number:
        if name in FUNCTIONS:
            raise self.fail(f"uses the function {name!r} without calling it; write {name}(...)")
        name = IN if name == _IN_NAME else name
        if name == IN and IN not in self.params:
            raise self.fail("uses `in` (the input's channels), which only a layer's own fields can read, once its input is known")
        if name not in self.params:
            known = ", ".join(sorted(self.params)) or "none"
            raise self.fail(f"uses unknown parameter {name!r} (known: {known})")
        value = self.params[name]
        if type(value) not in (int, float, bool):
            raise self.fail(f"uses parameter {name!r}, which is not a number")
        return self.bounded(value)

    def check_power(self, base: Number, exponent: Number) -> None:
        """Refuse a power whose result would pass the bound, before computing it."""
        if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
            if exponent * math.log2(abs(base)) >= 63:
                raise self.fail(f"raises {base} to the power {exponent}, which is above 2**63; spec numbers must stay below that")
