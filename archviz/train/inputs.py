"""What images a model takes for training: channels and size, from ``--input`` or its first layer.

Fashion-MNIST is 1x28x28; `archviz train` resizes it to the run's size and repeats the gray
channel for a model that takes more than one. A spec says its channels (``in_channels``); a
callable or torchvision model says them only through its first layer (``Conv2d(1, ...)`` after
``in_chans=1``), and a first ``Linear(784, ...)`` says the size too. Whatever is chosen is
checked on the meta device before any data is loaded, so a mismatch is one sentence, not a
RuntimeError from the first batch (issue 19).
"""

from __future__ import annotations

import re
from typing import Any

from archviz.arch import first_layer_input, native_size
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
