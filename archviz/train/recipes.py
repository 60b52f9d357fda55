"""Default training recipes, one per built-in, and the resolution of a run's configuration.

Targets are d2l's test accuracies after 10 epochs (REFERENCE.md). Each recipe says what
was measured, on which device, and what was not.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from archviz import zoo
from archviz.train.config import Optimizer, TrainConfig


@dataclass(frozen=True)
class Recipe:
    resize: int
    batch_size: int
    optimizer: Optimizer
    lr: float
    epochs: int = 10
    weight_decay: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)  # spec parameters the recipe sets (a user's -p wins)


RECIPES: dict[str, Recipe] = {
    # d2l: SGD lr 0.9, batch 256 -> 0.789. Sigmoid LeNet learns slowly with plain SGD; Adam
    # on normalised inputs does not. Measured on the shared 2-core CPU, seed 0, default run:
    # test acc 0.885 after 10 epochs (best 0.890), 44 s of epochs, ~14.5k img/s
    # (benchmarks/results/train_recipes_cpu.md).
    "lenet": Recipe(resize=28, batch_size=128, optimizer=Optimizer.adam, lr=0.01),
    # d2l: SGD lr 1.0, batch 256 -> 0.836. Measured likewise: test acc 0.894 after 10 epochs
    # (best 0.894), 48 s of epochs, ~13k img/s.
    "lenet_bn": Recipe(resize=28, batch_size=128, optimizer=Optimizer.adam, lr=0.01),
    # GPU recipes below: d2l's resolution, batch size and lr, with momentum 0.9 added (d2l
    # uses plain SGD). NOT measured yet: no GPU was lent to the session that wrote them, and
    # they are far too slow for the CPU. benchmarks/gpu_check.py runs resnet18's in full.
    "alexnet": Recipe(resize=224, batch_size=128, optimizer=Optimizer.momentum, lr=0.01),
    # Like d2l, the default trains the narrow VGG-11 (widths / 4); -p ratio=1 for the full one.
    "vgg11": Recipe(resize=224, batch_size=128, optimizer=Optimizer.momentum, lr=0.01, params={"ratio": 4}),
    "nin": Recipe(resize=224, batch_size=128, optimizer=Optimizer.momentum, lr=0.01),
    "googlenet": Recipe(resize=96, batch_size=128, optimizer=Optimizer.momentum, lr=0.01),
    "resnet18": Recipe(resize=96, batch_size=256, optimizer=Optimizer.momentum, lr=0.01, weight_decay=5e-4),
    # The rest of d2l's chapter 8 with d2l's resolution and batch size; NOT measured yet.
    **{name: Recipe(resize=96, batch_size=128, optimizer=Optimizer.momentum, lr=0.01, weight_decay=5e-4) for name in ("densenet", "resnext", "regnetx32")},
    # The full-size built-ins (3 channels, 1000 classes by default) are retargeted to 1-channel,
    # 10-class Fashion-MNIST at 96x96, as d2l trains its chapter 8 nets. NOT measured yet.
    **{
        name: Recipe(resize=96, batch_size=128, optimizer=Optimizer.momentum, lr=0.01, weight_decay=5e-4, params={"in_channels": 1, "num_classes": 10})
        for name in ("vgg16", "resnet50", "densenet121", "mobilenet_v2", "shufflenet_v2", "regnet_x_400mf")
    },
}


def recipe_for(arch: str, default_size: int) -> Recipe:
    """The built-in's recipe, or a generic one (Adam, the architecture's own input size) for anything else."""
    if arch in RECIPES:
        return RECIPES[arch]
    return Recipe(resize=default_size, batch_size=128, optimizer=Optimizer.adam, lr=1e-3)


def _fill_input(arch: Any, config: TrainConfig, resize_given: bool) -> None:
    """Channels (and the size, when the first layer says it) from the model unless --input gave them;
    then the model is checked on those images, before any data is read."""
    from archviz.train.inputs import check_input, model_channels

    if config.channels is None:
        config.channels, size = model_channels(arch)
        if size is not None and not resize_given:
            config.resize = size
    check_input(arch, config.channels, config.resize)


def make_config(arch: str, params: list[str] | None = None, **given: Any) -> TrainConfig:
    """A validated TrainConfig: the options a user gave (non-None values in ``given``) over the recipe."""
    from archviz.arch import load_arch

    loaded = load_arch(arch, params or [])  # unknown architectures and bad -p fail here, before any data is read
    recipe = recipe_for(arch if zoo.is_builtin(arch) else "", loaded.default_input[-1])
    user_keys = {p.partition("=")[0].strip() for p in params or []}
    merged = [f"{k}={v}" for k, v in recipe.params.items() if k not in user_keys] + list(params or [])
    values = {
        "resize": recipe.resize,
        "batch_size": recipe.batch_size,
        "optimizer": recipe.optimizer,
        "lr": recipe.lr,
        "epochs": recipe.epochs,
        "weight_decay": recipe.weight_decay,
    }
    values.update({k: v for k, v in given.items() if v is not None})
    if not values.get("out"):
        values["out"] = f"runs/{re.sub(r'[^A-Za-z0-9_.-]+', '_', loaded.name)}-{time.strftime('%Y%m%d-%H%M%S')}"
    config = TrainConfig(arch=arch, params=merged, **values).validate()
    _fill_input(loaded if not recipe.params else load_arch(arch, merged), config, given.get("resize") is not None)
    return config.validate()
