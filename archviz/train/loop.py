"""The training loop: ``train(config)`` reads top to bottom, like the seed's ``train_ch6``.

What it adds to the seed's loop, each for a reason:
- the data stays on the device as uint8 and batches are made there (``data.batches``);
- bf16 autocast, channels_last and cudnn benchmark on a GPU (tensor cores, fewer layout copies);
- every epoch's order is a function of (seed, epoch) and checkpoints carry the RNG state, so
  ``--resume`` after a stop, even mid-epoch, reproduces the uninterrupted run exactly on a CPU;
- Ctrl-C only sets a flag: the step in flight finishes, a checkpoint is written, the run returns;
- the loss is checked for NaN/inf every few steps (a host sync), not every step;
- the step itself is ``archviz.step.train_step`` (gradients freed before the forward pass),
  the very function whose memory `archviz cost` predicts.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archviz.errors import RunError, UsageError
from archviz.step import make_optimizer, train_step
from archviz.train import checkpoint, distributed, perf, runs
from archviz.train.budget import check_memory, oom_advice
from archviz.train.config import TrainConfig, check_batch_split
from archviz.train.data import batches, epoch_order, load_fashion_mnist, num_batches, prepare
from archviz.train.device import resolve_device
from archviz.train.evaluate import confusion
from archviz.train.plot import learning_curve_svg

CHECK_EVERY = 20  # steps between NaN / Ctrl-C checks that need the host to wait for the device


@dataclass
class EpochRecord:
    """One line of metrics.json."""

    epoch: int  # 1-based
    loss: float  # mean training loss over the epoch
    train_acc: float
    test_acc: float
    seconds: float  # the whole epoch: training and evaluation
    images_per_sec: float  # training images / training wall time (batch making included, evaluation excluded)


@dataclass
class TrainResult:
    """What a run did, for the CLI to report; metrics.json holds the same records."""

    config: TrainConfig
    records: list[EpochRecord]
    out: str
    device: str  # e.g. "cpu", "NVIDIA H100 80GB HBM3"
    world_size: int = 1
    interrupted: bool = False  # Ctrl-C: last.pt holds the state to --resume from
    best_test_acc: float | None = None
    best_epoch: int | None = None
    total_seconds: float = 0.0  # sum of the epochs' seconds, resumed epochs included
    train_flops_per_image: int | None = None  # 3 x forward FLOPs: forward + backward ~ 3 forwards
    achieved_tflops: float | None = None  # in this process's epochs, training part only
    peak_tflops: float | None = None
    mfu: float | None = None
    peak_memory_bytes: int | None = None  # torch.cuda.max_memory_allocated, GPU only
    predicted_memory_bytes: int | None = None  # the cost model's prediction for one training step
    data_bytes: int = 0  # the dataset on the device (counted in the peak, not in the prediction)


class Reporter:
    """Where progress goes: nowhere here (the library never prints); the CLI's reporters print it."""

    def info(self, text: str) -> None: ...
    def start_epoch(self, epoch: int, num_epochs: int, total_batches: int) -> None: ...
    def advance(self, batches: int = 1) -> None: ...
    def end_epoch(self, record: EpochRecord) -> None: ...


def run(config: TrainConfig, *, resume: bool = False, reporter: Reporter | None = None, force: bool = False, trust_code: bool | None = None) -> TrainResult:
    """Check and lock ``config.out``, then train here, in ``config.nproc`` processes, or as one torchrun rank.

    ``force``: write the run into a folder holding files archviz did not write, or over a
    finished run (whose run files are removed first). ``trust_code``: ``config.arch`` is the
    caller's own choice, so a ``module:callable`` in it may be imported; the default is True
    for a new run and False for ``resume`` (a resumed config is read from the run's files).
    """
    trusted = (not resume) if trust_code is None else trust_code
    if resume:  # before anything else: the refusal must not depend on the state of the folder
        checkpoint.refuse_code(config.arch, str(Path(config.out) / "config.json"), trusted, f"`archviz train {config.arch} --resume {config.out}`")
    config = checkpoint.with_spec(config)  # the run carries the spec it is trained on
    env = distributed.from_env()
    if env is not None:  # started by torchrun: it owns the processes; rank 0 checks --out for all
        distributed.init(env, resolve_device(config.device).type)
        try:
            with contextlib.ExitStack() as stack:
                answers = distributed.all_gather(runs.problem(runs.claim_out, stack, Path(config.out), resume, force) if env.is_main else None, env)
                if not isinstance(answers[0], dict) or not isinstance(answers[0].get("checkpoint"), bool):  # plain data only, see distributed.encode
                    raise UsageError(str(answers[0].get("refused") if isinstance(answers[0], dict) else "rank 0 did not check --out"))
                resume = resume and answers[0]["checkpoint"]  # rank 0's answer: it alone may see --out
                return train(dataclasses.replace(config, nproc=env.world_size), resume=resume, reporter=reporter, dist=env, trusted=trusted)
        finally:
            distributed.leave()
    with contextlib.ExitStack() as stack:
        has_checkpoint = runs.claim_out(stack, Path(config.out), resume, force)
        resume = resume and has_checkpoint
        if resume is False and has_checkpoint is False and reporter is not None and (Path(config.out) / "config.json").exists():
            reporter.info(f"{config.out} holds no checkpoint from an earlier start; starting the run from epoch 1.")
        if config.nproc > 1:
            device_type = resolve_device(config.device).type
            return distributed.launch(train, config.nproc, device_type, config=config, resume=resume, reporter=reporter, trusted=trusted)
        return train(config, resume=resume, reporter=reporter, trusted=trusted)


def train(
    config: TrainConfig, *, resume: bool = False, reporter: Reporter | None = None, dist: distributed.Dist | None = None, trusted: bool = True
) -> TrainResult:
    """Train ``config.arch`` on Fashion-MNIST, writing metrics and checkpoints to ``config.out``."""
    dist = dist or distributed.Dist()
    check_batch_split(config.batch_size, dist.world_size)  # torchrun's process count is known only here
    reporter = reporter if (reporter is not None and dist.is_main) else Reporter()
    s = setup(config, resume, reporter, dist, trusted)  # device, data, model, loss, optimizer
    where = resume_from(s, reporter) if resume else Progress()  # weights, optimizer, epoch, batch, RNG
    if not resume and dist.is_main:
        runs.write_config(s.out, s.config)
    model = wrap(s)  # DDP, torch.compile
    reporter.info(describe(s))
    if where.epoch >= s.config.epochs:
        reporter.info(f"{s.out} already holds {where.epoch} epochs; pass --epochs N with N > {where.epoch} to train longer.")
    if where.rng is not None:
        checkpoint.set_rng_state(where.rng)
    if s.on_gpu:
        torch.cuda.reset_peak_memory_stats(s.device)

    history = where.history
    best = max(history, key=lambda r: r.test_acc, default=None)
    interrupted = False
    # A worker of `--nproc` leaves SIGTERM to its launcher, which turns it into one Ctrl-C for all (distributed.launch).
    with Interrupt((signal.SIGINT,) if distributed.launched_here() else Interrupt.SIGNALS) as interrupt, failures(s, where):
        for epoch in range(where.epoch, s.config.epochs):
            first = where.batch if epoch == where.epoch else 0
            reporter.start_epoch(epoch + 1, s.config.epochs, s.steps_per_epoch)
            reporter.advance(first)
            sums, seconds_before = running_sums(s, where.partial if first else None)
            t0 = time.perf_counter()
            stopped = train_epoch(s, model, epoch, first, sums, interrupt, reporter)
            if stopped is not None and stopped < s.steps_per_epoch:  # Ctrl-C mid-epoch: save exactly where we are
                partial = {"sums": sums.tolist(), "seconds": seconds_before + time.perf_counter() - t0}
                save_last(s.out, s.net, s.optimizer, s.config, history, epoch, stopped, partial, dist)
                interrupted = True
                break
            record = evaluate_epoch(s, epoch, sums, where.partial if first else None, t0, where)
            history.append(record)
            save_last(s.out, s.net, s.optimizer, s.config, history, epoch + 1, 0, None, dist)
            where.saved_epoch = epoch + 1
            if best is None or record.test_acc > best.test_acc:
                best = record
                if dist.is_main:
                    checkpoint.save(checkpoint_state(s.net, s.optimizer, s.config, history, epoch + 1, 0, []), s.out / "best.pt")
            reporter.end_epoch(record)
            if stopped is not None:  # Ctrl-C during the epoch's last steps: the epoch is saved, stop here
                interrupted = epoch + 1 < s.config.epochs
                break
    return report(s, where, best, interrupted)


@dataclass
class Setup:
    """What every epoch needs, made once by ``setup``."""

    config: TrainConfig  # with the CPU thread count resolved
    out: Path
    dist: distributed.Dist
    device: torch.device
    amp: bool
    data: Any  # data.FashionMNIST, on the device
    batch_size: int  # per process; the global batch is config.batch_size
    n_train: int  # training images used per epoch, a multiple of the process count
    steps_per_epoch: int
    test_shard: torch.Tensor  # this process's share of the test set
    arch: Any
    input_shape: tuple[int, ...]
    trace: Any  # for the FLOP count; None when the model cannot be traced
    net: nn.Module
    loss: nn.Module
    optimizer: torch.optim.Optimizer

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def channels(self) -> int:
        return self.input_shape[1]

    @property
    def device_name(self) -> str:
        return torch.cuda.get_device_name(self.device) if self.on_gpu else "cpu"

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.amp)

    def oom_advice(self) -> contextlib.AbstractContextManager[None]:
        return oom_advice(self.arch, self.input_shape, self.config, self.batch_size, self.amp, self.device, self.data.nbytes)


@dataclass
class Progress:
    """Where the run starts (epoch, batch, this process's running sums and RNG) and what last.pt holds."""

    history: list[EpochRecord] = dataclasses.field(default_factory=list)
    epoch: int = 0  # completed epochs
    batch: int = 0  # completed batches of the next epoch
    partial: dict[str, Any] | None = None  # {"sums": [loss x images, correct, images], "seconds": ...} of that epoch
    rng: Any = None
    saved_epoch: int | None = None  # the epoch last.pt holds, for the NaN message
    train_seconds: float = 0.0  # this process's training time and images in this run, for TFLOP/s
    images: int = 0


def setup(config: TrainConfig, resume: bool, reporter: Reporter, dist: distributed.Dist, trusted: bool) -> Setup:
    """The device, the data, the model (seeded), the loss and the optimizer; on a CPU the thread count."""
    # Device. On a GPU: cudnn picks the fastest conv algorithms for our fixed shapes, TF32 matmuls.
    device = resolve_device(config.device, dist.local_rank)
    on_gpu = device.type == "cuda"
    amp = on_gpu if config.amp is None else config.amp
    if on_gpu:
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")

    # Data: four tensors on the device; this process's share of the test set.
    data = load_fashion_mnist(config.data_dir, config.download).limit(config.limit_train, config.limit_test).to(device)
    batch_size = config.batch_size // dist.world_size
    n_train = len(data.train_X) - len(data.train_X) % dist.world_size
    # Every rank must draw the same epoch order: same seed, data, batch and length of run.
    defining = {k: v for k, v in config.to_dict().items() if k not in ("out", "threads", "data_dir", "download", "device", "compile")}
    labels = int((data.train_y.long() * torch.arange(1, len(data.train_y) + 1, device=device)).sum())
    distributed.same_everywhere(defining | {"resume": resume, "train images": len(data.train_X), "labels checksum": labels}, dist)

    # Model, built for the training resolution (vgg11's first linear layer depends on it).
    torch.manual_seed(config.seed)
    how = f"`archviz train {config.arch} --resume {config.out}`"
    arch, note = checkpoint.run_arch(config, trusted=trusted, source=str(Path(config.out) / "config.json"), how=how)
    if note:
        reporter.info(note)
    input_shape = (1, config.channels or arch.default_input[1], config.resize, config.resize)
    try:
        trace = arch.trace(input_shape)
    except Exception:  # for the FLOP count and the memory check's first guess only
        trace = None
    check_memory(arch, input_shape, config, batch_size, amp, device, data.nbytes, trace)  # before allocating a step
    net = arch.build(input_shape=input_shape).to(device, memory_format=torch.channels_last if on_gpu else torch.preserve_format)
    check_output(net, input_shape, device, config.arch)
    loss = nn.CrossEntropyLoss()
    if not on_gpu:  # resolved once and written to config.json, so --resume computes with the same threads
        X, y = data.train_X[:batch_size], data.train_y[:batch_size]
        # The thread measurement runs a full batch: the first place a CPU can run out of memory.
        with oom_advice(arch, input_shape, config, batch_size, amp, device, data.nbytes):
            threads = config.threads or (torch.get_num_threads() if dist.active else cpu_threads(net, loss, prepare(X, config.resize, input_shape[1]), y))
        torch.set_num_threads(threads)
        config = dataclasses.replace(config, threads=threads)
    optimizer = make_optimizer(config.optimizer, net.parameters(), config.lr, config.weight_decay, on_gpu)
    test_shard = torch.arange(dist.rank, len(data.test_X), dist.world_size)
    steps = num_batches(n_train // dist.world_size, batch_size)
    return Setup(config, Path(config.out), dist, device, amp, data, batch_size, n_train, steps, test_shard, arch, input_shape, trace, net, loss, optimizer)


def resume_from(s: Setup, reporter: Reporter) -> Progress:
    """Load last.pt into the model and the optimizer; where the run stopped (epoch, batch, the epoch's running sums), its RNG."""
    out, dist = s.out, s.dist
    state = distributed.load_on_every_rank(out / "last.pt", dist, lambda path: checkpoint.load(path, map_location=s.device))
    checkpoint.check_resumable(state, out / "last.pt", set(EpochRecord.__dataclass_fields__))
    checkpoint.load_weights(s.net, state["model"], out / "last.pt", s.config.arch)
    try:
        saved_keys = [sorted(g) for g in state["optimizer"]["param_groups"] if isinstance(g, dict)]
        if saved_keys != [sorted(g) for g in s.optimizer.state_dict()["param_groups"]]:
            raise ValueError("its parameter groups hold the settings of another optimizer")
        s.optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        raise RunError(
            f"{out / 'last.pt'} holds an optimizer state that does not fit {s.config.optimizer} on this model ({_first_line(exc)}); "
            f"it was written for another optimizer or model, so the run cannot be resumed."
        ) from None
    epoch, batch = state["epoch"], state["batch"]
    if batch and len(state["ranks"]) != dist.world_size:  # each process's shard depends on their number
        n = len(state["ranks"])
        raise UsageError(f"{out} stopped mid-epoch with {n} processes; resume it with {n} (--nproc {n}, or torchrun starting {n} in all).")
    per_rank = state["ranks"][dist.rank] if dist.rank < len(state["ranks"]) else state["ranks"][0]
    reporter.info(f"resuming {out} at epoch {epoch + 1}" + (f", batch {batch + 1}" if batch else ""))
    return Progress([EpochRecord(**r) for r in state["history"]], epoch, batch, per_rank["partial"], per_rank["rng"], saved_epoch=epoch)


def wrap(s: Setup) -> nn.Module:
    """The module the steps run: the net, in DistributedDataParallel over processes, compiled with --compile."""
    model: nn.Module = s.net
    if s.dist.active:
        model = nn.parallel.DistributedDataParallel(s.net, device_ids=[s.device.index] if s.on_gpu else None)
    if s.config.compile:
        model = torch.compile(model)
    return model


def describe(s: Setup) -> str:
    """The run's first line: what is trained on what, where."""
    config, dist = s.config, s.dist
    where = s.device_name if s.on_gpu else f"cpu ({config.threads} thread{'s' if config.threads != 1 else ''}{' per process' if dist.active else ''})"
    return (
        f"training {config.arch} on {s.n_train:,} images at {config.resize}x{config.resize}, {config.optimizer} lr {config.lr:g}, "
        f"batch {config.batch_size}{f' over {dist.world_size} processes' if dist.active else ''}, on {where}"
        f"{' with bf16 autocast' if s.amp else ''}; data from {s.data.source}"
    )


@contextlib.contextmanager
def failures(s: Setup, where: Progress) -> Iterator[None]:
    """A NaN loss or an out-of-memory error in an epoch becomes one sentence saying what to change."""
    try:
        with s.oom_advice():
            yield
    except NonFinite as exc:
        kept = f"{s.out / 'last.pt'} still holds epoch {where.saved_epoch}" if where.saved_epoch else "no checkpoint had been written yet"
        raise RunError(
            f"the training loss became NaN or infinite in epoch {exc.epoch} (by batch {exc.batch}); "
            f"lower --lr (now {s.config.lr:g}) or check the model; {kept}."
        ) from None


def running_sums(s: Setup, partial: dict[str, Any] | None) -> tuple[torch.Tensor, float]:
    """The epoch's sums (loss x images, correct, images) on the device, and its seconds so far: zero, or where a resumed epoch stopped."""
    # Running sums stay on the device: reading them every step would stall the GPU.
    sums = torch.zeros(3, dtype=torch.float64, device=s.device)
    if partial is None:
        return sums, 0.0
    return sums + torch.tensor(partial["sums"], dtype=torch.float64, device=s.device), partial["seconds"]


def train_epoch(s: Setup, model: nn.Module, epoch: int, first: int, sums: torch.Tensor, interrupt: Interrupt, reporter: Reporter) -> int | None:
    """Train one epoch from batch ``first``, adding to ``sums``; the batches done when a Ctrl-C stopped it (all processes agree), else None."""
    s.net.train()
    order = epoch_order(s.n_train, s.config.seed, epoch, s.dist.world_size, s.dist.rank)
    train_iter = batches(s.data.train_X, s.data.train_y, s.batch_size, s.config.resize, order=order, start=first, channels=s.channels, channels_last=s.on_gpu)
    for i, (X, y) in enumerate(train_iter, start=first):
        l, y_hat = train_step(model, s.loss, s.optimizer, X, y, s.autocast)
        sums[0] += l.detach() * len(y)
        sums[1] += (y_hat.argmax(dim=1) == y).sum()
        sums[2] += len(y)
        reporter.advance()
        check = i + 1 == s.steps_per_epoch or (i + 1) % CHECK_EVERY == 0
        if check or (interrupt.requested and not s.dist.active):
            stop, finite = agree(interrupt.requested, sums, s.dist, s.device, check_finite=check or interrupt.requested)
            if not finite:
                raise NonFinite(epoch + 1, i + 1)
            if stop:
                return i + 1
    return None


def evaluate_epoch(s: Setup, epoch: int, sums: torch.Tensor, start: dict[str, Any] | None, t0: float, where: Progress) -> EpochRecord:
    """Evaluate on this process's share of the test set, sum the counts over processes: the epoch's record.

    ``start``: the running sums and seconds the epoch was resumed from (None: from its first batch).
    """
    seconds_before, images_before = (start["seconds"], int(start["sums"][2])) if start else (0.0, 0)
    if s.on_gpu:
        torch.cuda.synchronize(s.device)
    train_seconds = seconds_before + time.perf_counter() - t0
    where.train_seconds += time.perf_counter() - t0
    matrix = confusion(
        s.net, s.data.test_X, s.data.test_y, s.batch_size, s.config.resize, order=s.test_shard, channels=s.channels, channels_last=s.on_gpu, amp=s.amp
    )
    loss_sum, correct, n = sums.tolist()
    test_correct = float(matrix.diag().sum())
    if s.dist.active:
        loss_sum, correct, n, test_correct = distributed.all_sum([loss_sum, correct, n, test_correct], s.device)
    where.images += int(n) - images_before * s.dist.world_size
    return EpochRecord(
        epoch=epoch + 1,
        loss=round(loss_sum / n, 6),
        train_acc=round(correct / n, 6),
        test_acc=round(test_correct / len(s.data.test_X), 6),
        seconds=round(seconds_before + time.perf_counter() - t0, 3),
        images_per_sec=round(n / train_seconds, 1),
    )


def report(s: Setup, where: Progress, best: EpochRecord | None, interrupted: bool) -> TrainResult:
    """The result: best accuracy, time; on a GPU memory (next to the cost model's), TFLOP/s and MFU."""
    config, device_name = s.config, s.device_name
    history = where.history
    result = TrainResult(config, history, str(s.out), device_name, s.dist.world_size, interrupted, data_bytes=s.data.nbytes)
    result.best_test_acc, result.best_epoch = (best.test_acc, best.epoch) if best else (None, None)
    result.total_seconds = round(sum(r.seconds for r in history), 3)
    flops_per_image = 3 * s.trace.flops if s.trace is not None else None  # forward + backward ~ 3 forward passes
    if flops_per_image and where.train_seconds > 0 and where.images:
        result.train_flops_per_image = flops_per_image
        result.achieved_tflops = round(flops_per_image * where.images / where.train_seconds / 1e12, 4)
    if s.on_gpu:
        result.peak_memory_bytes = torch.cuda.max_memory_allocated(s.device)
        result.predicted_memory_bytes = perf.predicted_memory(s.arch, (s.batch_size, *s.input_shape[1:]), perf.step_settings(config, s.amp, "cuda"))
        result.peak_tflops = perf.peak_tflops(device_name)
        if result.peak_tflops and result.achieved_tflops:
            result.mfu = round(result.achieved_tflops / (result.peak_tflops * s.dist.world_size), 4)
    return result


def _first_line(exc: BaseException) -> str:
    return ((str(exc).strip().splitlines() or [type(exc).__name__])[0])[:150]


class NonFinite(Exception):
    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch


class Interrupt:
    """Within the block, the first Ctrl-C or SIGTERM only sets ``requested``; a second one stops at once.

    SIGTERM is what ``kill``, schedulers (Slurm, Kubernetes) and the elastic launcher send before
    they kill: it gets the same treatment as Ctrl-C, a checkpoint to resume from (issue 20).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, signals: tuple[int, ...] = SIGNALS) -> None:
        self.requested = False
        self.signals = signals
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if signal.SIGTERM in self.signals:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.signals}
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            if previous is not None:
                signal.signal(sig, previous)


def cpu_threads(net: nn.Module, loss: nn.Module, X: torch.Tensor, y: torch.Tensor) -> int:
    """The CPU thread count for training: all cores, half, or one, whichever ran a forward+backward fastest (train/threads.py)."""
    from archviz.train.threads import pick_threads

    most = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if most == 1:
        return 1
    net.eval()  # no dropout draws and no batch-norm statistics: measuring leaves the run unchanged
    pick, _ = pick_threads(lambda: loss(net(X), y).backward(), {most, max(1, most // 2), 1}, torch.set_num_threads)
    net.zero_grad(set_to_none=True)
    net.train()
    return pick


def agree(stop: bool, sums: torch.Tensor, dist: distributed.Dist, device: torch.device, check_finite: bool) -> tuple[bool, bool]:
    """(stop requested, loss finite), the same answer in every process so they stop at the same step."""
    if not dist.active:
        return stop, (not check_finite) or bool(torch.isfinite(sums[0]))
    flags = [float(stop), 0.0 if not check_finite or bool(torch.isfinite(sums[0])) else 1.0]
    stop_any, bad_any = distributed.all_sum(flags, device)
    return stop_any > 0, bad_any == 0


def check_output(net: nn.Module, input_shape: tuple[int, ...], device: torch.device, arch: str) -> None:
    """Fashion-MNIST has 10 classes: refuse a model whose output is not [batch, 10] before training it."""
    net.eval()
    with torch.no_grad():
        y_hat = net(torch.zeros((2, *input_shape[1:]), device=device))
    net.train()
    if y_hat.dim() > 2 and tuple(y_hat.shape[2:]) == tuple(input_shape[2:]):  # per-pixel scores (unet)
        raise UsageError(
            f"{arch} outputs shape {list(y_hat.shape)} for a batch of 2, scores for every pixel, but Fashion-MNIST needs one score "
            "per class for each image, [2, 10]; train an image classifier."
        )
    if tuple(y_hat.shape) != (2, 10):
        raise UsageError(f"{arch} outputs shape {list(y_hat.shape)} for a batch of 2, but Fashion-MNIST needs [2, 10]; pass -p num_classes=10.")


def checkpoint_state(net, optimizer, config, history, epoch, batch, ranks) -> dict[str, Any]:
    return {
        "config": config.to_dict(),
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,  # completed epochs
        "batch": batch,  # completed batches of the next epoch (0 at an epoch boundary)
        "history": [asdict(r) for r in history],
        "ranks": ranks,  # per process: RNG state and the running sums of an unfinished epoch
    }


def save_last(out, net, optimizer, config, history, epoch, batch, partial, dist) -> None:
    """last.pt plus the metrics files, written by rank 0 with every process's RNG state."""
    ranks = distributed.all_gather({"rng": checkpoint.rng_state(), "partial": partial}, dist)
    if not dist.is_main:
        return
    checkpoint.save(checkpoint_state(net, optimizer, config, history, epoch, batch, ranks), out / "last.pt")
    write_metrics(out, history, config.arch)


def write_metrics(out: Path, history: list[EpochRecord], title: str) -> None:
    rows = [asdict(r) for r in history]
    checkpoint.write_text_atomic(out / "metrics.json", json.dumps(rows, indent=2) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(EpochRecord.__dataclass_fields__), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    checkpoint.write_text_atomic(out / "metrics.csv", buf.getvalue())
    checkpoint.write_text_atomic(out / "learning_curve.svg", learning_curve_svg(rows, f"{title} on Fashion-MNIST"))
