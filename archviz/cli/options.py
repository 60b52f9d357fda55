"""Options shared by several commands, as Annotated aliases (one definition each)."""

from __future__ import annotations

from typing import Annotated

import typer

from archviz.cost.memory import TargetDevice
from archviz.render import Format
from archviz.train.config import Optimizer

ArchArg = Annotated[
    str,
    typer.Argument(
        metavar="ARCH",
        help="A built-in (see `archviz list`), a spec .yaml file, torchvision:NAME, or package.module:callable.",
        show_default=False,
    ),
]
InputOpt = Annotated[
    str | None,
    typer.Option("--input", "-i", metavar="NxCxHxW", help="Input shape, e.g. 1x1x96x96. Default: the architecture's own."),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", metavar="KEY=VALUE", help="Set a spec parameter (repeatable), e.g. -p ratio=8 -p num_classes=100."),
]
DepthOpt = Annotated[
    int,
    typer.Option("--depth", "-d", min=1, max=32, help="How deep to expand blocks: 1 = top-level blocks."),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
OptimizerOpt = Annotated[Optimizer, typer.Option("--optimizer", help="Optimizer of the training step (momentum = SGD with 0.9).")]
DeviceOpt = Annotated[
    TargetDevice,
    typer.Option("--device", help="Device to predict for: cuda rounds blocks to 512 bytes and uses the GPU optimizers; no GPU is needed."),
]
