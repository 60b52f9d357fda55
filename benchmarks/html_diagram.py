"""How big the interactive HTML diagrams are and how fast they respond in headless Chromium.

For each model: trace it, write the page (``archviz.render.html.to_html``, depth 1), open it
from disk in headless Chromium (selenium + Debian's chromium-driver, network off) and time,
in the browser (``performance.now()``):

- load: navigation start until the first drawing is on screen (parse, JSON, layout, SVG);
- expand one: expanding the biggest top-level block from the starting view;
- expand all: every block expanded down to single layers, folded runs kept folded;
- expand all + unfold: every copy of every folded run drawn too (every layer of the net);
  each measurement on a freshly loaded page (nothing comes from the layout cache), the median of 3.

Usage: python benchmarks/html_diagram.py [ARCH ...]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import save  # noqa: E402

from archviz.arch import load_arch  # noqa: E402
from archviz.render.html import to_html  # noqa: E402

MODELS = [
    "googlenet",
    "torchvision:regnet_y_128gf",
    "torchvision:efficientnet_v2_l",
    "torchvision:vit_h_14",
    "torchvision:maxvit_t",
    "torchvision:densenet201",
    "torchvision:swin_v2_b",  # the most ops of the torchvision classifiers tried (attention is many small functions)
    "torchvision:efficientnet_b7",
]


def chromium():
    from selenium import webdriver

    binary = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    driver = next((shutil.which(n) for n in ("chromedriver", "chromium-driver") if shutil.which(n)), None)
    if binary is None or driver is None:
        sys.exit("this benchmark needs Debian's chromium and chromium-driver (scripts/setup --test installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000", "--proxy-server=127.0.0.1:9"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


REPEATS = 3
# Each measurement on a freshly loaded page: nothing laid out before is in the page's cache.
LOAD = "return {load: performance.now(), first_draw: window.archviz.loadMs, size: window.archviz.size()};"
EXPAND_ONE = """
const a = window.archviz;
const blocks = a.visibleNodes().filter((id) => a.card(id) && !a.card(id).leaf).sort((x, y) => a.card(y).params - a.card(x).params);
if (!blocks.length) return null;
const s = performance.now(); a.expand(blocks[0]); return {ms: performance.now() - s, block: blocks[0]};
"""
EXPAND_ALL = """
const a = window.archviz, s = performance.now();
a.expandAll(arguments[0]);
return {ms: performance.now() - s, boxes: a.visibleNodes().length, size: a.size()};
"""


def measure(driver, arch: str, folder: Path) -> dict:
    t0 = time.perf_counter()
    trace = load_arch(arch).trace()
    traced = time.perf_counter() - t0
    t0 = time.perf_counter()
    page = to_html(trace, depth=1)
    written = time.perf_counter() - t0
    path = folder / (arch.replace(":", "_") + ".html")
    path.write_text(page, encoding="utf-8")
    driver.get_log("browser")

    def median_of(script: str, *args) -> dict:
        """The run with the median time of REPEATS, each on a freshly loaded page (the machine is shared)."""
        runs = []
        for _ in range(REPEATS):
            driver.get(path.as_uri())
            runs.append(driver.execute_script(script, *args))
        if runs[0] is None:
            return None
        key = "load" if "load" in runs[0] else "ms"
        return sorted(runs, key=lambda r: r[key])[REPEATS // 2]

    load = median_of(LOAD)
    one = median_of(EXPAND_ONE)
    every = median_of(EXPAND_ALL, False)
    unfolded = median_of(EXPAND_ALL, True)
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return {
        "arch": arch,
        "modules": len(trace.nodes),
        "ops": len(trace.ops),
        "max_depth": trace.max_depth,
        "bytes": len(page.encode("utf-8")),
        "trace_s": round(traced, 2),
        "write_s": round(written, 2),
        "load_ms": round(load["load"]),
        "first_draw_ms": round(load["first_draw"]),
        "expand_one_ms": round(one["ms"]) if one else None,
        "expand_one_block": one["block"] if one else None,
        "expand_all_ms": round(every["ms"]),
        "expand_all_boxes": every["boxes"],
        "unfold_all_ms": round(unfolded["ms"]),
        "unfold_all_boxes": unfolded["boxes"],
        "drawing_px": [round(unfolded["size"]["width"]), round(unfolded["size"]["height"])],
        "console_errors": errors,
    }


def main() -> None:
    models = sys.argv[1:] or MODELS
    driver = chromium()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            for arch in models:
                row = measure(driver, arch, Path(folder))
                print(row, flush=True)
                rows.append(row)
    finally:
        driver.quit()
    lines = [
        f"The machine was shared with other engineers' jobs (2 cores): times are the median of {REPEATS} runs, each on a freshly loaded page.",
        "Times in the browser are headless Chromium's `performance.now()`; the page was written at depth 1 (fold on).",
        "",
        "| model | modules | ops | file | trace | write | load | expand one block | expand all (boxes) | expand all + unfold runs (boxes) | drawing, px |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        one = f"{r['expand_one_ms']} ms ({r['expand_one_block']})" if r["expand_one_ms"] is not None else "-"
        lines.append(
            f"| {r['arch']} | {r['modules']} | {r['ops']} | {r['bytes'] / 1024:.0f} KiB | {r['trace_s']} s | {r['write_s']} s | {r['load_ms']} ms | {one} "
            f"| {r['expand_all_ms']} ms ({r['expand_all_boxes']}) | {r['unfold_all_ms']} ms ({r['unfold_all_boxes']}) "
            f"| {r['drawing_px'][0]} x {r['drawing_px'][1]} |"
        )
    if any(r["console_errors"] for r in rows):
        lines.append("\nConsole errors: " + "; ".join(f"{r['arch']}: {r['console_errors']}" for r in rows if r["console_errors"]))
    else:
        lines.append("\nNo page logged a console error.")
    print(save("html_diagram", rows, "\n".join(lines)))


if __name__ == "__main__":
    main()
