"""What a training run is: one typed, fully resolved configuration. No torch here."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from archviz.choices import Device, Optimizer
from archviz.errors import RunError, UsageError

__all__ = ["Device", "Optimizer", "TrainConfig"]


@dataclass
class TrainConfig:
    """The full recipe of one run, as written to ``config.json`` (``recipes.make_config`` fills it)."""

    arch: str
    params: list[str] = field(default_factory=list)  # -p KEY=VALUE strings, the recipe's first
    epochs: int = 10  # d2l's num_epochs
    batch_size: int = 256  # global: each of `nproc` processes takes batch_size // nproc
    lr: float = 0.1
    optimizer: Optimizer = Optimizer.sgd
    weight_decay: float = 0.0
    resize: int = 28  # images are resized to resize x resize on the training device
    # Channels the model takes (the gray image repeated): from --input or the model's first layer (train/inputs.py).
    channels: int | None = None  # None: the architecture's default input (runs written before issue 19)
    device: Device = Device.auto
    amp: bool | None = None  # bf16 autocast; None = on for CUDA, off for CPU
    compile: bool = False
    seed: int = 0
    limit_train: int | None = None  # use the first N training images (quick runs, tests)
    limit_test: int | None = None
    nproc: int = 1
    threads: int | None = None  # CPU threads per process; None = measured at start (see loop.cpu_threads)
    data_dir: str | None = None
    download: bool = False
    out: str = ""
    # The YAML text of a spec-file ARCH, stored with the run so that evaluate and --resume rebuild
    # exactly what was trained, from any directory and after the file is edited (issue 11).
    spec: str | None = None

    def validate(self) -> TrainConfig:
        """Raise UsageError, in one sentence, for a value that cannot train."""
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "resize": self.resize, "nproc": self.nproc}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be a positive whole number, not {value!r}.")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"--lr must be a positive finite number (e.g. 0.1), not {self.lr!r}.")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UsageError(f"--weight-decay must be zero or a positive finite number, not {self.weight_decay!r}.")
        if not 8 <= self.resize <= 1024:
            raise UsageError(f"--resize must be between 8 and 1024 pixels (Fashion-MNIST images are 28x28), not {self.resize}.")
        if self.channels is not None and (not isinstance(self.channels, int) or not 1 <= self.channels <= 64):
            raise UsageError(f"the model's input channels must be a whole number from 1 to 64 (Fashion-MNIST is gray: 1), not {self.channels!r}.")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**32:
            raise UsageError(f"--seed must be a whole number from 0 to 2^32 - 1 = {2**32 - 1:,}, not {self.seed!r}.")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be a positive whole number, not {self.threads}.")
        for name in ("limit_train", "limit_test"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 2 images, not {value}.")
        check_batch_split(self.batch_size, self.nproc)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, StrEnum) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "the run's configuration") -> TrainConfig:
        """The config ``to_dict`` wrote; RunError, in one sentence, for anything else (a corrupt config.json)."""
        known = {f.name for f in fields(cls)}
        try:
            if not isinstance(data, dict) or not isinstance(data.get("arch"), str):
                raise TypeError("it has no 'arch'")
            config = cls(**{k: v for k, v in data.items() if k in known})
            config.optimizer = Optimizer(config.optimizer)
            config.device = Device(config.device)
            config.params = [str(p) for p in config.params]
            if config.spec is not None and not isinstance(config.spec, str):
                raise TypeError("its 'spec' is not text")
            config.validate()
        except (TypeError, ValueError, UsageError) as exc:
            raise RunError(f"{source} is not a valid archviz run configuration ({exc}); it is corrupt or was not written by archviz train.") from None
        return config


def check_batch_split(batch_size: int, processes: int) -> None:
    """The global batch must split evenly: DDP averages the processes' gradients with equal weights."""
    if batch_size % processes:
        lower, upper = batch_size - batch_size % processes, batch_size + processes - batch_size % processes
        fits = f"{lower} or {upper}" if lower else str(upper)
        raise UsageError(f"--batch-size {batch_size} is the global batch and does not split evenly over {processes} processes; use {fits}.")
