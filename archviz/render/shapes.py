"""The `shapes` view of a trace: one row per block at a chosen depth, then parameter totals."""

from __future__ import annotations

from typing import Any

from archviz.render import Format
from archviz.render.tables import human, render_rows
from archviz.shape import format_shape
from archviz.trace.record import Trace


def shapes_report(trace: Trace, depth: int = 1) -> dict[str, Any]:
    """The JSON contract of `archviz shapes` (stable: other tools read it)."""
    return {
        "arch": trace.arch,
        "input_shape": list(trace.input_shape),
        "output_shape": list(trace.output_shape),
        "depth": depth,
        "blocks": [
            {
                "name": n.path,
                "type": n.type,
                "depth": n.depth,
                "output_shape": list(n.output_shape),
                "params": n.params,
                "trainable_params": n.trainable_params,
            }
            for n in trace.blocks(depth)
        ],
        "total_params": trace.total_params,
        "trainable_params": trace.trainable_params,
        "non_trainable_params": trace.non_trainable_params,
    }


def render_shapes(trace: Trace, depth: int = 1, fmt: Format = Format.table) -> str:
    report = shapes_report(trace, depth)
    if fmt is Format.table:
        # The table shows the enclosing blocks too, indented like a tree (as torchinfo does);
        # JSON and CSV list only the blocks at ``depth``, so their params add up to the total.
        rows = [
            {"name": "  " * (n.depth - 1) + n.name, "type": n.type, "output_shape": n.output_shape, "params": n.params}
            for n in trace.nodes
            if 1 <= n.depth <= depth
        ]
    else:
        rows = report["blocks"]
    columns = [("name", "Name"), ("type", "Type"), ("output_shape", "Output shape"), ("params", "Params")]
    footer = [
        ("Input", format_shape(trace.input_shape)),
        ("Total params", human(trace.total_params)),
        ("Trainable params", human(trace.trainable_params)),
        ("Non-trainable params", human(trace.non_trainable_params)),
    ]
    title = f"{trace.arch} @ {format_shape(trace.input_shape)}"
    return render_rows(rows, columns, fmt, title=title, footer=footer, payload=report)
