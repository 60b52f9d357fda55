"""Layer 2: spec -> nn.Module. The only place that knows torch.nn constructors' signatures.

Input channels and ``in_features`` come from the spec trace (shape arithmetic), so the
model is built for an input shape, exactly as the seed's VGG computes ``512 * 7 * 7``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from archviz.spec.model import Layer
from archviz.spec.resolve import Resolved
from archviz.trace.from_spec import trace_spec
from archviz.trace.record import Node, Shape


class Block(nn.Sequential):
    """A named sequential block; ``kind`` is the label shown as its type (VGGBlock, NiNBlock, ...)."""

    def __init__(self, layers: OrderedDict[str, nn.Module], kind: str | None = None):
        super().__init__(layers)
        self._archviz_kind = kind or "Sequential"


class Concat(nn.Module):
    """Parallel branches p1..pn on the same input, concatenated on channels (Inception)."""

    def __init__(self, branches: list[nn.Module], kind: str | None = None):
        super().__init__()
        for i, branch in enumerate(branches):
            self.add_module(f"p{i + 1}", branch)
        self._archviz_kind = kind

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(X) for branch in self.children()], dim=1)


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
    node = nodes[path]
    a = node.attrs
    kind = layer.args.get("kind")
    if layer.op == "seq":
        return Block(_modules(layer.args["layers"], f"{path}.", nodes), kind)
    if layer.op == "concat":
        branches = [Block(_modules(b, f"{path}.p{i + 1}.", nodes)) for i, b in enumerate(layer.args["branches"])]
        return Concat(branches, kind)
    if layer.op == "residual":
        body = Block(_modules(layer.args["layers"], f"{path}.body.", nodes))
        shortcut = Block(_modules(layer.args["shortcut"], f"{path}.shortcut.", nodes)) if layer.args["shortcut"] else None
        act = getattr(nn, nodes[f"{path}.act"].type)() if layer.args["act"] else None
        return Residual(body, shortcut, act, kind)
    if layer.op == "conv":
        return nn.Conv2d(**a)
    if layer.op == "linear":
        return nn.Linear(**a)
    if layer.op == "maxpool":
        return nn.MaxPool2d(**a)
    if layer.op == "avgpool":
        return nn.AvgPool2d(**a)
    if layer.op == "gap":
        return nn.AdaptiveAvgPool2d(**a)
    if layer.op == "batchnorm":
        return getattr(nn, node.type)(**a)
    if layer.op == "dropout":
        return nn.Dropout(**a)
    if layer.op == "flatten":
        return nn.Flatten()
    if layer.op == "act":
        return getattr(nn, node.type)()
    raise AssertionError(f"no builder for primitive op {layer.op!r}")
