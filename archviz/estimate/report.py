"""The cost report: per-block FLOPs, bytes and receptive fields, totals, memory, budget.

``cost_report`` returns a :class:`CostReport` built from a trace (``to_dict()`` is the stable
JSON contract of `archviz cost`); ``compare_report`` a :class:`Comparison`, the rows of `archviz compare`.
Rendering is archviz.render.cost.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from archviz.choices import Mode
from archviz.errors import NeedsValues, RunError
from archviz.estimate.blocks import KindCost, Memory, Remainder, by_kind, memory_by_block, percent
from archviz.estimate.flops import training_flops_per_image, uncounted_ops
from archviz.estimate.memory import MemoryEstimate, largest_batch, predict_memory
from archviz.estimate.receptive import ReceptiveField, block_fields, receptive_fields, unknown_ops
from archviz.estimate.settings import StepSettings

if TYPE_CHECKING:
    from archviz.arch import Arch
    from archviz.trace.record import Node, Shape, TensorInfo, Trace

CONVENTIONS = {
    "macs": "multiply-accumulates of convolutions, linear layers and matrix products (attention included); "
    "pooling, normalisation, activations, adds and concatenations count 0",
    "flops": "2 x MACs (torch.utils.flop_counter's convention; fvcore calls a MAC a flop)",
    "training_flops_per_image": "3 x forward FLOPs per image: backward computes input and weight gradients, each about one forward",
    "activation_bytes": "the block's output tensor at the compute dtype (2 bytes under --amp or bf16/fp16, else 4)",
    "kept_bytes": "tensors made inside the block that autograd keeps for backward (simulated)",
    "memory": "bytes alive at the peak moment, by the block that made them: weights (params + buffers), gradients and optimizer state "
    "of its parameters, activations (train: kept for backward), temporaries; blocks + memory_remainder = peak_bytes exactly",
    "params_percent": "share of the whole model's parameters (and macs_percent of its MACs, memory.peak_percent of the peak), in percent",
    "receptive_field": "size/jump/start per axis (h, w) at the block's output; at concat and add the widest input's; "
    "global pooling, flatten and linear layers see the whole input",
    "peak_bytes": "most bytes alive at once during a steady-state training step (the second), as "
    "torch.cuda.max_memory_allocated (512-byte blocks) or the CPU allocator's live bytes would report it",
    "bytes": "bytes; shown in KiB/MiB/GiB, powers of 1024",
}


@dataclass(frozen=True)
class BlockCost:
    """One block's row: its node in the trace, the bytes it makes and keeps, its receptive field and its memory at the peak."""

    node: Node
    activation_bytes: int  # the block's output at the compute dtype
    kept_bytes: int  # made inside it and kept for backward
    receptive_field: ReceptiveField | None
    params_percent: float
    macs_percent: float
    memory: Memory  # alive at the peak, by the block that made it (archviz.estimate.blocks)
    eval_memory: Memory | None = None  # the same at the eval forward's peak (mode both)

    def to_dict(self) -> dict[str, Any]:
        node, rf = self.node, self.receptive_field
        # output_shape None: a container or unused module (issue 9)
        row = dict(name=node.path, type=node.type, depth=node.depth, output_shape=list(node.output_shape) if node.called else None, params=node.params)
        row.update(macs=node.macs, flops=node.flops, activation_bytes=self.activation_bytes, kept_bytes=self.kept_bytes)
        row.update(receptive_field=rf.to_dict() if rf is not None else None, params_percent=self.params_percent, macs_percent=self.macs_percent)
        row.update(memory=self.memory.to_dict())
        return row if self.eval_memory is None else {**row, "eval_memory": self.eval_memory.to_dict()}


@dataclass(frozen=True)
class Budget:
    """The largest batch that fits a memory budget; when none does, the smallest batch and its peak."""

    budget_bytes: int
    largest_batch: int | None
    peak_bytes: int | None  # at largest_batch
    smallest_batch: int | None  # 1, or 2 with batch norm in train mode
    batch1_peak_bytes: int | None  # the peak at smallest_batch


@dataclass(frozen=True)
class CostReport:
    """What `archviz cost` reports on one trace: FLOPs, receptive fields and the memory of a step, per block and in total."""

    trace: Trace
    settings: StepSettings
    memory: MemoryEstimate
    blocks: tuple[BlockCost, ...]
    memory_remainder: Remainder  # the bytes at the peak no block made: blocks + remainder = peak
    by_kind: list[KindCost]
    by_kind_remainder: Remainder
    receptive_field: ReceptiveField | None  # at the output
    receptive_field_unknown: list[str]
    training_flops_per_image: int  # 3 x forward FLOPs per image
    uncounted_ops: list[str]  # ops with no FLOP rule
    budget: Budget | None = None
    eval_memory_remainder: Remainder | None = None  # mode both
    eval_by_kind_remainder: Remainder | None = None

    @classmethod
    def from_trace(cls, arch: Arch, trace: Trace, settings: StepSettings, budget_bytes: int | None = None, depth: int = 1) -> CostReport:
        memory = predict_memory(arch, settings=settings, trace=trace)
        fields = receptive_fields(trace)
        at_block = block_fields(trace, fields)
        kept = memory.kept_under()
        nodes = trace.blocks(depth)
        both = settings.mode is Mode.both
        at_peak, remainder = memory_by_block(memory.peak_parts, nodes, memory.peak_bytes)
        at_eval_peak, eval_remainder = memory_by_block(memory.inference_peak_parts, nodes, memory.inference_peak_bytes)
        kinds, kinds_remainder = by_kind(trace, memory.peak_parts, memory.peak_bytes)
        eval_kinds, eval_kinds_remainder = by_kind(trace, memory.inference_peak_parts, memory.inference_peak_bytes)
        if both:
            kinds = [replace(row, eval_memory=eval_row.memory) for row, eval_row in zip(kinds, eval_kinds, strict=True)]
        blocks = tuple(
            BlockCost(
                node,
                math.prod(node.output_shape) * settings.element_bytes if node.called else 0,
                kept.get(node.path, 0) if settings.mode is not Mode.eval else 0,
                at_block.get(node.path),
                percent(node.params, trace.total_params),
                percent(node.macs, trace.flops // 2),
                at_peak[node.path],
                at_eval_peak[node.path] if both else None,
            )
            for node in nodes
        )
        found = None
        if budget_bytes is not None:
            fits = largest_batch(arch, None, budget_bytes, settings, trace=trace)
            smallest = (None, None) if fits else _smallest_peak(arch, trace, settings)
            found = Budget(budget_bytes, *(fits[0], fits[1].peak_bytes) if fits else (None, None), *smallest)
        unknown, evals = unknown_ops(trace) if fields else [], (eval_remainder, eval_kinds_remainder) if both else (None, None)
        flops = (training_flops_per_image(trace), uncounted_ops(trace))
        return cls(trace, settings, memory, blocks, remainder, kinds, kinds_remainder, at_block.get(""), unknown, *flops, found, *evals)

    @property
    def macs(self) -> int:
        return self.trace.flops // 2

    @property
    def loss(self) -> str:
        return _loss_text(self.memory.outputs) if self.settings.mode is not Mode.eval else "none (eval forward)"

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of `archviz cost` (stable: other tools read it)."""
        trace, m, s, rf = self.trace, self.memory, self.memory.settings, self.receptive_field
        memory = {k: getattr(m, k) for k in _MEMORY_FIELDS}
        memory.update(loss=self.loss, kernel_scratch_bytes=m.kernel_scratch_bytes, kernel_rules=m.kernel_rules, batch=m.batch)
        memory.update(optimizer=str(s.optimizer), dtype=str(s.dtype), amp=s.amp, mode=str(s.mode), device=str(s.device))
        report: dict[str, Any] = dict(arch=trace.arch, title=trace.display_name)  # title: what tables and diagrams call it (a callable's name, or --title)
        report.update(input_shape=list(trace.input_shape), output_shape=list(trace.output_shape), inputs=[i.to_dict() for i in trace.inputs])
        report.update(outputs=[o.to_dict() for o in trace.outputs], total_params=trace.total_params, trainable_params=trace.trainable_params)
        report.update(macs=self.macs, flops=trace.flops, training_flops_per_image=self.training_flops_per_image)
        report.update(receptive_field=rf.to_dict() if rf is not None else None, memory=memory, budget=asdict(self.budget) if self.budget is not None else None)
        report.update(mode=str(self.settings.mode), blocks=[b.to_dict() for b in self.blocks], memory_remainder=self.memory_remainder.to_dict())
        report.update(by_kind=[k.to_dict() for k in self.by_kind], by_kind_remainder=self.by_kind_remainder.to_dict(), uncounted_ops=self.uncounted_ops)
        report.update(receptive_field_unknown=self.receptive_field_unknown, conventions=CONVENTIONS)
        if self.eval_memory_remainder is not None and self.eval_by_kind_remainder is not None:  # mode both
            report.update(eval_memory_remainder=self.eval_memory_remainder.to_dict(), eval_by_kind_remainder=self.eval_by_kind_remainder.to_dict())
        return report


_MEMORY_FIELDS = ("params_bytes", "buffers_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes", "largest_temporary_bytes", "input_bytes")
_MEMORY_FIELDS += ("peak_bytes", "inference_peak_bytes", "peak_phase", "peak_breakdown", "step")


def cost_report(arch: Arch, inputs: Any = None, settings: StepSettings = StepSettings(), *, budget_bytes: int | None = None, depth: int = 1) -> CostReport:
    """The cost of ``arch`` on ``inputs`` (a shape, or inputs as Arch.trace takes them: several, any dtype; None: its own)."""
    try:
        trace = arch.trace(inputs)
    except NeedsValues as exc:  # `cost` has no --compute: the step it simulates runs without values too (issue 19)
        raise RunError(
            f"{exc.problem}; `archviz cost` predicts FLOPs and memory by running the step without values, so it cannot cost this model "
            "(`archviz shapes` with the same arguments and --compute traces it with real tensors: shapes, params and FLOPs)."
        ) from None
    return CostReport.from_trace(arch, trace, settings, budget_bytes, depth)


def _smallest_peak(arch: Arch, trace: Trace, settings: StepSettings) -> tuple[int, int]:
    """(batch, peak) at batch 1, or at batch 2 for a network with batch norm, which cannot train on one sample."""
    try:
        return 1, predict_memory(arch, settings=settings, trace=trace, batch=1).peak_bytes
    except RunError:
        return 2, predict_memory(arch, settings=settings, trace=trace, batch=2).peak_bytes


def _loss_text(outputs: int) -> str:
    if outputs == 1:
        return "cross-entropy of the batch x classes output (a plain sum for any other output)"
    if outputs == 0:
        return "none: the output holds no floating-point tensor, so there is no backward pass"
    return f"the sum over the {outputs} floating-point outputs (cross-entropy for batch x classes ones, a plain sum for others)"


def smallest_input(arch: Arch, input_shape: Shape) -> Shape | None:
    """The smallest square NxCxSxS input the network accepts."""
    if arch.resolved is not None:
        from archviz.trace.from_spec import smallest_input as spec_smallest

        return spec_smallest(arch.resolved, input_shape)
    from archviz.trace.from_module import smallest_square_input

    return smallest_square_input(arch.build(device="meta"), input_shape)


@dataclass(frozen=True)
class CompareRow:
    """One architecture's row of `archviz compare`; the field names are its JSON keys."""

    arch: str
    input_shape: list[int]
    inputs: list[TensorInfo]
    total_params: int
    macs: int
    training_flops_per_image: int
    peak_bytes: int | None  # None: it cannot train at this batch, peak_note says why
    peak_note: str | None
    batch: int
    output_shape: list[int]
    smallest_input: list[int] | None


@dataclass(frozen=True)
class Comparison:
    """What `archviz compare` reports: the step's optimizer and device, one row per architecture."""

    optimizer: str
    device: str
    archs: list[CompareRow]

    to_dict = asdict  # the JSON keys are the field names


def compare_report(
    archs: list[Arch], inputs: Any = None, settings: StepSettings = StepSettings(), *, labels: list[str] | None = None, batch: int | None = None
) -> Comparison:
    """Side by side: params, MACs, training FLOPs per image, training peak, output, smallest input."""
    from archviz.estimate.simulate import BatchNormAtBatchOne

    rows = []
    for i, arch in enumerate(archs):
        specs = arch.input_specs(inputs)  # ``inputs``: a shape, or inputs as Arch.trace takes them
        if batch is not None:
            specs = {k: s.with_batch(batch) for k, s in specs.items()} if isinstance(specs, dict) else tuple(s.with_batch(batch) for s in specs)
        trace = arch.trace(specs)
        shape = tuple(trace.input_shape)
        try:
            peak, peak_note = predict_memory(arch, settings=settings, trace=trace).peak_bytes, None
        except BatchNormAtBatchOne as exc:  # one model cannot train at this batch: the others still can
            where = f"layer '{exc.layer}'" if exc.layer else "a batch-norm layer"
            peak, peak_note = None, f"batch norm cannot train at batch {shape[0]} ({where} sees one value per channel); pass --batch 2 or more"
        plain = len(trace.inputs) == 1 and trace.inputs[0].dtype == "float32"
        smallest = smallest_input(arch, shape) if plain and len(shape) == 4 else None
        counts = (trace.total_params, trace.flops // 2, training_flops_per_image(trace), peak, peak_note, shape[0], list(trace.output_shape))
        rows.append(CompareRow(labels[i] if labels else arch.name, list(shape), list(trace.inputs), *counts, list(smallest) if smallest else None))
    return Comparison(str(settings.optimizer), str(settings.device), rows)
