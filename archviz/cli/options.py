"""Options shared by several commands, as Annotated aliases (one definition each)."""

from __future__ import annotations

from typing import Annotated

import typer

from archviz.choices import Optimizer, TargetDevice
from archviz.render import Format

ArchArg = Annotated[
    str,
    typer.Argument(
        metavar="ARCH",
        help="A built-in (see `archviz list`), a spec .yaml file, torchvision:NAME, or package.module:callable.",
        show_default=False,
    ),
]
InputOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--input",
        "-i",
        metavar="SHAPE[:DTYPE]",
        help="Input shape of any rank with an optional dtype, e.g. 1x1x96x96, 4x1x16000, 2x32:int64, 8x128x256:bf16; "
        "repeat it for a model with several inputs. Default: the architecture's own.",
        show_default=False,
    ),
]
ComputeOpt = Annotated[
    bool,
    typer.Option(
        "--compute",
        help="Trace with real tensors on the CPU, for models the meta device cannot run (data-dependent ops such as detection's nonzero); "
        "it runs the forward pass, so it takes time and memory.",
    ),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", metavar="KEY=VALUE", help="Set a parameter (repeatable), read as YAML: -p ratio=8 -p aux_logits=false -p init_weights=None."),
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
TitleOpt = Annotated[
    str | None,
    typer.Option(
        "--title",
        metavar="TEXT",
        help="Name to show in the table or diagram title (and JSON 'title'); default: the ARCH, or for a callable the model it builds "
        "('timm convnext_tiny' for timm:create_model -p model_name=convnext_tiny).",
        show_default=False,
    ),
]
