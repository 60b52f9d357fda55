"""The interactive view of a trace: one self-contained, offline HTML page.

The page holds the trace as JSON (the module tree and the dataflow ``Trace.ops``) and a
small script that draws, in the browser, the same graph as ``render/dot.py``: every op is
mapped to its deepest collapsed enclosing block, edges inside one block disappear, and
identical consecutive blocks are folded ``x N`` (the runs are found by dot.py's own
``find_runs``). Blocks expand and collapse down to single layers, folded runs unfold,
cards show each block's numbers, search reveals layers by name or type.

Layout: each expanded block's interior is laid out on its own by dagre (vendored in
``assets/``, MIT), with its expanded children as boxes of their own laid-out size, the way
Google's Model Explorer composes a compound graph. Expanding a block re-lays out only that
block and its ancestors; the others come from a cache.

The numbers are those of ``archviz cost --format json``: ``Node.params``, ``Node.macs``,
activation bytes = elements of the output x 4 (fp32), receptive fields from
``archviz.estimate.receptive``. No memory simulation runs.
"""

from __future__ import annotations

import html
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

from archviz.errors import UsageError
from archviz.estimate.receptive import ReceptiveField, block_fields, receptive_fields
from archviz.files import html_mark
from archviz.render.dot import KIND_COLOURS, Direction
from archviz.render.graph import Run, composition, find_runs, shape_text, si
from archviz.safe import printable
from archviz.spec import ops as O
from archviz.trace.record import Trace
from archviz.version import __version__

GENERATOR = "archviz"
ELEMENT_BYTES = 4  # activations at fp32, as `archviz cost` reports them by default


def _asset(name: str) -> str:
    return resources.files("archviz.render").joinpath("assets", name).read_text(encoding="utf-8")


def _rf(field: ReceptiveField | None) -> dict[str, Any] | None:
    return None if field is None else {**field.to_dict(), "text": field.text()}


def _all_runs(trace: Trace) -> list[Run]:
    """Every folded run at every depth, outer runs first.

    ``find_runs`` skips blocks inside the later copies of a run (a folded diagram never
    draws them); the page can unfold a run, so the runs inside each copy are added, moved
    over from the first copy (the copies are identical all the way down).
    """
    runs = find_runs(trace, {n.path: n for n in trace.nodes}, max(trace.max_depth, 1))
    seen = {tuple(r.paths) for r in runs}
    i = 0
    while i < len(runs):
        outer = runs[i]
        first = outer.paths[0]
        for inner in list(runs):
            if not inner.paths[0].startswith(first + "."):
                continue
            for copy in outer.paths[1:]:
                moved = tuple(copy + p[len(first) :] for p in inner.paths)
                if moved not in seen:
                    seen.add(moved)
                    runs.append(Run(list(moved)))
        i += 1
    return runs


def page_data(trace: Trace, depth: int = 1, direction: Direction = Direction.TB, fold: bool = True, failed: tuple[str, str] | None = None) -> dict[str, Any]:
    """What the page shows, as plain data (the JSON embedded in it). ``failed``: the op id of the layer
    a forward failed in and the error (a partial page, drawn up to that layer)."""
    fields = receptive_fields(trace)
    at_block = block_fields(trace, fields)
    nodes = []
    for n in trace.nodes:
        op_kind = "module" if n.is_leaf else "block"
        nodes.append(
            {
                "path": n.path,
                "type": n.type,
                "depth": n.depth,
                "leaf": n.is_leaf,
                "kind": O.layer_kind(op_kind, n.type) if n.is_leaf else "block",
                "settings": O.label(n.type, n.attrs) if n.is_leaf else composition(trace, n.path),
                "inputs": [list(s) for s in n.input_shapes],
                "output": list(n.output_shape) if n.called else None,
                "params": n.params,
                "trainable": n.trainable_params,
                "macs": n.macs,
                "act": math.prod(n.output_shape) * ELEMENT_BYTES if n.called else 0,
                "rf": _rf(at_block.get(n.path)),
            }
        )
    shapes = {o.id: o.output_shape for o in trace.ops}
    dtypes = {f"input:{t.name}": t.dtype for t in trace.inputs} | ({"input": trace.inputs[0].dtype} if trace.inputs else {})
    ops = []
    for o in trace.ops:
        kind = "io" if o.kind in ("input", "output") else O.layer_kind(o.kind, o.type)
        ops.append(
            {
                "id": o.id,
                "op": o.kind,
                "type": o.type,
                "module": o.module,
                "kind": kind,
                "in": list(o.inputs),
                "inputs": [list(shapes[i]) for i in o.inputs],
                "output": list(o.output_shape),
                "macs": o.flops // 2,
                "act": math.prod(o.output_shape) * ELEMENT_BYTES,
                "rf": _rf(fields.get(o.id)),
                **({"dtype": dtypes[o.id]} if o.id in dtypes else {}),
            }
        )
    return {
        "arch": trace.arch,
        "facts": _facts(trace),
        "depth": depth,
        "direction": Direction(direction).value,
        "fold": fold,
        "colours": KIND_COLOURS,
        "nodes": nodes,
        "ops": ops,
        "runs": [r.paths for r in _all_runs(trace)],
        "generator": f"{GENERATOR} {__version__}",
        "failed": {"op": failed[0], "error": printable(failed[1], newlines=False)} if failed else None,
    }


def _facts(trace: Trace) -> str:
    """The subtitle the SVG has: input shape, params, MACs and FLOPs."""
    cost = f"{si(trace.flops // 2)}MACs ({si(trace.flops)}FLOPs)" if trace.flops else ""
    return " \u00b7 ".join(x for x in (f"input {shape_text(trace.input_shape)}", f"{trace.total_params:,} params", cost) if x)


def _json_for_script(data: Any) -> str:
    """JSON that cannot end its ``<script>`` element: ``<``, ``>`` and ``&`` are written as ``\\u`` escapes."""
    text = json.dumps(data, separators=(",", ":"))  # ASCII: a lone surrogate in a name cannot break the UTF-8 file
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def to_html(trace: Trace, depth: int = 1, direction: Direction = Direction.TB, fold: bool = True, failed: tuple[str, str] | None = None) -> str:
    """The interactive page of ``trace``, starting with blocks at ``depth`` expanded above it (``failed``: see page_data)."""
    if depth < 1:
        raise UsageError(f"--depth must be at least 1 (1 = top-level blocks), got {depth}.")
    data = page_data(trace, depth, direction, fold, failed)
    parts = {
        "GENERATOR": html.escape(data["generator"], quote=True),
        "MARK": html_mark(trace.arch),
        "TITLE": html.escape(printable(trace.arch, newlines=False)),
        "DAGRE_LICENSE": _asset("dagre.LICENSE").replace("*/", "* /"),
        "DAGRE": _asset("dagre.min.js").replace("</", "<\\/"),
        "APP": _asset("page.js"),
        "DATA": _json_for_script(data),
    }
    # One pass: a model named "{{DATA}}" is text, not a place to fill.
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: parts[m.group(1)], _asset("page.html"))


def iframe(page: str, height: int = 640) -> str:
    """``page`` inside an ``<iframe srcdoc>`` (for Jupyter: the page's scripts run isolated)."""
    return (
        f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{height}px;border:1px solid #ddd" '
        'sandbox="allow-scripts" title="archviz diagram"></iframe>'
    )


def save_html(
    trace: Trace, path: Path, depth: int = 1, direction: Direction = Direction.TB, fold: bool = True, force: bool = False, failed: tuple[str, str] | None = None
) -> Path:
    """Write the page atomically; a file archviz did not write is kept unless ``force``."""
    from archviz.files import graphviz_output_of, refuse_overwrite, write_atomic
    from archviz.render.graphviz import check_writable

    check_writable(path)
    refuse_overwrite(path, graphviz_output_of(trace.arch), force)
    write_atomic(path, to_html(trace, depth, direction, fold, failed).encode("utf-8"))
    return path
