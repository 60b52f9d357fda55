"""How much memory a step may take on the device, and what to say when it does not fit.

Training and evaluation both size their batch against ``step_budget``; the advice after an
out-of-memory error names a batch size the cost model says fits.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from archviz.errors import RunError
from archviz.train import perf
from archviz.train.config import TrainConfig


def device_memory(device: torch.device) -> int:
    """Bytes a training step may use on ``device``: a GPU's total memory; on a CPU what the OS has
    available now (MemAvailable, capped by a cgroup's limit), else the physical memory."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open("/proc/meminfo") as f:
            total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        pass
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if limit.isdigit():
            total = min(total, int(limit))
    return total


def check_memory(arch, input_shape, config: TrainConfig, batch_size: int, amp: bool, device: torch.device, data_bytes: int, trace=None) -> None:
    """Refuse, before anything is allocated, a step the cost model says cannot fit (``--resize 1024``
    with the recipe's batch): the same advice as an out-of-memory error, without waiting for one.

    The simulation takes a second or more, so a generous bound from the trace (weights, grads
    and two optimizer states; every op's output kept three times) skips it when even that fits
    in half the budget.
    """
    budget = step_budget(device, data_bytes)
    try:
        activations = sum(math.prod(op.output_shape) for op in trace.ops) * batch_size if trace is not None else None
    except TypeError:  # an op with several outputs: let the simulation say
        activations = None
    if activations is not None and 4 * (4 * trace.total_params + 3 * activations) <= budget / 2:
        return
    predicted = perf.predicted_memory(arch, (batch_size, *input_shape[1:]), perf.step_settings(config, amp, device.type))
    if predicted is not None and predicted > budget:
        raise out_of_memory(arch, input_shape, config, batch_size, amp, device, data_bytes, predicted=predicted)


def step_budget(device: torch.device, data_bytes: int) -> int:
    """Bytes one training (or evaluation) step may take on ``device``."""
    # The device less the dataset and 1 GiB for what the cost model does not count (CUDA
    # context, cuDNN workspaces, allocator fragmentation; on a CPU, the Python process itself).
    return device_memory(device) - data_bytes - 2**30


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the RuntimeError torch's CPU allocator raises when malloc fails."""
    return isinstance(exc, torch.OutOfMemoryError) or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def out_of_memory(
    arch, input_shape, config: TrainConfig, batch_size: int, amp: bool, device: torch.device, data_bytes: int, predicted: int | None = None
) -> RunError:
    """The out-of-memory message, naming a batch size that fits (per the cost model when it can say)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    budget = step_budget(device, data_bytes)
    fits = perf.largest_batch(arch, (batch_size, *input_shape[1:]), budget, perf.step_settings(config, amp, device.type))
    where = f"{config.arch} at {config.resize}x{config.resize} with batch size {config.batch_size}"
    if predicted:
        head = (
            f"the cost model predicts {predicted / 2**30:.1f} GiB for one step of {where}, more than the {max(budget, 0) / 2**30:.1f} GiB {device} has for it"
        )
    else:
        head = f"out of memory on {device} training {where}"
    if fits and fits < batch_size:
        suggestion = fits * (config.batch_size // batch_size)  # global batch: per process x processes
        return RunError(f"{head}; the cost model says batch size {suggestion} fits: rerun with --batch-size {suggestion}.")
    if predicted and not fits:
        return RunError(f"{head}, even at batch size 1; lower --resize (now {config.resize}) or train on a larger device.")
    return RunError(f"{head}; try halving it: --batch-size {max(1, config.batch_size // 2)}.")


@contextlib.contextmanager
def oom_advice(arch, input_shape, config: TrainConfig, batch_size: int, amp: bool, device: torch.device, data_bytes: int) -> Iterator[None]:
    """Within the block, an out-of-memory error becomes ``out_of_memory``'s advice; other errors pass."""
    try:
        yield
    except RuntimeError as exc:  # torch.OutOfMemoryError is one
        if not is_out_of_memory(exc):
            raise
        raise out_of_memory(arch, input_shape, config, batch_size, amp, device, data_bytes) from None
