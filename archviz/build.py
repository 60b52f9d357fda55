"""Layer 2: spec -> nn.Module. The only place that constructs torch.nn modules from a spec.

Each primitive's torch class and constructor arguments come from the spec trace, which
gets them from the op table's shape rules (``archviz/spec/ops.py``): input channels and
``in_features`` are inferred there, so the model is built for an input shape, exactly as
the seed's VGG computes ``512 * 7 * 7``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from archviz.spec import ops as O
from archviz.spec.model import Layer
from archviz.spec.resolve import Resolved
from archviz.trace.from_spec import trace_spec
from archviz.trace.record import Node, Shape


class Block(nn.Sequential):
    """A named sequential block; ``kind`` is the label shown as its type (VGGBlock, NiNBlock, ...)."""

    def __init__(self, layers: OrderedDict[str, nn.Module], kind: str | None = None):
        super().__init__(layers)
        self._archviz_kind = kind or "Sequential"


class Branches(nn.Module):
    """Branches p1..pn on the same input, merged: concatenated on channels (Inception, DenseNet),
    added, or multiplied with broadcasting (a squeeze-and-excitation gate)."""

    def __init__(self, branches: list[nn.Module | None], merge: str, kind: str | None = None, split: bool = False):
        super().__init__()
        self.split = split  # branch i reads the i-th equal slice of the channels (ShuffleNetV2), not all of them
        self.names = [f"p{i + 1}" if branch is not None else None for i, branch in enumerate(branches)]
        for name, branch in zip(self.names, branches, strict=True):
            if branch is not None:  # an empty branch is the input itself, as in a residual's identity shortcut
                self.add_module(name, branch)
        self.merge = merge
        self._archviz_kind = kind or ("Split" if split else O.MERGE_TYPES[merge])

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        parts = len(self.names)
        Xs = X.split(X.shape[1] // parts, dim=1) if self.split else (X,) * parts
        outs = [getattr(self, name)(Xi) if name is not None else Xi for name, Xi in zip(self.names, Xs, strict=True)]
        if self.merge == "cat":
            return torch.cat(outs, dim=1)
        Y = outs[0]
        for out in outs[1:]:  # left to right, as the spec trace records it
            Y = Y + out if self.merge == "add" else Y * out
        return Y


class Residual(nn.Module):
    """act(body(X) + shortcut(X)); the shortcut is the identity when there is none (ResNet)."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None, act: nn.Module | None, kind: str | None = None):
        super().__init__()
        self.body = body
        if shortcut is not None:
            self.shortcut = shortcut
        if act is not None:
            self.act = act
        self._archviz_kind = kind

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Y = self.body(X) + (self.shortcut(X) if hasattr(self, "shortcut") else X)
        return self.act(Y) if hasattr(self, "act") else Y


def build(resolved: Resolved, input_shape: Shape | None = None, device: str | torch.device | None = None) -> nn.Module:
    """Build the model for ``input_shape`` (default: the spec's). ``device="meta"`` skips weight init."""
    trace = trace_spec(resolved, input_shape or resolved.default_input)
    nodes = {n.path: n for n in trace.nodes}
    with torch.device(device or "cpu"):
        return Block(_modules(resolved.layers, "", nodes))


def _modules(layers: tuple[Layer, ...], prefix: str, nodes: dict[str, Node]) -> OrderedDict[str, nn.Module]:
    return OrderedDict((layer.name, _module(layer, f"{prefix}{layer.name}", nodes)) for layer in layers)


def _module(layer: Layer, path: str, nodes: dict[str, Node]) -> nn.Module:
    kind = layer.args.get("kind")
    if layer.op == "seq":
        return Block(_modules(layer.args["layers"], f"{path}.", nodes), kind)
    if layer.op == "residual":
        body = Block(_modules(layer.args["layers"], f"{path}.body.", nodes))
        shortcut = Block(_modules(layer.args["shortcut"], f"{path}.shortcut.", nodes)) if layer.args["shortcut"] else None
        act = getattr(nn, nodes[f"{path}.act"].type)() if layer.args["act"] else None
        return Residual(body, shortcut, act, kind)
    merge = O.OPS[layer.op].merge
    if merge is not None:
        branches = [Block(_modules(b, f"{path}.p{i + 1}.", nodes)) if b else None for i, b in enumerate(layer.args["branches"])]
        return Branches(branches, merge, kind, O.OPS[layer.op].split)
    # A primitive: the torch class and constructor arguments its shape rule gave the trace.
    node = nodes[path]
    return _OWN.get(node.type, getattr(nn, node.type, None))(**node.attrs)


class Identity(nn.Identity):
    """nn.Identity that returns a new tensor object (a view), so that a tracer following tensors
    by identity sees the data pass through this layer instead of skipping it."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return X.view_as(X)


_OWN: dict[str, type[nn.Module]] = {"Identity": Identity}
