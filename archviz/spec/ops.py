"""The op table: every op of the spec language, declared once.

An op's entry holds its named fields and defaults, its shape rule (output shape, params,
FLOPs and the torch constructor's arguments, by arithmetic alone), the ``torch.nn`` class
it builds for each input rank, its diagram kind and label, whether its FLOPs are counted and its
receptive-field rule. The spec tracer, the builder, the module tracer's attributes, the
FLOP list, the receptive fields and the diagram colours all read this table, as
PyTorch's ``flop_counter`` reads its ``register_flop_formula`` table; adding an op is one
``@primitive`` entry (plus its test). Torch classes that no op builds but that traced
``nn.Module``\\ s contain (``AdaptiveMaxPool2d``, ``InstanceNorm2d``, ...) have a
``register_torch`` line, and functions between modules a ``register_function`` line.

Convenience fields (``norm``/``act`` on conv and linear) and macros (``vgg_block``,
``inception``, ...) are expanded here into primitives, as data, so that the builder and
the shape arithmetic only ever see primitives. Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from archviz.spec.model import Layer

Shape = tuple[int, ...]

# Activation name in a spec -> the torch.nn class that implements it.
ACTIVATIONS: dict[str, str] = {
    "relu": "ReLU",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "gelu": "GELU",
    "silu": "SiLU",
    "leaky_relu": "LeakyReLU",
    "elu": "ELU",
    "hardswish": "Hardswish",
    "hardsigmoid": "Hardsigmoid",
    "relu6": "ReLU6",
    "mish": "Mish",
    "softplus": "Softplus",
}
# Normalisation after a conv/linear (the `norm` field) -> the op it expands into.
NORMS: tuple[str, ...] = ("batch",)

# ---- field kinds -------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """What a field accepts; ``describe`` is used in error messages.

    ``minimum`` bounds whole-number kinds (a kernel or stride of 0 is refused when the spec
    is read, not met as a ZeroDivisionError later); ``axes`` kinds take one number for every
    spatial axis or a list of one to three, one per axis (expanded once the input's rank is
    known); ``choices`` lists the words a choice field accepts.
    """

    name: str
    describe: str
    minimum: int | None = None
    axes: bool = False
    choices: tuple[str, ...] = ()
    words: tuple[str, ...] = ()  # words a number field also takes (conv padding: same, valid)


INT = Kind("int", "a whole number or an expression over the spec's parameters", minimum=0)
POS_INT = Kind("pos_int", "a whole number >= 1 or an expression over the spec's parameters", minimum=1)
WINDOW = Kind("window", "a whole number >= 1 or a list of one to three (one per spatial axis), e.g. 3 or [3, 5]", minimum=1, axes=True)
PADDING = Kind("padding", "a whole number >= 0 or a list of one to three (one per spatial axis), e.g. 1 or [1, 2]", minimum=0, axes=True)
CONV_PADDING = Kind(
    "conv_padding",
    "a whole number >= 0, a list of one to three (one per spatial axis), `same` (output size = input size, stride 1) or `valid` (no padding)",
    minimum=0,
    axes=True,
    words=("same", "valid"),
)
INT_PAIR = Kind("int_pair", "a list of two whole numbers, e.g. [96, 128]", minimum=0)
PROB = Kind("prob", "a probability between 0 and 1")
NUMBER = Kind("number", "a number > 0, e.g. 0.0001")
BOOL = Kind("bool", "true or false")
TEXT = Kind("text", "a short name")
ACT = Kind("act", "one of: " + ", ".join(ACTIVATIONS), choices=tuple(ACTIVATIONS))
NORM = Kind("norm", "one of: " + ", ".join(NORMS), choices=NORMS)
LAYERS = Kind("layers", "a list of layers")
BRANCHES = Kind("branches", "a list of branches, each a list of layers")


def choice(*words: str) -> Kind:
    """A field that takes one of ``words``."""
    return Kind("choice", "one of: " + ", ".join(words), choices=words)


REQUIRED = object()


@dataclass(frozen=True)
class Field:
    kind: Kind
    default: Any = REQUIRED
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


# ---- what an op computes, and the torch classes it stands for ----------------------


@dataclass(frozen=True)
class Out:
    """A primitive's result on one input: what the spec tracer records and the builder constructs."""

    shape: Shape
    type: str  # the torch.nn class built for this input (Conv1d, Conv2d, ...)
    attrs: Mapping[str, Any] = field(default_factory=dict)  # its constructor's keyword arguments
    params: int = 0
    flops: int = 0  # forward FLOPs, FLOPs = 2 x MACs (torch.utils.flop_counter's convention)


class OpError(Exception):
    """An op cannot run on its input; the message completes "layer 'x' (Conv2d) ..."."""


class TooSmall(OpError):
    """The input's spatial size is too small for a window: a larger input would work."""


# Diagram kinds, in legend order (render/dot.py gives each a colour).
KINDS: tuple[str, ...] = ("conv", "pool", "norm", "activation", "linear", "dropout", "reshape", "merge", "block", "other")
COUNTED, ZERO = "counted", "zero"  # FLOP rules: computed (conv, matmul) or 0 by convention (pooling, norms, ...)
# Receptive-field rules (cost/receptive.py): a sliding window; a transposed window; an
# upsampling; adaptive pooling; or pointwise (the field passes through unchanged).
RECEPTIVE_RULES = ("window", "transposed", "upsample", "adaptive", "pointwise")


@dataclass(frozen=True)
class TorchType:
    """What archviz knows about one torch.nn class, whoever built it."""

    name: str
    kind: str  # diagram kind, one of KINDS
    flops: str  # COUNTED or ZERO
    receptive: str = "pointwise"  # one of RECEPTIVE_RULES
    attrs: tuple[str, ...] = ()  # hyperparameters a reader cares about, as torch names them
    axes: int | None = None  # spatial axes its window attributes cover (Conv1d: 1), None for any
    label: tuple[Callable[[Mapping[str, Any]], str], ...] = ()  # the diagram's settings line, part by part (LABEL_* below)
    # `archviz explain`: (attrs, input shape, output shape) -> the arithmetic behind its numbers; None: shapes only
    explain: Callable[[Mapping[str, Any], Shape, Shape], list[Formula]] | None = None


@dataclass(frozen=True)
class FunctionType:
    """A function called between modules (``cat``, ``add``, ``matmul``...), as the module tracer names it."""

    name: str
    kind: str
    flops: str
    explain: Callable[[list[Shape], Shape], list[Formula]] | None = None  # (input shapes, output shape) -> the merge rule
    symbol: str = ""  # what a diagram writes in a merge's circle ("+" for add); "" writes the name


TORCH_TYPES: dict[str, TorchType] = {}
FUNCTIONS: dict[str, FunctionType] = {}


def register_torch(
    *names: str,
    kind: str,
    flops: str = ZERO,
    receptive: str = "pointwise",
    attrs: tuple[str, ...] = (),
    axes: tuple[int | None, ...] | None = None,
    explain: Callable[[Mapping[str, Any], Shape, Shape], list[Formula]] | None = None,
    label: tuple[Callable[[Mapping[str, Any]], str], ...] = (),
) -> None:
    """Describe torch.nn classes (``axes[i]`` for ``names[i]``); loud on a name registered twice."""
    assert kind in KINDS and flops in (COUNTED, ZERO) and receptive in RECEPTIVE_RULES, (kind, flops, receptive)
    for i, name in enumerate(names):
        if name in TORCH_TYPES:
            raise ValueError(f"torch type {name!r} is registered twice")
        TORCH_TYPES[name] = TorchType(name, kind, flops, receptive, attrs, axes[i] if axes else None, explain=explain, label=label)


def register_function(
    *names: str, kind: str, flops: str = ZERO, explain: Callable[[list[Shape], Shape], list[Formula]] | None = None, symbol: str = ""
) -> None:
    assert kind in KINDS and flops in (COUNTED, ZERO), (kind, flops)
    for name in names:
        if name in FUNCTIONS:
            raise ValueError(f"function {name!r} is registered twice")
        FUNCTIONS[name] = FunctionType(name, kind, flops, explain, symbol)


def torch_type(type_: str, attrs: Mapping[str, Any] | None = None) -> TorchType | None:
    """A module class's entry: by name, else the longest known name it starts with (``Conv2dSame``), else the class its ``attrs`` were read from."""
    entry = TORCH_TYPES.get(type_) or max((t for name, t in TORCH_TYPES.items() if type_.startswith(name)), key=lambda t: len(t.name), default=None)
    if attrs and (entry is None or entry.attrs != tuple(attrs)):
        entry = next((t for t in TORCH_TYPES.values() if t.attrs == tuple(attrs)), entry)
    return entry


def layer_kind(op_kind: str, type_: str) -> str:
    """The diagram kind of a module class or function name, from this table ("other" if unknown)."""
    entry = FUNCTIONS.get(type_.lower()) if op_kind == "function" else torch_type(type_)
    return entry.kind if entry is not None else "other"


def label(type_: str, attrs: Mapping[str, Any]) -> str:
    """The settings that matter for a layer, e.g. ``1\u21926 \u00b7 5\u00d75 s1 p0``: its entry's label parts, joined."""
    entry = torch_type(type_, attrs) if attrs else None
    return " \u00b7 ".join(p for p in (part(attrs) for part in (entry.label if entry else ())) if p)


# Label parts: each a layer's attributes -> one piece of its diagram label ("" when it has nothing to say).
def _dim(value: Any) -> str:  # (3, 5) -> "3\u00d75", (2, 2) -> "2" for strides and padding, ints as is
    if isinstance(value, list | tuple):
        return str(value[0]) if len(set(value)) == 1 else "\u00d7".join(str(v) for v in value)
    return str(value)


def _window_label(a: Mapping[str, Any]) -> str:
    dilation, groups = f" d{_dim(a['dilation'])}" if _dim(a.get("dilation", 1)) != "1" else "", f" g{a['groups']}" if a.get("groups", 1) != 1 else ""
    return f"{_size(a['kernel_size'])} s{_dim(a.get('stride', 1))} p{_dim(a.get('padding', 0))}{dilation}{groups}" if "kernel_size" in a else ""


def _upsample_label(a: Mapping[str, Any]) -> str:
    factor = a.get("scale_factor")
    factors = tuple(f"{f:g}" for f in (factor if isinstance(factor, tuple) else (factor,)) if f is not None)
    target = f"\u2192 {_dim(a['size'])}" if a.get("size") else f"\u00d7{_dim(factors)}"
    return f"{target} {a.get('mode', '')}".strip()


_size = lambda value: "\u00d7".join(str(v) for v in value) if isinstance(value, list | tuple) else f"{value}\u00d7{value}"  # noqa: E731
_channels_label = lambda a: f"{a['in_channels']}\u2192{a['out_channels']}" if "in_channels" in a and "out_channels" in a else ""  # noqa: E731
_features_label = lambda a: f"{a['in_features']}\u2192{a['out_features']}" if "in_features" in a and "out_features" in a else ""  # noqa: E731
_output_size_label = lambda a: "\u2192 " + _size(a["output_size"]) if "output_size" in a else ""  # noqa: E731
_num_features_label = lambda a: f"{a['num_features']} ch" if "num_features" in a else ""  # noqa: E731
_groups_label = lambda a: f"{a['num_channels']} ch \u00b7 {a['num_groups']} groups" if "num_channels" in a else ""  # noqa: E731
_normalized_label = lambda a: "over " + "\u00d7".join(str(v) for v in a["normalized_shape"]) if "normalized_shape" in a else ""  # noqa: E731
_lrn_size_label = lambda a: f"size {a['size']}" if "size" in a else ""  # noqa: E731
_p_label = lambda a: f"p={a['p']}" if "p" in a else ""  # noqa: E731


# Hyperparameters given per spatial axis: an int in a torch module means the same on every axis.
_AXES_ATTRS = frozenset({"kernel_size", "stride", "padding", "dilation", "output_padding", "output_size", "size"})


def read_attrs(type_name: str, module: Any) -> dict[str, Any]:
    """The registered hyperparameters of a torch module, normalised as the spec tracer writes them.

    Ints given for every axis become tuples (``kernel_size=3`` on a Conv2d is ``(3, 3)``), a
    pooling stride of None is the kernel, ``bias`` is whether there is one.
    """
    spec = TORCH_TYPES.get(type_name)
    if spec is None:
        return {}
    out: dict[str, Any] = {}
    for key in spec.attrs:
        value = getattr(module, key, None)
        if key == "bias":
            value = value is not None and value is not False
        elif key == "stride" and value is None:
            value = getattr(module, "kernel_size", None)
        if key in _AXES_ATTRS and value is not None:
            value = _as_axes(value, spec.axes)
        elif isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out


def _as_axes(value: Any, axes: int | None) -> Any:
    if isinstance(value, int) and axes is not None:
        return (value,) * axes
    return tuple(value) if isinstance(value, list | tuple) else value


# ---- the op registry ---------------------------------------------------------------


@dataclass(frozen=True)
class OpDef:
    name: str
    doc: str
    fields: Mapping[str, Field]
    # Macros: turns one resolved layer into primitive layers. None for primitives.
    expand: Callable[[Layer], list[Layer]] | None = None
    # Primitives with no children: (fields, input shape) -> Out, raising OpError.
    rule: Callable[[Mapping[str, Any], Shape], Out] | None = None
    # Blocks with children: the fields that hold them, and how branches are merged.
    children: tuple[str, ...] = ()
    merge: str | None = None  # "cat", "add" or "mul" for branch ops
    split: bool = False  # branch i reads the i-th equal slice of the input's channels (torch.split), not all of it
    torch: tuple[str, ...] = ()  # the torch.nn classes the op may build
    reads_channels: bool = False  # its shape depends on the input's channels: the first one met checks them against in_channels


OPS: dict[str, OpDef] = {}


def _add(opdef: OpDef) -> None:
    if opdef.name in OPS:
        raise ValueError(f"op {opdef.name!r} is registered twice")
    OPS[opdef.name] = opdef


def register_op(name: str, doc: str, **fields: Field):
    """Register a macro: decorate its expansion function (layer -> primitive layers)."""

    def decorator(expand: Callable[[Layer], list[Layer]] | None):
        _add(OpDef(name, doc, fields, expand))
        return expand

    return decorator


def primitive(
    name: str,
    doc: str,
    *,
    torch: tuple[str, ...],
    kind: str,
    flops: str = ZERO,
    receptive: str = "pointwise",
    attrs: tuple[str, ...] = (),
    axes: tuple[int | None, ...] | None = None,
    explain: Callable[[Mapping[str, Any], Shape, Shape], list[Formula]] | None = None,
    label: tuple[Callable[[Mapping[str, Any]], str], ...] = (),
    reads_channels: bool = False,
    **fields: Field,
):
    """Register a primitive op: decorate its shape rule. ``torch`` lists the classes it builds
    (one per spatial rank for conv/pool/norm: ``axes`` says which), each registered in
    TORCH_TYPES with the op's diagram kind, FLOP rule, receptive-field rule and attributes
    (by the first op that builds them: ``adaptive_avgpool`` builds ``gap``'s classes)."""

    def decorator(rule: Callable[[Mapping[str, Any], Shape], Out]):
        _add(OpDef(name, doc, fields, rule=rule, torch=torch, reads_channels=reads_channels))
        if all(t in TORCH_TYPES for t in torch):
            assert all(TORCH_TYPES[t].attrs == attrs and TORCH_TYPES[t].kind == kind for t in torch), (name, torch)
        else:
            register_torch(*torch, kind=kind, flops=flops, receptive=receptive, attrs=attrs, axes=axes, explain=explain, label=label)
        return rule

    return decorator


def block_op(name: str, doc: str, *, children: tuple[str, ...], merge: str | None = None, split: bool = False, **fields: Field) -> None:
    """Register an op that holds layers (``seq``, ``residual``) or branches merged by ``merge``."""
    _add(OpDef(name, doc, fields, children=children, merge=merge, split=split))


def arg(layer: Layer, key: str) -> Any:
    """A field's value, falling back to the op's declared default."""
    if key in layer.args:
        return layer.args[key]
    default = OPS[layer.op].fields[key].default
    return None if default is REQUIRED else default


def _sub(op: str, layer: Layer, name: str | None = None, **args: Any) -> Layer:
    return Layer(op, args, name, layer.source, layer.line)


# ---- shape arithmetic shared by the rules ------------------------------------------

_LAYOUTS = {3: "NxCxL", 4: "NxCxHxW", 5: "NxCxDxHxW"}


def _spatial_rank(x: Shape, what: str) -> int:
    """1, 2 or 3 spatial axes, from the input's rank; OpError for anything else."""
    if len(x) not in _LAYOUTS:
        raise OpError(
            f"needs a 3-, 4- or 5-D input ({', '.join(_LAYOUTS.values())}) for {what} but gets {list(x)}"
            + ("; put it before the flatten" if len(x) == 2 else "")
        )
    return len(x) - 2


def _axes(value: Any, n: int, key: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(value)
    if len(value) != n:
        layout = _LAYOUTS[n + 2]
        raise OpError(f"has {key} {list(value)} with {len(value)} entries but its {layout} input has {n} spatial axis{'es' if n > 1 else ''}")
    return value


def _window_out(size: int, k: int, s: int, p: int, d: int) -> int:
    span = d * (k - 1) + 1
    out = (size + 2 * p - span) // s + 1
    if out < 1:
        window = f"its kernel {k} (padding {p})" if d == 1 else f"its kernel {k} at dilation {d}, which spans {span} pixels (padding {p})"
        raise TooSmall(f"gets a {size}-pixel side, too small for {window}")
    return out


# ---- explanations: the arithmetic behind a layer's numbers (`archviz explain`) ------


@dataclass(frozen=True)
class Formula:
    """One line of arithmetic with a layer's actual numbers: ``text`` evaluates to ``value``.

    ``checks`` names the traced numbers ``value`` must equal (``"shape:2"``: the output's axis
    2; ``"shape"``: the whole output shape; ``"params"``; ``"macs"``): `archviz explain` drops a
    formula that disagrees with the trace (a module whose attributes do not tell the whole
    story) rather than show a wrong one. ``rule`` is the formula in symbols.
    """

    what: str  # "output H, W", "params", "MACs", "channels", ...
    text: str  # "floor((224 + 2*1 - 1*(3-1) - 1)/1) + 1"
    value: int | tuple[int, ...]
    checks: tuple[str, ...] = ()
    rule: str = ""


AXIS_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}  # spatial axes by count, as formulas name them


def _has(a: Mapping[str, Any], *keys: str) -> bool:
    return all(a.get(k) is not None for k in keys)


def _ax(value: Any, n: int) -> tuple[int, ...]:
    return (int(value),) * n if isinstance(value, int) else tuple(int(v) for v in value)


def _star(values: Any) -> str:
    return "*".join(str(v) for v in values)


def _window_formulas(x: Shape, k: Shape, s: Shape, p: Shape, d: Shape, *, ceil: bool = False, output_padding: Shape | None = None) -> list[Formula]:
    """The output size on each spatial axis (one line for axes that agree), as PyTorch's docs write it."""
    n = len(x) - 2
    groups: dict[tuple[int, ...], list[int]] = {}
    for i in range(n):
        groups.setdefault((x[2 + i], k[i], s[i], p[i], d[i], output_padding[i] if output_padding else 0), []).append(i)
    out = []
    for (size, ki, si, pi, di, oi), axes in groups.items():
        what = "output " + ", ".join(AXIS_NAMES[n][i] for i in axes)
        checks = tuple(f"shape:{2 + i}" for i in axes)
        if output_padding is not None:
            text = f"({size} - 1)*{si} - 2*{pi} + {di}*({ki}-1) + {oi} + 1"
            value = (size - 1) * si - 2 * pi + di * (ki - 1) + oi + 1
            out.append(Formula(what, text, value, checks, "(in - 1)*stride - 2*padding + dilation*(kernel-1) + output_padding + 1"))
            continue
        num = size + 2 * pi - di * (ki - 1) - 1
        value = (-(-num // si) if ceil else num // si) + 1
        text = f"{'ceil' if ceil else 'floor'}(({size} + 2*{pi} - {di}*({ki}-1) - 1)/{si}) + 1"
        rule = f"{'ceil' if ceil else 'floor'}((in + 2*padding - dilation*(kernel-1) - 1)/stride) + 1"
        if ceil and (value - 1) * si >= size + pi:  # PyTorch's ceil_mode: a last window starting in the right padding is dropped
            value -= 1
            text += " - 1"
            rule += ", minus 1 when the last window would start in the right padding"
        out.append(Formula(what, text, value, checks, rule))
    return out


def _lead(shape: Shape) -> str:
    """``"8*"`` for a batch of 8 (or the leading axes of a linear layer's input), ``""`` for one."""
    return f"{_star(shape)}*" if math.prod(shape) != 1 else ""


def _explain_conv(a: Mapping[str, Any], x: Shape, y: Shape) -> list[Formula]:
    if not _has(a, "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups") or len(x) < 3:
        return []
    n = len(x) - 2
    k, s, d = _ax(a["kernel_size"], n), _ax(a["stride"], n), _ax(a["dilation"], n)
    padding = a["padding"]
    out = []
    if not isinstance(padding, str) or padding == "valid":  # "same" may pad one side more: shapes only
        out += _window_formulas(x, k, s, (0,) * n if isinstance(padding, str) else _ax(padding, n), d)
    cin, cout, g, bias = a["in_channels"], a["out_channels"], a["groups"], bool(a.get("bias"))
    per = f"({cin}/{g})" if g != 1 else f"{cin}"
    per_rule = "(C_in/groups)" if g != 1 else "C_in"
    window = "*".join("k" for _ in k)
    params = math.prod(k) * (cin // g) * cout + (cout if bias else 0)
    out.append(
        Formula(
            "params",
            f"{_star(k)}*{per}*{cout}" + (f" + {cout}" if bias else ""),
            params,
            ("params",),
            f"{window}*{per_rule}*C_out weights" + (" + C_out biases" if bias else " (no bias)"),
        )
    )
    spatial = "*".join(f"{a}_out" for a in AXIS_NAMES[n])
    macs = y[0] * math.prod(y[2:]) * cout * math.prod(k) * (cin // g)
    text = f"{_lead(y[:1])}{_star(y[2:])}*{cout} * {_star(k)}*{per}"
    out.append(Formula("MACs", text, macs, ("macs",), f"{'N*' if y[0] != 1 else ''}{spatial}*C_out * {window}*{per_rule}"))
    return out


def _explain_convtranspose(a: Mapping[str, Any], x: Shape, y: Shape) -> list[Formula]:
    if not _has(a, "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "output_padding") or len(x) < 3:
        return []
    n = len(x) - 2
    k, s, p, d, op = (_ax(a[key], n) for key in ("kernel_size", "stride", "padding", "dilation", "output_padding"))
    cin, cout, g, bias = a["in_channels"], a["out_channels"], a["groups"], bool(a.get("bias"))
    per = f"({cout}/{g})" if g != 1 else f"{cout}"
    out = _window_formulas(x, k, s, p, d, output_padding=op)
    params = cin * (cout // g) * math.prod(k) + (cout if bias else 0)
    out.append(
        Formula("params", f"{cin}*{per}*{_star(k)}" + (f" + {cout}" if bias else ""), params, ("params",), "C_in*(C_out/groups)*k*k weights + C_out biases")
    )
    # torch.utils.flop_counter counts a transposed conv over its input positions
    macs = x[0] * math.prod(x[2:]) * cin * (cout // g) * math.prod(k)
    out.append(Formula("MACs", f"{_lead(x[:1])}{_star(x[2:])}*{cin} * {per}*{_star(k)}", macs, ("macs",), "input positions*C_in * (C_out/groups)*k*k"))
    return out


def _explain_linear(a: Mapping[str, Any], x: Shape, y: Shape) -> list[Formula]:
    if not _has(a, "in_features", "out_features") or len(x) < 2:
        return []
    i, o, bias = a["in_features"], a["out_features"], bool(a.get("bias"))
    out = [
        Formula(
            "params",
            f"{i}*{o}" + (f" + {o}" if bias else ""),
            i * o + (o if bias else 0),
            ("params",),
            "in*out weights" + (" + out biases" if bias else " (no bias)"),
        )
    ]
    out.append(Formula("MACs", f"{_lead(x[:-1])}{i}*{o}", math.prod(x[:-1]) * i * o, ("macs",), ("N*" if math.prod(x[:-1]) != 1 else "") + "in*out"))
    return out


def _explain_pool(a: Mapping[str, Any], x: Shape, y: Shape) -> list[Formula]:
    if not _has(a, "kernel_size", "stride", "padding", "ceil_mode") or len(x) < 3:
        return []
    n = len(x) - 2
    k, s, p = _ax(a["kernel_size"], n), _ax(a["stride"], n), _ax(a["padding"], n)
    return _window_formulas(x, k, s, p, _ax(a.get("dilation") or 1, n), ceil=bool(a["ceil_mode"]))


def _explain_batchnorm(a: Mapping[str, Any], x: Shape) -> list[Formula]:
    if not _has(a, "num_features"):
        return []
    c = a["num_features"]
    rule = f"a scale (gamma) and a shift (beta) per channel; its running mean and variance (2*{c} = {2 * c:,} values) are buffers, not parameters"
    return [Formula("params", f"2*{c}", 2 * c, ("params",), rule)]


def _explain_flatten(x: Shape) -> list[Formula]:
    return [Formula("features", _star(x[1:]), math.prod(x[1:]), ("shape:1",), "C*H*W: every value of an example in one row")] if len(x) > 2 else []


def _explain_cat(xs: list[Shape], y: Shape) -> list[Formula]:
    """Concatenation: the sizes on the joined axis add up (channels, for Inception)."""
    if len(xs) < 2 or any(len(x) != len(y) for x in xs):
        return []
    axes = [i for i in range(len(y)) if sum(x[i] for x in xs) == y[i] and all(x[j] == y[j] for x in xs for j in range(len(y)) if j != i)]
    if not axes:
        return []
    i = 1 if 1 in axes else axes[0]
    what = "channels" if i == 1 else f"axis {i}"
    return [Formula(what, " + ".join(str(x[i]) for x in xs), y[i], (f"shape:{i}",), f"concatenated on {what}: the sizes add up, every other axis must agree")]


def _explain_elementwise(xs: list[Shape], y: Shape, sign: str, how: str) -> list[Formula]:
    if len(xs) < 2 or any(len(x) != len(y) for x in xs):
        return []
    broadcast = any(x != y for x in xs)
    rule = f"{how}; " + ("an axis of size 1 is broadcast to the other's size" if broadcast else "the shapes must be equal")
    return [Formula("shape", f" {sign} ".join("[" + ", ".join(map(str, x)) + "]" for x in xs), tuple(y), ("shape",), rule)]


# ---- primitives --------------------------------------------------------------------

_DECORATIONS = dict(
    norm=Field(NORM, None, "normalisation after the layer"),
    act=Field(ACT, None, "activation after the normalisation"),
)
_CONV_ATTRS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias")


def _check_groups(cin: int, cout: int, g: int) -> None:
    if cin % g or cout % g:
        raise OpError(f"has groups={g}, which must divide its {cin} input and {cout} output channels")


@primitive(
    "conv",
    "convolution over 1, 2 or 3 spatial axes (picked by the input's rank); input channels are inferred",
    torch=("Conv1d", "Conv2d", "Conv3d"),
    axes=(1, 2, 3),
    kind="conv",
    flops=COUNTED,
    receptive="window",
    attrs=_CONV_ATTRS,
    explain=_explain_conv,
    label=(_channels_label, _window_label),
    reads_channels=True,
    out=Field(POS_INT, doc="output channels"),
    kernel=Field(WINDOW),
    stride=Field(WINDOW, 1),
    padding=Field(CONV_PADDING, 0, "zeros added on each side; `same` keeps the size (stride 1 only, as in PyTorch), `valid` adds none"),
    dilation=Field(WINDOW, 1),
    groups=Field(POS_INT, 1),
    bias=Field(BOOL, True),
    **_DECORATIONS,
)
def _conv(a: Mapping[str, Any], x: Shape) -> Out:
    n = _spatial_rank(x, "a convolution")
    cin, cout, g = x[1], a["out"], a["groups"]
    k, s, d = (_axes(a[key], n, key) for key in ("kernel", "stride", "dilation"))
    _check_groups(cin, cout, g)
    if a["padding"] == "same":
        if any(v != 1 for v in s):
            raise OpError(f"has padding: same with stride {list(s)}; PyTorch allows `same` only with stride 1, so give the padding as a number")
        spatial = x[2:]
        padding: Any = "same"
    else:
        p = (0,) * n if a["padding"] == "valid" else _axes(a["padding"], n, "padding")
        spatial = tuple(_window_out(x[2 + i], k[i], s[i], p[i], d[i]) for i in range(n))
        padding = "valid" if a["padding"] == "valid" else p
    per_out = (cin // g) * math.prod(k)
    attrs = dict(in_channels=cin, out_channels=cout, kernel_size=k, stride=s, padding=padding, dilation=d, groups=g, bias=a["bias"])
    params = cout * per_out + (cout if a["bias"] else 0)
    return Out((x[0], cout, *spatial), f"Conv{n}d", attrs, params, 2 * x[0] * cout * math.prod(spatial) * per_out)


@primitive(
    "convtranspose",
    "transposed convolution (upsampling by `stride`) over 1, 2 or 3 spatial axes; input channels are inferred",
    torch=("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"),
    axes=(1, 2, 3),
    kind="conv",
    flops=COUNTED,
    receptive="transposed",
    attrs=("in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding", "groups", "bias", "dilation"),
    explain=_explain_convtranspose,
    label=(_channels_label, _window_label),
    reads_channels=True,
    out=Field(POS_INT, doc="output channels"),
    kernel=Field(WINDOW),
    stride=Field(WINDOW, 1),
    padding=Field(PADDING, 0),
    output_padding=Field(PADDING, 0, "extra size added to one side of the output"),
    dilation=Field(WINDOW, 1),
    groups=Field(POS_INT, 1),
    bias=Field(BOOL, True),
    **_DECORATIONS,
)
def _convtranspose(a: Mapping[str, Any], x: Shape) -> Out:
    n = _spatial_rank(x, "a transposed convolution")
    cin, cout, g = x[1], a["out"], a["groups"]
    k, s, p, op, d = (_axes(a[key], n, key) for key in ("kernel", "stride", "padding", "output_padding", "dilation"))
    _check_groups(cin, cout, g)
    for i in range(n):
        if op[i] >= max(s[i], d[i]):
            raise OpError(f"has output_padding {op[i]}, which must be smaller than its stride {s[i]} or dilation {d[i]} (PyTorch's rule)")
    spatial = tuple((x[2 + i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1 for i in range(n))
    if min(spatial) < 1:
        raise OpError(f"gives an empty output {list(spatial)}: its padding {list(p)} is too large for a {list(x[2:])} input")
    attrs = dict(in_channels=cin, out_channels=cout, kernel_size=k, stride=s, padding=p, output_padding=op, groups=g, bias=a["bias"], dilation=d)
    per_in = (cout // g) * math.prod(k)
    params = cin * per_in + (cout if a["bias"] else 0)
    # torch.utils.flop_counter counts a transposed conv over its input positions.
    return Out((x[0], cout, *spatial), f"ConvTranspose{n}d", attrs, params, 2 * x[0] * cin * math.prod(x[2:]) * per_in)


@primitive(
    "linear",
    "fully connected layer on the last axis; in_features is inferred",
    torch=("Linear",),
    kind="linear",
    flops=COUNTED,
    attrs=("in_features", "out_features", "bias"),
    explain=_explain_linear,
    label=(_features_label,),
    out=Field(POS_INT, doc="output features"),
    bias=Field(BOOL, True),
    **_DECORATIONS,
    dropout=Field(PROB, 0.0, "dropout after the activation"),
)
def _linear(a: Mapping[str, Any], x: Shape) -> Out:
    if len(x) < 2:
        raise OpError(f"needs an input with a batch axis but gets {list(x)}")
    out = (*x[:-1], a["out"])
    params = x[-1] * a["out"] + (a["out"] if a["bias"] else 0)
    attrs = dict(in_features=x[-1], out_features=a["out"], bias=a["bias"])
    return Out(out, "Linear", attrs, params, 2 * math.prod(x[:-1]) * x[-1] * a["out"])


def _ceil_out(size: int, k: int, s: int, p: int) -> int:
    """PyTorch's ceil_mode size: round up, but the last window must start inside the input or its left padding."""
    out = -(-(size + 2 * p - k) // s) + 1
    if (out - 1) * s >= size + p:
        out -= 1
    if out < 1:
        raise TooSmall(f"gets a {size}-pixel side, too small for its kernel {k} (padding {p}) even with ceil_mode")
    return out


def _pool(kind: str):
    def rule(a: Mapping[str, Any], x: Shape) -> Out:
        n = _spatial_rank(x, "pooling")
        k, p = _axes(a["kernel"], n, "kernel"), _axes(a["padding"], n, "padding")
        s = _axes(a["stride"] if a["stride"] is not None else a["kernel"], n, "stride")
        if any(2 * p[i] > k[i] for i in range(n)):
            raise OpError(f"has padding {list(p)} larger than half its kernel {list(k)}; PyTorch requires padding <= kernel / 2")
        side = _ceil_out if a["ceil_mode"] else (lambda size, k, s, p: _window_out(size, k, s, p, 1))
        spatial = tuple(side(x[2 + i], k[i], s[i], p[i]) for i in range(n))
        # ceil_mode (and max pooling's dilation) are recorded as a torch module reports them: explain reads them
        attrs = (
            dict(kernel_size=k, stride=s, padding=p, dilation=(1,) * n, ceil_mode=a["ceil_mode"])
            if kind == "Max"
            else dict(kernel_size=k, stride=s, padding=p, ceil_mode=a["ceil_mode"])
        )
        return Out((*x[:2], *spatial), f"{kind}Pool{n}d", attrs)

    return rule


for _name, _kind in (("maxpool", "Max"), ("avgpool", "Avg")):
    primitive(
        _name,
        f"{_kind.lower()} pooling over 1, 2 or 3 spatial axes; stride defaults to the kernel",
        torch=(f"{_kind}Pool1d", f"{_kind}Pool2d", f"{_kind}Pool3d"),
        axes=(1, 2, 3),
        kind="pool",
        receptive="window",
        attrs=("kernel_size", "stride", "padding", "dilation", "ceil_mode") if _kind == "Max" else ("kernel_size", "stride", "padding", "ceil_mode"),
        explain=_explain_pool,
        label=(_window_label,),
        kernel=Field(WINDOW),
        stride=Field(WINDOW, None),
        padding=Field(PADDING, 0),
        ceil_mode=Field(BOOL, False, "round the output size up, as PyTorch's ceil_mode (SqueezeNet, GoogLeNet: 56x56, not 55x55, at 225x225)"),
    )(_pool(_kind))


@primitive(
    "gap",
    "global average pooling to size 1 on every spatial axis (keeps the rank: NxCx1x1 for NxCxHxW)",
    torch=("AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d"),
    axes=(1, 2, 3),
    kind="pool",
    receptive="adaptive",
    attrs=("output_size",),
    label=(_output_size_label,),
)
def _gap(a: Mapping[str, Any], x: Shape) -> Out:
    n = _spatial_rank(x, "global average pooling")
    return Out((*x[:2], *(1,) * n), f"AdaptiveAvgPool{n}d", dict(output_size=(1,) * n))


def _adaptive(kind: str):
    def rule(a: Mapping[str, Any], x: Shape) -> Out:
        n = _spatial_rank(x, "adaptive pooling")
        size = _axes(a["size"], n, "size")
        return Out((*x[:2], *size), f"Adaptive{kind}Pool{n}d", dict(output_size=size))

    return rule


for _name, _kind in (("adaptive_avgpool", "Avg"), ("adaptive_maxpool", "Max")):
    primitive(
        _name,
        f"adaptive {_kind.lower()} pooling to `size` on each spatial axis, whatever the input's size (size 1 everywhere is `gap` for average)",
        torch=(f"Adaptive{_kind}Pool1d", f"Adaptive{_kind}Pool2d", f"Adaptive{_kind}Pool3d"),
        axes=(1, 2, 3),
        kind="pool",
        receptive="adaptive",
        attrs=("output_size",),
        label=(_output_size_label,),
        size=Field(WINDOW, doc="output size per spatial axis, e.g. 7 or [6, 6]"),
    )(_adaptive(_kind))


@primitive(
    "upsample",
    "upsampling by an integer `scale` per axis or to a fixed `size` (exactly one of them)",
    torch=("Upsample",),
    kind="pool",
    receptive="upsample",
    attrs=("size", "scale_factor", "mode"),
    label=(_upsample_label,),
    scale=Field(WINDOW, None, "output = input x scale on each spatial axis"),
    size=Field(WINDOW, None, "output size on each spatial axis"),
    mode=Field(choice("nearest", "linear", "bilinear", "trilinear"), "nearest", "linear for NxCxL, bilinear for NxCxHxW, trilinear for NxCxDxHxW"),
)
def _upsample(a: Mapping[str, Any], x: Shape) -> Out:
    n = _spatial_rank(x, "upsampling")
    if (a["scale"] is None) == (a["size"] is None):
        raise OpError("needs exactly one of `scale` (e.g. scale: 2) and `size` (e.g. size: [64, 64])")
    linear = {"linear": 1, "bilinear": 2, "trilinear": 3}.get(a["mode"])
    if linear is not None and linear != n:
        right = {1: "linear", 2: "bilinear", 3: "trilinear"}[n]
        raise OpError(f"has mode {a['mode']!r}, which needs a {_LAYOUTS[linear + 2]} input; use mode: {right} for its {_LAYOUTS[n + 2]} input")
    if a["size"] is not None:
        spatial = _axes(a["size"], n, "size")
        attrs = dict(size=spatial, scale_factor=None, mode=a["mode"])
    else:
        scale = _axes(a["scale"], n, "scale")
        spatial = tuple(x[2 + i] * scale[i] for i in range(n))
        factor = float(a["scale"]) if isinstance(a["scale"], int) else tuple(float(s) for s in scale)
        attrs = dict(size=None, scale_factor=factor, mode=a["mode"])
    return Out((*x[:2], *spatial), "Upsample", attrs)


@primitive(
    "pixelshuffle",
    "rearrange C*r*r x H x W into C x H*r x W*r (sub-pixel upsampling)",
    torch=("PixelShuffle",),
    kind="reshape",
    attrs=("upscale_factor",),
    factor=Field(POS_INT, doc="r"),
)
def _pixelshuffle(a: Mapping[str, Any], x: Shape) -> Out:
    r = a["factor"]
    if len(x) != 4 or x[1] % (r * r):
        raise OpError(f"needs NxCxHxW with C divisible by {r * r} but gets {list(x)}")
    return Out((x[0], x[1] // (r * r), x[2] * r, x[3] * r), "PixelShuffle", dict(upscale_factor=r))


@primitive(
    "shuffle",
    "channel shuffle (ShuffleNet): the channels, seen as `groups` x C/groups, are transposed so that each group's channels spread over all groups",
    torch=("ChannelShuffle",),
    kind="reshape",
    attrs=("groups",),
    groups=Field(POS_INT, 2, "g; must divide the channels"),
)
def _shuffle(a: Mapping[str, Any], x: Shape) -> Out:
    g = a["groups"]
    if len(x) < 3 or x[1] % g:
        raise OpError(f"has groups={g}, which must divide the channels of an input with spatial axes, but gets {list(x)}")
    return Out(x, "ChannelShuffle", dict(groups=g))


@primitive("flatten", "flatten everything but the batch axis", torch=("Flatten",), kind="reshape", explain=lambda a, x, y: _explain_flatten(x))
def _flatten(a: Mapping[str, Any], x: Shape) -> Out:
    return Out((x[0], math.prod(x[1:])), "Flatten")


@primitive("identity", "pass the input through unchanged", torch=("Identity",), kind="reshape")
def _identity(a: Mapping[str, Any], x: Shape) -> Out:
    return Out(x, "Identity")


@primitive("dropout", "dropout", torch=("Dropout",), kind="dropout", attrs=("p",), label=(_p_label,), p=Field(PROB, 0.5))
def _dropout(a: Mapping[str, Any], x: Shape) -> Out:
    return Out(x, "Dropout", dict(p=a["p"]))


@primitive(
    "batchnorm",
    "batch normalisation over channels: BatchNorm1d for NxC and NxCxL, 2d for NxCxHxW, 3d for NxCxDxHxW",
    torch=("BatchNorm1d", "BatchNorm2d", "BatchNorm3d"),
    kind="norm",
    attrs=("num_features",),
    explain=lambda a, x, y: _explain_batchnorm(a, x),
    label=(_num_features_label,),
    reads_channels=True,
)
def _batchnorm(a: Mapping[str, Any], x: Shape) -> Out:
    if len(x) not in (2, 3, 4, 5):
        raise OpError(f"needs a 2- to 5-D input (NxC, NxCxL, NxCxHxW or NxCxDxHxW), got {list(x)}")
    return Out(x, f"BatchNorm{max(len(x) - 2, 1)}d", dict(num_features=x[1]), 2 * x[1])


@primitive(
    "layernorm",
    "layer normalisation over the last `dims` axes (default: all but the batch), with a weight and bias per element",
    torch=("LayerNorm",),
    kind="norm",
    attrs=("normalized_shape",),
    label=(_normalized_label,),
    dims=Field(POS_INT, None, "how many trailing axes to normalise over"),
)
def _layernorm(a: Mapping[str, Any], x: Shape) -> Out:
    dims = a["dims"] if a["dims"] is not None else len(x) - 1
    if not 1 <= dims < len(x):
        raise OpError(f"normalises over {dims} trailing axes, but its input {list(x)} has {len(x) - 1} besides the batch")
    shape = tuple(x[-dims:])
    return Out(x, "LayerNorm", dict(normalized_shape=shape), 2 * math.prod(shape))


@primitive(
    "groupnorm",
    "group normalisation: channels split into `groups`, each normalised over its channels and spatial axes",
    torch=("GroupNorm",),
    kind="norm",
    attrs=("num_groups", "num_channels"),
    label=(_groups_label,),
    reads_channels=True,
    groups=Field(POS_INT, doc="number of groups; must divide the channels"),
)
def _groupnorm(a: Mapping[str, Any], x: Shape) -> Out:
    if len(x) < 2 or x[1] % a["groups"]:
        raise OpError(f"has groups={a['groups']}, which must divide its {x[1] if len(x) > 1 else 0} channels")
    return Out(x, "GroupNorm", dict(num_groups=a["groups"], num_channels=x[1]), 2 * x[1])


@primitive(
    "lrn",
    "local response normalisation across `size` neighbouring channels (AlexNet, 2012)",
    torch=("LocalResponseNorm",),
    kind="norm",
    attrs=("size", "alpha", "beta", "k"),
    label=(_lrn_size_label,),
    size=Field(POS_INT, doc="channels in each neighbourhood (AlexNet: 5)"),
    alpha=Field(NUMBER, 1e-4),
    beta=Field(NUMBER, 0.75),
    k=Field(NUMBER, 1.0),
)
def _lrn(a: Mapping[str, Any], x: Shape) -> Out:
    if len(x) < 3:
        raise OpError(f"needs an input with spatial axes (NxCxL, NxCxHxW, ...) but gets {list(x)}; put it before the flatten")
    return Out(x, "LocalResponseNorm", dict(size=a["size"], alpha=a["alpha"], beta=a["beta"], k=a["k"]))


@primitive("act", "an activation function", torch=tuple(ACTIVATIONS.values()), kind="activation", fn=Field(ACT))
def _act(a: Mapping[str, Any], x: Shape) -> Out:
    return Out(x, ACTIVATIONS[a["fn"]])


# ---- blocks: layers with children --------------------------------------------------

_BLOCK_KIND = Field(TEXT, None, "label shown as the block's type")
_BRANCH_DOC = "branches: lists of layers run on the same input (an empty list is the input itself), "
block_op("seq", "a named sequential block", children=("layers",), layers=Field(LAYERS), kind=_BLOCK_KIND)
block_op("concat", _BRANCH_DOC + "concatenated on channels", children=("branches",), merge="cat", branches=Field(BRANCHES), kind=_BLOCK_KIND)
block_op(
    "split",
    "branches on equal slices of the input's channels (torch.split / torch.chunk: branch i reads slice i; "
    "an empty branch passes its slice through), concatenated on channels: ShuffleNetV2's unit, CSP's partial paths",
    children=("branches",),
    merge="cat",
    split=True,
    branches=Field(BRANCHES),
    kind=_BLOCK_KIND,
)
block_op("add", _BRANCH_DOC + "added (shapes must be equal)", children=("branches",), merge="add", branches=Field(BRANCHES), kind=_BLOCK_KIND)
block_op(
    "multiply",
    _BRANCH_DOC + "multiplied, broadcasting axes of size 1 (a squeeze-and-excitation gate)",
    children=("branches",),
    merge="mul",
    branches=Field(BRANCHES),
    kind=_BLOCK_KIND,
)
block_op(
    "residual",
    "act(layers(x) + shortcut(x)); the shortcut is the identity when omitted",
    children=("layers", "shortcut"),
    merge="add",
    layers=Field(LAYERS),
    shortcut=Field(LAYERS, ()),
    act=Field(ACT, None),
    kind=_BLOCK_KIND,
)
# Which ops hold child layers, and in which fields.
CHILD_FIELDS: dict[str, tuple[str, ...]] = {name: op.children for name, op in OPS.items() if op.children}
MERGE_TYPES = {"cat": "Concat", "add": "Add", "mul": "Multiply"}  # default block type of branch ops


# ---- torch classes no op builds, met in traced nn.Modules --------------------------

register_torch("PReLU", "SELU", "CELU", "Hardtanh", "Softsign", "Softmax", "LogSoftmax", "Threshold", "GLU", kind="activation")
register_torch("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "RMSNorm", kind="norm")
register_torch("Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", kind="dropout", attrs=("p",), label=(_p_label,))
register_torch("StochasticDepth", kind="dropout", attrs=("p",))  # its p is the chance to drop the whole block; the label leaves it out
register_torch("Unflatten", "ZeroPad2d", "ConstantPad2d", "ReflectionPad2d", "ReplicationPad2d", kind="reshape")
register_torch("LazyLinear", "Bilinear", kind="linear", flops=COUNTED)
register_torch("MultiheadAttention", kind="other", flops=COUNTED)

register_function("cat", kind="merge", explain=_explain_cat, symbol="concat")
register_function("concat", "concatenate", kind="merge", explain=_explain_cat)
register_function("add", kind="merge", symbol="+", explain=lambda xs, y: _explain_elementwise(xs, y, "+", "added element by element"))
register_function("sub", kind="merge", symbol="\u2212", explain=lambda xs, y: _explain_elementwise(xs, y, "-", "subtracted element by element"))
register_function("mul", kind="merge", symbol="\u00d7", explain=lambda xs, y: _explain_elementwise(xs, y, "*", "multiplied element by element"))
register_function("stack", kind="merge")
register_function("div", kind="merge", symbol="\u00f7")
register_function("relu", "relu_", "relu6", "gelu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "softmax", "log_softmax", kind="activation")
register_function(
    "flatten", "view", "reshape", "squeeze", "unsqueeze", "permute", "transpose", "getitem", "chunk", "split", "t", "expand",
    "expand_as", "contiguous", "unbind", "narrow", "select", "to", "float", "channel_shuffle", "roll", "repeat", "clone", "pad",
    kind="reshape",
)  # fmt: skip
register_function("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "interpolate", "mean", "amax", kind="pool")
register_function("linear", "matmul", "mm", "bmm", "addmm", "baddbmm", "einsum", "scaled_dot_product_attention", kind="linear", flops=COUNTED)
register_function("conv1d", "conv2d", "conv3d", kind="conv", flops=COUNTED)
register_function("dropout", kind="dropout")
register_function("batch_norm", "layer_norm", "group_norm", kind="norm")
register_function("truediv", "floordiv", "neg", "pow", "sqrt", "rsqrt", "exp", "log", "abs", "clamp", "sum", "max", "min", kind="other")


# ---- sugar on primitives: conv/linear with norm and activation ---------------------

_DECORATED = ("conv", "convtranspose", "linear")


def expand_decorations(layer: Layer) -> list[Layer]:
    """conv/convtranspose/linear with norm/act/dropout -> the bare layer followed by its decorations."""
    if layer.op not in _DECORATED:
        return [layer]
    bare = {k: v for k, v in layer.args.items() if k not in ("norm", "act", "dropout")}
    out = [Layer(layer.op, bare, layer.name, layer.source, layer.line)]
    if arg(layer, "norm"):
        out.append(_sub("batchnorm", layer))
    if arg(layer, "act"):
        out.append(_sub("act", layer, fn=arg(layer, "act")))
    if layer.op == "linear" and arg(layer, "dropout"):
        out.append(_sub("dropout", layer, p=arg(layer, "dropout")))
    return out


# ---- macros: the reusable blocks of the classic CNNs -------------------------------


@register_op(
    "vgg_block",
    "VGG block: `convs` 3x3 convs (padding 1, ReLU), then 2x2 max pooling, stride 2",
    convs=Field(POS_INT),
    out=Field(POS_INT),
)
def _vgg_block(layer: Layer) -> list[Layer]:
    convs = [_sub("conv", layer, out=arg(layer, "out"), kernel=3, padding=1, act="relu") for _ in range(arg(layer, "convs"))]
    body = (*convs, _sub("maxpool", layer, kernel=2, stride=2))
    return [_sub("seq", layer, layer.name, layers=body, kind="VGGBlock")]


@register_op(
    "nin_block",
    "NiN block: a conv followed by two 1x1 convs, each with ReLU",
    out=Field(POS_INT),
    kernel=Field(WINDOW),
    stride=Field(WINDOW, 1),
    padding=Field(PADDING, 0),
)
def _nin_block(layer: Layer) -> list[Layer]:
    out = arg(layer, "out")
    body = (
        _sub("conv", layer, out=out, kernel=arg(layer, "kernel"), stride=arg(layer, "stride"), padding=arg(layer, "padding"), act="relu"),
        _sub("conv", layer, out=out, kernel=1, act="relu"),
        _sub("conv", layer, out=out, kernel=1, act="relu"),
    )
    return [_sub("seq", layer, layer.name, layers=body, kind="NiNBlock")]


@register_op(
    "inception",
    "Inception block (GoogLeNet v1): four paths concatenated on channels",
    c1=Field(POS_INT, doc="1x1 conv path"),
    c2=Field(INT_PAIR, doc="1x1 reduce, then 3x3 conv"),
    c3=Field(INT_PAIR, doc="1x1 reduce, then 5x5 conv"),
    c4=Field(POS_INT, doc="3x3 max pool (stride 1), then 1x1 conv"),
)
def _inception(layer: Layer) -> list[Layer]:
    c2, c3 = arg(layer, "c2"), arg(layer, "c3")

    def conv(out: int, kernel: int, padding: int = 0) -> Layer:
        return _sub("conv", layer, out=out, kernel=kernel, padding=padding, act="relu")

    branches = (
        (conv(arg(layer, "c1"), 1),),
        (conv(c2[0], 1), conv(c2[1], 3, 1)),
        (conv(c3[0], 1), conv(c3[1], 5, 2)),
        # Stride 1 here: the seed's MaxPool2d(3, padding=1) defaults to stride 3 and breaks the concat.
        (_sub("maxpool", layer, kernel=3, stride=1, padding=1), conv(arg(layer, "c4"), 1)),
    )
    return [_sub("concat", layer, layer.name, branches=branches, kind="Inception")]


@register_op(
    "basic_block",
    "ResNet basic block: two 3x3 convs with batch norm, added to the shortcut, then ReLU",
    out=Field(POS_INT),
    stride=Field(WINDOW, 1),
    projection=Field(BOOL, False, "a 1x1 conv on the shortcut (needed when shape changes)"),
)
def _basic_block(layer: Layer) -> list[Layer]:
    out, stride = arg(layer, "out"), arg(layer, "stride")
    body = (
        _sub("conv", layer, out=out, kernel=3, stride=stride, padding=1, norm="batch", act="relu"),
        _sub("conv", layer, out=out, kernel=3, padding=1, norm="batch"),
    )
    # d2l's Residual: the projection is a bare 1x1 conv, without batch norm.
    shortcut = (_sub("conv", layer, out=out, kernel=1, stride=stride),) if arg(layer, "projection") else ()
    return [_sub("residual", layer, layer.name, layers=body, shortcut=shortcut, act="relu", kind="BasicBlock")]
