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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from archviz.errors import RunError, UsageError
from archviz.files import LOCK_NAME, dir_lock, head, is_temp, read_bounded
from archviz.step import make_optimizer, train_step
from archviz.train import checkpoint, distributed, perf
from archviz.train.budget import check_memory, is_out_of_memory, out_of_memory
from archviz.train.config import TrainConfig, check_batch_split
from archviz.train.data import batches, epoch_order, load_fashion_mnist, num_batches, prepare
from archviz.train.device import resolve_device
from archviz.train.evaluate import confusion
from archviz.train.plot import CURVE_MARK, learning_curve_svg

CHECK_EVERY = 20  # steps between NaN / Ctrl-C checks that need the host to wait for the device
RUN_FILES = ("config.json", "metrics.json", "last.pt")
RUN_MARK = "run configuration written by archviz train"  # config.json's "archviz" key: the folder is archviz's
EXTRA_RUN_FILES = ("best.pt", "metrics.csv", "learning_curve.svg")


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


class Reporter(Protocol):
    """Where progress goes; the CLI prints it, the library never does."""

    def info(self, text: str) -> None: ...
    def start_epoch(self, epoch: int, num_epochs: int, total_batches: int) -> None: ...
    def advance(self, batches: int = 1) -> None: ...
    def end_epoch(self, record: EpochRecord) -> None: ...


class Silent:
    def info(self, text: str) -> None:
        pass

    def start_epoch(self, epoch: int, num_epochs: int, total_batches: int) -> None:
        pass

    def advance(self, batches: int = 1) -> None:
        pass

    def end_epoch(self, record: EpochRecord) -> None:
        pass


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
                answers = distributed.all_gather(_problem(_claim_out, stack, Path(config.out), resume, force) if env.is_main else None, env)
                if not isinstance(answers[0], dict) or not isinstance(answers[0].get("checkpoint"), bool):  # plain data only, see distributed.encode
                    raise UsageError(str(answers[0].get("refused") if isinstance(answers[0], dict) else "rank 0 did not check --out"))
                resume = resume and answers[0]["checkpoint"]  # rank 0's answer: it alone may see --out
                return train(dataclasses.replace(config, nproc=env.world_size), resume=resume, reporter=reporter, dist=env, trusted=trusted)
        finally:
            distributed.leave()
    with contextlib.ExitStack() as stack:
        has_checkpoint = _claim_out(stack, Path(config.out), resume, force)
        resume = resume and has_checkpoint
        if resume is False and has_checkpoint is False and reporter is not None and (Path(config.out) / "config.json").exists():
            reporter.info(f"{config.out} holds no checkpoint from an earlier start; starting the run from epoch 1.")
        if config.nproc > 1:
            device_type = resolve_device(config.device).type
            return distributed.launch(train, config.nproc, device_type, config=config, resume=resume, reporter=reporter, trusted=trusted)
        return train(config, resume=resume, reporter=reporter, trusted=trusted)


def _claim_out(stack: contextlib.ExitStack, out: Path, resume: bool, force: bool) -> bool:
    """Check ``out``, then lock it for the rest of the run (``stack``); whether it holds a checkpoint."""
    prepare_out(out, resume, force, locked=False)  # before creating anything in a folder that is not ours
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write to --out {out} ({exc.strerror or exc}); choose a directory you can write to.") from None
    stack.enter_context(dir_lock(out, "the run folder" if resume else "--out"))
    return prepare_out(out, resume, force, locked=True)


def _problem(check, *args) -> dict[str, Any]:
    """``{"checkpoint": check(*args)}``, or ``{"refused": the sentence}`` of the UsageError it raised (sent to the other ranks, raised by all)."""
    try:
        return {"checkpoint": bool(check(*args))}
    except UsageError as exc:
        return {"refused": str(exc)}


def train(
    config: TrainConfig, *, resume: bool = False, reporter: Reporter | None = None, dist: distributed.Dist | None = None, trusted: bool = True
) -> TrainResult:
    """Train ``config.arch`` on Fashion-MNIST, writing metrics and checkpoints to ``config.out``."""
    dist = dist or distributed.Dist()
    check_batch_split(config.batch_size, dist.world_size)  # torchrun's process count is known only here
    reporter = reporter if (reporter is not None and dist.is_main) else Silent()
    out = Path(config.out)

    # Device. On a GPU: cudnn picks the fastest conv algorithms for our fixed shapes, TF32 matmuls.
    device = resolve_device(config.device, dist.local_rank)
    on_gpu = device.type == "cuda"
    amp = on_gpu if config.amp is None else config.amp
    autocast = lambda: torch.autocast(device.type, torch.bfloat16, enabled=amp)  # noqa: E731
    if on_gpu:
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    device_name = torch.cuda.get_device_name(device) if on_gpu else "cpu"

    # Data: four tensors on the device; this process's share of the test set.
    data = load_fashion_mnist(config.data_dir, config.download).limit(config.limit_train, config.limit_test).to(device)
    test_shard = torch.arange(dist.rank, len(data.test_X), dist.world_size)
    batch_size = config.batch_size // dist.world_size  # per process; the global batch is config.batch_size
    n_train = len(data.train_X) - len(data.train_X) % dist.world_size
    # Every rank must draw the same epoch order: same seed, data, batch and length of run.
    defining = {k: v for k, v in config.to_dict().items() if k not in ("out", "threads", "data_dir", "download", "device", "compile")}
    labels = int((data.train_y.long() * torch.arange(1, len(data.train_y) + 1, device=device)).sum())
    distributed.same_everywhere(defining | {"resume": resume, "train images": len(data.train_X), "labels checksum": labels}, dist)
    steps_per_epoch = num_batches(n_train // dist.world_size, batch_size)

    # Model, built for the training resolution (vgg11's first linear layer depends on it).
    torch.manual_seed(config.seed)
    how = f"`archviz train {config.arch} --resume {config.out}`"
    arch, note = checkpoint.run_arch(config, trusted=trusted, source=str(out / "config.json"), how=how)
    if note:
        reporter.info(note)
    channels = config.channels or arch.default_input[1]
    input_shape = (1, channels, config.resize, config.resize)
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
        try:  # the thread measurement runs a full batch: the first place a CPU can run out of memory
            threads = config.threads or (torch.get_num_threads() if dist.active else cpu_threads(net, loss, prepare(X, config.resize, channels), y))
        except RuntimeError as exc:
            if not is_out_of_memory(exc):
                raise
            raise out_of_memory(arch, input_shape, config, batch_size, amp, device, data.nbytes) from None
        torch.set_num_threads(threads)
        config = dataclasses.replace(config, threads=threads)
    optimizer = make_optimizer(config.optimizer, net.parameters(), config.lr, config.weight_decay, on_gpu)

    # Resume: weights, optimizer, where we stopped (epoch, batch, the epoch's running sums), RNG.
    history: list[EpochRecord] = []
    start_epoch, start_batch, partial, rng = 0, 0, None, None
    if resume:
        state = distributed.load_on_every_rank(out / "last.pt", dist, lambda path: checkpoint.load(path, map_location=device))
        checkpoint.check_resumable(state, out / "last.pt", set(EpochRecord.__dataclass_fields__))
        checkpoint.load_weights(net, state["model"], out / "last.pt", config.arch)
        try:
            saved_keys = [sorted(g) for g in state["optimizer"]["param_groups"] if isinstance(g, dict)]
            if saved_keys != [sorted(g) for g in optimizer.state_dict()["param_groups"]]:
                raise ValueError("its parameter groups hold the settings of another optimizer")
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
            raise RunError(
                f"{out / 'last.pt'} holds an optimizer state that does not fit {config.optimizer} on this model ({_first_line(exc)}); "
                f"it was written for another optimizer or model, so the run cannot be resumed."
            ) from None
        history = [EpochRecord(**r) for r in state["history"]]
        start_epoch, start_batch = state["epoch"], state["batch"]
        if start_batch and len(state["ranks"]) != dist.world_size:  # each process's shard depends on their number
            n = len(state["ranks"])
            raise UsageError(f"{out} stopped mid-epoch with {n} processes; resume it with {n} (--nproc {n}, or torchrun starting {n} in all).")
        per_rank = state["ranks"][dist.rank] if dist.rank < len(state["ranks"]) else state["ranks"][0]
        partial, rng = per_rank["partial"], per_rank["rng"]
        reporter.info(f"resuming {out} at epoch {start_epoch + 1}" + (f", batch {start_batch + 1}" if start_batch else ""))
    elif dist.is_main:  # the full resolved recipe
        checkpoint.write_text_atomic(out / "config.json", json.dumps({**config.to_dict(), "archviz": RUN_MARK}, indent=2) + "\n")

    model: nn.Module = net
    if dist.active:
        model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if on_gpu else None)
    if config.compile:
        model = torch.compile(model)

    flops_per_image = 3 * trace.flops if trace is not None else None  # forward + backward ~ 3 forward passes
    where = device_name if on_gpu else f"cpu ({config.threads} thread{'s' if config.threads != 1 else ''}{' per process' if dist.active else ''})"
    reporter.info(
        f"training {config.arch} on {n_train:,} images at {config.resize}x{config.resize}, {config.optimizer} lr {config.lr:g}, "
        f"batch {config.batch_size}{f' over {dist.world_size} processes' if dist.active else ''}, on {where}"
        f"{' with bf16 autocast' if amp else ''}; data from {data.source}"
    )
    if start_epoch >= config.epochs:
        reporter.info(f"{out} already holds {start_epoch} epochs; pass --epochs N with N > {start_epoch} to train longer.")
    if rng is not None:
        checkpoint.set_rng_state(rng)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)

    saved_epoch: int | None = start_epoch if resume else None  # the epoch last.pt holds, for the NaN message
    train_seconds_here, images_here = 0.0, 0  # this process's share of the run, for TFLOP/s
    best = max(history, key=lambda r: r.test_acc, default=None)
    stop = interrupted = False
    # A worker of `--nproc` leaves SIGTERM to its launcher, which turns it into one Ctrl-C for all (distributed.launch).
    with Interrupt((signal.SIGINT,) if distributed.launched_here() else Interrupt.SIGNALS) as interrupt:
        try:
            for epoch in range(start_epoch, config.epochs):
                first = start_batch if epoch == start_epoch else 0
                reporter.start_epoch(epoch + 1, config.epochs, steps_per_epoch)
                reporter.advance(first)
                # Running sums stay on the device: reading them every step would stall the GPU.
                sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss x images, correct, images
                seconds_before = 0.0
                if first and partial is not None:
                    sums += torch.tensor(partial["sums"], dtype=torch.float64, device=device)
                    seconds_before = partial["seconds"]
                images_before = int(sums[2])
                net.train()
                t0 = time.perf_counter()
                order = epoch_order(n_train, config.seed, epoch, dist.world_size, dist.rank)
                train_iter = batches(data.train_X, data.train_y, batch_size, config.resize, order=order, start=first, channels=channels, channels_last=on_gpu)
                for i, (X, y) in enumerate(train_iter, start=first):
                    l, y_hat = train_step(model, loss, optimizer, X, y, autocast)
                    sums[0] += l.detach() * len(y)
                    sums[1] += (y_hat.argmax(dim=1) == y).sum()
                    sums[2] += len(y)
                    reporter.advance()
                    last_step = i + 1 == steps_per_epoch
                    check = last_step or (i + 1) % CHECK_EVERY == 0
                    if check or (interrupt.requested and not dist.active):
                        stop, finite = agree(interrupt.requested, sums, dist, device, check_finite=check or interrupt.requested)
                        if not finite:
                            raise NonFinite(epoch + 1, i + 1)
                        if stop and not last_step:  # Ctrl-C mid-epoch: save exactly where we are
                            partial = {"sums": sums.tolist(), "seconds": seconds_before + time.perf_counter() - t0}
                            save_last(out, net, optimizer, config, history, epoch, i + 1, partial, dist)
                            interrupted = True
                            break
                if interrupted:
                    break
                if on_gpu:
                    torch.cuda.synchronize(device)
                train_seconds = seconds_before + time.perf_counter() - t0
                train_seconds_here += time.perf_counter() - t0

                # Evaluate on this process's share of the test set; sum the counts over processes.
                matrix = confusion(net, data.test_X, data.test_y, batch_size, config.resize, order=test_shard, channels=channels, channels_last=on_gpu, amp=amp)
                loss_sum, correct, n = sums.tolist()
                test_correct = float(matrix.diag().sum())
                if dist.active:
                    loss_sum, correct, n, test_correct = distributed.all_sum([loss_sum, correct, n, test_correct], device)
                images_here += int(n) - images_before * dist.world_size
                record = EpochRecord(
                    epoch=epoch + 1,
                    loss=round(loss_sum / n, 6),
                    train_acc=round(correct / n, 6),
                    test_acc=round(test_correct / len(data.test_X), 6),
                    seconds=round(seconds_before + time.perf_counter() - t0, 3),
                    images_per_sec=round(n / train_seconds, 1),
                )
                history.append(record)
                save_last(out, net, optimizer, config, history, epoch + 1, 0, None, dist)
                saved_epoch = epoch + 1
                if best is None or record.test_acc > best.test_acc:
                    best = record
                    if dist.is_main:
                        checkpoint.save(checkpoint_state(net, optimizer, config, history, epoch + 1, 0, []), out / "best.pt")
                reporter.end_epoch(record)
                if stop:  # Ctrl-C during the epoch's last steps: the epoch is saved, stop here
                    interrupted = epoch + 1 < config.epochs
                    break
        except NonFinite as exc:
            kept = f"{out / 'last.pt'} still holds epoch {saved_epoch}" if saved_epoch else "no checkpoint had been written yet"
            raise RunError(
                f"the training loss became NaN or infinite in epoch {exc.epoch} (by batch {exc.batch}); "
                f"lower --lr (now {config.lr:g}) or check the model; {kept}."
            ) from None
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc):
                raise
            raise out_of_memory(arch, input_shape, config, batch_size, amp, device, data.nbytes) from None

    # The report: best accuracy, time; on a GPU memory (next to the cost model's), TFLOP/s and MFU.
    result = TrainResult(config, history, str(out), device_name, dist.world_size, interrupted, data_bytes=data.nbytes)
    result.best_test_acc, result.best_epoch = (best.test_acc, best.epoch) if best else (None, None)
    result.total_seconds = round(sum(r.seconds for r in history), 3)
    if flops_per_image and train_seconds_here > 0 and images_here:
        result.train_flops_per_image = flops_per_image
        result.achieved_tflops = round(flops_per_image * images_here / train_seconds_here / 1e12, 4)
    if on_gpu:
        result.peak_memory_bytes = torch.cuda.max_memory_allocated(device)
        result.predicted_memory_bytes = perf.predicted_memory(arch, (batch_size, *input_shape[1:]), str(config.optimizer), amp, config.weight_decay)
        result.peak_tflops = perf.peak_tflops(device_name)
        if result.peak_tflops and result.achieved_tflops:
            result.mfu = round(result.achieved_tflops / (result.peak_tflops * dist.world_size), 4)
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


def _is_run_file(name: str) -> bool:
    """Names `archviz train` writes in a run folder (and its temporaries and lock)."""
    if name in RUN_FILES + EXTRA_RUN_FILES + (LOCK_NAME,) or is_temp(name):
        return True  # below: the temporaries of archviz before issue 20, .NAME.RANDOM.tmp
    return name.startswith(".") and name.endswith(".tmp") and name[1:].split(".", 1)[0] in {n.split(".")[0] for n in RUN_FILES + EXTRA_RUN_FILES}


def _ours(out: Path, names: list[str]) -> set[str]:
    """The run files in ``out`` archviz can prove it wrote: config.json by its "archviz" key, the
    learning curve by its comment; the metrics files, which carry no mark, when config.json is
    archviz's; checkpoints are judged by ``checkpoint.load`` (and a run is never overwritten
    without --force). Symlinks never count: archviz writes run files as regular files."""
    ours = {LOCK_NAME} | {n for n in names if _is_run_file(n) and n.endswith((".tmp", ".pt"))}
    config = out / "config.json"
    if not config.is_symlink() and config.is_file():
        try:
            marked = json.loads(read_bounded(config, 2**20, "run configuration")).get("archviz") == RUN_MARK
        except (UsageError, ValueError, AttributeError):
            marked = False
        if marked:
            ours |= {"config.json", "metrics.json", "metrics.csv"}
    curve = out / "learning_curve.svg"
    if not curve.is_symlink() and head(curve, 200).startswith(CURVE_MARK.encode()):
        ours.add("learning_curve.svg")
    return {n for n in ours if n == LOCK_NAME or not (out / n).is_symlink()}


def prepare_out(out: Path, resume: bool, force: bool = False, locked: bool = True) -> bool:
    """Refuse to overwrite a run or the user's files; returns whether ``out`` holds a checkpoint.

    A folder holding only config.json (stopped before its first checkpoint: killed, two quick
    Ctrl-C, out of memory) is neither a run to refuse nor one to resume: it starts over, with
    --out or with --resume. ``locked``: the caller holds ``out``'s lock (the final check).
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory; choose a directory for the run.")
    has_checkpoint = (out / "last.pt").is_file()
    if resume:
        if not has_checkpoint and not (out / "config.json").is_file():
            raise UsageError(f"--resume {out}: there is no last.pt there to continue from.")
        for name in RUN_FILES + EXTRA_RUN_FILES:  # a link would make archviz write wherever it points
            if (out / name).is_symlink() or ((out / name).exists() and not (out / name).is_file()):
                raise UsageError(f"--resume {out}: {name} there is not a regular file (a link or a device); a run's files are plain files, remove it.")
        return has_checkpoint
    if not out.is_dir():
        return False
    try:
        names = sorted(p.name for p in out.iterdir())
    except OSError as exc:
        raise UsageError(f"cannot read --out {out} ({exc.strerror or exc}); choose a directory you can write to.") from None
    finished = [n for n in names if n in ("last.pt", "best.pt", "metrics.json")]
    if finished and not force:
        raise UsageError(f"--out {out} already holds a run; pass --resume {out} to continue it, choose another --out, or pass --force to start over.")
    ours = _ours(out, names)
    theirs = [n for n in names if n not in ours]
    if theirs and not force:
        raise UsageError(
            f"--out {out} holds files archviz did not write (e.g. {theirs[0]!r}); choose a new or empty directory, "
            f"or pass --force to write the run there (files named like run files would be replaced)."
        )
    if locked:
        links = [n for n in RUN_FILES + EXTRA_RUN_FILES if (out / n).is_symlink()]  # a run's files are written as plain files, never through a link
        for name in finished + [n for n in ("metrics.csv", "learning_curve.svg") if n in names] + links:  # --force: no stale files
            (out / name).unlink(missing_ok=True)
    return False


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
