"""Does `archviz shapes` stay linear in time and memory as a spec grows to 100k layers?

For each size N (default 1k, 10k, 100k layers) a spec file with N layers is written (a
conv/ReLU pair repeated, one layer per line, as a script would write it). Then, each in a
fresh process, as a user waits for it:

- `archviz shapes FILE` (box table) and `archviz shapes FILE --format json`: wall time
  and peak resident memory (the kernel's ru_maxrss of that process);
- the same steps timed one by one inside a process (read YAML, resolve, trace, render the
  table, render JSON), to show which step each second goes to.

The baseline is `archviz shapes lenet` in the same run (start-up: Python, imports); per-layer
costs are (measure - baseline) / N, and linearity is each size's per-layer cost over the
smallest size's (1.0 = perfectly linear).

    python benchmarks/spec_scale.py                 # 1k, 10k, 100k
    python benchmarks/spec_scale.py --sizes 1000 10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import save  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

PHASES = """
import json, sys, time
t = [time.perf_counter()]
from archviz.spec import load_spec_file, resolve
from archviz.trace.from_spec import trace_spec
from archviz.render import Format
from archviz.render.shapes import render_shapes
t.append(time.perf_counter()); spec = load_spec_file(sys.argv[1])
t.append(time.perf_counter()); resolved = resolve(spec)
t.append(time.perf_counter()); trace = trace_spec(resolved, resolved.default_input)
t.append(time.perf_counter()); render_shapes(trace, 1, Format.table)
t.append(time.perf_counter()); render_shapes(trace, 1, Format.json)
t.append(time.perf_counter())
names = ["import", "load", "resolve", "trace", "table", "json"]
print(json.dumps({n: t[i + 1] - t[i] for i, n in enumerate(names)} | {"nodes": len(trace.nodes)}))
"""


# The same layers built in memory (no YAML): per-layer microseconds of each step after reading,
# best of three, in one process per size.
STEPS = """
import gc, json, sys, time
from archviz.render import Format
from archviz.render.shapes import render_shapes
from archviz.spec import resolve
from archviz.spec.model import Layer, Spec
from archviz.trace.from_spec import trace_spec
n = int(sys.argv[1])
conv, act = ("conv", {"out": 8, "kernel": 3, "padding": 1}), ("act", {"fn": "relu"})
layers = tuple(Layer(*(conv if i % 2 == 0 else act), None, "mem", i) for i in range(n))
spec = Spec("scale", layers, "", (1, 8, 16, 16), {"in_channels": 8, "num_classes": 10})
best = {}
for _ in range(3):
    gc.collect()
    t = [time.perf_counter()]; resolved = resolve(spec)
    t.append(time.perf_counter()); trace = trace_spec(resolved, resolved.default_input)
    t.append(time.perf_counter()); render_shapes(trace, 1, Format.table)
    t.append(time.perf_counter()); render_shapes(trace, 1, Format.json)
    t.append(time.perf_counter())
    for i, name in enumerate(("resolve", "trace", "table", "json")):
        best[name] = min(best.get(name, 1e9), (t[i + 1] - t[i]) / n * 1e6)
print(json.dumps(best))
"""


def write_spec(path: Path, layers: int) -> None:
    lines = ["name: scale", "default_input: 1x8x16x16", "params: {in_channels: 8}", "layers:"]
    for i in range(layers - 3):
        lines.append("  - conv: {out: 8, kernel: 3, padding: 1}" if i % 2 == 0 else "  - act: {fn: relu}")
    lines += ["  - gap", "  - flatten", "  - linear: {out: num_classes}"]
    path.write_text("\n".join(lines) + "\n")


def measured(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of ``cmd``, from os.wait4 on that one child."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {err[-500:]}")
    return wall, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    args = parser.parse_args()
    py = sys.executable
    base_wall, base_rss = measured([py, "-m", "archviz", "shapes", "lenet"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(args.sizes):
            spec = Path(tmp) / f"scale_{n}.yaml"
            write_spec(spec, n)
            row: dict = {"layers": n}
            for fmt in ("table", "json"):
                wall, rss = measured([py, "-m", "archviz", "shapes", str(spec), "--format", fmt])
                row[f"{fmt}_s"], row[f"{fmt}_rss_mb"] = round(wall, 2), round(rss / 2**20, 1)
                row[f"{fmt}_ms_per_layer"] = round((wall - base_wall) / n * 1e3, 3)
                row[f"{fmt}_kb_per_layer"] = round((rss - base_rss) / n / 1024, 2)
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            phases = json.loads(subprocess.run([py, "-c", PHASES, str(spec)], capture_output=True, text=True, check=True, cwd=ROOT, env=env).stdout)
            row.update({f"step_{k}_s": round(v, 3) for k, v in phases.items() if k != "nodes"})
            steps = json.loads(subprocess.run([py, "-c", STEPS, str(n)], capture_output=True, text=True, check=True, cwd=ROOT, env=env).stdout)
            row.update({f"us_per_layer_{k}": round(v, 1) for k, v in steps.items()})
            rows.append(row)
            print(row, flush=True)
    first = rows[0]
    for row in rows:
        for fmt in ("table", "json"):
            row[f"{fmt}_time_linearity"] = round(row[f"{fmt}_ms_per_layer"] / first[f"{fmt}_ms_per_layer"], 2)
            row[f"{fmt}_memory_linearity"] = round(row[f"{fmt}_kb_per_layer"] / first[f"{fmt}_kb_per_layer"], 2)
    md = [
        f"Baseline (`archviz shapes lenet`, start-up): {base_wall:.2f} s, {base_rss / 2**20:.0f} MiB peak RSS. "
        "Per layer = (measure - baseline) / layers; linearity = per-layer cost / the smallest size's (1.0 = linear).",
        "",
        "| layers | table s | table MiB | json s | json MiB | ms/layer (table, json) | KiB/layer (table, json) "
        "| time linearity (table, json) | memory linearity (table, json) |",
        "|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['layers']:,} | {r['table_s']} | {r['table_rss_mb']} | {r['json_s']} | {r['json_rss_mb']} | "
            f"{r['table_ms_per_layer']}, {r['json_ms_per_layer']} | {r['table_kb_per_layer']}, {r['json_kb_per_layer']} | "
            f"{r['table_time_linearity']}, {r['json_time_linearity']} | {r['table_memory_linearity']}, {r['json_memory_linearity']} |"
        )
    md += [
        "",
        "Seconds per step inside one process (read YAML, resolve, trace, render):",
        "",
        "| layers | load | resolve | trace | table | json |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        md.append(f"| {r['layers']:,} | {r['step_load_s']} | {r['step_resolve_s']} | {r['step_trace_s']} | {r['step_table_s']} | {r['step_json_s']} |")
    md += [
        "",
        "The steps after reading, on the same layers built in memory (no YAML), best of 3, microseconds per layer (flat = linear):",
        "",
        "| layers | resolve | trace | table | json |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        md.append(f"| {r['layers']:,} | {r['us_per_layer_resolve']} | {r['us_per_layer_trace']} | {r['us_per_layer_table']} | {r['us_per_layer_json']} |")
    path = save("spec_scale", rows, "\n".join(md), {"baseline_s": round(base_wall, 3), "baseline_rss_mb": round(base_rss / 2**20, 1)})
    print(path.read_text())


if __name__ == "__main__":
    main()
