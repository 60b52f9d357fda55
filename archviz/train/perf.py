"""Speed and memory yardsticks for a run: hardware peaks for MFU, and the cost model's predictions.

The cost model (``archviz.estimate``) is optional here: it is imported lazily and a missing or
failing prediction is reported as unknown, never as an error of the training run.
"""

from __future__ import annotations

import os
from typing import Any

# Dense bf16 tensor-core peaks in TFLOP/s from NVIDIA's datasheets (no sparsity), matched
# against torch.cuda.get_device_name(); the first entry whose words all occur wins.
PEAK_BF16_TFLOPS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("H100", "PCIe"), 756.0),
    (("H100", "NVL"), 835.0),
    (("H100",), 989.0),  # SXM
    (("H200",), 989.0),
    (("A100",), 312.0),
    (("L40S",), 362.0),
    (("L4",), 121.0),
)


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU (override with $ARCHVIZ_PEAK_TFLOPS), or None when unknown."""
    if os.environ.get("ARCHVIZ_PEAK_TFLOPS"):
        return float(os.environ["ARCHVIZ_PEAK_TFLOPS"])
    for words, tflops in PEAK_BF16_TFLOPS:
        if all(w.lower() in device_name.lower() for w in words):
            return tflops
    return None


def step_settings(config: Any, amp: bool, device: str) -> Any:
    """The cost model's settings for ``config``'s training step on ``device`` (None when the cost model is not there)."""
    try:
        from archviz.estimate.settings import StepSettings
    except ImportError:
        return None
    return StepSettings.parse(str(config.optimizer), amp=amp, device=device, weight_decay=config.weight_decay)


def predicted_memory(arch: Any, input_shape: tuple[int, ...], settings: Any) -> int | None:
    """Peak bytes of one training step at ``input_shape`` (batch included) with ``settings`` (``step_settings``), per the cost model."""
    try:
        from archviz.estimate.memory import predict_memory

        return predict_memory(arch, input_shape, settings).peak_bytes
    except Exception:  # the cost model is a best effort here (ImportError included)
        return None


def largest_batch(arch: Any, input_shape: tuple[int, ...], budget_bytes: int, settings: Any) -> int | None:
    """The largest batch the cost model says fits in ``budget_bytes``, or None when it cannot say."""
    try:
        from archviz.estimate.memory import largest_batch as cost_largest_batch

        found = cost_largest_batch(arch, input_shape, budget_bytes, settings)
    except Exception:
        return None
    return int(found[0]) if found else None
