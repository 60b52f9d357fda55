"""Arithmetic on spec parameters, such as ``64 // ratio``: a whitelist over ``ast``, never ``eval``."""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


class ExprError(ValueError):
    """The expression is not valid arithmetic over the known parameters."""


def names_in(text: str) -> set[str]:
    """The parameter names an expression refers to."""
    tree = _parse(text)
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


def evaluate(text: str, params: Mapping[str, object]) -> int | float:
    """Evaluate ``text`` with ``params`` as the only names; ints stay ints."""
    return _eval(_parse(text).body, params, text)


def _parse(text: str) -> ast.Expression:
    try:
        return ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ExprError(f"{text!r} is not an arithmetic expression") from None


def _eval(node: ast.AST, params: Mapping[str, object], text: str) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in params:
            known = ", ".join(sorted(params)) or "none"
            raise ExprError(f"{text!r} uses unknown parameter {node.id!r} (known: {known})")
        value = params[node.id]
        if type(value) not in (int, float):
            raise ExprError(f"{text!r} uses parameter {node.id!r}, which is not a number")
        return value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand, params, text)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _eval(node.left, params, text)
        right = _eval(node.right, params, text)
        try:
            return _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ExprError(f"{text!r} divides by zero") from None
    raise ExprError(f"{text!r} may only use numbers, parameter names and + - * / // % **")
