"""Models a user might point archviz at with `module:callable` (used by the tests)."""

import torch
from torch import nn


def tiny_cnn(num_classes: int = 10) -> nn.Module:
    """A tiny CNN with batch norm and a skip-free head."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


torch.manual_seed(0)
SHARED = tiny_cnn()
SHARED.train()


def shared_model() -> nn.Module:
    """Returns the same, already-built module every time: archviz must not touch it."""
    return SHARED


def not_a_module():
    return "hello"


NOT_CALLABLE = 42
