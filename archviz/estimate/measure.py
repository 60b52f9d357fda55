"""Measure the peak of a real training step, to check :func:`archviz.estimate.memory.predict_memory`.

- CPU: ``torch.profiler`` with ``profile_memory=True`` reports every allocation and free of
  the CPU allocator (c10's ProfiledCPUMemoryReporter) with its pointer and size. The whole
  run (building the model, step 1, step 2) is profiled, so every live byte is seen; the
  live-bytes curve is summed from those events and its maximum inside step 2 is the peak.
- CUDA: ``torch.cuda.reset_peak_memory_stats()`` before step 2, then
  ``torch.cuda.max_memory_allocated()`` after it.

Both run the same two steps as the prediction (:func:`archviz.step.train_step`, with the
prediction's loss :func:`archviz.estimate.simulate.simulated_loss`) with real weights and random data. This costs a real training step: use small batches.
"""

from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from archviz.errors import RunError
from archviz.estimate.settings import StepSettings
from archviz.estimate.simulate import simulated_loss
from archviz.step import make_optimizer, train_step

if TYPE_CHECKING:
    from archviz.arch import Arch

_STEP = "archviz::measured_step"


@dataclass(frozen=True)
class Measurement:
    peak_bytes: int  # the most bytes alive at once during step 2
    seconds: float  # wall time of the whole measurement
    device: str


def measure_training_peak(arch: Arch | str, input_shape: tuple[int, ...] | None = None, settings: StepSettings = StepSettings(), seed: int = 0) -> Measurement:
    """Run two real training steps and return the second one's peak (see the module docstring); ``settings.mode`` is not read."""
    from archviz.arch import load_arch

    arch = load_arch(arch) if isinstance(arch, str) else arch
    device = settings.device
    shape = tuple(input_shape or arch.default_input)
    trace = arch.trace(shape)
    classes = trace.output_shape[-1] if trace.output_shape else 1
    weights_dtype, amp_dtype = settings.torch_dtypes()
    on_gpu = settings.on_gpu
    if on_gpu and not torch.cuda.is_available():
        raise RunError("measuring on CUDA needs a GPU, and torch sees none; measure on the CPU or predict without measuring.")
    torch.manual_seed(seed)
    gc.collect()
    began = time.perf_counter()

    def run(phase_of_step2) -> None:
        net = arch.build(shape).to(device=str(device), dtype=weights_dtype).train()
        X = torch.randn(shape, device=str(device), dtype=weights_dtype)
        y = torch.randint(0, max(int(classes), 1), (shape[0],), device=str(device))
        trainable = [p for p in net.parameters() if p.requires_grad]
        opt = make_optimizer(settings.optimizer, trainable, weight_decay=settings.weight_decay, on_gpu=on_gpu) if trainable else None
        autocast = (lambda: torch.autocast(str(device), dtype=amp_dtype)) if amp_dtype is not None else contextlib.nullcontext
        state = train_step(net, simulated_loss, opt, X, y, autocast)
        with phase_of_step2():
            state = train_step(net, simulated_loss, opt, X, y, autocast)
        del state

    if on_gpu:
        marks = {}

        @contextlib.contextmanager
        def window():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            yield
            torch.cuda.synchronize()
            marks["peak"] = torch.cuda.max_memory_allocated()

        run(window)
        return Measurement(marks["peak"], time.perf_counter() - began, torch.cuda.get_device_name())

    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run(lambda: record_function(_STEP))
    return Measurement(_cpu_peak(prof), time.perf_counter() - began, "cpu")


def _cpu_peak(prof) -> int:
    """The peak of live CPU bytes inside the marked step, from the profiler's allocation events."""
    from archviz.compat import profiler_event_tree

    roots = profiler_event_tree(prof)
    events: list[tuple[int, int, int, int]] = []  # (time, order, ptr, size)
    window = None
    stack = list(reversed(roots))
    while stack:
        node = stack.pop()
        if node.name == _STEP:
            window = (node.start_time_ns, node.end_time_ns)
        if str(node.tag).endswith("Allocation"):
            events.append((node.start_time_ns, len(events), node.extra_fields.ptr, node.extra_fields.alloc_size))
        stack.extend(reversed(node.children))
    if window is None:
        raise RunError("the profiler recorded no training step; nothing to measure.")
    events.sort()
    live: dict[int, int] = {}
    current = peak = 0
    started = False
    for when, _, ptr, size in events:
        if not started and when >= window[0]:
            started, peak = True, current
        if size > 0:
            live[ptr] = size
            current += size
        elif ptr in live:  # frees of memory allocated before profiling are not ours
            current -= live.pop(ptr)
        if window[0] <= when <= window[1]:
            peak = max(peak, current)
    return peak
