"""Test-set evaluation: accuracy during training, and the per-class report of `archviz evaluate`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from archviz.errors import RunError, UsageError
from archviz.files import dir_lock
from archviz.train import budget as train_budget
from archviz.train import checkpoint
from archviz.train.budget import is_out_of_memory
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


EVAL_BATCH = 512  # images per forward pass when memory allows


def eval_batch_size(arch, input_shape, amp: bool, device: torch.device, data_bytes: int) -> int:
    """The largest batch the cost model says an evaluation forward pass fits in, as ``train`` sizes its step, capped at EVAL_BATCH.

    Issue 20: a run trained at --resize 1024 ran out of memory in evaluate's fixed batch of 512.
    """

    try:
        from archviz.estimate.memory import StepSettings, largest_batch

        budget = max(1, train_budget.step_budget(device, data_bytes))
        found = largest_batch(arch, (EVAL_BATCH, *input_shape[1:]), budget, StepSettings.parse(amp=amp, mode="eval", device=device.type), limit=EVAL_BATCH)
    except Exception:  # the cost model cannot say (an op it does not know): the default, and the OOM message if it is wrong
        return EVAL_BATCH
    return max(1, min(EVAL_BATCH, int(found[0]))) if found else 1


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
    path: str | Path,
    device: Device = Device.auto,
    data_dir: str | None = None,
    limit_test: int | None = None,
    batch_size: int | None = None,
    *,
    arch: str | None = None,
    trust_code: bool = False,
) -> Evaluation:
    """Rebuild the model a checkpoint was trained as, and score it on the Fashion-MNIST test set.

    A checkpoint is data: an ARCH of the ``module:callable`` form stored in it is imported only
    when the caller names the same callable (``arch``) or passes ``trust_code=True``.
    ``batch_size``: None sizes it from the cost model, as ``train`` does.
    """
    file = find_checkpoint(path)
    with dir_lock(file.parent, "the run folder", shared=True):  # not while a train writes it (issue 20)
        return _evaluate(file, path, device, data_dir, limit_test, batch_size, arch, trust_code)


def _evaluate(file: Path, path, device, data_dir, limit_test, batch_size, arch, trust_code) -> Evaluation:

    dev = resolve_device(device)
    state = checkpoint.load(file, map_location=dev)
    config = TrainConfig.from_dict(state.get("config"), f"the configuration in {file}")
    if arch is not None and arch != config.arch:
        raise UsageError(f"{file} is a run of {config.arch}, not {arch}; drop --arch or name {config.arch}.")
    how = f"`archviz evaluate {path} --arch {config.arch}`"
    net_arch, note = checkpoint.run_arch(config, trusted=trust_code or arch is not None, source=str(file), how=how)
    channels = config.channels or net_arch.default_input[1]
    net = net_arch.build(input_shape=(1, channels, config.resize, config.resize))
    checkpoint.load_weights(net, state["model"], file, config.arch)
    net.to(dev)
    data = load_fashion_mnist(data_dir or config.data_dir).limit(None, limit_test).to(dev)
    amp = dev.type == "cuda" if config.amp is None else config.amp
    input_shape = (1, channels, config.resize, config.resize)
    batch_size = batch_size or eval_batch_size(net_arch, input_shape, amp, dev, data.nbytes)
    try:
        matrix = confusion(net, data.test_X, data.test_y, batch_size, config.resize, channels=channels, amp=amp).cpu()
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        raise RunError(
            f"out of memory on {dev} evaluating {config.arch} at {config.resize}x{config.resize} with batch size {batch_size}; "
            f"evaluate on a larger device or with fewer images at once (Python: batch_size=...)."
        ) from None
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
