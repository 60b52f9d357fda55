"""`archviz cost`: FLOPs, memory of a training step, receptive fields, and the batch that fits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from archviz.arch import load_arch, user_code
from archviz.choices import DType, GroupBy, Mode, Optimizer, TargetDevice
from archviz.cli.app import command
from archviz.cli.options import ArchArg, DepthOpt, DeviceOpt, FormatOpt, InputOpt, OptimizerOpt, ParamOpt, TitleOpt
from archviz.errors import RunError, UsageError
from archviz.estimate.settings import StepSettings
from archviz.estimate.units import format_bytes, parse_size
from archviz.files import refuse_overwrite, write_text_atomic
from archviz.render import Format
from archviz.shape import format_shape, parse_inputs


@command(
    "cost",
    [
        "archviz cost lenet",
        "archviz cost resnet18 --input 256x1x96x96 --optimizer adam --device cuda",
        "archviz cost vgg11 -p ratio=8 --budget 24GiB --device cuda --amp",
        "archviz cost torchvision:resnet50 --format json",
        "archviz cost alexnet --by kind --device cuda",
        "archviz cost nin --mode both",
        "archviz cost densenet --sweep batch=1,8,32,128 --budget 16GiB --device cuda -o curve.svg",
    ],
)
def cost(
    arch: ArchArg,
    input: InputOpt = None,
    optimizer: OptimizerOpt = Optimizer.sgd,
    dtype: Annotated[DType, typer.Option("--dtype", help="Weights' dtype; with --amp, the autocast dtype (fp32 means bf16).")] = DType.fp32,
    amp: Annotated[bool, typer.Option("--amp", help="fp32 weights with autocast (bf16 unless --dtype fp16).")] = False,
    mode: Annotated[
        Mode, typer.Option("--mode", help="train: a training step; eval: a forward pass under no_grad; both: train and eval memory side by side.")
    ] = Mode.train,
    device: DeviceOpt = TargetDevice.cpu,
    budget: Annotated[
        str | None, typer.Option("--budget", metavar="SIZE", help="Find the largest batch that fits, e.g. 80GiB (2^30 bytes) or 512MB (10^6 bytes).")
    ] = None,
    depth: DepthOpt = 1,
    format: FormatOpt = Format.table,
    param: ParamOpt = None,
    by: Annotated[
        GroupBy, typer.Option("--by", help="Rows per block, or per layer kind (conv, linear, norm, pool, activation, merge, other).")
    ] = GroupBy.block,
    sweep: Annotated[
        list[str] | None,
        typer.Option(
            "--sweep",
            metavar="KEY=V1,V2",
            help="One row per point: batch=1,8,32,128 and/or input=56,84,224 (a side, or HxW); at most 64 points.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE.svg", help="With --sweep batch=...: draw peak memory against batch size.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing -o file that archviz did not write.")] = False,
    title: TitleOpt = None,
) -> str:
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
    inputs = parse_inputs(input)  # one or several inputs, any rank and dtype
    settings = StepSettings.parse(optimizer, dtype, amp, mode, device)
    if sweep or output is not None:
        return _sweep(arch, inputs, sweep or [], settings, budget_bytes, format, param, output, force)
    from archviz.estimate.report import cost_report
    from archviz.estimate.simulate import torch_size_overflow
    from archviz.render.cost import render_cost

    with user_code(), torch_size_overflow():  # a user module's prints go to stderr: stdout stays the table or pure JSON
        loaded = load_arch(arch, param).titled(title)
        report = cost_report(loaded, inputs, settings, budget_bytes=budget_bytes, depth=depth)
    found = report.budget
    if found is not None and found.largest_batch is None:
        one = format_shape([found.smallest_batch, *report.trace.input_shape[1:]])
        raise RunError(
            f"{report.trace.arch} needs {format_bytes(found.batch1_peak_bytes)} at batch {found.smallest_batch} ({one}, {mode}, {optimizer}, {dtype}"
            f"{' + autocast' if amp else ''}, {device}), more than the budget of {format_bytes(budget_bytes)}."
        )
    return render_cost(report, format, by)


def _sweep(arch: str, inputs: Any, texts: list[str], settings: StepSettings, budget_bytes, format, param, output: Path | None, force: bool) -> str:
    from archviz.estimate.simulate import torch_size_overflow
    from archviz.estimate.sweep import parse_sweeps, sweep_report
    from archviz.render.cost import SWEEP_MARK, render_sweep, sweep_curve_svg

    batches, sides = parse_sweeps(texts)
    if output is not None and (batches is None or len(batches) < 2):
        raise UsageError("-o draws peak memory against the batch size: give --sweep batch= with two or more sizes, e.g. --sweep batch=1,8,32,128.")
    if output is not None:
        refuse_overwrite(output, lambda head: SWEEP_MARK.encode() in head, force)
    if inputs is not None and (len(inputs) != 1 or inputs[0].dtype != "float32"):
        raise UsageError("--sweep runs on one floating-point input; give one --input such as 1x3x224x224 (or none for the architecture's own).")
    with user_code(), torch_size_overflow():
        report = sweep_report(load_arch(arch, param), inputs[0].shape if inputs else None, settings, batches=batches, sides=sides, budget_bytes=budget_bytes)
    if output is not None:
        write_text_atomic(output, sweep_curve_svg(report))
    return render_sweep(report, format)
