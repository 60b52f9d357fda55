"""GPU check for `archviz train` (issue 5): one script, under 8 minutes on one H100.

1. the device: name, memory, a measured bf16 matmul peak (8192^3) for MFU;
2. throughput of every built-in, archviz's loop vs the d2l-style reference loop
   (``benchmarks/train_speed.py``), with achieved TFLOP/s and MFU;
3. one full default-recipe run of lenet_bn and of resnet18, with their test accuracy;
4. memory: the cost model's prediction (``archviz.estimate.memory``, imported lazily; skipped
   if absent) against ``torch.cuda.max_memory_allocated()`` of a real training step, and
   the peak of the whole training run (the dataset on the GPU included).

Needs only torch, torchvision, typer, rich and PyYAML; archviz need not be installed.
Results go to ``$OUT`` (default ``benchmarks/results``) as ``train_gpu_check.json`` and
``train_gpu_check.md``, rewritten after every section so a timeout keeps what finished.

    # the dataset travels with the working tree: copy it into an ignored folder first
    mkdir -p .data && cp /usr/share/datasets/fashion-mnist/*.gz .data/
    PYTHONPATH=. python3 benchmarks/gpu_check.py --data-dir .data       # on the GPU machine
    python benchmarks/gpu_check.py --smoke                              # CPU dry run, tiny limits
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # train_speed.py beside this file
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # archviz without `pip install`

import train_speed  # noqa: E402

from archviz import zoo  # noqa: E402
from archviz.train import loop, perf  # noqa: E402
from archviz.train.recipes import make_config  # noqa: E402

GIB = 2**30


class Check:
    """Collects results and rewrites the JSON + Markdown after every section."""

    def __init__(self, out: Path, smoke: bool, budget_s: float):
        self.out, self.smoke, self.budget_s = out, smoke, budget_s
        self.began = time.perf_counter()
        self.data: dict = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python", *sys.argv]),
            "smoke": smoke,
            "machine": train_speed.machine(),
        }
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.began)

    def save(self) -> None:
        self.data["elapsed_s"] = round(time.perf_counter() - self.began, 1)
        (self.out / "train_gpu_check.json").write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        (self.out / "train_gpu_check.md").write_text(markdown(self.data))

    def section(self, name: str, fn, *args) -> None:
        print(f"== {name} ({self.left():.0f} s of the budget left)", flush=True)
        try:
            self.data[name] = fn(self, *args)
        except Exception as exc:  # one failing section must not lose the others
            traceback.print_exc()
            self.data[name] = {"error": f"{type(exc).__name__}: {exc}"}
        self.save()


def device_info(check: Check, device: str) -> dict:
    info: dict = {"device": device, "torch": torch.__version__}
    n = 1024 if check.smoke else 8192
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
        info.update(name=torch.cuda.get_device_name(), memory_gib=round(torch.cuda.get_device_properties(0).total_memory / GIB, 1))
    reps = 3 if check.smoke else 20
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    info["measured_peak_tflops"] = round(2 * n**3 * reps / (time.perf_counter() - t0) / 1e12, 1)
    info["datasheet_peak_tflops"] = perf.peak_tflops(info.get("name", "cpu"))
    print(info, flush=True)
    return info


def throughput(check: Check, device: str, models: list[str]) -> list[dict]:
    peak = check.data.get("device", {}).get("measured_peak_tflops")
    datasheet = check.data.get("device", {}).get("datasheet_peak_tflops")
    batches = 2 if check.smoke else 60
    sizes = {"batch_size": 4} if check.smoke else {}
    root = train_speed.raw_root()
    try:
        return _throughput(check, device, models, root, peak, datasheet, batches, sizes)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _throughput(check: Check, device: str, models: list[str], root: Path, peak, datasheet, batches: int, sizes: dict) -> list[dict]:
    rows = []
    for name in models:
        if check.left() < 60:
            rows.append({"model": name, "skipped": "time budget"})
            continue
        row: dict = {"model": name}
        try:
            ours = train_speed.archviz_speed(name, device, batches, **sizes)
            ref = train_speed.reference_speed(name, device, batches, root, **sizes)
            tflops = (ours["train_flops_per_image"] or 0) * ours["images_per_sec"] / 1e12
            row.update(
                resize=ours["resize"],
                batch_size=ours["batch_size"],
                optimizer=ours["optimizer"],
                archviz_images_per_sec=ours["images_per_sec"],
                reference_images_per_sec=ref["images_per_sec"],
                speedup=round(ours["images_per_sec"] / ref["images_per_sec"], 2),
                achieved_tflops=round(tflops, 2),
                mfu_vs_measured_peak=round(tflops / peak, 4) if peak else None,
                mfu_vs_datasheet_peak=round(tflops / datasheet, 4) if datasheet else None,
                run_peak_memory_bytes=ours["peak_memory_bytes"],
            )
        except Exception as exc:
            traceback.print_exc()
            row["error"] = f"{type(exc).__name__}: {exc}"
        print(row, flush=True)
        rows.append(row)
        check.data["throughput"] = rows
        check.save()
    return rows


def full_runs(check: Check, device: str, models: list[str]) -> list[dict]:
    rows = []
    for name in models:
        if check.left() < (30 if check.smoke else 90):
            rows.append({"model": name, "skipped": "time budget"})
            continue
        limits = {"limit_train": 256, "limit_test": 64, "epochs": 1, "batch_size": 32} if check.smoke else {}
        with tempfile.TemporaryDirectory(prefix="archviz-full-") as out:
            config = make_config(name, device=device, out=out, **limits)
            result = loop.run(config)
        row = {
            "model": name,
            "recipe": {k: config.to_dict()[k] for k in ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "resize", "params")},
            "test_acc_per_epoch": [r.test_acc for r in result.records],
            "final_test_acc": result.records[-1].test_acc,
            "best_test_acc": result.best_test_acc,
            "total_seconds": result.total_seconds,
            "images_per_sec_per_epoch": [r.images_per_sec for r in result.records],
            "achieved_tflops": result.achieved_tflops,
            "mfu_vs_datasheet_peak": result.mfu,
            "peak_memory_bytes": result.peak_memory_bytes,
            "predicted_step_memory_bytes": result.predicted_memory_bytes,
        }
        print(row, flush=True)
        rows.append(row)
        check.data["full_runs"] = rows
        check.save()
    return rows


def memory(check: Check, device: str, models: list[str]) -> list[dict] | dict:
    try:
        from archviz.estimate.measure import measure_training_peak
        from archviz.estimate.memory import StepSettings, predict_memory
    except ImportError as exc:
        return {"skipped": f"archviz.estimate is not available ({exc})"}
    from archviz.arch import load_arch

    by_model = {r["model"]: r for r in check.data.get("throughput", []) if isinstance(r, dict)}
    rows = []
    for name in models:
        if check.left() < 20:
            rows.append({"model": name, "skipped": "time budget"})
            continue
        config = make_config(name, device=device, out="unused", **({"batch_size": 4} if check.smoke else {}))
        arch = load_arch(name, config.params)
        shape = (config.batch_size, arch.default_input[1], config.resize, config.resize)
        amp = device == "cuda"
        row: dict = {"model": name, "input_shape": list(shape), "optimizer": str(config.optimizer), "amp": amp}
        try:
            settings = StepSettings.parse(config.optimizer, amp=amp, device=device, weight_decay=config.weight_decay)
            predicted = predict_memory(arch, shape, settings).peak_bytes
            measured = measure_training_peak(arch, shape, settings).peak_bytes
            row.update(
                predicted_bytes=predicted,
                measured_step_bytes=measured,
                error_pct=round(100 * (predicted - measured) / measured, 1),
                train_run_peak_bytes=by_model.get(name, {}).get("run_peak_memory_bytes"),
            )
        except Exception as exc:
            traceback.print_exc()
            row["error"] = f"{type(exc).__name__}: {exc}"
        print(row, flush=True)
        rows.append(row)
    return rows


def markdown(data: dict) -> str:
    dev = data.get("device", {})
    lines = [
        f"# archviz train: GPU check ({dev.get('name', dev.get('device', '?'))}){' (SMOKE, CPU dry run)' if data.get('smoke') else ''}",
        "",
        f"- date: {data['date']}; command: `{data['command']}`; elapsed: {data.get('elapsed_s')} s",
        f"- machine: {data['machine']}",
        f"- measured matmul peak: {dev.get('measured_peak_tflops')} TFLOP/s; datasheet bf16 peak: {dev.get('datasheet_peak_tflops')} TFLOP/s",
        "",
        "## Throughput (training images/s; reference = d2l-style DataLoader + PIL Resize + ToTensor, fp32)",
        "",
        "| model | size | batch | archviz img/s | reference img/s | speedup | TFLOP/s | MFU (measured peak) | MFU (datasheet) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data.get("throughput", []) if isinstance(data.get("throughput"), list) else []:
        if "archviz_images_per_sec" in r:
            lines.append(
                f"| {r['model']} | {r['resize']} | {r['batch_size']} | {r['archviz_images_per_sec']:,.0f} | {r['reference_images_per_sec']:,.0f} "
                f"| {r['speedup']:.2f}x | {r['achieved_tflops']} | {_pct(r['mfu_vs_measured_peak'])} | {_pct(r['mfu_vs_datasheet_peak'])} |"
            )
        else:
            lines.append(f"| {r['model']} | {r.get('skipped') or r.get('error')} |")
    lines += ["", "## Full default-recipe runs", ""]
    for r in data.get("full_runs", []) if isinstance(data.get("full_runs"), list) else []:
        if "final_test_acc" in r:
            lines.append(
                f"- {r['model']} {r['recipe']}: test acc per epoch {r['test_acc_per_epoch']}, final {r['final_test_acc']:.4f}, "
                f"best {r['best_test_acc']:.4f}, {r['total_seconds']:.1f} s, peak memory {_gib(r['peak_memory_bytes'])} "
                f"(predicted step: {_gib(r['predicted_step_memory_bytes'])}), MFU {_pct(r['mfu_vs_datasheet_peak'])}"
            )
        else:
            lines.append(f"- {r['model']}: {r.get('skipped') or r.get('error')}")
    lines += ["", "## Memory: cost model vs a real training step", ""]
    mem = data.get("memory")
    if isinstance(mem, list):
        lines += ["| model | input | optimizer | predicted | measured step | error | whole training run peak |", "|---|---|---|---:|---:|---:|---:|"]
        for r in mem:
            if "predicted_bytes" in r:
                shape = "x".join(map(str, r["input_shape"]))
                lines.append(
                    f"| {r['model']} | {shape} | {r['optimizer']} | {_gib(r['predicted_bytes'])} | {_gib(r['measured_step_bytes'])} "
                    f"| {r['error_pct']:+.1f}% | {_gib(r['train_run_peak_bytes'])} |"
                )
            else:
                lines.append(f"| {r['model']} | {r.get('skipped') or r.get('error')} |")
    elif mem:
        lines.append(f"- {mem}")
    return "\n".join(lines) + "\n"


def _pct(x: float | None) -> str:
    return f"{100 * x:.1f}%" if x is not None else "-"


def _gib(n: int | None) -> str:
    return f"{n / GIB:.3f} GiB" if n else "-"


CLASSIC = ("lenet", "lenet_bn", "alexnet", "vgg11", "nin", "googlenet", "resnet18")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU dry run with tiny limits (checks the script, measures nothing)")
    parser.add_argument("--data-dir", help="Fashion-MNIST folder (else $ARCHVIZ_DATA, the cache, Debian's package)")
    parser.add_argument("--budget", type=float, default=450, help="seconds; later items are skipped past it (default 450)")
    parser.add_argument("--models", nargs="*", default=None, help="default: the seed chapter's seven classic built-ins (issue 12)")
    args = parser.parse_args()
    if args.data_dir:
        os.environ["ARCHVIZ_DATA"] = str(Path(args.data_dir).resolve())
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA GPU: run on the GPU machine, or pass --smoke for a CPU dry run")
    default = Path(tempfile.mkdtemp(prefix="archviz-gpu-check-smoke-")) if args.smoke else Path(__file__).parent / "results"
    out = Path(os.environ.get("OUT") or default)  # a smoke run's numbers are not results: a temp dir
    check = Check(out, args.smoke, args.budget)
    # The classic nets issue 12 measures; the full-size and per-pixel built-ins (unet) would not fit 8 minutes.
    models = args.models or [name for name in CLASSIC if name in zoo.list_models()]
    check.section("device", device_info, device)
    check.section("throughput", throughput, device, models)
    check.section("full_runs", full_runs, device, ["lenet_bn", "resnet18"])
    check.section("memory", memory, device, ["lenet", "lenet_bn", "resnet18"] if args.smoke else models)
    print(f"wrote {out / 'train_gpu_check.json'} and .md in {check.data['elapsed_s']} s", flush=True)


if __name__ == "__main__":
    main()
