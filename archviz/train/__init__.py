"""Training on Fashion-MNIST: `archviz train` and `archviz evaluate`.

``make_config`` resolves a recipe into a TrainConfig, ``run`` trains it (in one process or
several), ``evaluate_checkpoint`` scores a checkpoint. The names are loaded on first use, so
``archviz.train.config`` (the enums the CLI needs) can be imported without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Device": "config",
    "Optimizer": "config",
    "TrainConfig": "config",
    "RECIPES": "recipes",
    "make_config": "recipes",
    "EpochRecord": "loop",
    "TrainResult": "loop",
    "run": "loop",
    "train": "loop",
    "Evaluation": "evaluate",
    "evaluate_checkpoint": "evaluate",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'archviz.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f"archviz.train.{_EXPORTS[name]}"), name)
