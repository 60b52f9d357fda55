"""Training throughput: archviz's loop against a d2l-style reference loop, same model, batch and device.

- archviz: ``archviz.train.loop.train`` itself (data as uint8 tensors on the device, batches
  made there; bf16 autocast + channels_last on a GPU; measured CPU thread count), run for 3
  short epochs; the last epoch's images/s (training part, batch making included) counts.
- reference: d2l's ``load_data_fashion_mnist`` + ``train_ch6`` pattern: torchvision's
  ``FashionMNIST`` dataset with ``Resize(S)`` + ``ToTensor()`` per image (PIL), a DataLoader
  with d2l's 4 workers, fp32, and the per-step ``float(...)`` metric syncs of d2l's
  Accumulator. Same architecture, resolution, batch size and optimizer implementation.

Both run a bounded number of batches after a warm-up. On a shared CPU the reference also runs
with the thread count archviz picked, and the ratio is taken against the faster reference, so
archviz is not credited for the machine's contention.

    python benchmarks/train_speed.py                      # CPU: lenet, lenet_bn at 28x28
    python benchmarks/train_speed.py --device cuda        # every built-in at its recipe's size
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from archviz import zoo
from archviz.arch import load_arch
from archviz.step import make_optimizer
from archviz.train import loop
from archviz.train.data import FILES, find_files, search_path
from archviz.train.recipes import make_config

RESULTS = Path(__file__).parent / "results"


def archviz_speed(arch: str, device: str, batches: int, batch_size: int | None = None, resize: int | None = None, threads: int | None = None) -> dict:
    """archviz's real loop on ``batches`` x batch_size images, 3 epochs; the last epoch's images/s."""
    with tempfile.TemporaryDirectory(prefix="archviz-speed-") as out:
        config = make_config(arch, epochs=3, device=device, batch_size=batch_size, resize=resize, threads=threads, out=out)
        config.limit_train = batches * config.batch_size
        config.limit_test = 2 * config.batch_size
        result = loop.train(config)
    return {
        "images_per_sec": result.records[-1].images_per_sec,
        "threads": result.config.threads,
        "batch_size": config.batch_size,
        "resize": config.resize,
        "optimizer": str(config.optimizer),
        "train_flops_per_image": result.train_flops_per_image,
        "peak_memory_bytes": result.peak_memory_bytes,
    }


def raw_root() -> Path:
    """A torchvision-layout root (FashionMNIST/raw, uncompressed) for the reference's dataset class."""
    root = Path(tempfile.mkdtemp(prefix="archviz-d2l-"))
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for _, directory in search_path():
        files = find_files(directory)
        if files:
            for key, path in files.items():
                opener = gzip.open if path.suffix == ".gz" else open
                with opener(path, "rb") as src, open(raw / FILES[key], "wb") as dst:
                    shutil.copyfileobj(src, dst)
            return root
    sys.exit("Fashion-MNIST not found (apt install dataset-fashion-mnist)")


def reference_speed(
    arch: str, device: str, batches: int, root: Path, batch_size: int | None = None, resize: int | None = None, workers: int = 4, threads: int | None = None
) -> dict:
    """The d2l-style loop (see the module docstring) for ``batches`` batches after 3 warm-up batches."""
    import torchvision
    from torchvision import transforms

    config = make_config(arch, device=device, batch_size=batch_size, resize=resize, out="unused")
    dev = loop.resolve_device(config.device)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = load_arch(arch, config.params)
    net = model.build((1, model.default_input[1], config.resize, config.resize)).to(dev)
    optimizer = make_optimizer(config.optimizer, net.parameters(), config.lr, config.weight_decay, dev.type == "cuda")
    trans = [transforms.ToTensor()]
    if config.resize != 28:
        trans.insert(0, transforms.Resize(config.resize))
    dataset = torchvision.datasets.FashionMNIST(str(root), train=True, transform=transforms.Compose(trans), download=False)
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # d2l's 4 workers on fewer cores
    train_iter = torch.utils.data.DataLoader(dataset, config.batch_size, shuffle=True, num_workers=workers)
    loss = nn.CrossEntropyLoss()
    net.train()
    warmup, it = 3, iter(train_iter)
    for i in range(warmup + batches):
        if i == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        X, y = next(it)
        X, y = X.to(dev), y.to(dev)
        if X.shape[1] != model.default_input[1]:
            X = X.expand(-1, model.default_input[1], -1, -1)
        optimizer.zero_grad()
        y_hat = net(X)
        l = loss(y_hat, y)
        l.backward()
        optimizer.step()
        with torch.no_grad():  # d2l's metric.add(l * X.shape[0], accuracy(y_hat, y), X.shape[0]): host syncs
            float(l) * X.shape[0], float((y_hat.argmax(dim=1) == y).sum())
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    del it
    return {"images_per_sec": round(batches * config.batch_size / seconds, 1), "threads": torch.get_num_threads(), "workers": workers}


def machine() -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def compare(models: list[str], device: str, batches: int, repeats: int, workers: int, **sizes) -> list[dict]:
    """For each model: archviz and the reference, alternated ``repeats`` times; medians."""
    root = raw_root()
    default_threads = torch.get_num_threads()
    rows = []
    try:
        for name in models:
            ours, ref_default, ref_same = [], [], []
            for _ in range(repeats):  # alternate, so drifting machine load hits both loops alike
                ours.append(archviz_speed(name, device, batches, **sizes))
                ref_default.append(reference_speed(name, device, batches, root, workers=workers, threads=default_threads, **sizes))
                if device == "cpu":  # the reference with the threads archviz picked in this run
                    same = ours[-1]["threads"] == default_threads
                    ref_same.append(
                        ref_default[-1] if same else reference_speed(name, device, batches, root, workers=workers, threads=ours[-1]["threads"], **sizes)
                    )
            torch.set_num_threads(default_threads)
            a = statistics.median(r["images_per_sec"] for r in ours)
            r_default = statistics.median(r["images_per_sec"] for r in ref_default)
            r_same = statistics.median(r["images_per_sec"] for r in ref_same) if ref_same else None
            row = {
                "model": name,
                "resize": ours[0]["resize"],
                "batch_size": ours[0]["batch_size"],
                "optimizer": ours[0]["optimizer"],
                "archviz_images_per_sec": a,
                "archviz_threads": "/".join(str(t) for t in sorted({r["threads"] for r in ours})),
                "reference_images_per_sec": r_default,
                "reference_threads": default_threads,
                "reference_same_threads_images_per_sec": r_same,
                "speedup": round(a / r_default, 2),
                "speedup_vs_reference_at_archviz_threads": round(a / r_same, 2) if r_same else None,
                "train_flops_per_image": ours[0]["train_flops_per_image"],
                "archviz_all_runs": [r["images_per_sec"] for r in ours],
                "archviz_threads_per_run": [r["threads"] for r in ours],
                "reference_all_runs": [r["images_per_sec"] for r in ref_default],
                "reference_same_threads_all_runs": [r["images_per_sec"] for r in ref_same],
            }
            rows.append(row)
            print(
                f"{name:10s} {row['resize']:>4d}px batch {row['batch_size']:>4d}: archviz {a:>9,.0f} img/s ({row['archviz_threads']} threads), "
                f"reference {r_default:>9,.0f} img/s"
                + (f" ({r_same:,.0f} with {row['archviz_threads']} threads)" if r_same else "")
                + f", {row['speedup']:.2f}x",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"# Training throughput: archviz vs d2l-style loop ({meta['device_name']})",
        "",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']}",
        f"- batches timed per run: {meta['batches']}, runs per loop: {meta['repeats']} (median), DataLoader workers: {meta['workers']}",
        "",
        "| model | size | batch | optimizer | archviz img/s | reference img/s | speedup | reference at archviz's threads | speedup |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        same = r["reference_same_threads_images_per_sec"]
        same_cells = f"{same:,.0f} | {r['speedup_vs_reference_at_archviz_threads']:.2f}x" if same else "- | -"
        lines.append(
            f"| {r['model']} | {r['resize']} | {r['batch_size']} | {r['optimizer']} | {r['archviz_images_per_sec']:,.0f} ({r['archviz_threads']} thr) "
            f"| {r['reference_images_per_sec']:,.0f} ({r['reference_threads']} thr) | **{r['speedup']:.2f}x** | {same_cells} |"
        )
    lines += ["", "Every run (archviz / reference at the same thread count, img/s, threads):", ""]
    for r in rows:
        same = r["reference_same_threads_all_runs"] or r["reference_all_runs"]
        threads = r["archviz_threads_per_run"]
        pairs = ", ".join(f"{a:,.0f} / {b:,.0f} ({t})" for a, b, t in zip(r["archviz_all_runs"], same, threads, strict=False))
        lines.append(f"- {r['model']}: {pairs}")
    lines += [
        "",
        "reference = the d2l-style loop as d2l runs it (torch's default threads, 4 DataLoader workers). On a CPU,",
        "archviz measures its thread count at start of every run; the last two columns give the reference, run by run,",
        "that same thread count (thr: the counts archviz picked across the runs).",
        "Medians of the runs; every run is in the JSON file.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--models", nargs="*", help="default: lenet lenet_bn on CPU, every built-in on CUDA")
    parser.add_argument("--batches", type=int, default=None, help="batches timed per run (default 40 on CPU, 60 on CUDA)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="the reference DataLoader's workers (d2l uses 4)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    models = args.models or (["lenet", "lenet_bn"] if args.device == "cpu" else zoo.list_models())
    batches = args.batches or (40 if args.device == "cpu" else 60)
    rows = compare(models, args.device, batches, args.repeats, args.workers)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or 'cpu'} x{os.cpu_count()}"
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "machine": machine(),
        "device_name": device_name,
        "batches": batches,
        "repeats": args.repeats,
        "workers": args.workers,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"train_speed_{args.device}"
    (out / f"{stem}.json").write_text(json.dumps({**meta, "results": rows}, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(rows, meta))
    print(f"wrote {out / stem}.json and .md")


if __name__ == "__main__":
    main()
