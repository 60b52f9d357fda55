"""How long `archviz shapes` takes, against a bare `import torch` and the torchinfo way.

Each command runs in a fresh process (what a user waits for), measured in the same run so
that the ratios hold on a noisy shared machine. The torchinfo way builds the model with real
weights on the CPU and calls `torchinfo.summary`, which runs a real forward pass.

    python benchmarks/shapes_speed.py             # every built-in, batch 1 and 64; vgg11 also at 16
    python benchmarks/shapes_speed.py --quick     # fewer repeats, no batch-64 torchinfo runs
    python benchmarks/shapes_speed.py --arch lenet --arch unet   # only these built-ins
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import save  # noqa: E402

from archviz import zoo  # noqa: E402
from archviz.arch import load_arch  # noqa: E402

TORCHINFO = """
import sys, torch, torchinfo
from archviz.arch import load_arch
shape = tuple(int(d) for d in sys.argv[2].split("x"))
net = load_arch(sys.argv[1]).build(shape)
torchinfo.summary(net, input_size=shape, verbose=0)
"""


def wall(cmd: list[str], repeats: int) -> float:
    """Median wall time of ``cmd`` in seconds over ``repeats`` fresh processes."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--arch", action="append", help="only this built-in (repeatable; default: every one)")
    args = parser.parse_args()
    repeats = 3 if args.quick else 5
    py = sys.executable
    rows = []
    names = zoo.list_models()
    unknown = sorted(set(args.arch or ()) - set(names))
    if unknown:
        parser.error(f"unknown built-in {', '.join(unknown)}; choose from {', '.join(names)}")
    for name in [n for n in names if not args.arch or n in args.arch]:
        default = load_arch(name).default_input
        batches = [default[0], 64] + ([16] if name == "vgg11" else [])
        for batch in batches:
            shape = "x".join(str(d) for d in (batch, *default[1:]))
            # The baseline is re-measured beside every row: the machine is shared and noisy.
            import_torch = wall([py, "-c", "import torch"], repeats)
            archviz_s = wall([py, "-m", "archviz", "shapes", name, "--input", shape], repeats)
            heavy = batch > 1 and default[-1] >= 224
            torchinfo_s = None
            if not (args.quick and heavy):
                torchinfo_s = wall([py, "-c", TORCHINFO, name, shape], 1 if heavy else repeats)
            row = {
                "arch": name,
                "input": shape,
                "archviz_s": round(archviz_s, 3),
                "import_torch_s": round(import_torch, 3),
                "ratio_to_import_torch": round(archviz_s / import_torch, 2),
                "torchinfo_s": round(torchinfo_s, 3) if torchinfo_s else None,
                "speedup_vs_torchinfo": round(torchinfo_s / archviz_s, 1) if torchinfo_s else None,
            }
            rows.append(row)
            print(row, flush=True)
    worst = max(r["ratio_to_import_torch"] for r in rows)
    vgg = [r for r in rows if r["arch"] == "vgg11" and int(r["input"].split("x")[0]) >= 16 and r["speedup_vs_torchinfo"]]
    lines = [
        f"Median of {repeats} fresh processes per cell (the torchinfo way at batch > 1 on the 224-px nets: 1 run).",
        "",
        "| arch | input | `archviz shapes` (s) | `import torch` (s) | ratio | torchinfo way (s) | archviz speed-up |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ti = f"{r['torchinfo_s']:.2f}" if r["torchinfo_s"] else "not run"
        sp = f"{r['speedup_vs_torchinfo']}x" if r["speedup_vs_torchinfo"] else "-"
        lines.append(f"| {r['arch']} | {r['input']} | {r['archviz_s']:.3f} | {r['import_torch_s']:.3f} | {r['ratio_to_import_torch']} | {ti} | {sp} |")
    lines += [
        "",
        f"Target: archviz shapes <= 1.5x import torch for every row: worst ratio {worst} -> {'MET' if worst <= 1.5 else 'MISSED'}.",
        "Target: >= 3x faster than the torchinfo way for vgg11 at batch >= 16: "
        + (", ".join(f"{r['input']}: {r['speedup_vs_torchinfo']}x" for r in vgg) or "not measured (--quick)"),
    ]
    text = "\n".join(lines)
    print(text)
    print("saved", save("shapes_speed", rows, text))


if __name__ == "__main__":
    main()
