"""A real forward pass that records every module's output shape: the oracle the tracers are checked against."""

from __future__ import annotations

import torch
from torch import nn


def real_output_shapes(model: nn.Module, X: torch.Tensor) -> tuple[torch.Tensor, dict[str, tuple[int, ...]]]:
    """``model(X)`` without gradients, and each module's first output shape by its dotted path."""
    paths = {id(m): p for p, m in model.named_modules()}
    seen: dict[str, tuple[int, ...]] = {}

    def record(module, args, Y):
        seen.setdefault(paths[id(module)], tuple(Y.shape))

    hooks = [m.register_forward_hook(record) for m in model.modules()]
    try:
        with torch.no_grad():
            Y = model(X)
    finally:
        for h in hooks:
            h.remove()
    return Y, seen
