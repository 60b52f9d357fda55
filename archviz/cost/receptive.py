"""Receptive fields, propagated through the trace's dataflow graph (no model walk).

For each op output we keep, per spatial axis (height, width), the arithmetic of
Dumoulin & Visin (2016) and Araujo et al. (2019, "Computing receptive fields of CNNs"):

- ``size``: how many input pixels one output position depends on;
- ``jump``: input pixels between neighbouring output positions (the product of strides);
- ``start``: input coordinate of the centre of the first output position's field, with
  pixel ``i`` of the input covering [i, i+1) so that the input starts at 0.5.

A layer with kernel k, stride s, padding p and dilation d maps (size, jump, start) to
(size + (k_eff - 1) * jump, jump * s, start + ((k_eff - 1) / 2 - p) * jump) with
k_eff = d * (k - 1) + 1. The size may exceed the input: padding is counted as if it were
image.

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

from archviz.trace.record import Op, Trace

Pair = tuple[int, int]

_WINDOW_MODULES = ("Conv1d", "Conv2d", "Conv3d", "MaxPool2d", "AvgPool2d", "MaxPool1d", "AvgPool1d")
_ADAPTIVE_MODULES = ("AdaptiveAvgPool2d", "AdaptiveMaxPool2d")


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive field at one tensor, per axis (height, width)."""

    size: Pair
    jump: Pair | None = (1, 1)
    start: tuple[float, float] | None = (0.5, 0.5)
    whole_input: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "jump": list(self.jump) if self.jump is not None else None,
            "start": list(self.start) if self.start is not None else None,
            "whole_input": self.whole_input,
        }

    def text(self) -> str:
        """``'11'`` for a square field, ``'7x11'`` otherwise, ``'all'`` for the whole input."""
        if self.whole_input:
            return "all"
        h, w = self.size
        return str(h) if h == w else f"{h}x{w}"


def _spatial(shape: tuple[int, ...]) -> Pair | None:
    if len(shape) == 4:
        return (shape[2], shape[3])
    if len(shape) == 3:
        return (1, shape[2])
    return None


def _pair(value: Any, default: int) -> Pair:
    if value is None:
        return (default, default)
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[-1]))


def _window(rf: ReceptiveField, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> ReceptiveField:
    if rf.whole_input or rf.jump is None or rf.start is None:
        return rf
    size, jump, start = [], [], []
    for axis in range(2):
        k_eff = dilation[axis] * (kernel[axis] - 1) + 1
        size.append(rf.size[axis] + (k_eff - 1) * rf.jump[axis])
        start.append(rf.start[axis] + ((k_eff - 1) / 2 - padding[axis]) * rf.jump[axis])
        jump.append(rf.jump[axis] * stride[axis])
    return ReceptiveField((size[0], size[1]), (jump[0], jump[1]), (start[0], start[1]))


def _padding(value: Any, kernel: Pair, dilation: Pair) -> Pair:
    if value == "valid":
        return (0, 0)
    if value == "same":  # stride 1 only (torch's rule): pad half the dilated kernel
        return (dilation[0] * (kernel[0] - 1) // 2, dilation[1] * (kernel[1] - 1) // 2)
    return _pair(value, 0)


class _Propagator:
    def __init__(self, trace: Trace):
        self.trace = trace
        self.attrs = {n.path: n.attrs for n in trace.nodes}
        spatial = _spatial(trace.input_shape) or (1, 1)
        self.whole = ReceptiveField(spatial, None, None, whole_input=True)
        self.fields: dict[str, ReceptiveField | None] = {}
        self.unknown: list[str] = []

    def run(self) -> dict[str, ReceptiveField | None]:
        shapes = {op.id: op.output_shape for op in self.trace.ops}
        for op in self.trace.ops:
            if op.kind == "input":
                self.fields[op.id] = ReceptiveField((1, 1)) if _spatial(op.output_shape) else self.whole
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
        widest = max(inputs, key=lambda rf: (rf.size[0] * rf.size[1], rf.size))
        in_spatial = _spatial(in_shapes[0]) if in_shapes else None
        attrs = self.attrs.get(op.module, {}) if op.kind == "module" else {}
        if op.kind == "module" and op.type in _WINDOW_MODULES and "kernel_size" in attrs:
            kernel = _pair(attrs["kernel_size"], 1)
            dilation = _pair(attrs.get("dilation"), 1)
            stride = _pair(attrs.get("stride"), 1) if attrs.get("stride") is not None else kernel
            return _window(widest, kernel, stride, _padding(attrs.get("padding"), kernel, dilation), dilation)
        if out_spatial == (1, 1) and in_spatial not in (None, (1, 1)):
            return self.whole  # global pooling (module or function)
        if op.kind == "module" and op.type in _ADAPTIVE_MODULES and in_spatial is not None:
            # PyTorch's adaptive pooling: windows of ceil(i/o) with starts floor(k*i/o); exact when o divides i
            stride = (in_spatial[0] // out_spatial[0], in_spatial[1] // out_spatial[1])
            kernel = (in_spatial[0] - (out_spatial[0] - 1) * stride[0], in_spatial[1] - (out_spatial[1] - 1) * stride[1])
            return _window(widest, kernel, stride, (0, 0), (1, 1))
        if in_spatial is None or out_spatial == in_spatial:
            return widest  # pointwise, or where branches of the same size meet
        self.unknown.append(f"{op.id} ({op.type})")
        return None


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
