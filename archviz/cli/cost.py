"""`archviz cost`: FLOPs, memory of a training step, receptive fields, and the batch that fits."""

from __future__ import annotations

from typing import Annotated

import typer

from archviz.arch import load_arch, user_code
from archviz.choices import DType, Mode, Optimizer, TargetDevice
from archviz.cli.app import command
from archviz.cli.options import ArchArg, DepthOpt, DeviceOpt, FormatOpt, InputOpt, OptimizerOpt, ParamOpt
from archviz.cost.units import format_bytes, parse_size
from archviz.errors import RunError
from archviz.render import Format
from archviz.shape import format_shape, parse_inputs


@command(
    "cost",
    [
        "archviz cost lenet",
        "archviz cost resnet18 --input 256x1x96x96 --optimizer adam --device cuda",
        "archviz cost vgg11 -p ratio=8 --budget 24GiB --device cuda --amp",
        "archviz cost torchvision:resnet50 --format json",
    ],
)
def cost(
    arch: ArchArg,
    input: InputOpt = None,
    optimizer: OptimizerOpt = Optimizer.sgd,
    dtype: Annotated[DType, typer.Option("--dtype", help="Weights' dtype; with --amp, the autocast dtype (fp32 means bf16).")] = DType.fp32,
    amp: Annotated[bool, typer.Option("--amp", help="fp32 weights with autocast (bf16 unless --dtype fp16).")] = False,
    mode: Annotated[Mode, typer.Option("--mode", help="train: a training step; eval: a forward pass under no_grad.")] = Mode.train,
    device: DeviceOpt = TargetDevice.cpu,
    budget: Annotated[
        str | None, typer.Option("--budget", metavar="SIZE", help="Find the largest batch that fits, e.g. 80GiB (2^30 bytes) or 512MB (10^6 bytes).")
    ] = None,
    depth: DepthOpt = 1,
    format: FormatOpt = Format.table,
    param: ParamOpt = None,
) -> None:
    """FLOPs and receptive field per block, and the predicted memory of a training step.

    The step is `archviz train`'s, d2l's order: zero_grad(set_to_none=True), forward, loss,
    backward, optimizer.step(); the second step is reported (optimizer state exists, the last
    gradients are freed before the forward pass). The loss sums every floating-point output.

    The loop predicted is `archviz train`'s, `l, y_hat = train_step(net, loss, optimizer, X, y)`:
    the previous step's output y_hat and loss l stay alive until the next step returns. A loop
    that rebinds them inside the step (`y_hat = net(X)`, then `l = loss(y_hat, y)`) frees the
    previous y_hat once the new forward pass ends, so its peak is the same or up to one output
    tensor lower (when the peak falls after the forward pass).

    A model the meta device cannot run (it reads tensor values) cannot be costed: `archviz
    shapes --compute` traces it with real tensors.
    """
    budget_bytes = parse_size(budget) if budget is not None else None
    shape = parse_inputs(input)  # one or several inputs, any rank and dtype
    from archviz.cost.report import cost_report
    from archviz.cost.simulate import torch_size_overflow
    from archviz.render.cost import render_cost

    with user_code(), torch_size_overflow():  # a user module's prints go to stderr: stdout stays the table or pure JSON
        report = cost_report(
            load_arch(arch, param), shape, optimizer=optimizer, dtype=dtype, amp=amp, mode=mode, device=device, budget_bytes=budget_bytes, depth=depth
        )
    found = report["budget"]
    if found is not None and found["largest_batch"] is None:
        one = format_shape([found["smallest_batch"], *report["input_shape"][1:]])
        raise RunError(
            f"{report['arch']} needs {format_bytes(found['batch1_peak_bytes'])} at batch {found['smallest_batch']} ({one}, {mode}, {optimizer}, {dtype}"
            f"{' + autocast' if amp else ''}, {device}), more than the budget of {format_bytes(budget_bytes)}."
        )
    print(render_cost(report, format))
