"""How close is `archviz cost`'s predicted training-step peak to a measured one?

For each row: the predicted peak (archviz.cost.memory.predict_memory, simulated on the
meta device), the measured peak of the same step run for real (archviz.cost.measure:
torch.profiler memory events on a CPU, torch.cuda.max_memory_allocated on a GPU), and
torchinfo's "Estimated Total Size" beside both. Target: |error| <= 3% on every row, under
each CPU setting: the CPU's own ISA or AVX2 (``--isa avx2`` runs the rows in a subprocess with
ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2, which both the prediction and the
measurement obey), and 1 or 2 threads.

    python benchmarks/memory_accuracy.py                           # every row, this CPU, 2 threads
    python benchmarks/memory_accuracy.py --isa avx2 --threads 1    # as on an AVX2-only CPU, 1 thread
    python benchmarks/memory_accuracy.py --only 'lenet*'           # rows whose model matches
    python benchmarks/memory_accuracy.py --device cuda             # the GPU table (needs a GPU)

Results go to benchmarks/results/memory_accuracy_<device>[_<isa>_<threads>t].{md,json}.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_name  # noqa: E402

ISA_ENV = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}

RESULTS = Path(__file__).parent / "results"

# (model, -p params, input, optimizer, amp): small batches so a 2-core CPU measures each in seconds.
CPU_ROWS = [
    ("lenet", [], "1x1x28x28", "sgd", False),
    ("lenet", [], "8x1x28x28", "sgd", False),
    ("lenet", [], "64x1x28x28", "adam", False),
    ("lenet_bn", [], "8x1x28x28", "momentum", False),
    ("lenet_bn", [], "64x1x28x28", "adamw", False),
    ("lenet_bn", [], "16x1x28x28", "sgd", True),
    ("lenet", [], "64x1x28x28", "adam", True),
    ("alexnet", [], "2x1x224x224", "sgd", False),
    ("alexnet", [], "1x1x224x224", "adam", False),
    ("vgg11", ["ratio=8"], "4x1x224x224", "momentum", False),
    ("vgg11", [], "1x1x224x224", "sgd", False),
    ("vgg11", ["ratio=4"], "2x1x224x224", "adamw", False),
    ("nin", [], "2x1x224x224", "adam", False),
    ("nin", [], "4x1x224x224", "sgd", False),
    ("googlenet", [], "4x1x96x96", "sgd", False),
    ("googlenet", [], "8x1x96x96", "adamw", False),
    ("googlenet", [], "4x1x96x96", "momentum", True),
    ("resnet18", [], "1x1x96x96", "sgd", False),
    ("resnet18", [], "8x1x96x96", "adam", False),
    ("resnet18", [], "4x1x96x96", "momentum", True),
    ("torchvision:resnet18", ["num_classes=10"], "2x3x224x224", "sgd", False),
    ("torchvision:resnet18", ["num_classes=10"], "4x3x112x112", "adam", False),
    ("torchvision:mobilenet_v3_small", ["num_classes=10"], "4x3x224x224", "adamw", False),
    ("torchvision:densenet121", ["num_classes=10"], "2x3x224x224", "momentum", False),
    ("torchvision:efficientnet_b0", ["num_classes=10"], "2x3x224x224", "sgd", False),
    ("torchvision:vit_b_16", ["num_classes=10"], "2x3x224x224", "adam", False),
]
# The GPU table: built-ins at their d2l training batch sizes, fp32 and bf16 autocast, SGD and Adam.
CUDA_ROWS = [
    (name, params, shape, opt, amp)
    for name, params, shape in [
        ("lenet", [], "256x1x28x28"),
        ("lenet_bn", [], "256x1x28x28"),
        ("alexnet", [], "128x1x224x224"),
        ("vgg11", ["ratio=4"], "128x1x224x224"),
        ("nin", [], "128x1x224x224"),
        ("googlenet", [], "128x1x96x96"),
        ("resnet18", [], "256x1x96x96"),
    ]
    for opt in ("sgd", "adam")
    for amp in (False, True)
]


def _reexec_with_isa(isa: str) -> int | None:
    """Run this script again with the ISA variables set (they must be set before torch loads)."""
    wanted = ISA_ENV.get(isa, {})
    if all(os.environ.get(k) == v for k, v in wanted.items()):
        return None
    env = {**os.environ, **wanted}
    return subprocess.call([sys.executable, *sys.argv], env=env)


def torchinfo_estimate(arch, shape: tuple[int, ...]) -> int | None:
    """torchinfo's "Estimated Total Size" (input + params + 2 x outputs of parameter layers), in bytes."""
    try:
        import torchinfo
    except ImportError:
        return None
    stats = torchinfo.summary(arch.build(shape), input_size=shape, verbose=0, device="cpu")
    return int(stats.total_input + stats.total_param_bytes + stats.total_output_bytes)


def run_row(name, params, shape_text, optimizer, amp, device) -> dict:
    arch = load_arch(name, params)
    shape = tuple(int(d) for d in shape_text.split("x"))
    began = time.perf_counter()
    predicted = predict_memory(arch, shape, optimizer, amp=amp, device=device)
    predict_s = time.perf_counter() - began
    measured = measure_training_peak(arch, shape, optimizer, amp=amp, device=device)
    estimate = torchinfo_estimate(arch, shape)
    error = 100 * (predicted.peak_bytes - measured.peak_bytes) / measured.peak_bytes
    return {
        "model": name + (" " + " ".join(f"-p {p}" for p in params) if params else ""),
        "input": shape_text,
        "optimizer": optimizer,
        "amp": amp,
        "predicted_bytes": predicted.peak_bytes,
        "measured_bytes": measured.peak_bytes,
        "error_pct": round(error, 2),
        "peak_phase": predicted.peak_phase,
        "torchinfo_bytes": estimate,
        "torchinfo_error_pct": round(100 * (estimate - measured.peak_bytes) / measured.peak_bytes, 1) if estimate else None,
        "predict_s": round(predict_s, 2),
        "measure_s": round(measured.seconds, 2),
    }


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.2f}"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


def markdown(rows: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| model | input | optimizer | amp | predicted MiB | measured MiB | error % | peak in | torchinfo MiB | torchinfo error % |",
        "|---|---|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['input']} | {r['optimizer']} | {'bf16' if r['amp'] else '-'} | {mib(r['predicted_bytes'])} | "
            f"{mib(r['measured_bytes'])} | {r['error_pct']:+.2f} | {r['peak_phase']} | {mib(r['torchinfo_bytes'])} | "
            f"{pct(r['torchinfo_error_pct'])} |"
        )
    errors = [abs(r["error_pct"]) for r in rows]
    within = sum(e <= 3 for e in errors)
    lines += ["", f"{within}/{len(rows)} rows within 3%; largest |error| {max(errors):.2f}%."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--only", default="*", help="fnmatch pattern on the model name")
    parser.add_argument("--isa", choices=["native", "avx2"], default="native", help="avx2: as on an AVX2-only CPU (see the docstring)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads for prediction and measurement")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    code = _reexec_with_isa(args.isa)
    if code is not None:
        return code
    global torch, load_arch, measure_training_peak, predict_memory, CpuFacts
    import torch

    from archviz.arch import load_arch
    from archviz.cost.measure import measure_training_peak
    from archviz.cost.memory import predict_memory
    from archviz.cost.workspace import CpuFacts

    torch.set_num_threads(args.threads)
    rows_spec = CPU_ROWS if args.device == "cpu" else CUDA_ROWS
    rows = []
    for spec in rows_spec:
        if not fnmatch.fnmatch(spec[0], args.only):
            continue
        row = run_row(*spec, device=args.device)
        rows.append(row)
        print(
            f"{row['model']:<40} {row['input']:>14} {row['optimizer']:>8} {'amp' if row['amp'] else '   '} "
            f"pred {mib(row['predicted_bytes']):>10} MiB  meas {mib(row['measured_bytes']):>10} MiB  "
            f"err {row['error_pct']:+6.2f}%  torchinfo {row['torchinfo_error_pct']}%  ({row['predict_s']}s / {row['measure_s']}s)",
            flush=True,
        )
    machine = torch.cuda.get_device_name() if args.device == "cuda" else f"{cpu_name()}, {CpuFacts.here().describe()}"
    env = " ".join(f"{k}={v}" for k, v in ISA_ENV.get(args.isa, {}).items())
    header = (
        f"# Training-step peak memory: predicted vs measured ({args.device})\n\n"
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n- machine: {machine}\n"
        f"- torch {torch.__version__}, python {platform.python_version()}\n"
        f"- command: `python {' '.join(sys.argv)}`" + (f" (rows run with {env})" if env else "") + "\n"
        "- peak: step 2 of zero_grad(set_to_none) / forward / backward / optimizer.step (archviz.step.train_step); measured with "
        + ("torch.cuda.max_memory_allocated" if args.device == "cuda" else "torch.profiler memory events (live CPU allocator bytes)")
        + "\n- batches are small so that a 2-core CPU measures every row in seconds: full-width VGG-11 and AlexNet at 224"
        " run batch 1-2, VGG-11 at batch 2-4 is narrowed with -p ratio=4/8; amp = bf16 autocast with fp32 weights"
        '\n- torchinfo = its "Estimated Total Size" (input + params + 2 x outputs of parameter layers), for comparison'
    )
    report = markdown(rows, header)
    print()
    print(report)
    if not args.no_save and args.only == "*":
        RESULTS.mkdir(exist_ok=True)
        stem = f"memory_accuracy_{args.device}" + (f"_{args.isa}_{args.threads}t" if args.device == "cpu" else "")
        (RESULTS / f"{stem}.md").write_text(report + "\n")
        (RESULTS / f"{stem}.json").write_text(json.dumps({"header": header, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
