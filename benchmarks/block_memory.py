"""Do `archviz cost`'s per-block memory columns add up to the peak, and is that peak a measured one?

For each row: the predicted peak of the training step (archviz.estimate.report.cost_report), the
sum of the per-block "At peak" column without and with the (rest) row, the largest block, and
the measured peak of the same step run for real on this CPU (archviz.estimate.measure). Targets:
blocks alone within 0.5% of the predicted peak, blocks + (rest) exactly the peak, predicted
within 3% of measured.

    python benchmarks/block_memory.py

Results go to benchmarks/results/block_memory_cpu.{md,json}.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import save  # noqa: E402

ROWS = [  # small batches: a loaded 2-core CPU measures each in seconds
    ("lenet", (64, 1, 28, 28), "adam"),
    ("alexnet", (2, 1, 224, 224), "sgd"),
    ("nin", (2, 1, 224, 224), "adam"),
    ("googlenet", (4, 1, 96, 96), "momentum"),
    ("resnet18", (8, 1, 96, 96), "adam"),
    ("densenet", (8, 1, 96, 96), "sgd"),
    ("torchvision:resnet18", (4, 3, 96, 96), "adamw"),
    ("torchvision:mobilenet_v2", (4, 3, 96, 96), "adam"),
]


def main() -> None:
    from archviz.arch import load_arch
    from archviz.estimate.measure import measure_training_peak
    from archviz.estimate.report import cost_report
    from archviz.estimate.settings import StepSettings

    rows = []
    for name, shape, optimizer in ROWS:
        start = time.perf_counter()
        arch = load_arch(name)
        r = cost_report(arch, shape, StepSettings.parse(optimizer)).to_dict()
        peak = r["memory"]["peak_bytes"]
        blocks = sum(b["memory"]["peak_share_bytes"] for b in r["blocks"])
        top = max(r["blocks"], key=lambda b: b["memory"]["peak_share_bytes"])
        measured = measure_training_peak(arch, shape, StepSettings.parse(optimizer)).peak_bytes
        rows.append(
            {
                "model": name,
                "input": "x".join(map(str, shape)),
                "optimizer": optimizer,
                "peak_bytes": peak,
                "blocks_bytes": blocks,
                "rest_bytes": r["memory_remainder"]["bytes"],
                "blocks_vs_peak_pct": round(100 * (blocks - peak) / peak, 3),
                "blocks_plus_rest_equals_peak": blocks + r["memory_remainder"]["bytes"] == peak,
                "largest_block": f"{top['name']} ({top['memory']['peak_percent']}%)",
                "measured_bytes": measured,
                "predicted_vs_measured_pct": round(100 * (peak - measured) / measured, 2),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(rows[-1], flush=True)
    head = "| model | input | optimizer | predicted peak | blocks | rest | blocks vs peak | blocks + rest = peak | largest block | measured | vs measured |"
    lines = [head, "|---|---|---|---:|---:|---:|---:|---|---|---:|---:|"]
    for x in rows:
        lines.append(
            f"| {x['model']} | {x['input']} | {x['optimizer']} | {x['peak_bytes']:,} | {x['blocks_bytes']:,} | {x['rest_bytes']:,} | "
            f"{x['blocks_vs_peak_pct']}% | {x['blocks_plus_rest_equals_peak']} | {x['largest_block']} | "
            f"{x['measured_bytes']:,} | {x['predicted_vs_measured_pct']}% |"
        )
    note = "The machine was shared with other engineers' jobs (2 cores): timings are not benchmarks, the bytes are."
    print(save("block_memory_cpu", rows, note + "\n\n" + "\n".join(lines)))


if __name__ == "__main__":
    main()
