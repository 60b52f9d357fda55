"""Test-set evaluation: accuracy during training, and the per-class report of `archviz evaluate`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from archviz.train import checkpoint
from archviz.train.config import Device, TrainConfig
from archviz.train.data import CLASS_NAMES, batches, load_fashion_mnist
from archviz.train.device import resolve_device


@torch.no_grad()
def confusion(
    net: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    resize: int,
    *,
    order: torch.Tensor | None = None,
    channels: int = 1,
    channels_last: bool = False,
    amp: bool = False,
) -> torch.Tensor:
    """The 10x10 confusion matrix (rows: true class, columns: predicted) on ``X[order]``, on X's device."""
    was_training = net.training
    net.eval()
    counts = torch.zeros(len(CLASS_NAMES) ** 2, dtype=torch.int64, device=X.device)
    for X_batch, y_batch in batches(X, y, batch_size, resize, order=order, channels=channels, channels_last=channels_last):
        with torch.autocast(X.device.type, torch.bfloat16, enabled=amp):
            y_hat = net(X_batch)
        counts += torch.bincount(y_batch * len(CLASS_NAMES) + y_hat.argmax(dim=1), minlength=counts.numel())
    net.train(was_training)
    return counts.view(len(CLASS_NAMES), len(CLASS_NAMES))


@dataclass(frozen=True)
class Evaluation:
    """What `archviz evaluate` reports."""

    checkpoint: str
    arch: str
    epoch: int  # epochs the weights were trained for
    test_acc: float
    num_images: int
    per_class: list[dict]  # {"class", "accuracy", "correct", "total"}
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    note: str | None = None  # e.g. the spec file changed since the run (the stored copy was used)

    def to_dict(self) -> dict:
        return dict(self.__dict__, class_names=list(CLASS_NAMES))


def find_checkpoint(path: str | Path) -> Path:
    """A run directory's best.pt (else last.pt), or the checkpoint file itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
    return path


def evaluate_checkpoint(
    path: str | Path, device: Device = Device.auto, data_dir: str | None = None, limit_test: int | None = None, batch_size: int = 512
) -> Evaluation:
    """Rebuild the model a checkpoint was trained as, and score it on the Fashion-MNIST test set."""
    file = find_checkpoint(path)
    dev = resolve_device(device)
    state = checkpoint.load(file, map_location=dev)
    config = TrainConfig.from_dict(state.get("config"), f"the configuration in {file}")
    arch, note = checkpoint.run_arch(config)
    channels = config.channels or arch.default_input[1]
    net = arch.build(input_shape=(1, channels, config.resize, config.resize))
    checkpoint.load_weights(net, state["model"], file, config.arch)
    net.to(dev)
    data = load_fashion_mnist(data_dir or config.data_dir).limit(None, limit_test).to(dev)
    amp = dev.type == "cuda" if config.amp is None else config.amp
    matrix = confusion(net, data.test_X, data.test_y, batch_size, config.resize, channels=channels, amp=amp).cpu()
    correct, total = matrix.diag(), matrix.sum(dim=1)
    per_class = [
        {"class": name, "accuracy": round(c / t, 4) if t else None, "correct": c, "total": t}
        for name, c, t in zip(CLASS_NAMES, correct.tolist(), total.tolist(), strict=True)
    ]
    return Evaluation(
        checkpoint=str(file),
        arch=config.arch,
        epoch=int(state.get("epoch", 0)),
        test_acc=round(int(correct.sum()) / int(total.sum()), 4),
        num_images=int(total.sum()),
        per_class=per_class,
        confusion=matrix.tolist(),
        note=note,
    )
