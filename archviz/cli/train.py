"""`archviz train` and `archviz evaluate`: train on Fashion-MNIST, score a checkpoint."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from archviz.cli.app import Stop, command
from archviz.cli.options import FormatOpt, ParamOpt
from archviz.errors import RunError, UsageError
from archviz.render import Format
from archviz.render.tables import render_rows
from archviz.train.config import Device, Optimizer

# Options a resumed run may change; the others define the run and come from its config.json.
RESUMABLE = {"epochs", "device", "amp", "compile", "nproc", "threads", "data_dir", "download"}
TrustCodeOpt = Annotated[
    bool,
    typer.Option(
        "--trust-code",
        help="Import the module:callable ARCH named in the run's files (config.json, the checkpoint): it runs that code. Off: refused.",
    ),
]
SHORT_NAMES = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot")


@command(
    "train",
    [
        "archviz train lenet_bn",
        "archviz train resnet18 --epochs 5 --batch-size 512 --lr 0.05 --compile",
        "archviz train vgg11 -p ratio=8 --resize 96 --out runs/vgg-small",
        "archviz train --resume runs/vgg-small --epochs 20",
        "archviz train lenet --limit-train 10000 --epochs 1 --device cpu",
        "archviz train resnet18 --nproc 2",
    ],
)
def train(
    arch: Annotated[
        str | None,
        typer.Argument(metavar="[ARCH]", help="A built-in, spec .yaml, torchvision:NAME or module:callable (not needed with --resume).", show_default=False),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the training set. Default: the recipe's (10).", show_default=False)] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", "-b", help="Global batch size. Default: the recipe's.", show_default=False)] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate. Default: the recipe's.", show_default=False)] = None,
    optimizer: Annotated[
        Optimizer | None, typer.Option(help="Optimizer (momentum = SGD with momentum 0.9). Default: the recipe's.", show_default=False)
    ] = None,
    weight_decay: Annotated[float | None, typer.Option(help="L2 weight decay. Default: the recipe's.", show_default=False)] = None,
    resize: Annotated[
        int | None, typer.Option(metavar="S", help="Train on SxS images, resized on the device. Default: the recipe's.", show_default=False)
    ] = None,
    device: Annotated[Device | None, typer.Option(help="Where to train; auto = CUDA if available.", show_default="auto")] = None,
    data_dir: Annotated[str | None, typer.Option(metavar="DIR", help="Folder with the Fashion-MNIST IDX files (raw or .gz).")] = None,
    download: Annotated[bool, typer.Option("--download", help="Download Fashion-MNIST with torchvision if it is not found.")] = False,
    out: Annotated[str | None, typer.Option("--out", "-o", metavar="DIR", help="Run directory. Default: runs/ARCH-TIMESTAMP.", show_default=False)] = None,
    resume: Annotated[str | None, typer.Option(metavar="DIR", help="Continue the run in DIR from its last.pt.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Write the run into an --out holding other files, or over a finished run (its run files are replaced).")
    ] = False,
    amp: Annotated[bool | None, typer.Option("--amp/--no-amp", help="bf16 autocast. Default: on for CUDA, off on CPU.", show_default=False)] = None,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model (slow start, faster steps on GPU).")] = False,
    seed: Annotated[int | None, typer.Option(help="Random seed for weights and shuffling.", show_default="0")] = None,
    limit_train: Annotated[int | None, typer.Option(metavar="N", help="Train on the first N images only.")] = None,
    limit_test: Annotated[int | None, typer.Option(metavar="N", help="Test on the first N images only.")] = None,
    nproc: Annotated[
        int | None,
        typer.Option(metavar="N", help="Processes on this machine (DDP; one per GPU, gloo on CPU); several machines: torchrun.", show_default="1"),
    ] = None,
    threads: Annotated[int | None, typer.Option(metavar="N", help="CPU threads per process. Default: measured at start.", show_default=False)] = None,
    input: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            metavar="CxSxS",
            help="Images the model takes, e.g. 1x28x28 or 3x96x96 (gray repeated over C channels, resized to S). "
            "Default: the channels of its first layer, the recipe's size.",
            show_default=False,
        ),
    ] = None,
    param: ParamOpt = None,
    trust_code: TrustCodeOpt = False,
) -> str | None:
    """Train an architecture on Fashion-MNIST: per-epoch metrics, checkpoints and a learning curve in --out."""
    from archviz.train.inputs import parse_train_input
    from archviz.train.loop import run

    channels = None
    if input is not None:
        channels, size = parse_train_input(input)
        if resize is not None and resize != size:
            raise UsageError(f"--input {input} asks for {size}x{size} images but --resize {resize} for {resize}x{resize}; give one of them.")
        if resume:
            raise UsageError("--input cannot change when resuming (it defines the run); start a new run with --out instead.")
        resize = size
    given = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": optimizer,
        "weight_decay": weight_decay,
        "resize": resize,
        "device": device,
        "data_dir": data_dir,
        "download": download or None,
        "amp": amp,
        "compile": compile or None,
        "seed": seed,
        "limit_train": limit_train,
        "limit_test": limit_test,
        "nproc": nproc,
        "threads": threads,
        "channels": channels,
    }
    from archviz.train.distributed import env_int

    launched = env_int("WORLD_SIZE", 1)
    if nproc is not None and launched > 1 and nproc != launched:
        raise UsageError(f"--nproc {nproc} under torchrun, which started {launched} processes (--nnodes x --nproc-per-node); drop --nproc.")
    if resume:
        config = _resumed_config(resume, arch, out, param, {k: v for k, v in given.items() if v is not None})
    else:
        if arch is None:
            raise UsageError("name the architecture to train, e.g. `archviz train lenet_bn`, or pass --resume DIR.")
        from archviz.train.recipes import make_config

        config = make_config(arch, param, out=out, **given)
    plain = not sys.stdout.isatty()
    # A fresh run's ARCH is the user's own words; a resumed run's comes from its config.json (data):
    # its module:callable is imported only if the user names it (ARCH) or passes --trust-code.
    trusted = not resume or trust_code or arch is not None
    result = run(config, resume=bool(resume), reporter=PlainReporter() if plain else RichReporter(), force=force, trust_code=trusted)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for all
        return
    if result.interrupted:
        raise Stop(
            f"{_summary(result)}\ninterrupted: {Path(result.out) / 'last.pt'} holds the run; continue it with `archviz train --resume {result.out}`.", 130
        )
    return _summary(result)


def _resumed_config(resume: str, arch: str | None, out: str | None, param: list[str] | None, given: dict[str, Any]):
    from archviz.files import read_bounded
    from archviz.train.config import TrainConfig

    path = Path(resume) / "config.json"
    if not path.is_file():
        raise UsageError(f"--resume {resume}: there is no config.json there; point it at a directory `archviz train` wrote.")
    try:
        data = json.loads(read_bounded(path, 64 * 2**20, "run configuration"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is corrupt ({exc}); it is not the JSON `archviz train` writes, so the run cannot be resumed.") from None
    config = TrainConfig.from_dict(data, str(path))
    fixed = sorted(k for k in given if k not in RESUMABLE) + (["-p"] if param else []) + (["--out"] if out and Path(out) != Path(resume) else [])
    if fixed:
        names = ", ".join(k if k.startswith("-") else "--" + k.replace("_", "-") for k in fixed)
        raise UsageError(f"{names} cannot change when resuming (they define the run in {path}); start a new run with --out instead.")
    if arch is not None and arch != config.arch:
        raise UsageError(f"--resume {resume} is a run of {config.arch}, not {arch}; drop ARCH or start a new run.")
    for key, value in given.items():
        setattr(config, key, value)
    config.out = resume
    return config.validate()


def _epoch_line(r: Any) -> str:
    return f"epoch {r.epoch}, loss {r.loss:.4f}, train acc {r.train_acc:.3f}, test acc {r.test_acc:.3f}, time {r.seconds:.1f} sec, {r.images_per_sec:.0f} img/s"


def _summary(result: Any) -> str:
    gib = 2**30
    lines = []
    if result.best_test_acc is not None:
        lines.append(f"best test acc {result.best_test_acc:.3f} (epoch {result.best_epoch}), total time {result.total_seconds:.1f} sec")
    if result.peak_memory_bytes is not None:
        predicted = f"{result.predicted_memory_bytes / gib:.2f} GiB" if result.predicted_memory_bytes else "unavailable"
        lines.append(
            f"peak memory {result.peak_memory_bytes / gib:.2f} GiB per GPU, the dataset's {result.data_bytes / gib:.2f} GiB included "
            f"(cost model for one training step: {predicted})"
        )
    if result.achieved_tflops is not None:
        speed = f"{result.achieved_tflops:.3g} TFLOP/s achieved (model FLOPs: 3 x forward per image)"
        if result.mfu is not None:
            speed += f", MFU {result.mfu:.1%} of {result.peak_tflops:g} TFLOP/s bf16 peak per GPU"
        lines.append(speed)
    lines.append(f"run files in {result.out}: metrics.json, metrics.csv, learning_curve.svg, config.json, last.pt, best.pt")
    return "\n".join(lines)


class PlainReporter:
    """One line per event: for logs, pipes and CI."""

    def info(self, text: str) -> None:
        from archviz.safe import printable

        print(printable(text), flush=True)

    def start_epoch(self, epoch: int, num_epochs: int, total_batches: int) -> None:
        pass

    def advance(self, batches: int = 1) -> None:
        pass

    def end_epoch(self, record: Any) -> None:
        print(_epoch_line(record), flush=True)


class RichReporter(PlainReporter):
    """A progress bar per epoch on a terminal, replaced by the epoch's line when it ends."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None

    def __getstate__(self) -> dict:  # sent to the rank-0 process of --nproc runs: start fresh there
        return {"_progress": None, "_task": None}

    def start_epoch(self, epoch: int, num_epochs: int, total_batches: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn(f"epoch {epoch}/{num_epochs}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), transient=True
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=total_batches)

    def advance(self, batches: int = 1) -> None:
        if self._progress is not None and batches:
            self._progress.advance(self._task, batches)

    def end_epoch(self, record: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        super().end_epoch(record)


@command(
    "evaluate",
    [
        "archviz evaluate runs/lenet_bn-20250101-120000",
        "archviz evaluate runs/resnet18-20250101-120000/last.pt --format json",
    ],
)
def evaluate(
    path: Annotated[str, typer.Argument(metavar="RUN_DIR_OR_CHECKPOINT", help="A run directory (its best.pt) or a .pt checkpoint.", show_default=False)],
    device: Annotated[Device, typer.Option(help="Where to evaluate; auto = CUDA if available.")] = Device.auto,
    data_dir: Annotated[str | None, typer.Option(metavar="DIR", help="Folder with the Fashion-MNIST IDX files (raw or .gz).")] = None,
    limit_test: Annotated[int | None, typer.Option(metavar="N", min=2, help="Test on the first N images only.")] = None,
    format: FormatOpt = Format.table,
    arch: Annotated[
        str | None,
        typer.Option(
            "--arch", metavar="ARCH", help="The run's module:callable ARCH, named by you: archviz then imports it (never code named only in a run's files)."
        ),
    ] = None,
    trust_code: TrustCodeOpt = False,
) -> str:
    """Test accuracy, per-class accuracy and the confusion matrix of a trained checkpoint."""
    from archviz.train.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(path, device, data_dir, limit_test, arch=arch, trust_code=trust_code)
    if report.note:
        print(report.note, file=sys.stderr)
    rows = [
        {"class": pc["class"], "accuracy": f"{pc['accuracy']:.3f}" if pc["total"] else "-", "correct": pc["correct"], "total": pc["total"]}
        | {f"pred_{j}": count for j, count in enumerate(report.confusion[i])}
        for i, pc in enumerate(report.per_class)
    ]
    columns = [("class", "True class"), ("accuracy", "Acc"), ("total", "Images")] + [(f"pred_{j}", name) for j, name in enumerate(SHORT_NAMES)]
    title = f"{report.arch}, {report.checkpoint} (epoch {report.epoch}): per-class accuracy and confusion matrix (columns: predicted class)"
    footer = [("test acc", f"{report.test_acc:.4f} on {report.num_images:,} images")]
    return render_rows(rows, columns, format, title=title, footer=footer, payload=report.to_dict())
