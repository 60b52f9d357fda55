"""Helpers shared by the benchmarks: machine description and result files."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def save(name: str, rows: list[dict], markdown: str, extra: dict | None = None) -> Path:
    """Write ``results/<name>.json`` and ``.md`` with machine, date and the command that made them."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "machine": machine(),
        **(extra or {}),
    }
    (RESULTS / f"{name}.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    head = "\n".join(f"- {k}: {v}" for k, v in meta.items() if k != "machine")
    head += "\n- machine: " + ", ".join(f"{k} {v}" for k, v in meta["machine"].items())
    path = RESULTS / f"{name}.md"
    path.write_text(f"# {name}\n\n{head}\n\n{markdown}\n")
    return path
