"""How long drawing every torchvision classification model at full depth takes, against `import torch, torchvision`.

Issue 16 asks for every model of ``torchvision.models.list_models(module=torchvision.models)``
drawn at full depth with folding in at most 2.5x the time of ``import torch, torchvision``,
measured in the same script, with no overlapping node labels. Each model is drawn in
this process, where torch is already imported (what `archviz diagram` does after its own
import): trace on the meta device, DOT text, graphviz SVG; then every pair of node boxes
of the SVG is checked for overlap (archviz/render/svgcheck.py). The import is timed in a
fresh process right before each model, and each model's ratio is to that import: on a
shared machine the load changes by the minute, and a pair measured together sees the same.

    python benchmarks/diagram_speed.py                   # every classification model
    python benchmarks/diagram_speed.py --model resnet18 --model densenet121
    python benchmarks/diagram_speed.py --limit 60        # seconds per model before it counts as too slow
    python benchmarks/diagram_speed.py --cli             # also the whole `archviz diagram` command in a fresh process
    python benchmarks/diagram_speed.py --cli-model swin_v2_s   # ... for these models only
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import save  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
IMPORT = "import torch, torchvision"


def time_import() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORT], check=True, cwd=ROOT)
    return time.perf_counter() - start


def cli(name: str, limit: float, out: Path) -> float | None:
    """Seconds of `archviz diagram torchvision:NAME --depth 32 -o out` in a fresh process (what a user waits for), or None."""
    start = time.perf_counter()
    args = [sys.executable, "-m", "archviz", "diagram", f"torchvision:{name}", "--depth", "32", "-o", str(out), "--force"]
    try:
        proc = subprocess.run(args, capture_output=True, cwd=ROOT, timeout=limit + 60)
    except subprocess.TimeoutExpired:
        return None
    return time.perf_counter() - start if proc.returncode == 0 else None


def draw(name: str, limit: float) -> dict:
    """Trace, DOT and SVG of one model at full depth (folded), timed; then its node boxes checked for overlap."""
    from archviz.arch import load_arch
    from archviz.render.dot import to_dot
    from archviz.render.graph import build_graph
    from archviz.render.graphviz import DiagramFormat, render
    from archviz.render.svgcheck import node_boxes, overlapping

    start = time.perf_counter()
    try:
        trace = load_arch("torchvision:" + name).trace()
        traced = time.perf_counter()
        source = to_dot(trace, trace.max_depth, fold=True)
        svg = render(source, DiagramFormat.svg, timeout_s=limit)
    except Exception as exc:  # one model's failure is a row of the table, not the end of the run
        return {"model": name, "error": f"{type(exc).__name__}: {exc}"[:200], "wall_s": time.perf_counter() - start}
    drawn = time.perf_counter()
    boxes = node_boxes(svg)
    pairs = overlapping(boxes)
    return {
        "model": name,
        "depth": trace.max_depth,
        "vertices": len(build_graph(trace, trace.max_depth).vertices),
        "edges": source.count(" -> "),
        "trace_s": traced - start,
        "draw_s": drawn - start,
        "nodes": len(boxes),
        "overlaps": len(pairs),
        "overlap_examples": pairs[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="only these torchvision models (repeatable)")
    parser.add_argument("--limit", type=float, default=60.0, help="graphviz layout limit per model, seconds")
    parser.add_argument("--cli", action="store_true", help="also time `archviz diagram ... --depth 32` end to end in a fresh process")
    parser.add_argument("--cli-model", action="append", help="time the whole CLI run for this model only (repeatable)")
    args = parser.parse_args()
    import warnings

    import torchvision

    warnings.simplefilter("ignore")  # googlenet/inception's FutureWarning about their init
    names = args.model or torchvision.models.list_models(module=torchvision.models)
    time_import()  # warm the file cache once: every later import is measured the same way
    rows = []
    for name in names:
        imported = time_import()
        row = draw(name, args.limit)
        row["import_s"] = imported
        row["ratio"] = round(row["draw_s"] / imported, 2) if "draw_s" in row else None
        if args.cli or name in (args.cli_model or ()):
            with tempfile.TemporaryDirectory() as tmp:
                row["cli_s"] = cli(name, args.limit, Path(tmp) / "d.svg")
            row["cli_ratio"] = round(row["cli_s"] / imported, 2) if row["cli_s"] else None
        rows.append(row)
        print(json.dumps(row), flush=True)
    imports = [r["import_s"] for r in rows]
    yardstick = statistics.median(imports)
    ok_time = [r for r in rows if r.get("ratio") is not None and r["ratio"] <= 2.5]
    ok_cli = [r for r in rows if r.get("cli_ratio") is not None and r["cli_ratio"] <= 2.5]
    ok_overlap = [r for r in rows if r.get("overlaps") == 0]
    lines = [
        f"`{IMPORT}` in a fresh process, timed right before each model: median {yardstick:.2f} s, {min(imports):.2f} to {max(imports):.2f} s.",
        f"Largest ratio: {max((r['ratio'] for r in rows if r.get('ratio') is not None), default=0):.2f} "
        f"({max((r for r in rows if r.get('ratio') is not None), key=lambda r: r['ratio'], default={'model': '-'})['model']}).",
        "The machine was shared with other engineers' jobs (2 cores): times are noisy; the ratio is what counts.",
        "",
        f"- within 2.5x the import (trace + DOT + SVG): {len(ok_time)} of {len(rows)}",
        f"- within 2.5x the import (the whole CLI run, its own import included): {len(ok_cli)} of {sum(1 for r in rows if 'cli_s' in r)} timed",
        f"- no overlapping node boxes: {len(ok_overlap)} of {len(rows)}",
        "",
        "`x import` is (trace + DOT + SVG, torch already imported) / import; `CLI x import` is the whole",
        "`archviz diagram torchvision:NAME --depth 32 -o d.svg` in a fresh process (its own import included) / import.",
        "",
        "| model | depth | vertices | edges | trace s | trace+DOT+SVG s | import s | x import | CLI s | CLI x import | overlaps | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | | | | | | | | | | | {r['error']} |")
            continue
        note = "" if r["ratio"] <= 2.5 else "over 2.5x"
        cells = (r["model"], r["depth"], r["vertices"], r["edges"], f"{r['trace_s']:.2f}", f"{r['draw_s']:.2f}", f"{r['import_s']:.2f}", f"{r['ratio']:.2f}")
        cli_cells = (f"{r['cli_s']:.2f}", f"{r['cli_ratio']:.2f}") if r.get("cli_s") else ("-", "-")
        cells += (*cli_cells, r["overlaps"], note)
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    print(save("diagram_speed", rows, "\n".join(lines), {"limit_s": args.limit}))


if __name__ == "__main__":
    main()
