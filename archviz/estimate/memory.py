"""Predict the memory of a training step, and of an eval forward pass, before running either.

**The peak, precisely.** The steady-state training step is the *second* step of the loop
`archviz train` runs (:func:`archviz.step.train_step`, d2l's order:
``optimizer.zero_grad(set_to_none=True)``, forward under optional autocast, loss,
``backward``, ``optimizer.step()``): the optimizer state exists, and the previous step's
gradients are freed before the forward pass. The loss is cross-entropy for a
[batch, classes] output; for any other output structure it is the sum over every
floating-point output (:func:`archviz.estimate.simulate.simulated_loss`). The peak is the most
bytes alive at once from the start of that step to its end:

- on a GPU, what ``torch.cuda.max_memory_allocated()`` reports after
  ``torch.cuda.reset_peak_memory_stats()`` at the start of the step: every block rounded
  up to a multiple of 512 bytes, as the caching allocator does;
- on a CPU, the allocator's live bytes (no rounding), as ``torch.profiler``'s memory
  events count them.

It includes the weights, buffers, input batch, gradients, optimizer state, the tensors
autograd keeps for backward, temporaries, and the scratch memory of CPU kernels
(:mod:`archviz.estimate.workspace`). Memory outside PyTorch's allocator (the CUDA context,
cuDNN/cuBLAS workspaces, the caching allocator's reserved-but-free blocks) is not included.

How: :mod:`archviz.estimate.simulate` runs the real step on meta tensors (nothing is computed
or allocated) and accounts for every storage it creates. The user's model is never
touched: a fresh meta model is built from the architecture each time.

Sizes are bytes; rendered in KiB/MiB/GiB (powers of 1024).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from archviz.choices import DType, Mode, Optimizer, TargetDevice
from archviz.errors import RunError, TooLarge, UsageError
from archviz.estimate.settings import StepSettings
from archviz.shape import FLOAT_DTYPES

if TYPE_CHECKING:
    from archviz.arch import Arch
    from archviz.trace.record import Trace

# What the CPU scratch rules estimate or leave out (archviz/estimate/workspace.py, README's limits).
CPU_UNCERTAIN = (
    "estimated: oneDNN's 20-25 KiB reduction bookkeeping per convolution with 2+ threads; not modelled: bf16 matmul scratch, up to ~40 KB per call, "
    "oneDNN's scratchpad in channels-last dense convolutions (8-300 KB); "
    "estimated: bf16 channels-last depthwise backward's per-image scratchpad (within 8% from 14x14 up, 22% under at 7x7), "
    "LSTM backward's weight copies at hidden sizes of 200 and more (fitted on three shapes)"
)
AMX_UNCERTAIN = "; estimated: the AMX bf16 convolutions' forward and backward-data scratchpad (one padded image per thread)"

# What is predicted, in a few words (the JSON's ``memory.step``; archviz.step has the code).
STEP = "2nd step of zero_grad(set_to_none) -> forward -> backward -> optimizer.step (d2l order)"

__all__ = ["DType", "MemoryEstimate", "Mode", "Optimizer", "StepSettings", "TargetDevice", "largest_batch", "predict_memory"]


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted memory of one steady-state training step (or eval forward), in bytes."""

    arch: str
    input_shape: tuple[int, ...]  # the first input's, at the predicted batch
    settings: StepSettings  # mode is train or eval (both predicts the training step, its eval forward beside it)
    params_bytes: int  # parameters
    buffers_bytes: int  # batch-norm running statistics and other buffers
    grads_bytes: int  # one gradient per trainable parameter
    optimizer_bytes: int  # momentum buffers, Adam's two moments, step counters on the device
    activations_bytes: int  # tensors alive at the end of the forward pass: what autograd keeps for backward
    largest_temporary_bytes: int  # the largest single temporary, kernel scratch included
    input_bytes: int  # the batch X and its labels y
    peak_bytes: int  # training step (or eval forward with mode=eval), as defined in the module docstring
    inference_peak_bytes: int  # an eval-mode forward under torch.no_grad() at the same batch size
    peak_phase: str = ""  # forward, zero_grad, backward or optimizer
    peak_breakdown: dict[str, int] = field(default_factory=dict)  # what was alive at the peak, by category
    kept_by_module: dict[str, int] = field(default_factory=dict)  # activations kept for backward, by the module that made them
    step: str = STEP  # which step is predicted
    outputs: int = 1  # floating-point output tensors; the simulated loss sums over them
    kernel_scratch_bytes: int = 0  # scratch a kernel holds inside the op at the peak (in peak_bytes)
    kernel_rules: str = ""  # the CPU facts the scratch rules read, or why scratch is not modelled
    # What was alive at the peak, as (module that made it or None, category, aten op, bytes); sums to peak_bytes
    peak_parts: tuple[tuple[str | None, str, str, int], ...] = ()
    inference_peak_parts: tuple[tuple[str | None, str, str, int], ...] = ()  # the same at the eval forward's peak
    unseen: dict[str, int] = field(default_factory=dict)  # what the simulation cannot see into (a custom autograd.Function) -> margin, bytes
    warnings: list[str] = field(default_factory=list)  # one sentence per unseen thing, with its margin

    @property
    def peak_with_margin_bytes(self) -> int:
        """The peak plus every stated margin: the most the step may need when what was not seen allocates."""
        return self.peak_bytes + sum(self.unseen.values())

    @property
    def batch(self) -> int:
        return self.input_shape[0]

    def kept_under(self) -> dict[str, int]:
        """Bytes kept for backward made inside each module path, its submodules included ("" is the model).

        One pass over the records, each added to its path and every ancestor: linear in the
        number of modules times their depth, so a 10,000-layer network costs no more per layer."""
        totals: dict[str, int] = {}
        for path, nbytes in self.kept_by_module.items():
            totals[""] = totals.get("", 0) + nbytes
            parts = path.split(".") if path else []
            for k in range(1, len(parts) + 1):
                prefix = ".".join(parts[:k])
                totals[prefix] = totals.get(prefix, 0) + nbytes
        return totals


def predict_memory(
    arch: Arch | str, inputs: Any = None, settings: StepSettings = StepSettings(), *, trace: Trace | None = None, batch: int | None = None
) -> MemoryEstimate:
    """Predict the peak memory of a training step (``settings.mode`` train or both) or an eval forward.

    The inputs simulated are the trace's (every one, with its dtype; float ones take the weights'
    dtype): ``trace`` when the caller has it, else ``arch`` traced once on ``inputs`` (a shape, or
    inputs as Arch.trace takes them), which checks that the network runs on them. ``batch``: the
    batch size to predict, when not the trace's. Raises RunError when the network cannot run.
    """
    from archviz.arch import load_arch
    from archviz.estimate import simulate, workspace

    arch = load_arch(arch) if isinstance(arch, str) else arch
    trace = trace or arch.trace(inputs)  # a network that cannot run on this input fails here, with the layer named
    settings = settings.with_mode(Mode.train) if settings.mode is Mode.both else settings  # the training step; its eval forward comes with it
    batch = batch if batch is not None else trace.input_shape[0] if trace.input_shape else 1
    shape = (batch, *trace.input_shape[1:]) if trace.input_shape else ()
    on_gpu = settings.on_gpu
    facts = None if on_gpu else workspace.CpuFacts.here()
    kernel_scratch = None if facts is None else workspace.cpu_workspace(facts)
    rules = "cuDNN/cuBLAS workspaces are chosen at run time and not included"
    if facts is not None:
        rules = f"{facts.describe()}; {CPU_UNCERTAIN}{AMX_UNCERTAIN if facts.amx else ''}"
    inputs = _simulated_inputs(trace, batch)
    common = dict(arch=arch.name, input_shape=shape, settings=settings)
    inference = simulate.simulate_inference(_meta_model(arch, shape), inputs, settings, kernel_scratch)
    if settings.mode is Mode.eval:
        return MemoryEstimate(
            **common,
            params_bytes=inference.params_bytes,
            buffers_bytes=inference.buffers_bytes,
            grads_bytes=0,
            optimizer_bytes=0,
            activations_bytes=0,
            largest_temporary_bytes=inference.largest_temporary_bytes,
            input_bytes=inference.input_bytes,
            peak_bytes=inference.peak.bytes,
            inference_peak_bytes=inference.peak.bytes,
            peak_phase=inference.peak.phase,
            peak_breakdown=inference.breakdown,
            step="one forward pass under torch.no_grad() in eval mode",
            kernel_scratch_bytes=inference.peak.workspace,
            kernel_rules=rules,
            peak_parts=inference.at_peak,
            inference_peak_parts=inference.at_peak,
        )
    step = simulate.simulate_training(_meta_model(arch, shape), inputs, settings, kernel_scratch)
    warnings = [unseen_warning(name, margin) for name, margin in sorted(step.unseen.items())]
    return MemoryEstimate(
        **common,
        params_bytes=step.params_bytes,
        buffers_bytes=step.buffers_bytes,
        grads_bytes=step.grads_bytes,
        optimizer_bytes=step.optimizer_bytes,
        activations_bytes=step.activations_bytes,
        largest_temporary_bytes=step.largest_temporary_bytes,
        input_bytes=step.input_bytes,
        peak_bytes=step.peak.bytes,
        inference_peak_bytes=inference.peak.bytes,
        peak_phase=step.peak.phase,
        peak_breakdown=step.breakdown,
        kept_by_module=step.kept_by_module,
        outputs=step.outputs,
        kernel_scratch_bytes=step.peak.workspace,
        kernel_rules="; ".join([rules, *warnings]),
        peak_parts=step.at_peak,
        inference_peak_parts=inference.at_peak,
        unseen=dict(step.unseen),
        warnings=warnings,
    )


def unseen_warning(name: str, margin: int) -> str:
    """The sentence for a custom autograd.Function the simulation runs but cannot see into."""
    from archviz.estimate.units import format_bytes

    return (
        f"custom autograd.Function {name}: work it does outside torch operators is not seen; "
        f"allow up to {format_bytes(margin)} more (one more copy of what one call saves for backward)"
    )


def _simulated_inputs(trace: Trace, batch: int) -> list[tuple[tuple[int, ...], Any]]:
    """Every input the trace records, at ``batch``; float inputs take the weights' dtype (None), others keep theirs."""
    import torch

    return [((batch, *t.shape[1:]) if t.shape else (), None if t.dtype in FLOAT_DTYPES else getattr(torch, t.dtype)) for t in trace.inputs]


_PRISTINE: list[Any] = [None, None, None]  # the last (arch, input shape past the batch, meta model)


def _meta_model(arch: Arch, shape: tuple[int, ...]) -> Any:
    """A fresh meta-device model for a simulation (which changes it): built once per architecture and
    input size, then copied (a meta copy costs nothing), so a budget search does not rebuild it."""
    import copy

    if _PRISTINE[0] is not arch or _PRISTINE[1] != shape[1:]:
        _PRISTINE[:] = [arch, shape[1:], arch.build(shape, device="meta")]
    try:
        return copy.deepcopy(_PRISTINE[2])
    except Exception:  # a user module that cannot be copied (a lock, a file handle): build it again
        return arch.build(shape, device="meta")


def largest_batch(
    arch: Arch | str, inputs: Any, budget_bytes: int, settings: StepSettings = StepSettings(), limit: int = 2**40, *, trace: Trace | None = None
) -> tuple[int, MemoryEstimate] | None:
    """The largest batch size whose predicted peak fits in ``budget_bytes``, with its estimate.

    ``inputs`` and ``trace`` as in ``predict_memory`` (the trace's inputs are simulated at each batch).
    ``None`` when even batch 1 does not fit (``predict_memory`` at batch 1 says what it
    needs). The peak grows almost linearly with the batch, so a line through batches 2 and
    4 gives a first guess, which the simulation then checks and corrects, stepping away from
    the guess by 1, 2, 4, ... and bisecting: a handful of simulations, each exact.
    """
    from archviz.arch import load_arch

    arch = load_arch(arch) if isinstance(arch, str) else arch
    if budget_bytes <= 0:
        raise UsageError(f"the memory budget must be more than zero bytes, not {budget_bytes}.")
    trace = trace or arch.trace(inputs)  # checked once: the batch size does not change whether a network runs
    shape = trace.input_shape
    cache: dict[int, MemoryEstimate] = {}

    def at(batch: int) -> MemoryEstimate:
        if batch not in cache:
            cache[batch] = predict_memory(arch, settings=settings, trace=trace, batch=batch)
        return cache[batch]

    def fits(batch: int) -> bool:
        try:
            return at(batch).peak_bytes <= budget_bytes
        except TooLarge:  # a tensor of more than 2^63 bytes fits in no budget
            if batch == 1:
                raise
            return False

    try:
        one = fits(1)
    except RunError:  # batch norm cannot train on a single sample: the search starts at 2
        if settings.mode is Mode.eval:
            raise
        one = None
    if one is False or (one is None and not fits(2)):
        return None
    if not fits(2):
        return 1, at(1)
    if not fits(4):
        return (3, at(3)) if fits(3) else (2, at(2))
    slope = max((at(4).peak_bytes - at(2).peak_bytes) / 2, 1.0)
    guess = max(5, min(limit, 4 + int((budget_bytes - at(4).peak_bytes) // slope)))
    # bracket the answer around the guess (lo fits, hi does not), then bisect
    step = 1
    if fits(guess):
        lo, hi = guess, None
        while hi is None:
            if lo + step > limit:  # never capped silently (issue 11): say so
                raise UsageError(
                    f"the budget of {budget_bytes:,} bytes fits more than {limit:,} images of {'x'.join(map(str, shape[1:]))} "
                    f"(batch {lo:,} needs {at(lo).peak_bytes:,} bytes); archviz searches batch sizes up to {limit:,}: give a smaller budget."
                )
            if fits(lo + step):
                lo, step = lo + step, step * 2
            else:
                hi = lo + step
    else:
        lo, hi = 4, guess
        while hi - step > lo:
            if fits(hi - step):
                lo = hi - step
                break
            hi, step = hi - step, step * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo, at(lo)
