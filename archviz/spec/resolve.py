"""From a spec and ``-p`` values to a tree of primitive layers with concrete numbers and names."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from archviz.errors import UsageError
from archviz.spec import ops as O
from archviz.spec.expr import IN, MAX_INT, ExprError, evaluate, names_in
from archviz.spec.loader import suggest
from archviz.spec.model import REPEAT, BlockDef, Layer, Spec


@dataclass(frozen=True)
class Resolved:
    """A spec with its parameters fixed: primitive layers only, every field concrete, every layer named."""

    spec: Spec
    params: Mapping[str, Any]
    layers: tuple[Layer, ...]

    @property
    def default_input(self) -> tuple[int, ...]:
        n, _, *spatial = self.spec.default_input
        return (n, int(self.params["in_channels"]), *spatial)


@dataclass(frozen=True)
class Deferred:
    """A field's expression that reads ``in`` (the input's channels): evaluated by :func:`bind_input`
    when the layer meets its input, with the names it could see where it was written."""

    text: str
    scope: tuple[tuple[str, Any], ...]


def bind_input(layer: Layer, shape: tuple[int, ...]) -> Layer:
    """``layer`` with every ``in`` expression evaluated on an input of ``shape`` (``in`` = axis 1, the channels)."""
    if not any(isinstance(v, Deferred) or (isinstance(v, tuple) and any(isinstance(e, Deferred) for e in v)) for v in layer.args.values()):
        return layer
    if len(shape) < 2:
        raise UsageError(f"{layer.where()}: {layer.op!r} reads `in`, the input's channels, but its input {list(shape)} has no channel axis.")
    args = dict(layer.args)
    for key, value in layer.args.items():
        kind = O.OPS[layer.op].fields[key].kind
        if isinstance(value, Deferred | tuple) and kind is not O.LAYERS and kind is not O.BRANCHES:
            args[key] = _bind(layer, key, kind, value, shape[1])
    return Layer(layer.op, args, layer.name, layer.source, layer.line)


def _bind(layer: Layer, key: str, kind: O.Kind, value: Any, channels: int) -> Any:
    if isinstance(value, tuple):
        return tuple(_bind(layer, key, kind, v, channels) for v in value)
    if not isinstance(value, Deferred):
        return value
    scope = {**dict(value.scope), IN: channels}
    if kind is O.BOOL:
        return _bool(layer, key, value.text, scope)
    return _number(layer, key, kind, value.text, scope)


def parse_params(spec: Spec, items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides to the spec's defaults, each converted to its default's type."""
    values = dict(spec.params)
    pairs = items.items() if isinstance(items, Mapping) else [_split(item) for item in items or ()]
    for key, raw in pairs:
        if key not in values:
            known = ", ".join(sorted(values))
            raise UsageError(f"{spec.name} has no parameter {key!r}{suggest(key, values)} (parameters: {known}).")
        values[key] = _convert(spec.name, key, raw, values[key])
        value = values[key]
        if (type(value) is int and abs(value) > MAX_INT) or (type(value) is float and not math.isfinite(value)):
            raise UsageError(f"-p {key}: {str(raw)[:24]!r} is too large; parameters must be finite and below 2**63.")
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
    from archviz.params import parse_value  # -p values read as YAML scalars, as for callables (issue 9)

    value = parse_value(raw, f"{key}={raw}")
    if type(value) is kind or (kind is float and type(value) is int) or kind is type(None):
        return float(value) if kind is float else value
    try:
        if kind is bool:
            if raw.lower() in ("true", "1", "yes"):
                return True
            if raw.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        return kind(raw)
    except ValueError:
        if raw.strip().lstrip("+-").isdigit():  # over Python's 4300-digit limit for int()
            raise UsageError(f"-p {key}: the number has {len(raw.strip())} digits; parameters must stay below 2**63.") from None
        expected = {int: "a whole number", float: "a number", bool: "true or false"}.get(kind, "text")
        raise UsageError(f"-p {key}={raw!r}: {spec_name}'s parameter {key} must be {expected} (default {default!r}).") from None


# A spec may expand (repeats, blocks) to at most this many layers: bounds time and memory.
# Issue 20: at 1,000,000 a 0.6 KB spec took 26 s and 1.2 GB before it was refused; 100,000
# layers resolve in about a second (the largest built-in has a few hundred).
MAX_LAYERS = 100_000
# Every step of the expansion counts (a layer, a repeat's pass, a block's use), so that repeats
# of nothing (``repeat: {times: 1000, layers: []}`` nested) end as surely as repeats of layers.
MAX_STEPS = 4 * MAX_LAYERS


def resolve(spec: Spec, overrides: Iterable[str] | Mapping[str, Any] | None = None) -> Resolved:
    params = parse_params(spec, overrides)
    return Resolved(spec, params, _Resolver(spec, params).resolve_list(spec.layers, params))


class _Resolver:
    """Expands repeats, user-defined blocks and macros into named primitive layers.

    ``scope`` is what an expression may name at a given point: the spec's parameters,
    plus the indices of the repeats around it, or a block's own parameters inside its body.
    """

    def __init__(self, spec: Spec, params: Mapping[str, Any]):
        self.spec, self.params = spec, params
        self.count = 0
        self.steps = 0

    def step(self, layer: Layer, cost: int = 1) -> None:
        self.steps += cost
        if self.steps > MAX_STEPS:
            raise UsageError(f"{layer.where()}: the spec's repeats and blocks expand to more than {MAX_STEPS:,} steps; use fewer or smaller repeats.")

    def resolve_list(self, layers: Iterable[Layer], scope: Mapping[str, Any]) -> tuple[Layer, ...]:
        out: list[Layer] = []
        for layer in layers:
            out.extend(self.flatten(layer, scope))
        named = []
        seen: set[str] = set()
        for index, layer in enumerate(out):
            name = layer.name if layer.name is not None else str(index)
            if name in seen:
                raise UsageError(f"{layer.where()}: two layers in the same block are named {name!r}; names must be unique within a block.")
            seen.add(name)
            named.append(Layer(layer.op, layer.args, name, layer.source, layer.line))
        return tuple(named)

    def flatten(self, layer: Layer, scope: Mapping[str, Any]) -> list[Layer]:
        """One written layer -> the primitive layers it stands for (names as written, or None)."""
        self.step(layer)
        if layer.op == REPEAT:
            return self.repeat(layer, scope)
        if layer.op in self.spec.blocks:
            self.step(layer, 8)  # a block's use builds a body and a container: ~10x a repeat's pass (measured)
            return [self.block(layer, self.spec.blocks[layer.op], scope)]
        self.count += 1
        if self.count > MAX_LAYERS:
            raise UsageError(f"{layer.where()}: the spec expands to more than {MAX_LAYERS:,} layers; use fewer repeats.")
        return self.expand(self.concrete(layer, scope), scope)

    def repeat(self, layer: Layer, scope: Mapping[str, Any]) -> list[Layer]:
        times = _number(layer, "times", O.INT, layer.args["times"], scope)
        if times > MAX_LAYERS:
            raise UsageError(f"{layer.where()}: 'repeat' has times = {times:,}; a spec may expand to at most {MAX_LAYERS:,} layers.")
        index, out = layer.args["index"], []
        for i in range(times):
            self.step(layer)
            for prim in (p for sub in layer.args["layers"] for p in self.flatten(sub, {**scope, index: i})):
                # A named layer inside a repeat gets the index appended, so names stay unique.
                out.append(prim if prim.name is None else Layer(prim.op, prim.args, f"{prim.name}_{i}", prim.source, prim.line))
        return out

    def block(self, layer: Layer, block: BlockDef, scope: Mapping[str, Any]) -> Layer:
        """A use of a user-defined block: its body with the given values, one block in the trace."""
        values = {}
        for key, default in block.params.items():
            raw = layer.args.get(key, default)
            if isinstance(raw, str):
                try:
                    raw = evaluate(raw, scope)
                except ExprError as exc:
                    raise UsageError(f"{layer.where()}: parameter {key!r} of block {block.name!r}: {exc}.") from None
            values[key] = raw
        # The body sees the spec's parameters and its own, not the caller's repeat indices.
        body = self.resolve_list(block.layers, {**self.params, **values})
        if len(body) == 1 and "kind" in O.OPS[body[0].op].fields and not body[0].args.get("kind"):
            # One plain container (a residual, say) is the block itself: no extra level.
            only = body[0]
            return Layer(only.op, {**only.args, "kind": block.kind}, layer.name, layer.source, layer.line)
        return Layer("seq", {"layers": body, "kind": block.kind}, layer.name, layer.source, layer.line)

    def expand(self, layer: Layer, scope: Mapping[str, Any]) -> list[Layer]:
        """Macros -> primitives (recursively), then conv/linear decorations -> separate layers."""
        opdef = O.OPS[layer.op]
        if opdef.expand is not None:
            return [prim for sub in opdef.expand(layer) for prim in self.expand(self.concrete(sub, scope), scope)]
        return O.expand_decorations(layer)

    def concrete(self, layer: Layer, scope: Mapping[str, Any]) -> Layer:
        """Evaluate expressions and fill defaults; child layer lists are resolved recursively."""
        opdef = O.OPS[layer.op]
        args: dict[str, Any] = {}
        for key, fld in opdef.fields.items():
            value = layer.args[key] if key in layer.args else (None if fld.required else fld.default)
            if fld.kind is O.LAYERS:
                value = self.resolve_list(value, scope)
            elif fld.kind is O.BRANCHES:
                value = tuple(self.resolve_list(branch, scope) for branch in value)
            elif value is not None and (fld.kind.minimum is not None or fld.kind in (O.PROB, O.NUMBER)):
                value = _number(layer, key, fld.kind, value, scope)
            elif fld.kind is O.BOOL and isinstance(value, str):
                value = _deferred(value, scope) if _reads_in(value, scope) else _bool(layer, key, value, scope)
            args[key] = value
        return Layer(layer.op, args, layer.name, layer.source, layer.line)


def _reads_in(text: str, scope: Mapping[str, Any]) -> bool:
    return IN not in scope and IN in names_in(text)


def _deferred(text: str, scope: Mapping[str, Any]) -> Deferred:
    return Deferred(text, tuple(scope.items()))


def _bool(layer: Layer, key: str, text: str, scope: Mapping[str, Any]) -> bool:
    try:
        value = evaluate(text, scope)
    except ExprError as exc:
        raise UsageError(f"{layer.where()}: field {key!r} of {layer.op!r}: {exc}.") from None
    if type(value) is not bool:
        raise UsageError(f"{layer.where()}: field {key!r} of {layer.op!r} evaluates to {value!r}; it must be true or false (e.g. i == 0).")
    return value


def _number(layer: Layer, key: str, kind: O.Kind, value: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(value, tuple):
        return tuple(_number(layer, key, kind, v, params) for v in value)
    if isinstance(value, str) and value in kind.words:
        return value
    if isinstance(value, str) and _reads_in(value, params):
        return _deferred(value, params)
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
