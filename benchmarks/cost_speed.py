"""How long `archviz cost` takes: against a bare `import torch, torchvision`, and per layer on deep specs.

1. `archviz cost ARCH` for a few built-ins, each in a fresh process (what a user waits for),
   against `python -c "import torch, torchvision"` timed in the same run (ratio; the import is
   most of it). Target: about 1.15x for lenet.
2. `cost_report` + rendering of generated specs of N conv layers (N = 1,000 ... 10,000) in one
   process after the imports: the time per layer must stay flat (linear in N).

    python benchmarks/cost_speed.py            # both parts
    python benchmarks/cost_speed.py --quick    # fewer repeats, N up to 4,000
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import save  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEEP = """
import sys, time
import torch, torchvision  # noqa: F401  (imports are not what is measured here)
from archviz.arch import load_arch
from archviz.estimate.report import cost_report
from archviz.render import Format
from archviz.render.cost import render_cost
path = sys.argv[1]
t0 = time.perf_counter()
arch = load_arch(path)
report = cost_report(arch)
render_cost(report, Format.table)
print(time.perf_counter() - t0)
"""


def deep_spec(n: int, folder: Path) -> Path:
    """A spec of ``n`` 3x3 conv + relu layers on a 2x1x8x8 input, then a linear head."""
    lines = [f"name: deep{n}", f"description: {n} conv layers", "default_input: 2x1x8x8", "layers:"]
    lines += ["  - conv: {out: 4, kernel: 3, padding: 1, act: relu}"] * n + ["  - flatten", "  - linear: {out: 10}"]
    path = folder / f"deep{n}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def wall(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 5
    rows = []
    for name in ("lenet", "resnet18"):
        # interleaved, so load on a shared machine hits both alike
        base = wall([sys.executable, "-c", "import torch, torchvision"], repeats)
        cost = wall([sys.executable, "-m", "archviz", "cost", name], repeats)
        rows.append({"what": f"archviz cost {name}", "seconds": round(cost, 2), "import_seconds": round(base, 2), "ratio": round(cost / base, 2)})
        print(rows[-1], flush=True)
    sizes = (1000, 2000, 4000) if args.quick else (1000, 2500, 5000, 10000)
    with tempfile.TemporaryDirectory() as folder:
        for n in sizes:
            out = subprocess.run([sys.executable, "-c", DEEP, str(deep_spec(n, Path(folder)))], check=True, capture_output=True, text=True, cwd=ROOT)
            seconds = float(out.stdout.strip().splitlines()[-1])
            rows.append(
                {"what": f"cost of a {n:,}-layer spec (after imports)", "layers": n, "seconds": round(seconds, 2), "ms_per_layer": round(1000 * seconds / n, 2)}
            )
            print(rows[-1], flush=True)
    lines = ["| what | seconds | import torch, torchvision | ratio | ms per layer |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['seconds']} | {r.get('import_seconds', '-')} | {r.get('ratio', '-')} | {r.get('ms_per_layer', '-')} |")
    per_layer = [r["ms_per_layer"] for r in rows if "ms_per_layer" in r]
    lines += [
        "",
        f"Per-layer time from {sizes[0]:,} to {sizes[-1]:,} layers: {per_layer[0]} -> {per_layer[-1]} ms ({per_layer[-1] / per_layer[0]:.2f}x; 1.0x = linear).",
    ]
    print(save("cost_speed", rows, "\n".join(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
