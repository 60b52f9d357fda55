"""Trace a spec by shape arithmetic alone: no torch import, so it answers in milliseconds.

Every primitive's shape, params, FLOPs and torch attributes come from its rule in the op
table (``archviz/spec/ops.py``); this walk only threads shapes through blocks and records
nodes and dataflow ops the way the module tracer records the built model. The test suite
checks the two traces are identical for every built-in.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

from archviz.errors import ArchvizWarning, RunError, TooLarge
from archviz.shape import MAX_ELEMENTS, format_shape
from archviz.spec import ops as O
from archviz.spec.model import Layer
from archviz.spec.resolve import Resolved, bind_input
from archviz.trace.record import Node, Op, Shape, Trace


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
        trace = _Walker(arch, int(resolved.params["in_channels"])).run(resolved.layers, input_shape)
    except _TooSmall as exc:
        smallest = smallest_input(resolved, input_shape)
        if smallest:
            hint = f"the smallest input that works is {format_shape(smallest)}"
        else:
            hint = f"no input up to {_LIMIT} on every spatial axis works"
        raise RunError(f"{arch} cannot run on input {format_shape(input_shape)}: layer {exc.path!r} ({exc.type}) {exc.message}; {hint}.") from None
    for message in trace.warnings:
        warnings.warn(message, ArchvizWarning, stacklevel=2)
    if resolved.spec.layout:
        trace = dataclasses.replace(trace, layout=resolved.spec.layout)
    return trace


_LIMIT = 4096


def smallest_input(resolved: Resolved, input_shape: Shape, limit: int = _LIMIT) -> Shape | None:
    """The smallest input of the same rank, equal on every spatial axis, that the network accepts.

    Binary search on the side S (a network that runs on S runs on larger sides as well,
    as windows only shrink a side by a fixed amount), then a check of the answer.
    """
    n, c, axes = input_shape[0], input_shape[1], len(input_shape) - 2
    if axes < 1:
        return None

    def runs(size: int) -> bool:
        try:
            _Walker("probe").run(resolved.layers, (n, c, *(size,) * axes))
        except _TooSmall:
            return False
        except RunError:
            return True  # it gets past every window: what fails now is not the size
        return True

    if not runs(limit):
        return None
    lo, hi = 1, limit
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if runs(mid) else (mid + 1, hi)
    return (n, c, *(lo,) * axes)


def _type(opdef: O.OpDef, layer: Layer, shape: Shape) -> str:
    """The torch class a primitive builds on an input of this rank, for messages."""
    if layer.op == "act":
        return O.ACTIVATIONS[layer.args["fn"]]
    if len(opdef.torch) == 3 and 3 <= len(shape) <= 5:
        return opdef.torch[len(shape) - 3]
    return opdef.torch[0] if opdef.torch else layer.op


class _Walker:
    def __init__(self, arch: str, in_channels: int | None = None):
        self.arch = arch
        # Checked at the first layer that reads channels, which the walk names for the message.
        self.in_channels = in_channels
        self.nodes: list[Node | None] = []
        self.ops: list[Op] = []
        self.warnings: list[str] = []

    def run(self, layers: tuple[Layer, ...], input_shape: Shape) -> Trace:
        self.input_shape = input_shape
        self.ops.append(Op("input", "input", "Input", "", (), input_shape))
        self.nodes.append(None)
        out = self.sequence(layers, "", 1, _Out(input_shape, "input", 0, 0))
        self.nodes[0] = Node("", "Sequential", 0, False, (input_shape,), out.shape, out.params, out.params, out.flops)
        self.ops.append(Op("output", "output", "Output", "", (out.op,), out.shape))
        return Trace(self.arch, input_shape, tuple(self.nodes), tuple(self.ops), out.params, out.params, tuple(self.warnings))

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

    def check_size(self, layer: Layer, path: str, type_: str, shape: Shape, params: int = 0) -> None:
        """TooLarge when a layer's output or parameters hold more than 2^53 elements: torch sizes
        tensors in int64 and would overflow while building or costing it (the --input bound)."""
        numel = math.prod(shape)
        if numel > MAX_ELEMENTS:
            raise self.fail(
                layer,
                too_large=True,
                message=f"layer {path!r} ({type_}) gives a {format_shape(shape)} tensor of {numel:.3g} elements, "
                f"more than archviz accepts in one tensor ({MAX_ELEMENTS:,} = 2^53); use smaller sizes",
            )
        if params > MAX_ELEMENTS:
            raise self.fail(
                layer,
                too_large=True,
                message=f"layer {path!r} ({type_}) has {params:.3g} parameters, "
                f"more than archviz accepts in one layer ({MAX_ELEMENTS:,} = 2^53); use smaller sizes",
            )

    def fail(self, layer: Layer, message: str, too_large: bool = False) -> RunError:
        """A RunError that names the spec file and line of the layer."""
        return (TooLarge if too_large else RunError)(f"{layer.where()}: {message}.")

    def layer(self, layer: Layer, path: str, depth: int, x: _Out) -> _Out:
        opdef = O.OPS[layer.op]
        if opdef.children:
            kind = layer.args.get("kind")
            if layer.op == "seq":
                return self.block(path, kind or "Sequential", depth, x, lambda: self.sequence(layer.args["layers"], f"{path}.", depth + 1, x))
            if layer.op == "residual":
                return self.block(path, kind or "Residual", depth, x, lambda: self.residual(layer, path, depth, x))
            default = "Split" if opdef.split else O.MERGE_TYPES[opdef.merge]
            return self.block(path, kind or default, depth, x, lambda: self.branches(layer, opdef.merge, path, depth, x, opdef.split))

        shape = x.shape
        layer = bind_input(layer, shape)
        if opdef.reads_channels and self.in_channels is not None:
            self.check_channels(path, _type(opdef, layer, shape), shape)
        try:
            out = opdef.rule(layer.args, shape)
        except O.TooSmall as exc:
            raise _TooSmall(path, _type(opdef, layer, shape), str(exc)) from None
        except O.OpError as exc:
            raise self.fail(layer, f"layer {path!r} ({_type(opdef, layer, shape)}) {exc}") from None
        self.check_size(layer, path, out.type, out.shape, out.params)
        if layer.op == "linear" and len(shape) > 2:
            self.warnings.append(
                f"{layer.where()}: layer {path!r} (Linear) gets a {len(shape)}-D input {list(shape)} and acts on its last axis only, "
                f"giving {list(out.shape)}; put a `flatten` before it to feed it all {math.prod(shape[1:])} features"
            )
        self.nodes.append(Node(path, out.type, depth, True, (shape,), out.shape, out.params, out.params, out.flops, out.attrs))
        self.ops.append(Op(path, "module", out.type, path, (x.op,), out.shape))
        return _Out(out.shape, path, out.params, out.flops)

    def split(self, layer: Layer, path: str, x: _Out) -> list[_Out]:
        """The input cut into equal channel slices, one per branch, as ``torch.split`` in the built module."""
        parts = len(layer.args["branches"])
        if len(x.shape) < 2 or x.shape[1] % parts:
            got = f"{x.shape[1]} channels" if len(x.shape) >= 2 else f"an input {list(x.shape)} without channels"
            raise self.fail(layer, f"block {path!r} splits its input's channels into {parts} equal parts for its {parts} branches, but gets {got}")
        shape = (x.shape[0], x.shape[1] // parts, *x.shape[2:])
        op_id = f"{path}:split"
        self.ops.append(Op(op_id, "function", "split", path, (x.op,), shape))
        return [_Out(shape, op_id, 0, 0)] * parts

    def branches(self, layer: Layer, merge: str, path: str, depth: int, x: _Out, split: bool = False) -> _Out:
        outs = []
        inputs = self.split(layer, path, x) if split else [x] * len(layer.args["branches"])
        for i, (branch, xi) in enumerate(zip(layer.args["branches"], inputs, strict=True)):
            sub = f"{path}.p{i + 1}"
            if not branch:  # the input itself, with no module (like a residual's identity shortcut)
                outs.append(_Out(xi.shape, xi.op, 0, 0))
                continue
            outs.append(self.block(sub, "Sequential", depth + 1, xi, lambda b=branch, s=sub, xi=xi: self.sequence(b, f"{s}.", depth + 2, xi)))
        params, flops = sum(o.params for o in outs), sum(o.flops for o in outs)
        first = outs[0].shape
        if merge == "cat":
            for i, o in enumerate(outs[1:], start=2):
                if len(o.shape) != len(first) or o.shape[:1] + o.shape[2:] != first[:1] + first[2:]:
                    raise self.fail(
                        layer,
                        f"block {path!r} cannot concatenate its branches: p1 gives {list(first)} but p{i} gives {list(o.shape)}; "
                        "all but the channel size must agree",
                    )
            shape = (first[0], sum(o.shape[1] for o in outs), *first[2:])
            self.check_size(layer, path, "cat", shape)
            op_id = f"{path}:cat"
            self.ops.append(Op(op_id, "function", "cat", path, tuple(o.op for o in outs), shape))
            return _Out(shape, op_id, params, flops)
        # add / mul: folded left to right, one function op per pair, as the built module computes it
        y = outs[0]
        for i, o in enumerate(outs[1:], start=2):
            shape = self.merged_shape(layer, merge, path, y.shape, o.shape, i)
            op_id = f"{path}:{merge}" if i == 2 else f"{path}:{merge}#{i - 2}"
            self.ops.append(Op(op_id, "function", merge, path, (y.op, o.op), shape))
            y = _Out(shape, op_id, 0, 0)
        return _Out(y.shape, y.op, params, flops)

    def merged_shape(self, layer: Layer, merge: str, path: str, a: Shape, b: Shape, i: int) -> Shape:
        if merge == "add":
            if a != b:
                raise self.fail(
                    layer,
                    f"block {path!r} cannot add its branches: p1..p{i - 1} give {list(a)} but p{i} gives {list(b)}; every branch must give the same shape",
                )
            return a
        # PyTorch's broadcasting: align on the right, each axis equal or 1.
        if len(a) == len(b) and all(p == q or p == 1 or q == 1 for p, q in zip(a, b, strict=True)):
            return tuple(max(p, q) if min(p, q) != 0 else 0 for p, q in zip(a, b, strict=True))
        raise self.fail(
            layer,
            f"block {path!r} cannot multiply its branches: p1..p{i - 1} give {list(a)} but p{i} gives {list(b)}; "
            "each axis must agree or be 1 in one of them (a gate is NxCx1x1)",
        )

    def residual(self, layer: Layer, path: str, depth: int, x: _Out) -> _Out:
        a = layer.args
        body = self.block(f"{path}.body", "Sequential", depth + 1, x, lambda: self.sequence(a["layers"], f"{path}.body.", depth + 2, x))
        short = x
        if a["shortcut"]:
            short = self.block(f"{path}.shortcut", "Sequential", depth + 1, x, lambda: self.sequence(a["shortcut"], f"{path}.shortcut.", depth + 2, x))
        if body.shape != short.shape:
            raise self.fail(
                layer,
                f"residual block {path!r} adds shapes that differ: its layers give {list(body.shape)} "
                f"but the shortcut gives {list(short.shape)}{self.shortcut_hint(layer, x.shape, body.shape, short.shape)}",
            )
        op_id = f"{path}:add"
        self.ops.append(Op(op_id, "function", "add", path, (body.op, short.op), body.shape))
        out = _Out(body.shape, op_id, body.params + (short.params if a["shortcut"] else 0), body.flops + (short.flops if a["shortcut"] else 0))
        if a["act"]:
            act = Layer("act", {"fn": a["act"]}, "act", layer.source, layer.line)
            res = self.layer(act, f"{path}.act", depth + 1, out)
            return _Out(res.shape, res.op, out.params, out.flops)
        return out

    @staticmethod
    def shortcut_hint(layer: Layer, x: Shape, body: Shape, short: Shape) -> str:
        """What to change so that the shortcut gives the body's shape."""
        if layer.args.get("kind") == "BasicBlock":
            return " (set projection: true on the basic_block)"
        if len(body) != len(x) or len(body) < 3:
            return ""
        strides = []
        for before, after in zip(x[2:], body[2:], strict=True):
            # a 1x1 conv with stride s turns a side of `before` into ceil(before / s)
            s = min((s for s in {before // max(after, 1), -(-before // max(after, 1))} if s >= 1 and -(-before // s) == after), default=None)
            if s is None:
                return ""
            strides.append(s)
        stride = strides[0] if len(set(strides)) == 1 else strides
        conv = f"{{conv: {{out: {body[1]}, kernel: 1" + (f", stride: {stride}" if stride != 1 else "") + "}}"
        what = "a shortcut" if not layer.args["shortcut"] else "a shortcut that gives the same shape"
        return f"; add {what} with a 1x1 conv to {body[1]} channels" + (f" and stride {stride}" if stride != 1 else "") + f", e.g. `shortcut: [{conv}]`"

    def check_channels(self, path: str, type_: str, shape: Shape) -> None:
        expected, self.in_channels = self.in_channels, None
        got = self.input_shape
        if len(got) >= 2 and got[1] != expected and len(shape) >= 2 and shape[1] == got[1]:
            fix = format_shape((got[0], expected, *got[2:]))
            raise RunError(
                f"{self.arch} cannot run on input {format_shape(got)}: its first layer {path!r} ({type_}) expects {expected} input channel(s) "
                f"but the input has {got[1]}; use --input {fix} or -p in_channels={got[1]}."
            )
