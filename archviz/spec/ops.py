"""The vocabulary of the spec language: every op, its named fields, and the block macros.

Primitive ops map one-to-one onto torch modules (the builder knows how). Convenience
fields (``norm``/``act`` on conv and linear) and macros (``vgg_block``, ``inception``,
...) are expanded here into primitives, as data, so that the builder and the shape
arithmetic only ever see primitives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from archviz.spec.model import Layer

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


INT = Kind("int", "a whole number or an expression over the spec's parameters", minimum=0)
POS_INT = Kind("pos_int", "a whole number >= 1 or an expression over the spec's parameters", minimum=1)
WINDOW = Kind("window", "a whole number >= 1 or a list of one to three (one per spatial axis), e.g. 3 or [3, 5]", minimum=1, axes=True)
PADDING = Kind("padding", "a whole number >= 0 or a list of one to three (one per spatial axis), e.g. 1 or [1, 2]", minimum=0, axes=True)
INT_PAIR = Kind("int_pair", "a list of two whole numbers, e.g. [96, 128]", minimum=0)
PROB = Kind("prob", "a probability between 0 and 1")
NUMBER = Kind("number", "a number > 0, e.g. 0.0001")
BOOL = Kind("bool", "true or false")
TEXT = Kind("text", "a short name")
ACT = Kind("act", "one of: " + ", ".join(ACTIVATIONS), choices=tuple(ACTIVATIONS))
NORM = Kind("norm", "one of: " + ", ".join(NORMS), choices=NORMS)


def choice(*words: str) -> Kind:
    """A field that takes one of ``words``."""
    return Kind("choice", "one of: " + ", ".join(words), choices=words)


LAYERS = Kind("layers", "a list of layers")
BRANCHES = Kind("branches", "a list of branches, each a list of layers")

REQUIRED = object()


@dataclass(frozen=True)
class Field:
    kind: Kind
    default: Any = REQUIRED
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class OpDef:
    name: str
    doc: str
    fields: Mapping[str, Field]
    # None for primitives; otherwise turns one resolved layer into primitive layers.
    expand: Callable[[Layer], list[Layer]] | None = None


OPS: dict[str, OpDef] = {}


def register_op(name: str, doc: str, **fields: Field):
    """Register an op; decorate its expansion function, or call with ``None`` for a primitive."""

    def decorator(expand: Callable[[Layer], list[Layer]] | None):
        if name in OPS:
            raise ValueError(f"op {name!r} is registered twice")
        OPS[name] = OpDef(name, doc, fields, expand)
        return expand

    return decorator


def arg(layer: Layer, key: str) -> Any:
    """A field's value, falling back to the op's declared default."""
    if key in layer.args:
        return layer.args[key]
    default = OPS[layer.op].fields[key].default
    return None if default is REQUIRED else default


def _sub(op: str, layer: Layer, name: str | None = None, **args: Any) -> Layer:
    return Layer(op, args, name, layer.source, layer.line)


# ---- primitives --------------------------------------------------------------------

_BLOCK_KIND = Field(TEXT, None, "label shown as the block's type")

register_op(
    "conv",
    "2-D convolution; input channels are inferred",
    out=Field(POS_INT, doc="output channels"),
    kernel=Field(WINDOW),
    stride=Field(WINDOW, 1),
    padding=Field(PADDING, 0),
    dilation=Field(WINDOW, 1),
    groups=Field(POS_INT, 1),
    bias=Field(BOOL, True),
    norm=Field(NORM, None, "normalisation after the convolution"),
    act=Field(ACT, None, "activation after the normalisation"),
)(None)
register_op(
    "linear",
    "fully connected layer; in_features is inferred",
    out=Field(POS_INT, doc="output features"),
    bias=Field(BOOL, True),
    norm=Field(NORM, None),
    act=Field(ACT, None),
    dropout=Field(PROB, 0.0, "dropout after the activation"),
)(None)
register_op("maxpool", "max pooling", kernel=Field(WINDOW), stride=Field(WINDOW, None), padding=Field(PADDING, 0))(None)
register_op("avgpool", "average pooling", kernel=Field(WINDOW), stride=Field(WINDOW, None), padding=Field(PADDING, 0))(None)
register_op("gap", "global average pooling to 1x1 (keeps the 4-D shape)")(None)
register_op("flatten", "flatten everything but the batch dimension")(None)
register_op("dropout", "dropout", p=Field(PROB, 0.5))(None)
register_op("batchnorm", "batch normalisation over channels (1-D or 2-D is inferred)")(None)
register_op("act", "an activation function", fn=Field(ACT))(None)
register_op("seq", "a named sequential block", layers=Field(LAYERS), kind=_BLOCK_KIND)(None)
register_op("concat", "parallel branches concatenated on channels", branches=Field(BRANCHES), kind=_BLOCK_KIND)(None)
register_op(
    "residual",
    "act(layers(x) + shortcut(x)); the shortcut is the identity when omitted",
    layers=Field(LAYERS),
    shortcut=Field(LAYERS, ()),
    act=Field(ACT, None),
    kind=_BLOCK_KIND,
)(None)

# Which primitive ops hold child layers, and in which fields.
CHILD_FIELDS: dict[str, tuple[str, ...]] = {"seq": ("layers",), "residual": ("layers", "shortcut"), "concat": ("branches",)}


# ---- sugar on primitives: conv/linear with norm and activation ---------------------


def expand_decorations(layer: Layer) -> list[Layer]:
    """conv/linear with norm/act/dropout -> the bare layer followed by its decorations."""
    if layer.op not in ("conv", "linear"):
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
