"""The notebook API: ``archviz.summary``, ``archviz.cost``, ``archviz.explain`` and ``archviz.diagram``.

Each takes what the CLI takes (a built-in name, a spec path, ``torchvision:NAME``,
``module:callable``) or an ``nn.Module`` already in hand, and returns an object that
holds data (``to_dict()`` is the CLI's ``--format json``), prints as the CLI's table and
shows itself in Jupyter. A module in hand is never changed: archviz traces a weight-free
meta-device copy, so its device, dtype, train/eval flags, ``requires_grad``, hooks and
parameters stay as they were.

Inputs follow torchinfo's ``summary``: ``input_size`` is one shape or a list of shapes
(``(1, 3, 224, 224)``, ``"2x32:int64"``, ``[(1, 8), (1, 6)]``) or a dict for keyword
inputs, with ``dtypes`` one per input; or ``input_data`` is a tensor, a tuple/list of
tensors (positional) or a dict of tensors (keyword), whose shapes and dtypes are used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archviz.arch import Arch, load_arch, user_code
from archviz.errors import UsageError
from archviz.shape import DTYPES, InputSpec, as_inputs

if TYPE_CHECKING:
    from archviz.estimate.report import CostReport as Cost
    from archviz.estimate.sweep import SweepReport
    from archviz.trace.record import Trace
    from archviz.walkthrough import Explanation


def _arch(model_or_arch: Any, params: Mapping[str, Any]) -> Arch:
    if isinstance(model_or_arch, Arch):
        return model_or_arch
    if isinstance(model_or_arch, str | os.PathLike):
        return load_arch(str(model_or_arch), params)
    from torch import nn

    if isinstance(model_or_arch, nn.Module):
        if params:
            raise UsageError(f"parameters {sorted(params)} apply to a name or a callable; a module in hand is already built.")
        return Arch.from_module(model_or_arch)
    raise UsageError(
        f"cannot inspect a {type(model_or_arch).__name__}; give an nn.Module, a built-in name, a spec path, 'torchvision:NAME' or 'module:callable'."
    )


def _dtype_name(dtype: Any) -> str:
    text = str(dtype).removeprefix("torch.").lower()
    if text not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}; use a torch dtype such as torch.int64 or a name such as 'bf16'.")
    return DTYPES[text]


def _inputs(arch: Arch, input_size: Any, input_data: Any, dtypes: Sequence[Any] | None) -> tuple[Any, Any]:
    """(InputSpecs or None for the architecture's own, the tensors of ``input_data`` or None)."""
    if input_size is not None and input_data is not None:
        raise UsageError("give input_size or input_data, not both.")
    if input_data is not None:
        import torch

        if isinstance(input_data, torch.Tensor):
            input_data = (input_data,)
        items = input_data.items() if isinstance(input_data, Mapping) else enumerate(input_data)
        specs = {}
        for key, t in items:
            if not isinstance(t, torch.Tensor):
                raise UsageError(f"input_data[{key!r}] is a {type(t).__name__}; give tensors, a tuple/list of tensors or a dict of tensors.")
            specs[key] = InputSpec(tuple(t.shape), _dtype_name(t.dtype))
        if isinstance(input_data, Mapping):
            return {str(k): v for k, v in specs.items()}, dict(input_data)
        return tuple(specs.values()), tuple(input_data)
    if input_size is None:
        if arch.kind == "module":
            raise UsageError("a module in hand needs an input: pass input_size=(1, 3, 224, 224) (or a list of sizes) or input_data=tensor.")
        specs = arch.inputs
    else:
        specs = as_inputs(input_size)
        if dtypes is None and arch.kind == "module" and not _has_text(input_size):
            dtypes = _weights_dtype(arch, specs)  # a float64 model in hand gets float64 inputs, as torchinfo users expect
    if dtypes is not None:
        values = list(specs.values()) if isinstance(specs, dict) else list(specs)
        if len(dtypes) != len(values):
            raise UsageError(f"dtypes has {len(dtypes)} entries for {len(values)} input(s); give one per input.")
        typed = [InputSpec(s.shape, _dtype_name(d)) for s, d in zip(values, dtypes, strict=True)]
        specs = dict(zip(specs, typed, strict=True)) if isinstance(specs, dict) else tuple(typed)
    return specs, None


def _has_text(input_size: Any) -> bool:
    if isinstance(input_size, str | InputSpec):
        return True
    if isinstance(input_size, Mapping):
        return any(_has_text(v) for v in input_size.values())
    return isinstance(input_size, Sequence) and any(isinstance(v, str | InputSpec) or (isinstance(v, Sequence) and _has_text(v)) for v in input_size)


def _weights_dtype(arch: Arch, specs: Any) -> list[str] | None:
    """The float dtype of the module's weights for every float input given as a bare shape; None if float32 or mixed."""
    model = arch.factory()
    kinds = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if len(kinds) != 1:
        return None
    name = _dtype_name(kinds.pop())
    if name == "float32":
        return None
    values = list(specs.values()) if isinstance(specs, dict) else list(specs)
    return [name if s.is_float else s.dtype for s in values]


def _trace(model_or_arch: Any, input_size: Any, input_data: Any, dtypes: Any, compute: bool, params: Mapping[str, Any]) -> tuple[Arch, Trace]:
    with user_code():  # a user module's prints go to stderr, as on the command line
        arch = _arch(model_or_arch, params)
        specs, data = _inputs(arch, input_size, input_data, dtypes)
        return arch, arch.trace(specs, compute=compute, data=data)


@dataclass(frozen=True)
class Summary:
    """What ``archviz shapes`` shows: per-block output shapes and parameters, every input and output."""

    trace: Trace = field(repr=False)
    depth: int = 1

    @property
    def total_params(self) -> int:
        return self.trace.total_params

    @property
    def trainable_params(self) -> int:
        return self.trace.trainable_params

    @property
    def non_trainable_params(self) -> int:
        return self.trace.non_trainable_params

    @property
    def macs(self) -> int:
        """Forward multiply-accumulates (FLOPs = 2 x MACs; convolutions, linear layers, matrix products)."""
        return self.trace.flops // 2

    @property
    def flops(self) -> int:
        return self.trace.flops

    @property
    def blocks(self) -> list[dict[str, Any]]:
        """One dict per block at ``depth`` (name, type, depth, output_shape, params, trainable_params, called)."""
        return self.to_dict()["blocks"]

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return [i.to_dict() for i in self.trace.inputs]

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """Every tensor the model returns: ``{name, shape, dtype}``."""
        return [o.to_dict() for o in self.trace.outputs]

    def to_dict(self) -> dict[str, Any]:
        """The same JSON as ``archviz shapes --format json``."""
        from archviz.render.shapes import shapes_report

        return shapes_report(self.trace, self.depth)

    def __str__(self) -> str:
        from archviz.render.shapes import render_shapes

        return render_shapes(self.trace, self.depth)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from archviz.render.shapes import render_shapes

        return render_shapes(self.trace, self.depth, html=True)


def summary(
    model_or_arch: Any,
    input_size: Any = None,
    input_data: Any = None,
    dtypes: Sequence[Any] | None = None,
    depth: int = 1,
    *,
    compute: bool = False,
    **params: Any,
) -> Summary:
    """Per-block output shapes and parameters of ``model_or_arch`` (as ``archviz shapes``), without computing.

    ``params`` are the ``-p`` values (spec parameters or the callable's keyword arguments).
    ``compute=True`` traces with real tensors on the CPU, for data-dependent models.
    """
    if depth < 1:
        raise UsageError(f"depth must be at least 1 (1 = top-level blocks), got {depth}.")
    return Summary(_trace(model_or_arch, input_size, input_data, dtypes, compute, params)[1], depth)


@dataclass(frozen=True)
class CostReport:
    """What ``archviz cost`` shows: FLOPs, receptive fields and the memory of a training step."""

    report: Cost = field(repr=False)
    arch: Arch | None = field(default=None, repr=False, compare=False)  # what sweep() reruns
    by: str = "block"  # rows per block or per layer kind (as `cost --by`)

    @property
    def total_params(self) -> int:
        return self.report.trace.total_params

    def sweep(self, batch: Sequence[int] | None = None, input: Sequence[int | str | tuple[int, ...]] | None = None) -> Sweep:
        """Peak memory (train and eval), MACs and params per batch size and input size (as ``cost --sweep``).

        ``input``: spatial sides (``56``), ``"HxW"`` strings or tuples; the other settings are this report's.
        """
        from archviz.estimate.sweep import parse_sweeps, sweep_report

        if self.arch is None:
            raise UsageError("this cost report does not know its architecture; make it with archviz.cost(...) to sweep it.")
        texts = [f"batch={','.join(str(b) for b in batch)}"] if batch else []
        if input:
            texts.append("input=" + ",".join("x".join(map(str, s)) if isinstance(s, tuple | list) else str(s) for s in input))
        batches, sides = parse_sweeps(texts)
        budget = self.report.budget.budget_bytes if self.report.budget else None
        with user_code():
            report = sweep_report(self.arch, self.report.trace.input_shape, self.report.settings, batches=batches, sides=sides, budget_bytes=budget)
        return Sweep(report)

    @property
    def macs(self) -> int:
        return self.report.macs

    @property
    def flops(self) -> int:
        return self.report.trace.flops

    @property
    def peak_bytes(self) -> int:
        """Predicted peak bytes of the step (see ``to_dict()["conventions"]``)."""
        return self.report.memory.peak_bytes

    @property
    def blocks(self) -> list[dict[str, Any]]:
        return [b.to_dict() for b in self.report.blocks]

    def to_dict(self) -> dict[str, Any]:
        """The same JSON as ``archviz cost --format json``."""
        import copy

        return copy.deepcopy(self.report.to_dict())

    def __str__(self) -> str:
        from archviz.render.cost import render_cost

        return render_cost(self.report, by=self.by)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from archviz.render.cost import render_cost

        return render_cost(self.report, by=self.by, html=True)


@dataclass(frozen=True)
class Sweep:
    """What ``archviz cost --sweep`` shows: one row per (input size, batch) point; ``save_curve`` draws it."""

    report: SweepReport = field(repr=False)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.report.rows]

    def to_dict(self) -> dict[str, Any]:
        """The same JSON as ``archviz cost --sweep ... --format json``."""
        return self.report.to_dict()

    def save_curve(self, path: str | os.PathLike, *, force: bool = False) -> Path:
        """Peak memory against batch size as SVG (as ``-o curve.svg``); an existing file archviz did not write is kept unless ``force``."""
        from archviz.files import refuse_overwrite, write_text_atomic
        from archviz.render.cost import SWEEP_MARK, sweep_curve_svg

        path = Path(path)
        refuse_overwrite(path, lambda head: SWEEP_MARK.encode() in head, force)
        write_text_atomic(path, sweep_curve_svg(self.report))
        return path

    def __str__(self) -> str:
        from archviz.render.cost import render_sweep

        return render_sweep(self.report)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from archviz.render.cost import render_sweep_html

        return render_sweep_html(self.report)


def cost(
    model_or_arch: Any,
    input_size: Any = None,
    input_data: Any = None,
    dtypes: Sequence[Any] | None = None,
    depth: int = 1,
    *,
    optimizer: str = "sgd",
    dtype: str = "fp32",
    amp: bool = False,
    mode: str = "train",
    device: str = "cpu",
    budget: str | int | None = None,
    by: str = "block",
    **params: Any,
) -> CostReport:
    """FLOPs, receptive fields and the predicted memory of a training step (as ``archviz cost``).

    ``budget``: bytes, or a size such as ``"24GiB"``, to find the largest batch that fits.
    ``mode``: "train", "eval" or "both" (train and eval memory side by side); ``by``: "block" or "kind".
    ``.sweep(batch=[...], input=[...])`` reruns it over batch and input sizes.
    """
    from archviz.choices import GroupBy
    from archviz.estimate.report import cost_report
    from archviz.estimate.settings import StepSettings, choice
    from archviz.estimate.units import parse_size

    with user_code():
        arch = _arch(model_or_arch, params)
        specs, _ = _inputs(arch, input_size, input_data, dtypes)
        if isinstance(specs, dict):
            raise UsageError("archviz.cost takes positional inputs (input_size as a list, or input_data as a tuple), not a dict.")
        budget_bytes = parse_size(budget) if isinstance(budget, str) else budget
        report = cost_report(arch, specs, StepSettings.parse(optimizer, dtype, amp, mode, device), budget_bytes=budget_bytes, depth=depth)
    return CostReport(report, arch, str(choice(GroupBy, by, "grouping")))


def explain(
    model_or_arch: Any,
    input_size: Any = None,
    input_data: Any = None,
    dtypes: Sequence[Any] | None = None,
    depth: int = 1,
    *,
    compute: bool = False,
    **params: Any,
) -> Explanation:
    """A walk through ``model_or_arch`` (as ``archviz explain``): each block's (or, with ``depth``, layer's) output size,
    parameters, MACs and receptive field with the arithmetic behind them, then conclusions. Shows itself as HTML in Jupyter."""
    from archviz.walkthrough import explain as walkthrough

    if depth < 1:
        raise UsageError(f"depth must be at least 1 (1 = top-level blocks), got {depth}.")
    return walkthrough(_trace(model_or_arch, input_size, input_data, dtypes, compute, params)[1], depth)


@dataclass(frozen=True)
class Diagram:
    """A graphviz drawing of the dataflow: shows itself inline in Jupyter (SVG), ``.save(path)`` writes it.

    With ``interactive=True`` Jupyter shows the interactive page instead (blocks expand, cards, search),
    inside an ``<iframe srcdoc>`` so that its script runs isolated from the notebook's.
    """

    source: str = field(repr=False)  # DOT source
    name: str = "diagram"
    trace: Trace | None = field(default=None, repr=False, compare=False)  # for the HTML page
    depth: int = 1
    direction: str = "TB"
    fold: bool = True
    interactive: bool = False

    def _repr_svg_(self) -> str | None:
        from archviz.render.graphviz import DiagramFormat, GraphvizMissing, render

        if self.interactive:
            return None  # the page, from _repr_html_
        try:
            return render(self.source, DiagramFormat.svg).decode()
        except GraphvizMissing:
            return None  # Jupyter then shows repr(): the DOT source

    def _repr_html_(self) -> str | None:
        if not self.interactive:
            return None
        from archviz.render.html import iframe

        return iframe(self.html())

    def html(self) -> str:
        """The self-contained interactive page (what ``.save("net.html")`` writes)."""
        from archviz.render.dot import Direction
        from archviz.render.html import to_html

        if self.trace is None:
            raise UsageError("this diagram was made without its trace; make it with archviz.diagram(...) to get the HTML page.")
        return to_html(self.trace, self.depth, Direction(self.direction), self.fold)

    def __repr__(self) -> str:
        return self.source

    def graphviz(self) -> Any:
        """The DOT source as a ``graphviz.Source``, for graphviz's own API (``.pipe(format="svg")``, ``.view()``, layout engines)."""
        import graphviz

        return graphviz.Source(self.source, filename=f"{self.name}.gv")

    def save(self, path: str | os.PathLike, format: str | None = None, *, force: bool = False) -> Path:
        """Write the diagram; the format follows the extension (.svg/.png/.pdf/.dot/.html) unless ``format`` says.

        Written atomically; an existing file archviz did not write is kept unless ``force=True``.
        """
        from archviz.files import graphviz_output_of, refuse_overwrite, write_atomic
        from archviz.render.graphviz import DiagramFormat, check_writable, file_bytes, output_format, render

        path = Path(path)
        fmt = output_format(path, format)
        check_writable(path)
        refuse_overwrite(path, graphviz_output_of(self.name), force)
        write_atomic(path, self.html().encode("utf-8") if fmt is DiagramFormat.html else file_bytes(render(self.source, fmt), fmt, self.name))
        return path


def diagram(
    model_or_arch: Any,
    input_size: Any = None,
    input_data: Any = None,
    dtypes: Sequence[Any] | None = None,
    depth: int = 1,
    *,
    direction: str = "TB",
    fold: bool = True,
    compute: bool = False,
    interactive: bool = False,
    **params: Any,
) -> Diagram:
    """The dataflow diagram of ``model_or_arch`` (as ``archviz diagram``): blocks at ``depth``, every input and output.

    ``interactive=True``: Jupyter shows the offline HTML page (expand blocks, cards, search) instead of the SVG.
    """
    from archviz.render.dot import Direction, to_dot

    arch, trace = _trace(model_or_arch, input_size, input_data, dtypes, compute, params)
    return Diagram(to_dot(trace, depth, Direction(direction), fold), arch.name, trace, depth, Direction(direction).value, fold, interactive)
