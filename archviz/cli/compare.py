"""`archviz compare`: several architectures side by side."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from archviz.arch import load_arch, user_code
from archviz.choices import Optimizer, TargetDevice
from archviz.cli.app import command
from archviz.cli.options import DeviceOpt, FormatOpt, InputOpt, OptimizerOpt, ParamOpt
from archviz.errors import UsageError
from archviz.estimate.settings import StepSettings
from archviz.render import Format
from archviz.shape import parse_inputs

_WITH_PARAMS = re.compile(r"^(?P<arch>[^\[\]]+)\[(?P<params>[^\[\]]*)\]$")


def split_arch(text: str) -> tuple[str, list[str]]:
    """``'vgg11[ratio=8,num_classes=100]'`` -> ``('vgg11', ['ratio=8', 'num_classes=100'])``."""
    text = text.strip()
    if "[" not in text and "]" not in text:
        return text, []
    match = _WITH_PARAMS.match(text)
    if not match:
        raise UsageError(f"cannot read {text!r}; write ARCH or ARCH[KEY=VALUE,...], e.g. 'vgg11[ratio=8]'.")
    return match["arch"].strip(), [p.strip() for p in match["params"].split(",") if p.strip()]


@command(
    "compare",
    [
        "archviz compare lenet lenet_bn",
        "archviz compare vgg11 'vgg11[ratio=8]' --batch 128 --device cuda",
        "archviz compare 'resnet18[in_channels=3]' torchvision:resnet18 --input 1x3x96x96 --format markdown",
    ],
)
def compare(
    archs: Annotated[list[str], typer.Argument(metavar="ARCH...", help="Architectures, each optionally with parameters: 'vgg11[ratio=8]'.")],
    input: InputOpt = None,
    batch: Annotated[
        int | None,
        typer.Option(
            "--batch",
            "-b",
            min=1,
            help="Batch size for the training peak (default: the input's). "
            "A model with batch norm cannot train at batch 1: its Train peak shows n/a, with the reason under the table.",
        ),
    ] = None,
    optimizer: OptimizerOpt = Optimizer.sgd,
    device: DeviceOpt = TargetDevice.cpu,
    format: FormatOpt = Format.table,
    param: ParamOpt = None,
) -> str:
    """Compare params, MACs, training FLOPs, training memory, output and smallest input."""
    if len(archs) < 2:
        raise UsageError("compare needs at least two architectures, e.g. `archviz compare lenet lenet_bn`.")
    shape = parse_inputs(input)  # one or several inputs, any rank and dtype
    loaded = []
    for text in archs:
        name, params = split_arch(text)
        loaded.append(load_arch(name, [*(param or []), *params]))
    from archviz.estimate.report import compare_report
    from archviz.estimate.simulate import torch_size_overflow
    from archviz.render.cost import render_compare

    with user_code(), torch_size_overflow():
        report = compare_report(loaded, shape, StepSettings.parse(optimizer, device=device), labels=[a.strip() for a in archs], batch=batch)
    return render_compare(report, format)
