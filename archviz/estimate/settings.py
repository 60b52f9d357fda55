"""The settings of the step the cost model predicts: one validated object, parsed once at the edge.

The CLI and the notebook API call :meth:`StepSettings.parse` on what the user gave; every
function below them (memory, report, sweep, measure) takes the object and trusts it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from archviz.choices import DType, Mode, Optimizer, TargetDevice
from archviz.errors import UsageError


def choice(enum: type[StrEnum], value: Any, option: str) -> Any:
    """``enum(value)``, or a UsageError naming the choices."""
    try:
        return enum(value)
    except ValueError:
        names = ", ".join(e.value for e in enum)
        raise UsageError(f"unknown {option} {value!r}; choose one of {names}.") from None


@dataclass(frozen=True)
class StepSettings:
    """How the step runs: optimizer, weights' dtype, autocast, train/eval, the device it is predicted for, weight decay."""

    optimizer: Optimizer = Optimizer.sgd
    dtype: DType = DType.fp32  # the weights' dtype; with amp, the autocast dtype (fp32 means bf16)
    amp: bool = False  # fp32 weights with autocast
    mode: Mode = Mode.train  # both: the training step, with its eval forward reported beside it
    device: TargetDevice = TargetDevice.cpu
    weight_decay: float = 0.0

    @classmethod
    def parse(
        cls, optimizer: Any = "sgd", dtype: Any = "fp32", amp: bool = False, mode: Any = "train", device: Any = "cpu", weight_decay: float = 0.0
    ) -> StepSettings:
        """The settings from what a user wrote (strings or enums); UsageError in one sentence for an unknown choice."""
        return cls(
            choice(Optimizer, optimizer, "optimizer"),
            choice(DType, dtype, "dtype"),
            bool(amp),
            choice(Mode, mode, "mode"),
            choice(TargetDevice, device, "device"),
            float(weight_decay),
        )

    @property
    def on_gpu(self) -> bool:
        return self.device is TargetDevice.cuda

    def with_mode(self, mode: Mode) -> StepSettings:
        return dataclasses.replace(self, mode=mode)

    @property
    def element_bytes(self) -> int:
        """Bytes per element of an activation: 2 under autocast or bf16/fp16, else 4."""
        return 2 if self.amp or self.dtype is not DType.fp32 else 4

    def torch_dtypes(self) -> tuple[Any, Any]:
        """(the weights' torch dtype, autocast's torch dtype or None)."""
        import torch

        names = {DType.fp32: torch.float32, DType.bf16: torch.bfloat16, DType.fp16: torch.float16}
        if not self.amp:
            return names[self.dtype], None
        return torch.float32, names[DType.fp16 if self.dtype is DType.fp16 else DType.bf16]
