"""Receptive fields, propagated through the trace's dataflow graph (no model walk).

For each op output we keep, per spatial axis (length; height, width; or depth, height,
width), the arithmetic of
Dumoulin & Visin (2016) and Araujo et al. (2019, "Computing receptive fields of CNNs"):

- ``size``: how many input pixels one output position depends on;
- ``jump``: input pixels between neighbouring output positions (the product of strides);
- ``start``: input coordinate of the centre of the first output position's field, with
  pixel ``i`` of the input covering [i, i+1) so that the input starts at 0.5.

A layer with kernel k, stride s, padding p and dilation d maps (size, jump, start) to
(size + (k_eff - 1) * jump, jump * s, start + ((k_eff - 1) / 2 - p) * jump) with
k_eff = d * (k - 1) + 1. The size may exceed the input: padding is counted as if it were
image.

Which rule an op follows comes from the op table (``archviz/spec/ops.py``): a sliding
window (conv, pooling), a transposed window (the jump shrinks by the stride), upsampling
(the jump shrinks by the scale; linear interpolation reads one more input), adaptive
pooling, or pointwise.

Conventions:
- pointwise ops (activations, batch norm, dropout) keep the field;
- where branches meet (Inception's concat, a residual add, a broadcast multiply) the
  field is that of the input with the largest size: a concat channel or an add output
  sees at least that much, and branches padded symmetrically share their centre;
- global pooling, flatten, linear layers and anything that drops the spatial axes make
  the field the whole input (``whole_input``; jump and start no longer mean anything);
- an op with no rule that changes the spatial size gives an unknown field (``None``),
  listed by :func:`unknown_ops`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from archviz.spec import ops as O
from archviz.trace.record import Op, Trace

Axes = tuple[int, ...]


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive field at one tensor, per spatial axis (L; H, W; or D, H, W)."""

    size: Axes
    jump: Axes | None = (1, 1)
    start: tuple[float, ...] | None = (0.5, 0.5)
    whole_input: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "jump": list(self.jump) if self.jump is not None else None,
            "start": list(self.start) if self.start is not None else None,
            "whole_input": self.whole_input,
        }

    def text(self) -> str:
        """``'11'`` when every axis agrees, ``'7x11'`` otherwise, ``'all'`` for the whole input."""
        if self.whole_input:
            return "all"
        return str(self.size[0]) if len(set(self.size)) == 1 else "x".join(str(s) for s in self.size)


def _spatial(shape: tuple[int, ...]) -> Axes | None:
    """The spatial axes of an NxCx... tensor; None when there are none (NxC)."""
    return tuple(shape[2:]) if len(shape) >= 3 else None


def _axes(value: Any, default: int, n: int) -> Axes:
    if value is None:
        return (default,) * n
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    return value if len(value) == n else (value[-1],) * n


def _window(rf: ReceptiveField, kernel: Axes, stride: Axes, padding: Axes, dilation: Axes) -> ReceptiveField:
    if rf.whole_input or rf.jump is None or rf.start is None:
        return rf
    size, jump, start = [], [], []
    for axis in range(len(rf.size)):
        k_eff = dilation[axis] * (kernel[axis] - 1) + 1
        size.append(rf.size[axis] + (k_eff - 1) * rf.jump[axis])
        start.append(rf.start[axis] + ((k_eff - 1) / 2 - padding[axis]) * rf.jump[axis])
        jump.append(rf.jump[axis] * stride[axis])
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))


def _transposed(rf: ReceptiveField, kernel: Axes, stride: Axes, padding: Axes, dilation: Axes) -> ReceptiveField | None:
    """A transposed conv: output o reads inputs i with o = i*s - p + j*d, so each output sees
    about (k_eff - 1) / s + 1 inputs and the jump shrinks by s. None when s does not divide it."""
    if rf.whole_input or rf.jump is None or rf.start is None:
        return rf
    size, jump, start = [], [], []
    for axis in range(len(rf.size)):
        s, j = stride[axis], rf.jump[axis]
        if j % s:
            return None
        k_eff = dilation[axis] * (kernel[axis] - 1) + 1
        size.append(rf.size[axis] + ((k_eff - 1) // s) * j)
        start.append(rf.start[axis] + (padding[axis] - (k_eff - 1) / 2) / s * j)
        jump.append(j // s)
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))


def _upsample(rf: ReceptiveField, scale: Axes, interpolated: bool) -> ReceptiveField | None:
    """Nearest upsampling by s: each output copies one input, the jump shrinks by s; linear
    interpolation also reads the next input (one more jump). None when s does not divide the jump."""
    if rf.whole_input or rf.jump is None or rf.start is None:
        return rf
    if any(j % s for j, s in zip(rf.jump, scale, strict=True)):
        return None
    size = tuple(z + (j if interpolated else 0) for z, j in zip(rf.size, rf.jump, strict=True))
    return ReceptiveField(size, tuple(j // s for j, s in zip(rf.jump, scale, strict=True)), rf.start)


def _padding(value: Any, kernel: Axes, dilation: Axes) -> Axes:
    if value == "valid":
        return (0,) * len(kernel)
    if value == "same":  # stride 1 only (torch's rule): pad half the dilated kernel
        return tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
    return _axes(value, 0, len(kernel))


class _Propagator:
    def __init__(self, trace: Trace):
        self.trace = trace
        self.attrs = {n.path: n.attrs for n in trace.nodes}
        spatial = _spatial(trace.input_shape) or (1,)
        self.whole = ReceptiveField(spatial, None, None, whole_input=True)
        self.fields: dict[str, ReceptiveField | None] = {}
        self.unknown: list[str] = []

    def run(self) -> dict[str, ReceptiveField | None]:
        shapes = {op.id: op.output_shape for op in self.trace.ops}
        for op in self.trace.ops:
            if op.kind == "input":
                spatial = _spatial(op.output_shape)
                self.fields[op.id] = ReceptiveField((1,) * len(spatial), (1,) * len(spatial), (0.5,) * len(spatial)) if spatial else self.whole
                continue
            inputs = [self.fields.get(i) for i in op.inputs]
            in_shapes = [shapes[i] for i in op.inputs if i in shapes]
            self.fields[op.id] = self.op(op, inputs, in_shapes)
        return self.fields

    def op(self, op: Op, inputs: list[ReceptiveField | None], in_shapes: list[tuple[int, ...]]) -> ReceptiveField | None:
        if not inputs:
            return None
        if any(rf is None for rf in inputs):
            return None
        out_spatial = _spatial(op.output_shape)
        if any(rf.whole_input for rf in inputs) or out_spatial is None:
            return self.whole  # flatten, linear, mean over H and W, or anything fed by them
        same_rank = [rf for rf in inputs if len(rf.size) == len(out_spatial)]
        if not same_rank:
            return self.whole
        widest = max(same_rank, key=lambda rf: (_volume(rf.size), rf.size))
        in_spatial = _spatial(in_shapes[0]) if in_shapes else None
        rule = O.TORCH_TYPES[op.type].receptive if op.kind == "module" and op.type in O.TORCH_TYPES else None
        attrs = self.attrs.get(op.module, {}) if op.kind == "module" else {}
        n = len(out_spatial)
        if rule in ("window", "transposed") and "kernel_size" in attrs and in_spatial is not None:
            kernel = _axes(attrs["kernel_size"], 1, n)
            dilation = _axes(attrs.get("dilation"), 1, n)
            stride = _axes(attrs.get("stride"), 1, n) if attrs.get("stride") is not None else kernel
            padding = _padding(attrs.get("padding"), kernel, dilation)
            rf = (_window if rule == "window" else _transposed)(widest, kernel, stride, padding, dilation)
            if rf is None:
                self.unknown.append(f"{op.id} ({op.type})")
            return rf
        if rule == "upsample" and in_spatial is not None and len(in_spatial) == n:
            if all(o % i == 0 for o, i in zip(out_spatial, in_spatial, strict=True)):
                rf = _upsample(widest, tuple(o // i for o, i in zip(out_spatial, in_spatial, strict=True)), attrs.get("mode", "nearest") != "nearest")
                if rf is not None:
                    return rf
            self.unknown.append(f"{op.id} ({op.type})")
            return None
        if all(s == 1 for s in out_spatial) and in_spatial is not None and any(s != 1 for s in in_spatial):
            return self.whole  # global pooling (module or function)
        if rule == "adaptive" and in_spatial is not None and len(in_spatial) == n:
            # PyTorch's adaptive pooling: windows of ceil(i/o) with starts floor(k*i/o); exact when o divides i
            stride = tuple(i // o for i, o in zip(in_spatial, out_spatial, strict=True))
            kernel = tuple(i - (o - 1) * s for i, o, s in zip(in_spatial, out_spatial, stride, strict=True))
            return _window(widest, kernel, stride, (0,) * n, (1,) * n)
        if in_spatial is None or out_spatial == in_spatial:
            return widest  # pointwise, or where branches of the same size meet
        self.unknown.append(f"{op.id} ({op.type})")
        return None


def _volume(size: Axes) -> int:
    out = 1
    for s in size:
        out *= s
    return out


def receptive_fields(trace: Trace) -> dict[str, ReceptiveField | None]:
    """The receptive field at every op's output, by op id (``None`` where no rule applies)."""
    return _Propagator(trace).run()


def unknown_ops(trace: Trace) -> list[str]:
    """Ops that change the spatial size without a receptive-field rule (their fields are unknown)."""
    propagator = _Propagator(trace)
    propagator.run()
    return propagator.unknown


def block_outputs(trace: Trace) -> dict[str, str]:
    """The id of the op producing each module's output: the last op run inside it."""
    last: dict[str, str] = {}
    for op in trace.ops:
        if op.kind not in ("module", "function"):
            continue
        path = op.module
        while True:
            last[path] = op.id
            if not path:
                break
            path = path.rpartition(".")[0]
    out = next((op for op in trace.ops if op.kind == "output"), None)
    if out is not None and out.inputs:
        last[""] = out.inputs[0]
    return last


def block_fields(trace: Trace, fields: dict[str, ReceptiveField | None] | None = None) -> dict[str, ReceptiveField | None]:
    """The receptive field at each module's output, by module path."""
    fields = fields if fields is not None else receptive_fields(trace)
    return {path: fields.get(op_id) for path, op_id in block_outputs(trace).items()}
