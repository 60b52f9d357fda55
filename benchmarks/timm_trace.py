"""Does every timm family trace? One model per timm module (the first name in sorted order), built
without weights and traced on the meta device, as `archviz shapes timm:create_model -p model_name=X`.

Each row: traced (with its params and FLOPs and any 'Not counted' entries), or the one sentence
archviz gave (a RunError/UsageError naming the layer or op), or an unexpected exception (a bug).
Usage: python benchmarks/timm_trace.py [--budget-s 480] [--per-model-s 60]
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import save  # noqa: E402


class _Slow(Exception):
    pass


def _alarm(signum, frame):
    raise _Slow


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget-s", type=float, default=480)
    parser.add_argument("--per-model-s", type=int, default=60)
    args = parser.parse_args()
    import timm

    from archviz.arch import load_arch
    from archviz.errors import ArchvizError
    from archviz.estimate.flops import uncounted_ops

    names = []
    for module in sorted(timm.list_modules()):
        found = sorted(timm.list_models(module=module))
        if found:
            names.append((module, found[0]))
    signal.signal(signal.SIGALRM, _alarm)
    rows, start = [], time.monotonic()
    for module, name in names:
        if time.monotonic() - start > args.budget_s:
            rows.append({"module": module, "model": name, "result": "not run (budget)"})
            continue
        t0 = time.monotonic()
        signal.alarm(args.per_model_s)
        try:
            trace = load_arch("timm:create_model", [f"model_name={name}"]).trace()
            listed = uncounted_ops(trace)
            row = {"result": "traced", "params": trace.total_params, "gflops": round(trace.flops / 1e9, 3), "not_counted": listed}
        except ArchvizError as exc:
            row = {"result": "one sentence", "message": str(exc)}
        except _Slow:
            row = {"result": f"slower than {args.per_model_s} s (not judged)"}
        except Exception as exc:  # a traceback a user would see: a bug
            row = {"result": "UNEXPECTED", "message": f"{type(exc).__name__}: {exc}"[:300]}
        finally:
            signal.alarm(0)
        rows.append({"module": module, "model": name, **row, "seconds": round(time.monotonic() - t0, 1)})
        print(module, name, row["result"], flush=True)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["result"]] = counts.get(r["result"], 0) + 1
    lines = ["| timm module | model | result | params | GFLOPs | not counted / message |", "|---|---|---|---|---|---|"]
    for r in rows:
        detail = ", ".join(r.get("not_counted", [])) or r.get("message", "")
        lines.append(f"| {r['module']} | {r['model']} | {r['result']} | {r.get('params', '')} | {r.get('gflops', '')} | {detail[:200]} |")
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    note = "Machine shared with other engineers' jobs (2 cores): timings are not benchmarks."
    save("timm_trace", rows, f"{summary}\n\n{note}\n\n" + "\n".join(lines), {"timm": timm.__version__})


if __name__ == "__main__":
    main()
