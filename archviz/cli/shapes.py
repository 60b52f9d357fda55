"""`archviz shapes`: per-block output shapes and parameter counts."""

from __future__ import annotations

from archviz.arch import load_arch, user_code
from archviz.cli.app import command
from archviz.cli.options import ArchArg, ComputeOpt, DepthOpt, FormatOpt, InputOpt, ParamOpt, TitleOpt
from archviz.render import Format
from archviz.render.shapes import render_shapes
from archviz.shape import parse_inputs
from archviz.spec.gcpause import paused_gc


@command(
    "shapes",
    [
        "archviz shapes googlenet --input 1x1x96x96",
        "archviz shapes vgg11 -p ratio=8 --depth 2",
        "archviz shapes my_net.yaml --format json",
        "archviz shapes torchvision:resnet18",
        "archviz shapes torchvision:raft_small --input 1x3x128x128 --input 1x3x128x128",
        "archviz shapes torchvision:fasterrcnn_resnet50_fpn --compute",
        "archviz shapes my_models:TextClassifier --input 8x128:int64",
    ],
)
def shapes(
    arch: ArchArg,
    input: InputOpt = None,
    depth: DepthOpt = 1,
    format: FormatOpt = Format.table,
    param: ParamOpt = None,
    compute: ComputeOpt = False,
    title: TitleOpt = None,
) -> str:
    """Show each block's output shape and parameters, and every output, without running the network."""
    inputs = parse_inputs(input)
    with user_code():  # a user module's prints go to stderr: stdout stays the table or pure JSON
        trace = load_arch(arch, param).titled(title).trace(inputs, compute=compute)
    with paused_gc():  # one row object per layer: see archviz.spec.gcpause
        text = render_shapes(trace, depth, format)
    return text
