"""The closed choices archviz offers, shared by the Python API and the CLI. No imports: a leaf.

Every module may import this one; it imports nothing of archviz (STYLE.md, habit 12).
"""

from __future__ import annotations

from enum import StrEnum


class Optimizer(StrEnum):
    """Optimizers of `archviz train` and of the simulated step; ``momentum`` is SGD with momentum 0.9."""

    sgd = "sgd"
    momentum = "momentum"
    adam = "adam"
    adamw = "adamw"


class Device(StrEnum):
    """Where to train; ``auto`` picks CUDA when there is one."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class TargetDevice(StrEnum):
    """The device a memory prediction is *for* (no GPU is needed to predict for ``cuda``)."""

    cpu = "cpu"
    cuda = "cuda"


class DType(StrEnum):
    """The weights' dtype; with ``amp`` the weights stay fp32 and this is the autocast dtype."""

    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Mode(StrEnum):
    """``train``: the training step; ``eval``: one forward pass under ``torch.no_grad()``; ``both``: the two side by side."""

    train = "train"
    eval = "eval"
    both = "both"


class GroupBy(StrEnum):
    """How `archviz cost` groups its rows: by block (module path) or by layer kind (conv, linear, norm, ...)."""

    block = "block"
    kind = "kind"


class ExplainFormat(StrEnum):
    """Views of `archviz explain`: the terminal walkthrough, Markdown, or the JSON contract."""

    table = "table"
    markdown = "markdown"
    json = "json"


class NodeFigure(StrEnum):
    """Figures `archviz diagram --show` can put on every node."""

    params = "params"
    macs = "macs"
    memory = "memory"
    rf = "rf"
