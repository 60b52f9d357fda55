"""`archviz diff`: two architectures (or one at two inputs or settings) compared block by block."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from archviz.arch import Arch, load_arch, user_code
from archviz.cli.app import command
from archviz.cli.compare import split_arch
from archviz.cli.options import ComputeOpt, FormatOpt, InputOpt, ParamOpt
from archviz.errors import RunError, UsageError
from archviz.render import Format
from archviz.render.dot import Direction
from archviz.render.graphviz import DiagramFormat, check_writable, output_format, png_dpi, save_diagram
from archviz.shape import parse_inputs

_SIDE_INPUT = "Input of {side} only (repeatable, as --input); overrides --input for {side}."
_SIDE_PARAM = "Parameter of {side} only (repeatable, as -p): -{flag} num_classes=100."


@command(
    "diff",
    [
        "archviz diff lenet lenet_bn                     # the batch-norm layers LeNet gains",
        "archviz diff torchvision:resnet18 torchvision:resnet50 --format markdown",
        "archviz diff vgg11 vgg16 -o vgg.svg             # one graph: added bold, removed dashed, changed double",
        "archviz diff resnet18 resnet18 --input-a 1x1x96x96 --input-b 1x1x224x224   # one network at two inputs",
        "archviz diff vgg11 vgg11 --pb ratio=8           # one network at two settings",
    ],
)
def diff(
    a: Annotated[str, typer.Argument(metavar="A", help="The first architecture (any ARCH, optionally 'ARCH[KEY=VALUE,...]').", show_default=False)],
    b: Annotated[str, typer.Argument(metavar="B", help="The second architecture; deltas are B minus A.", show_default=False)],
    input: InputOpt = None,
    input_a: Annotated[list[str] | None, typer.Option("--input-a", metavar="SHAPE[:DTYPE]", help=_SIDE_INPUT.format(side="A"), show_default=False)] = None,
    input_b: Annotated[list[str] | None, typer.Option("--input-b", metavar="SHAPE[:DTYPE]", help=_SIDE_INPUT.format(side="B"), show_default=False)] = None,
    param: ParamOpt = None,
    pa: Annotated[list[str] | None, typer.Option("--pa", metavar="KEY=VALUE", help=_SIDE_PARAM.format(side="A", flag="-pa"), show_default=False)] = None,
    pb: Annotated[list[str] | None, typer.Option("--pb", metavar="KEY=VALUE", help=_SIDE_PARAM.format(side="B", flag="-pb"), show_default=False)] = None,
    format: FormatOpt = Format.table,
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", metavar="PATH", help="Also draw both as one graph (.svg, .png, .pdf or .dot); the table still goes to stdout."),
    ] = None,
    depth: Annotated[int, typer.Option("--depth", "-d", min=1, max=32, help="Level of detail of the -o drawing: 1 = top-level blocks.")] = 1,
    direction: Annotated[Direction, typer.Option("--direction", help="TB draws top to bottom, LR left to right.")] = Direction.TB,
    peak: Annotated[bool, typer.Option("--peak/--no-peak", help="Predict both training peaks (as `archviz cost` does) for the totals.")] = True,
    compute: ComputeOpt = False,
    dpi: Annotated[int | None, typer.Option("--dpi", help="PNG resolution (default 144).", show_default=False)] = None,
) -> str:
    """Blocks added, removed and changed between A and B, with shape, params, MACs and memory deltas; totals are exact."""
    resolution = png_dpi(dpi)
    path = Path(output) if output else None
    fmt = output_format(path, None) if path is not None else None
    if path is not None:
        if output == "-":
            raise UsageError("diff writes its table to stdout; give -o a file name such as diff.svg for the drawing.")
        check_writable(path)
    shared = parse_inputs(input)
    sides = []
    for text, own_input, own_params in ((a, input_a, pa), (b, input_b, pb)):
        name, bracket = split_arch(text)
        inputs = parse_inputs(own_input) if own_input else shared
        sides.append((name, [*(param or []), *bracket, *(own_params or [])], inputs))
    from archviz.diff import diff_traces
    from archviz.estimate.simulate import torch_size_overflow
    from archviz.render.diff import diff_dot, diff_report, render_diff

    with user_code(), torch_size_overflow():
        archs = [load_arch(name, params) for name, params, _ in sides]
        traces = [arch.trace(inputs, compute=compute) for arch, (_, _, inputs) in zip(archs, sides, strict=True)]
        result = diff_traces(*traces)
        peaks = tuple(_peak(arch, trace) if peak else (None, "--no-peak") for arch, trace in zip(archs, traces, strict=True))
    report = diff_report(result, peaks)  # type: ignore[arg-type]
    text = render_diff(report, format)
    if path is not None:
        assert fmt is not None
        save_diagram(traces[1], path, DiagramFormat(fmt), source=diff_dot(result, depth, direction), dpi=resolution, force=True)
        typer.echo(f"wrote {path}", err=True)
    return text


def _peak(arch: Arch, trace: Any) -> tuple[int | None, str | None]:
    from archviz.estimate.memory import predict_memory

    try:
        return predict_memory(arch, trace=trace).peak_bytes, None
    except RunError as exc:  # batch norm at batch 1, a model the simulation cannot run: the rest of the diff still stands
        return None, f"{trace.display_name}: {str(exc).rstrip('.')}"
