"""What images a model takes for training: channels and size, from ``--input`` or its first layer.

Fashion-MNIST is 1x28x28; `archviz train` resizes it to the run's size and repeats the gray
channel for a model that takes more than one. A spec says its channels (``in_channels``); a
callable or torchvision model says them only through its first layer (``Conv2d(1, ...)`` after
``in_chans=1``), and a first ``Linear(784, ...)`` says the size too. Whatever is chosen is
checked on the meta device before any data is loaded, so a mismatch is one sentence, not a
RuntimeError from the first batch (issue 19).
"""

from __future__ import annotations

import math
import re
from typing import Any

from archviz.errors import ArchvizError, UsageError


def parse_train_input(text: str) -> tuple[int, int]:
    """``CxSxS`` or ``NxCxSxS`` (N is ignored: the batch is --batch-size) -> (channels, size)."""
    try:
        dims = [int(d) for d in text.lower().split("x")]
    except ValueError:
        dims = []
    if len(dims) == 4:
        dims = dims[1:]
    if len(dims) != 3 or min(dims) < 1 or dims[1] != dims[2]:
        raise UsageError(f"--input {text!r} must be the square images the model takes, CxSxS (e.g. 1x28x28 or 3x96x96); the batch is --batch-size.")
    return dims[0], dims[1]


def first_layer_input(model: Any) -> tuple[int | None, int | None]:
    """(channels, size) that the model's first conv or linear layer reads; None where it does not say.

    The first in definition order (a stem is defined first in torchvision and timm models). A conv
    gives the channels; a linear layer on flattened images gives 1 channel and the side when its
    input features are a square (784 = 28 x 28), else 3 channels when a third of them is one.
    """
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d):
            return module.in_channels, None
        if isinstance(module, nn.Linear):
            for channels in (1, 3):
                side = math.isqrt(module.in_features // channels)
                if module.in_features % channels == 0 and side * side * channels == module.in_features:
                    return channels, side
            return None, None
    return None, None


def native_size(model: Any) -> int | None:
    """The square input size a timm model was made for (its ``pretrained_cfg["input_size"]``, e.g. 384 for
    swin_base_patch4_window12_384, whose patch embedding refuses any other), or None."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    size = cfg.get("input_size") if isinstance(cfg, dict) else None
    if isinstance(size, list | tuple) and len(size) == 3 and size[1] == size[2] and isinstance(size[1], int) and size[1] > 0:
        return size[1]
    return None


def model_channels(arch: Any) -> tuple[int, int | None]:
    """The channels (and, if the model says, the size) ``arch`` trains on when --input is not given."""
    if arch.resolved is not None:  # a spec: its in_channels parameter
        return arch.default_input[1], None
    model = arch.build(device="meta")
    channels, size = first_layer_input(model)
    return channels or arch.default_input[1], size or native_size(model)


def check_input(arch: Any, channels: int, size: int) -> None:
    """UsageError, in one sentence, when ``arch`` cannot take a batch of ``channels`` x ``size`` x ``size`` images."""
    try:
        arch.trace((2, channels, size, size))
    except ArchvizError as exc:
        reason = re.sub(r"; use --input \S+$", "", str(exc).rstrip("."))  # the shapes command's NxCxHxW hint
        wanted = re.search(r"expects (\d+) input channels", reason)
        hint = f"--input {wanted[1]}x{size}x{size}" if wanted else "--input CxSxS with the channels and size it takes"
        raise UsageError(f"{reason}; `archviz train` feeds it {channels}x{size}x{size} images (Fashion-MNIST's gray channel repeated): give {hint}.") from None
