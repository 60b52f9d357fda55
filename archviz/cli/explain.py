"""`archviz explain`: a walk through the network with the arithmetic behind every number."""

from __future__ import annotations

from typing import Annotated

import typer

from archviz.arch import load_arch, user_code
from archviz.choices import ExplainFormat
from archviz.cli.app import command
from archviz.cli.options import ArchArg, DepthOpt, InputOpt, ParamOpt
from archviz.shape import parse_inputs


@command(
    "explain",
    [
        "archviz explain lenet",
        "archviz explain vgg11 --depth 2",
        "archviz explain googlenet --input 1x1x96x96 --format markdown",
        "archviz explain my_net.yaml --format json",
        "archviz explain torchvision:resnet18",
    ],
)
def explain(
    arch: ArchArg,
    input: InputOpt = None,
    depth: DepthOpt = 1,
    format: Annotated[ExplainFormat, typer.Option("--format", "-f", help="Output format.")] = ExplainFormat.table,
    param: ParamOpt = None,
) -> str:
    """Walk through the network block by block (layer by layer with --depth): output sizes, parameters,
    MACs and receptive fields with the arithmetic that gives them, then what the numbers say."""
    from archviz.render.explain import render_explain
    from archviz.walkthrough import explain as walkthrough

    inputs = parse_inputs(input)
    with user_code():  # a user module's prints go to stderr: stdout stays the walkthrough or pure JSON
        trace = load_arch(arch, param).trace(inputs)
    return render_explain(walkthrough(trace, depth), format)
