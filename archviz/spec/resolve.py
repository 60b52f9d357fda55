"""From a spec and ``-p`` values to a tree of primitive layers with concrete numbers and names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from archviz.errors import UsageError
from archviz.spec import ops as O
from archviz.spec.expr import ExprError, evaluate
from archviz.spec.loader import suggest
from archviz.spec.model import Layer, Spec


@dataclass(frozen=True)
class Resolved:
    """A spec with its parameters fixed: primitive layers only, every field concrete, every layer named."""

    spec: Spec
    params: Mapping[str, Any]
    layers: tuple[Layer, ...]

    @property
    def default_input(self) -> tuple[int, ...]:
        n, _, h, w = self.spec.default_input
        return (n, int(self.params["in_channels"]), h, w)


def parse_params(spec: Spec, items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides to the spec's defaults, each converted to its default's type."""
    values = dict(spec.params)
    pairs = items.items() if isinstance(items, Mapping) else [_split(item) for item in items or ()]
    for key, raw in pairs:
        if key not in values:
            known = ", ".join(sorted(values))
            raise UsageError(f"{spec.name} has no parameter {key!r}{suggest(key, values)} (parameters: {known}).")
        values[key] = _convert(spec.name, key, raw, values[key])
    for key in ("in_channels", "num_classes"):
        if type(values[key]) is not int or values[key] < 1:
            raise UsageError(f"parameter {key} must be a whole number >= 1, got {values[key]!r}.")
    return values


def _split(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"-p {item!r} must be written KEY=VALUE, e.g. -p ratio=8.")
    return key.strip(), value.strip()


def _convert(spec_name: str, key: str, raw: Any, default: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    kind = type(default)
    try:
        if kind is bool:
            if raw.lower() in ("true", "1", "yes"):
                return True
            if raw.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        return kind(raw)
    except ValueError:
        expected = {int: "a whole number", float: "a number", bool: "true or false"}.get(kind, "text")
        raise UsageError(f"-p {key}={raw!r}: {spec_name}'s parameter {key} must be {expected} (default {default!r}).") from None


def resolve(spec: Spec, overrides: Iterable[str] | Mapping[str, Any] | None = None) -> Resolved:
    params = parse_params(spec, overrides)
    return Resolved(spec, params, _resolve_list(spec.layers, params))


def _resolve_list(layers: Iterable[Layer], params: Mapping[str, Any]) -> tuple[Layer, ...]:
    out: list[Layer] = []
    for layer in layers:
        for prim in _expand(_concrete(layer, params), params):
            out.append(prim)
    named = []
    seen: set[str] = set()
    for index, layer in enumerate(out):
        name = layer.name if layer.name is not None else str(index)
        if name in seen:
            raise UsageError(f"{layer.where()}: two layers in the same block are named {name!r}; names must be unique within a block.")
        seen.add(name)
        named.append(Layer(layer.op, layer.args, name, layer.source, layer.line))
    return tuple(named)


def _expand(layer: Layer, params: Mapping[str, Any]) -> list[Layer]:
    """Macros -> primitives (recursively), then conv/linear decorations -> separate layers."""
    opdef = O.OPS[layer.op]
    if opdef.expand is not None:
        return [prim for sub in opdef.expand(layer) for prim in _expand(_concrete(sub, params), params)]
    return O.expand_decorations(layer)


def _concrete(layer: Layer, params: Mapping[str, Any]) -> Layer:
    """Evaluate expressions and fill defaults; child layer lists are resolved recursively."""
    opdef = O.OPS[layer.op]
    args: dict[str, Any] = {}
    for key, fld in opdef.fields.items():
        value = layer.args[key] if key in layer.args else (None if fld.required else fld.default)
        if fld.kind is O.LAYERS:
            value = _resolve_list(value, params)
        elif fld.kind is O.BRANCHES:
            value = tuple(_resolve_list(branch, params) for branch in value)
        elif value is not None and (fld.kind.minimum is not None or fld.kind in (O.PROB, O.NUMBER)):
            value = _number(layer, key, fld.kind, value, params)
        args[key] = value
    return Layer(layer.op, args, layer.name, layer.source, layer.line)


def _number(layer: Layer, key: str, kind: O.Kind, value: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(value, tuple):
        return tuple(_number(layer, key, kind, v, params) for v in value)
    if isinstance(value, str):
        try:
            value = evaluate(value, params)
        except ExprError as exc:
            raise UsageError(f"{layer.where()}: field {key!r} of {layer.op!r}: {exc}.") from None
        if kind is not O.PROB and isinstance(value, float) and value.is_integer():
            value = int(value)
    if kind is O.PROB:
        if not 0 <= value < 1:
            raise UsageError(f"{layer.where()}: field {key!r} of {layer.op!r} is {value}; it must be between 0 and 1.")
        return float(value)
    if kind is O.NUMBER:
        if not 0 < value < float("inf"):
            raise UsageError(f"{layer.where()}: field {key!r} of {layer.op!r} is {value}; it must be a number > 0.")
        return float(value)
    # Axes kinds stay one number until the input's rank says how many spatial axes it covers.
    if type(value) is not int or value < kind.minimum:
        raise UsageError(f"{layer.where()}: field {key!r} of {layer.op!r} evaluates to {value!r}; it must be a whole number >= {kind.minimum}.")
    return value
