"""Which device a run trains on."""

from __future__ import annotations

import torch

from archviz.errors import UsageError
from archviz.train.config import Device


def resolve_device(device: Device | str, local_rank: int = 0) -> torch.device:
    """``auto`` is this process's GPU when torch sees one, else the CPU; ``cuda`` without a GPU is one sentence."""
    device = Device(device)
    if device is Device.cuda and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto.")
    if device is Device.cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)
