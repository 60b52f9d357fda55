"""`archviz shapes`: per-block output shapes and parameter counts."""

from __future__ import annotations

from archviz.arch import load_arch
from archviz.cli.app import command
from archviz.cli.options import ArchArg, DepthOpt, FormatOpt, InputOpt, ParamOpt
from archviz.render import Format
from archviz.render.shapes import render_shapes
from archviz.shape import parse_shape


@command(
    "shapes",
    [
        "archviz shapes googlenet --input 1x1x96x96",
        "archviz shapes vgg11 -p ratio=8 --depth 2",
        "archviz shapes my_net.yaml --format json",
        "archviz shapes torchvision:resnet18",
    ],
)
def shapes(
    arch: ArchArg,
    input: InputOpt = None,
    depth: DepthOpt = 1,
    format: FormatOpt = Format.table,
    param: ParamOpt = None,
) -> None:
    """Show each block's output shape and parameters, without running the network."""
    shape = parse_shape(input) if input is not None else None
    trace = load_arch(arch, param).trace(shape)
    print(render_shapes(trace, depth, format))
