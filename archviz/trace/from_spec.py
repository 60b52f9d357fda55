"""Trace a spec by shape arithmetic alone: no torch import, so it answers in milliseconds.

Every rule here mirrors what the torch module built from the same spec does; the test
suite checks the two traces are identical for every built-in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archviz.errors import RunError
from archviz.shape import format_shape
from archviz.spec import ops as O
from archviz.spec.model import Layer
from archviz.spec.resolve import Resolved
from archviz.trace.record import Node, Op, Shape, Trace

_CHANNEL_OPS = ("conv", "batchnorm")


class _TooSmall(Exception):
    def __init__(self, path: str, type_: str, message: str):
        super().__init__(message)
        self.path, self.type, self.message = path, type_, message


@dataclass
class _Out:
    shape: Shape
    op: str  # id of the op that produced it
    params: int
    flops: int


def trace_spec(resolved: Resolved, input_shape: Shape, arch: str | None = None) -> Trace:
    """Shapes, params and FLOPs of ``resolved`` on ``input_shape``; RunError if it cannot run."""
    arch = arch or resolved.spec.name
    try:
        return _Walker(arch, int(resolved.params["in_channels"])).run(resolved.layers, input_shape)
    except _TooSmall as exc:
        smallest = smallest_input(resolved, input_shape)
        hint = f"the smallest input that works is {format_shape(smallest)}" if smallest else "no input size up to 4096x4096 works"
        raise RunError(f"{arch} cannot run on input {format_shape(input_shape)}: layer {exc.path!r} ({exc.type}) {exc.message}; {hint}.") from None


def smallest_input(resolved: Resolved, input_shape: Shape, limit: int = 4096) -> Shape | None:
    """The smallest square NxCxSxS the network accepts (scanning S upwards; each try is microseconds)."""
    n, c = input_shape[0], input_shape[1]
    for size in range(1, limit + 1):
        try:
            _Walker("probe").run(resolved.layers, (n, c, size, size))
        except _TooSmall:
            continue
        return (n, c, size, size)
    return None


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _type(layer: Layer, rank: int) -> str:
    op = layer.op
    if op in ("seq", "concat", "residual"):
        return layer.args.get("kind") or {"seq": "Sequential", "concat": "Concat", "residual": "Residual"}[op]
    if op == "act":
        return O.ACTIVATIONS[layer.args["fn"]]
    if op == "batchnorm":
        return "BatchNorm2d" if rank == 4 else "BatchNorm1d"
    return {
        "conv": "Conv2d",
        "linear": "Linear",
        "maxpool": "MaxPool2d",
        "avgpool": "AvgPool2d",
        "gap": "AdaptiveAvgPool2d",
        "flatten": "Flatten",
        "dropout": "Dropout",
    }[op]


class _Walker:
    def __init__(self, arch: str, in_channels: int | None = None):
        self.arch = arch
        # Checked at the first layer that reads channels, which the walk names for the message.
        self.in_channels = in_channels
        self.nodes: list[Node | None] = []
        self.ops: list[Op] = []

    def run(self, layers: tuple[Layer, ...], input_shape: Shape) -> Trace:
        self.input_shape = input_shape
        self.ops.append(Op("input", "input", "Input", "", (), input_shape))
        self.nodes.append(None)
        out = self.sequence(layers, "", 1, _Out(input_shape, "input", 0, 0))
        self.nodes[0] = Node("", "Sequential", 0, False, (input_shape,), out.shape, out.params, out.params, out.flops)
        self.ops.append(Op("output", "output", "Output", "", (out.op,), out.shape))
        return Trace(self.arch, input_shape, tuple(self.nodes), tuple(self.ops), out.params, out.params)

    def sequence(self, layers, prefix: str, depth: int, x: _Out) -> _Out:
        params = flops = 0
        for layer in layers:
            x = self.layer(layer, f"{prefix}{layer.name}", depth, x)
            params += x.params
            flops += x.flops
        return _Out(x.shape, x.op, params, flops)

    def block(self, path: str, type_: str, depth: int, x: _Out, run) -> _Out:
        index = len(self.nodes)
        self.nodes.append(None)
        out = run()
        self.nodes[index] = Node(path, type_, depth, False, (x.shape,), out.shape, out.params, out.params, out.flops)
        return out

    def layer(self, layer: Layer, path: str, depth: int, x: _Out) -> _Out:
        op, a, shape = layer.op, layer.args, x.shape
        type_ = _type(layer, len(shape))
        if op == "seq":
            return self.block(path, type_, depth, x, lambda: self.sequence(a["layers"], f"{path}.", depth + 1, x))
        if op == "concat":
            return self.block(path, type_, depth, x, lambda: self.concat(layer, path, depth, x))
        if op == "residual":
            return self.block(path, type_, depth, x, lambda: self.residual(layer, path, depth, x))

        if op in _CHANNEL_OPS and self.in_channels is not None:
            self.check_channels(path, type_, shape)
        attrs: dict = {}
        params = flops = 0
        if op == "conv":
            self.need_rank(path, type_, shape, 4)
            n, cin, h, w = shape
            k, s, p, d, g = _pair(a["kernel"]), _pair(a["stride"]), _pair(a["padding"]), _pair(a["dilation"]), a["groups"]
            if cin % g or a["out"] % g:
                raise RunError(f"{self.arch}: layer {path!r} (Conv2d) has groups={g}, which must divide its {cin} input and {a['out']} output channels.")
            ho, wo = (self.spatial(path, type_, size, k[i], s[i], p[i], d[i]) for i, size in enumerate((h, w)))
            out = (n, a["out"], ho, wo)
            params = a["out"] * (cin // g) * k[0] * k[1] + (a["out"] if a["bias"] else 0)
            flops = 2 * n * a["out"] * ho * wo * (cin // g) * k[0] * k[1]
            attrs = dict(in_channels=cin, out_channels=a["out"], kernel_size=k, stride=s, padding=p, dilation=d, groups=g, bias=a["bias"])
        elif op in ("maxpool", "avgpool"):
            self.need_rank(path, type_, shape, 4)
            k, p = _pair(a["kernel"]), _pair(a["padding"])
            s = _pair(a["stride"] if a["stride"] is not None else a["kernel"])
            if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
                raise RunError(
                    f"{self.arch}: layer {path!r} ({type_}) has padding {p} larger than half its kernel {k}; PyTorch requires padding <= kernel / 2."
                )
            out = (*shape[:2], *(self.spatial(path, type_, size, k[i], s[i], p[i], 1) for i, size in enumerate(shape[2:])))
            attrs = dict(kernel_size=k, stride=s, padding=p)
        elif op == "gap":
            self.need_rank(path, type_, shape, 4)
            out = (*shape[:2], 1, 1)
            attrs = dict(output_size=(1, 1))
        elif op == "flatten":
            out = (shape[0], math.prod(shape[1:]))
        elif op == "linear":
            out = (*shape[:-1], a["out"])
            params = shape[-1] * a["out"] + (a["out"] if a["bias"] else 0)
            flops = 2 * math.prod(shape[:-1]) * shape[-1] * a["out"]
            attrs = dict(in_features=shape[-1], out_features=a["out"], bias=a["bias"])
        elif op == "batchnorm":
            if len(shape) not in (2, 3, 4):
                raise RunError(f"{self.arch}: layer {path!r} (batchnorm) needs a 2-, 3- or 4-D input, got {list(shape)}.")
            out = shape
            params = 2 * shape[1]
            attrs = dict(num_features=shape[1])
        elif op == "dropout":
            out = shape
            attrs = dict(p=a["p"])
        elif op == "act":
            out = shape
        else:  # pragma: no cover - the loader only lets registered primitives through
            raise AssertionError(op)
        self.nodes.append(Node(path, type_, depth, True, (shape,), out, params, params, flops, attrs))
        self.ops.append(Op(path, "module", type_, path, (x.op,), out))
        return _Out(out, path, params, flops)

    def concat(self, layer: Layer, path: str, depth: int, x: _Out) -> _Out:
        outs = []
        for i, branch in enumerate(layer.args["branches"]):
            sub = f"{path}.p{i + 1}"
            outs.append(self.block(sub, "Sequential", depth + 1, x, lambda b=branch, s=sub: self.sequence(b, f"{s}.", depth + 2, x)))
        first = outs[0].shape
        for i, o in enumerate(outs[1:], start=2):
            if len(o.shape) != len(first) or o.shape[:1] + o.shape[2:] != first[:1] + first[2:]:
                raise RunError(
                    f"{self.arch}: block {path!r} cannot concatenate its branches: p1 gives {list(first)} "
                    f"but p{i} gives {list(o.shape)}; all but the channel size must agree."
                )
        shape = (first[0], sum(o.shape[1] for o in outs), *first[2:])
        op_id = f"{path}:cat"
        self.ops.append(Op(op_id, "function", "cat", path, tuple(o.op for o in outs), shape))
        return _Out(shape, op_id, sum(o.params for o in outs), sum(o.flops for o in outs))

    def residual(self, layer: Layer, path: str, depth: int, x: _Out) -> _Out:
        a = layer.args
        body = self.block(f"{path}.body", "Sequential", depth + 1, x, lambda: self.sequence(a["layers"], f"{path}.body.", depth + 2, x))
        short = x
        if a["shortcut"]:
            short = self.block(f"{path}.shortcut", "Sequential", depth + 1, x, lambda: self.sequence(a["shortcut"], f"{path}.shortcut.", depth + 2, x))
        if body.shape != short.shape:
            hint = " (set projection: true)" if not a["shortcut"] else ""
            raise RunError(
                f"{self.arch}: residual block {path!r} adds shapes that differ: its layers give {list(body.shape)} "
                f"but the shortcut gives {list(short.shape)}{hint}."
            )
        op_id = f"{path}:add"
        self.ops.append(Op(op_id, "function", "add", path, (body.op, short.op), body.shape))
        out = _Out(body.shape, op_id, body.params + (short.params if a["shortcut"] else 0), body.flops + (short.flops if a["shortcut"] else 0))
        if a["act"]:
            act = Layer("act", {"fn": a["act"]}, "act")
            res = self.layer(act, f"{path}.act", depth + 1, out)
            return _Out(res.shape, res.op, out.params, out.flops)
        return out

    def check_channels(self, path: str, type_: str, shape: Shape) -> None:
        expected, self.in_channels = self.in_channels, None
        got = self.input_shape
        if len(got) == 4 and got[1] != expected and shape[1] == got[1]:
            fix = format_shape((got[0], expected, *got[2:]))
            raise RunError(
                f"{self.arch} cannot run on input {format_shape(got)}: its first layer {path!r} ({type_}) expects {expected} input channel(s) "
                f"but the input has {got[1]}; use --input {fix} or -p in_channels={got[1]}."
            )

    def need_rank(self, path: str, type_: str, shape: Shape, rank: int) -> None:
        if len(shape) != rank:
            raise RunError(f"{self.arch}: layer {path!r} ({type_}) needs a {rank}-D input (NxCxHxW) but gets {list(shape)}; put it before the flatten.")

    @staticmethod
    def spatial(path: str, type_: str, size: int, k: int, s: int, p: int, d: int) -> int:
        span = d * (k - 1) + 1
        out = (size + 2 * p - span) // s + 1
        if out < 1:
            window = f"its kernel {k} (padding {p})" if d == 1 else f"its kernel {k} at dilation {d}, which spans {span} pixels (padding {p})"
            raise _TooSmall(path, type_, f"gets a {size}-pixel side, too small for {window}")
        return out
