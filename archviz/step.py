"""The training step and the optimizer factory: one copy, run by `archviz train` and simulated by `archviz cost`.

The step is d2l's order: ``zero_grad(set_to_none=True)`` first, then forward, loss, backward,
``optimizer.step()``. Freeing the previous step's gradients *before* the forward pass means
they never sit beside this step's activations, which lowers the peak by the size of the
gradients when the peak is in the forward pass (PyTorch's tutorial loop, which calls
``zero_grad`` at the end of the step, has the same peak).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from archviz.choices import Optimizer


def _no_phase(name: str) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def train_step(
    net: nn.Module,
    loss: Callable[[Any, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer | None,
    X: torch.Tensor | Sequence[torch.Tensor],
    y: torch.Tensor,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    phase: Callable[[str], contextlib.AbstractContextManager] = _no_phase,
) -> tuple[torch.Tensor, Any]:
    """One optimisation step (see the module docstring); returns the loss and the network's output.

    ``X`` is the input, or a tuple/list of inputs for a network with several. ``phase`` names
    the parts of the step for a caller that watches them (the memory simulation). With no
    optimizer (a network without trainable parameters) the step is the forward pass and loss.
    """
    if optimizer is not None:
        with phase("zero_grad"):
            optimizer.zero_grad(set_to_none=True)
    with phase("forward"), autocast():
        y_hat = net(*X) if isinstance(X, (tuple, list)) else net(X)
        l = loss(y_hat, y)
    if optimizer is not None and l.requires_grad:
        with phase("backward"):
            l.backward()
        with phase("optimizer"):
            optimizer.step()
    return l, y_hat


def make_optimizer(kind: Optimizer | str, params: Any, lr: float = 0.1, weight_decay: float = 0.0, on_gpu: bool = False) -> torch.optim.Optimizer:
    """The optimizers of `archviz train`, with the implementation torch picks on each device.

    On a GPU, SGD runs torch's ``foreach`` kernels (its default there) and Adam/AdamW the
    ``fused`` kernel (one launch per step for all parameters); on a CPU every optimizer runs
    tensor by tensor (torch's default there). Said explicitly, so that a simulation on the
    meta device takes the same path as the real device.
    """
    kind = Optimizer(kind)
    if kind in (Optimizer.sgd, Optimizer.momentum):
        momentum = 0.9 if kind is Optimizer.momentum else 0.0
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=on_gpu)
    cls = torch.optim.Adam if kind is Optimizer.adam else torch.optim.AdamW
    if on_gpu:
        return cls(params, lr=lr, weight_decay=weight_decay, fused=True)
    return cls(params, lr=lr, weight_decay=weight_decay, foreach=False)
