"""`archviz diagram`: a graphviz drawing of the dataflow, as SVG, PNG, PDF or DOT source, or an interactive HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from archviz.arch import load_arch, user_code
from archviz.cli.app import command
from archviz.cli.options import ArchArg, ComputeOpt, DepthOpt, InputOpt, ParamOpt, TitleOpt
from archviz.errors import RunError
from archviz.files import graphviz_output_of, refuse_overwrite
from archviz.render.dot import Decoration, Direction, parse_figures, to_dot
from archviz.render.graphviz import DiagramFormat, check_writable, default_filename, output_format, png_dpi, render, save_diagram
from archviz.shape import parse_inputs

OutputOpt = Annotated[
    str | None,
    typer.Option("--output", "-o", metavar="PATH", help="File to write; its extension picks the format. '-' writes to stdout. Default: ARCH.svg."),
]
DiagramFormatOpt = Annotated[
    DiagramFormat | None,
    typer.Option("--format", "-f", help="Output format. Default: from the extension of -o, else svg.", show_default=False),
]
DirectionOpt = Annotated[Direction, typer.Option("--direction", help="TB draws top to bottom, LR left to right.")]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force", help="Replace an existing file archviz did not write (the default ARCH.svg, any .html, or the .dot written when graphviz is missing)."
    ),
]
FoldOpt = Annotated[
    bool,
    typer.Option("--fold/--no-fold", help="Draw identical consecutive blocks (e.g. ResNet's repeated basic blocks) once, marked 'x N'."),
]
ShowOpt = Annotated[
    str | None,
    typer.Option(
        "--show",
        metavar="FIGURES",
        help="Figures to put on every layer and block, comma-separated: params, macs, memory (output bytes), rf (receptive field); "
        "the numbers `archviz cost --format json` reports.",
        show_default=False,
    ),
]
DpiOpt = Annotated[int | None, typer.Option("--dpi", help="PNG resolution in dots per inch (default 144, twice graphviz's 72).", show_default=False)]
ScaleOpt = Annotated[float | None, typer.Option("--scale", help="PNG size as a multiple of graphviz's 72 dpi (default 2).", show_default=False)]


@command(
    "diagram",
    [
        "archviz diagram googlenet                      # googlenet.svg, top-level blocks",
        "archviz diagram googlenet --depth 4 -o googlenet.png   # every layer, Inception paths side by side",
        "archviz diagram resnet18 --depth 2 --no-fold   # both basic blocks of every stage",
        "archviz diagram lenet --depth 2 --show params,macs,memory,rf   # the cost figures on every layer",
        "archviz diagram lenet -f dot -o -              # DOT source on stdout",
        "archviz diagram torchvision:resnet18 -o resnet18.png --scale 3",
        "archviz diagram torchvision:raft_small -o raft.svg   # two inputs, every output drawn",
        "archviz diagram googlenet -o googlenet.html   # one offline page: expand blocks, cards, search",
    ],
)
def diagram(
    arch: ArchArg,
    input: InputOpt = None,
    output: OutputOpt = None,
    format: DiagramFormatOpt = None,
    depth: DepthOpt = 1,
    direction: DirectionOpt = Direction.TB,
    fold: FoldOpt = True,
    param: ParamOpt = None,
    force: ForceOpt = False,
    compute: ComputeOpt = False,
    show: ShowOpt = None,
    title: TitleOpt = None,
    dpi: DpiOpt = None,
    scale: ScaleOpt = None,
) -> str | bytes:
    """Draw the dataflow with graphviz: blocks (--depth 1) or layers, their settings and params, shapes on the edges.

    With -o NAME.html (or --format html): one offline page where every block expands down to single layers,
    cards show shapes, params, MACs, activation memory and receptive field, and search finds layers.

    When the forward fails at a layer, the diagram is still written up to that layer, with
    the failing layer in red, and the command exits with status 1.
    """
    inputs = parse_inputs(input)
    figures = parse_figures(show)
    resolution = png_dpi(dpi, scale)
    if output and output != "-":
        check_writable(Path(output))
    fmt = output_format(output, format)
    failure: RunError | None = None
    with user_code():  # a user module's prints go to stderr, never into the diagram
        loaded = load_arch(arch, param).titled(title)
        path = None if output == "-" else Path(output) if output else Path(default_filename(loaded.name, fmt))
        if path is not None:
            check_writable(path)  # before tracing, which can take seconds for a torch model
            if not output:  # a name the user did not give: keep their own file of that name
                refuse_overwrite(path, graphviz_output_of(loaded.name), force, " (it is the default output name; give -o PATH to write elsewhere)")
        decoration = Decoration(show=figures, title=loaded.title or None)
        try:
            trace = loaded.trace(inputs, compute=compute)
        except RunError as exc:
            if exc.partial is None:
                raise
            failure = exc
    if failure is not None:  # a partial diagram, then the error
        if fmt is DiagramFormat.html:
            drawn = _write_html(failure.partial, path, depth, direction, fold, force, (failure.failed_op, str(failure)))
        else:
            failed = Decoration(show=figures, title=loaded.title or None, failed=(failure.failed_op, str(failure)))
            drawn = _write(failure.partial, path, fmt, depth, direction, fold, force, failed, resolution)
        error = RunError(f"{str(failure).rstrip('.')}; the diagram up to that layer, marked in red, was written to {drawn if path else 'stdout'}.")
        error.output = None if path else drawn
        raise error
    if fmt is DiagramFormat.html:
        drawn = _write_html(trace, path, depth, direction, fold, force)
    else:
        drawn = _write(trace, path, fmt, depth, direction, fold, force, decoration, resolution)
    return f"wrote {drawn}" if path else drawn


def _write_html(trace, path: Path | None, depth: int, direction: Direction, fold: bool, force: bool, failed: tuple[str, str] | None = None) -> str | bytes:
    """The page for stdout (bytes) when ``path`` is None, else the path it was saved to."""
    from archviz.render.html import save_html, to_html

    if path is None:
        return to_html(trace, depth, direction, fold, failed).encode("utf-8")
    return str(save_html(trace, path, depth, direction, fold, force=force, failed=failed))


def _write(
    trace, path: Path | None, fmt: DiagramFormat, depth: int, direction: Direction, fold: bool, force: bool, decoration: Decoration, dpi: int
) -> str | bytes:
    """The drawing for stdout (bytes) when ``path`` is None, else the path it was saved to."""
    if path is None:
        return render(to_dot(trace, depth, direction, fold, decoration), fmt, dpi=dpi)
    return str(save_diagram(trace, path, fmt, depth, direction, fold, force=force, decoration=decoration, dpi=dpi))
