"""The cost report: per-block FLOPs, bytes and receptive fields, totals, memory, budget.

``cost_report`` returns the stable JSON contract of `archviz cost`; ``compare_report``
the rows of `archviz compare`. Both return plain data; rendering is archviz.render.cost.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from archviz.choices import DType, Mode, Optimizer, TargetDevice
from archviz.errors import NeedsValues, RunError
from archviz.estimate.blocks import by_kind, memory_by_block, percent
from archviz.estimate.flops import training_flops_per_image, uncounted_ops
from archviz.estimate.memory import choice, largest_batch, predict_memory
from archviz.estimate.receptive import block_fields, receptive_fields, unknown_ops

if TYPE_CHECKING:
    from archviz.arch import Arch
    from archviz.trace.record import Shape, Trace

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


def cost_report(
    arch: Arch,
    input_shape: Shape | None = None,
    *,
    optimizer: Optimizer | str = Optimizer.sgd,
    dtype: DType | str = DType.fp32,
    amp: bool = False,
    mode: Mode | str = Mode.train,
    device: TargetDevice | str = TargetDevice.cpu,
    budget_bytes: int | None = None,
    depth: int = 1,
    trace: Trace | None = None,
) -> dict[str, Any]:
    """The JSON contract of `archviz cost` (stable: other tools read it).

    ``trace``: ``arch``'s trace on the input, when the caller has it; otherwise it is made
    here, once, and every part of the report (FLOPs, receptive fields, memory) reads it.
    """
    optimizer = choice(Optimizer, optimizer, "optimizer")
    dtype = choice(DType, dtype, "dtype")
    mode = choice(Mode, mode, "mode")
    device = choice(TargetDevice, device, "device")
    if trace is None or (input_shape is not None and not _same_input(input_shape, trace)):
        try:
            trace = arch.trace(input_shape)  # ``input_shape``: a shape, or inputs as Arch.trace takes them (several, any dtype)
        except NeedsValues as exc:  # `cost` has no --compute: the step it simulates runs without values too (issue 19)
            raise RunError(
                f"{exc.problem}; `archviz cost` predicts FLOPs and memory by running the step without values, so it cannot cost this model "
                "(`archviz shapes` with the same arguments and --compute traces it with real tensors: shapes, params and FLOPs)."
            ) from None
    memory = predict_memory(arch, trace.input_shape, optimizer, dtype, amp, mode, device, trace=trace)
    fields = receptive_fields(trace)
    at_block = block_fields(trace, fields)
    element = 2 if amp or dtype is not DType.fp32 else 4
    kept = memory.kept_under()
    nodes = trace.blocks(depth)
    both = mode is Mode.both
    at_peak, remainder = memory_by_block(memory.peak_parts, nodes, memory.peak_bytes)
    at_eval_peak, eval_remainder = memory_by_block(memory.inference_peak_parts, nodes, memory.inference_peak_bytes)
    kinds, kinds_remainder = by_kind(trace, memory.peak_parts, memory.peak_bytes)
    eval_kinds, eval_kinds_remainder = by_kind(trace, memory.inference_peak_parts, memory.inference_peak_bytes)
    if both:
        for row, eval_row in zip(kinds, eval_kinds, strict=True):
            row["eval_memory"] = eval_row["memory"]
    blocks = []
    for node in nodes:
        rf = at_block.get(node.path)
        blocks.append(
            {
                "name": node.path,
                "type": node.type,
                "depth": node.depth,
                "output_shape": list(node.output_shape) if node.called else None,  # None: a container or unused module (issue 9)
                "params": node.params,
                "macs": node.macs,
                "flops": node.flops,
                "activation_bytes": math.prod(node.output_shape) * element if node.called else 0,
                "kept_bytes": kept.get(node.path, 0) if mode is not Mode.eval else 0,
                "receptive_field": rf.to_dict() if rf is not None else None,
                "params_percent": percent(node.params, trace.total_params),
                "macs_percent": percent(node.macs, trace.flops // 2),
                "memory": at_peak[node.path],  # alive at the peak, by the block that made it (archviz.estimate.blocks)
            }
        )
        if both:
            blocks[-1]["eval_memory"] = at_eval_peak[node.path]
    output_rf = at_block.get("")
    report: dict[str, Any] = {
        "arch": trace.arch,
        "title": trace.display_name,  # what tables and diagrams call it (a callable's display name, or --title)
        "input_shape": list(trace.input_shape),
        "output_shape": list(trace.output_shape),
        "inputs": [i.to_dict() for i in trace.inputs],
        "outputs": [o.to_dict() for o in trace.outputs],
        "total_params": trace.total_params,
        "trainable_params": trace.trainable_params,
        "macs": trace.flops // 2,
        "flops": trace.flops,
        "training_flops_per_image": training_flops_per_image(trace),
        "receptive_field": output_rf.to_dict() if output_rf is not None else None,
        "memory": {
            "params_bytes": memory.params_bytes,
            "buffers_bytes": memory.buffers_bytes,
            "grads_bytes": memory.grads_bytes,
            "optimizer_bytes": memory.optimizer_bytes,
            "activations_bytes": memory.activations_bytes,
            "largest_temporary_bytes": memory.largest_temporary_bytes,
            "input_bytes": memory.input_bytes,
            "peak_bytes": memory.peak_bytes,
            "inference_peak_bytes": memory.inference_peak_bytes,
            "peak_phase": memory.peak_phase,
            "peak_breakdown": memory.peak_breakdown,
            "step": memory.step,
            "loss": _loss_text(memory.outputs) if mode is not Mode.eval else "none (eval forward)",
            "kernel_scratch_bytes": memory.kernel_scratch_bytes,
            "kernel_rules": memory.kernel_rules,
            "batch": memory.batch,
            "optimizer": memory.optimizer,
            "dtype": memory.dtype,
            "amp": memory.amp,
            "mode": memory.mode,
            "device": memory.device,
        },
        "budget": None,
        "mode": str(mode),
        "blocks": blocks,
        "memory_remainder": remainder,
        "by_kind": kinds,
        "by_kind_remainder": kinds_remainder,
        "uncounted_ops": uncounted_ops(trace),
        "receptive_field_unknown": unknown_ops(trace) if fields else [],
        "conventions": CONVENTIONS,
    }
    if both:
        report["eval_memory_remainder"] = eval_remainder
        report["eval_by_kind_remainder"] = eval_kinds_remainder
    if budget_bytes is not None:
        found = largest_batch(arch, trace.input_shape, budget_bytes, optimizer, amp, device, dtype, mode, trace=trace)
        smallest = (None, None) if found else _smallest_peak(arch, trace, optimizer, dtype, amp, mode, device)
        report["budget"] = {
            "budget_bytes": budget_bytes,
            "largest_batch": found[0] if found else None,
            "peak_bytes": found[1].peak_bytes if found else None,
            "smallest_batch": None if found else smallest[0],  # 1, or 2 with batch norm in train mode
            "batch1_peak_bytes": None if found else smallest[1],  # the peak at smallest_batch
        }
    return report


def _smallest_peak(arch: Arch, trace: Trace, *settings: Any) -> tuple[int, int]:
    """(batch, peak) at batch 1, or at batch 2 for a network with batch norm, which cannot train on one sample."""
    try:
        return 1, predict_memory(arch, (1, *trace.input_shape[1:]), *settings, trace=trace).peak_bytes
    except RunError:
        return 2, predict_memory(arch, (2, *trace.input_shape[1:]), *settings, trace=trace).peak_bytes


def _loss_text(outputs: int) -> str:
    if outputs == 1:
        return "cross-entropy of the batch x classes output (a plain sum for any other output)"
    if outputs == 0:
        return "none: the output holds no floating-point tensor, so there is no backward pass"
    return f"the sum over the {outputs} floating-point outputs (cross-entropy for batch x classes ones, a plain sum for others)"


def _same_input(inputs: Any, trace: Trace) -> bool:
    """Whether a plain float shape ``inputs`` is what ``trace`` ran on (several inputs or a dtype: trace again)."""
    if isinstance(inputs, list | tuple) and inputs and all(isinstance(d, int) for d in inputs):
        return len(trace.inputs) == 1 and trace.inputs[0].dtype == "float32" and tuple(inputs) == tuple(trace.input_shape)
    return False


def smallest_input(arch: Arch, input_shape: Shape) -> Shape | None:
    """The smallest square NxCxSxS input the network accepts."""
    if arch.resolved is not None:
        from archviz.trace.from_spec import smallest_input as spec_smallest

        return spec_smallest(arch.resolved, input_shape)
    from archviz.trace.from_module import smallest_square_input

    return smallest_square_input(arch.build(device="meta"), input_shape)


def compare_report(
    archs: list[Arch],
    input_shape: Shape | None = None,
    *,
    labels: list[str] | None = None,
    batch: int | None = None,
    optimizer: Optimizer | str = Optimizer.sgd,
    device: TargetDevice | str = TargetDevice.cpu,
) -> dict[str, Any]:
    """Side by side: params, MACs, training FLOPs per image, training peak, output, smallest input."""
    from archviz.estimate.simulate import BatchNormAtBatchOne

    rows = []
    for i, arch in enumerate(archs):
        specs = arch.input_specs(input_shape)  # ``input_shape``: a shape, or inputs as Arch.trace takes them
        if batch is not None:
            specs = {k: s.with_batch(batch) for k, s in specs.items()} if isinstance(specs, dict) else tuple(s.with_batch(batch) for s in specs)
        trace = arch.trace(specs)
        shape = tuple(trace.input_shape)
        try:
            peak, peak_note = predict_memory(arch, shape, optimizer, device=device, trace=trace).peak_bytes, None
        except BatchNormAtBatchOne as exc:  # one model cannot train at this batch: the others still can
            where = f"layer '{exc.layer}'" if exc.layer else "a batch-norm layer"
            peak, peak_note = None, f"batch norm cannot train at batch {shape[0]} ({where} sees one value per channel); pass --batch 2 or more"
        plain = len(trace.inputs) == 1 and trace.inputs[0].dtype == "float32"
        smallest = smallest_input(arch, shape) if plain and len(shape) == 4 else None
        rows.append(
            {
                "arch": labels[i] if labels else arch.name,
                "input_shape": list(shape),
                "inputs": [t.to_dict() for t in trace.inputs],
                "total_params": trace.total_params,
                "macs": trace.flops // 2,
                "training_flops_per_image": training_flops_per_image(trace),
                "peak_bytes": peak,
                "peak_note": peak_note,
                "batch": shape[0],
                "output_shape": list(trace.output_shape),
                "smallest_input": list(smallest) if smallest else None,
            }
        )
    return {"optimizer": str(choice(Optimizer, optimizer, "optimizer")), "device": str(choice(TargetDevice, device, "device")), "archs": rows}
