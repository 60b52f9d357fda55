"""How close is `archviz cost`'s predicted training-step peak to a measured one?

For each row: the predicted peak (archviz.estimate.memory.predict_memory, simulated on the
meta device), the measured peak of the same step run for real (archviz.estimate.measure:
torch.profiler memory events on a CPU, torch.cuda.max_memory_allocated on a GPU), and
torchinfo's "Estimated Total Size" beside both. Target: |error| <= 3% on every row, under
each CPU setting: the CPU's own ISA or AVX2 (``--isa avx2`` runs the rows in a subprocess with
ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2, which both the prediction and the
measurement obey), and 1 or 2 threads.

    python benchmarks/memory_accuracy.py                           # every row, this CPU, 2 threads
    python benchmarks/memory_accuracy.py --isa avx2 --threads 1    # as on an AVX2-only CPU, 1 thread
    python benchmarks/memory_accuracy.py --only 'lenet*'           # rows whose model matches
    python benchmarks/memory_accuracy.py --device cuda             # the GPU table (needs a GPU)
    python benchmarks/memory_accuracy.py --set kernels --isa avx2 --threads 1   # the kernel-scratch table (issue 19)

Results go to benchmarks/results/memory_accuracy_<device>[_<isa>_<threads>t].{md,json}; the kernel set to
memory_accuracy_kernels_cpu_<isa>_<threads>t.{md,json}.

The kernel set (``--set kernels``) holds models whose peak sits on what a CPU kernel allocates and
the meta device does not show: ConvNeXt's channels-last depthwise convolutions, oneDNN's LSTM,
dtype-promotion copies (``g * (x > 0)``), softmax and layer norm on non-contiguous tensors, and a
custom autograd.Function. Each row says whether the rules were written on it ("rules") or it was
built afterwards to check them ("held out"); the user modules are in benchmarks/kernel_models.py.
Its measurement runs the step here, independently of archviz's simulation: real weights, random
inputs of the stated dtypes, torch.profiler's allocation events (archviz.estimate.measure._cpu_peak).
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
# (model, -p params, inputs ("+" between several; ":int64" for token ids), optimizer, amp, group)
KERNEL_ROWS = [
    ("kernel_models:MaskMLP", [], "256x64", "sgd", False, "rules"),
    ("kernel_models:TransposedSoftmax", [], "16x96x32", "sgd", False, "rules"),
    ("kernel_models:EinsumUpsample", [], "4x3x64x64", "sgd", False, "rules"),
    ("kernel_models:LSTMClassifier", [], "8x32:int64", "sgd", False, "rules"),
    ("kernel_models:CustomFunction", [], "256x64", "sgd", False, "rules"),
    ("timm:create_model", ["model_name=convnext_atto", "num_classes=10"], "4x3x224x224", "adam", False, "rules"),
    ("timm:create_model", ["model_name=convnext_atto", "num_classes=10"], "4x3x224x224", "adam", True, "rules"),
    ("torchvision:convnext_tiny", ["num_classes=10"], "2x3x224x224", "adamw", False, "rules"),
    ("torchvision:mobilenet_v3_small", ["num_classes=10"], "4x3x224x224", "adamw", True, "rules"),
    ("kernel_models:LeakyWhere", [], "256x48", "momentum", False, "held out"),
    ("kernel_models:ChannelLogSoftmax", [], "4x3x48x48", "adam", False, "held out"),
    ("kernel_models:NHWCBlock", [], "4x3x96x96", "adamw", False, "held out"),
    ("kernel_models:NHWCBlock", [], "4x3x96x96", "sgd", True, "rules"),
    ("kernel_models:NHWCBlock", ["channels=32"], "2x3x128x128", "adam", True, "held out"),
    ("kernel_models:BiLSTMTagger", [], "6x40:int64", "adam", False, "held out"),
    ("kernel_models:LSTMClassifier", ["hidden=256", "embed=48"], "4x24:int64", "sgd", False, "held out"),
    ("kernel_models:GRUClassifier", [], "8x24:int64", "sgd", False, "held out"),
    ("kernel_models:TwoInputs", [], "4x3x32x32+4x16", "sgd", False, "held out"),
    ("kernel_models:CustomClamp", [], "4x3x64x64", "sgd", False, "held out"),
    ("timm:create_model", ["model_name=convnext_femto", "num_classes=10"], "2x3x160x160", "sgd", False, "held out"),
    ("timm:create_model", ["model_name=convnext_femto", "num_classes=10"], "2x3x160x160", "sgd", True, "held out"),
    ("torchvision:convnext_tiny", ["num_classes=10"], "1x3x160x160", "momentum", True, "held out"),
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


def _isa_label(isa: str) -> str:
    """The results' name: "native" is "amx" where oneDNN runs its AMX kernels, beside the AVX-512 BF16 machine's native table."""
    return "amx" if isa == "native" and CpuFacts.here().amx else isa


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
    predicted = predict_memory(arch, shape, StepSettings.parse(optimizer, amp=amp, device=device))
    predict_s = time.perf_counter() - began
    measured = measure_training_peak(arch, shape, StepSettings.parse(optimizer, amp=amp, device=device))
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


def measure_kernel_row(arch, specs, optimizer: str, amp: bool) -> int:
    """The peak of step 2 of a real training step (the measure side: no simulation involved)."""
    import contextlib

    from torch.profiler import ProfilerActivity, profile, record_function

    from archviz.estimate.measure import _STEP, _cpu_peak
    from archviz.estimate.simulate import simulated_loss
    from archviz.step import make_optimizer, train_step

    torch.manual_seed(0)

    def run() -> None:
        net = arch.build(tuple(specs[0].shape)).train()
        X = [torch.randint(0, 16, s.shape) if s.dtype == "int64" else torch.randn(s.shape) for s in specs]
        y = torch.randint(0, 10, (specs[0].shape[0],))
        opt = make_optimizer(optimizer, [p for p in net.parameters() if p.requires_grad])
        autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if amp else contextlib.nullcontext
        state = train_step(net, simulated_loss, opt, X, y, autocast)
        with record_function(_STEP):
            state = train_step(net, simulated_loss, opt, X, y, autocast)
        del state

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    return _cpu_peak(prof)


def run_kernel_row(name, params, inputs_text, optimizer, amp, group) -> dict:
    arch = load_arch(name, params)
    texts = inputs_text.split("+")
    trace = arch.trace(texts if len(texts) > 1 else texts[0])
    specs = list(arch.input_specs(texts if len(texts) > 1 else texts[0]))
    began = time.perf_counter()
    predicted = predict_memory(arch, settings=StepSettings.parse(optimizer, amp=amp), trace=trace)
    predict_s = time.perf_counter() - began
    began = time.perf_counter()
    measured = measure_kernel_row(arch, specs, optimizer, amp)
    error = 100 * (predicted.peak_bytes - measured) / measured
    margin = predicted.peak_with_margin_bytes
    return {
        "model": name + (" " + " ".join(f"-p {p}" for p in params) if params else ""),
        "input": inputs_text,
        "optimizer": optimizer,
        "amp": amp,
        "group": group,
        "predicted_bytes": predicted.peak_bytes,
        "measured_bytes": measured,
        "error_pct": round(error, 2),
        "peak_phase": predicted.peak_phase,
        "kernel_scratch_bytes": predicted.kernel_scratch_bytes,
        "warnings": predicted.warnings,
        "with_margin_bytes": margin,
        "with_margin_error_pct": round(100 * (margin - measured) / measured, 2),
        "predict_s": round(predict_s, 2),
        "measure_s": round(time.perf_counter() - began, 2),
    }


def kernel_markdown(rows: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| model | input | optimizer | amp | rules | predicted MiB | measured MiB | error % | peak in | scratch at peak MiB | warning (margin) |",
        "|---|---|---|---|---|---:|---:|---:|---|---:|---|",
    ]
    for r in rows:
        warning = "; ".join(r["warnings"]) or "-"
        lines.append(
            f"| {r['model']} | {r['input']} | {r['optimizer']} | {'bf16' if r['amp'] else '-'} | {r['group']} | {mib(r['predicted_bytes'])} | "
            f"{mib(r['measured_bytes'])} | {r['error_pct']:+.2f} | {r['peak_phase']} | {mib(r['kernel_scratch_bytes'])} | {warning} |"
        )
    for group in ("rules", "held out"):
        errors = [abs(r["error_pct"]) for r in rows if r["group"] == group]
        if errors:
            within = sum(e <= 3 for e in errors)
            lines.append(f"\n{group}: {within}/{len(errors)} rows within 3%; largest |error| {max(errors):.2f}%.")
    return "\n".join(lines)


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
    parser.add_argument("--set", choices=["models", "kernels"], default="models", help="kernels: the kernel-scratch rows (issue 19), CPU only")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    code = _reexec_with_isa(args.isa)
    if code is not None:
        return code
    global torch, load_arch, measure_training_peak, predict_memory, StepSettings, CpuFacts
    import torch

    from archviz.arch import load_arch
    from archviz.estimate.measure import measure_training_peak
    from archviz.estimate.memory import StepSettings, predict_memory
    from archviz.estimate.workspace import CpuFacts

    torch.set_num_threads(args.threads)
    if args.set == "kernels":
        return kernel_main(args)
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
        stem = f"memory_accuracy_{args.device}" + (f"_{_isa_label(args.isa)}_{args.threads}t" if args.device == "cpu" else "")
        (RESULTS / f"{stem}.md").write_text(report + "\n")
        (RESULTS / f"{stem}.json").write_text(json.dumps({"header": header, "rows": rows}, indent=2) + "\n")
    return 0


def kernel_main(args) -> int:
    import importlib.util

    sys.path.insert(0, str(Path(__file__).parent))  # kernel_models
    have_timm = importlib.util.find_spec("timm") is not None
    rows, skipped = [], []
    for spec in KERNEL_ROWS:
        name = spec[0] + " " + " ".join(spec[1])
        if not fnmatch.fnmatch(name, args.only):
            continue
        if spec[0].startswith("timm:") and not have_timm:
            skipped.append(name)
            continue
        row = run_kernel_row(*spec)
        rows.append(row)
        print(
            f"{row['model']:<58} {row['input']:>16} {row['optimizer']:>8} {'amp' if row['amp'] else '   '} {row['group']:>8} "
            f"pred {mib(row['predicted_bytes']):>10}  meas {mib(row['measured_bytes']):>10}  err {row['error_pct']:+6.2f}%  "
            f"({row['predict_s']}s / {row['measure_s']}s){'  ' + '; '.join(row['warnings']) if row['warnings'] else ''}",
            flush=True,
        )
    env = " ".join(f"{k}={v}" for k, v in ISA_ENV.get(args.isa, {}).items())
    header = (
        "# Training-step peak memory on kernels the meta device does not show: predicted vs measured (cpu)\n\n"
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n- machine: {cpu_name()}, {CpuFacts.here().describe()} "
        "(shared with other engineers' jobs while it ran; memory numbers do not depend on the load)\n"
        f"- torch {torch.__version__}, python {platform.python_version()}\n"
        f"- command: `python {' '.join(sys.argv)}`" + (f" (rows run with {env})" if env else "") + "\n"
        "- peak: step 2 of archviz.step.train_step; measured here with torch.profiler memory events (real weights, random inputs)\n"
        "- rules: the kernel rules (archviz/estimate/workspace.py, the oneDNN LSTM path in simulate.py) were written on the 'rules' rows; "
        "'held out' rows were built afterwards to check them. User modules: benchmarks/kernel_models.py"
        + (f"\n- skipped (timm not installed): {', '.join(skipped)}" if skipped else "")
    )
    report = kernel_markdown(rows, header)
    print()
    print(report)
    if not args.no_save and args.only == "*":
        RESULTS.mkdir(exist_ok=True)
        stem = f"memory_accuracy_kernels_cpu_{_isa_label(args.isa)}_{args.threads}t"
        (RESULTS / f"{stem}.md").write_text(report + "\n")
        (RESULTS / f"{stem}.json").write_text(json.dumps({"header": header, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
