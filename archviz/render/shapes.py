"""The `shapes` view of a trace: one row per block at a chosen depth, then parameter totals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archviz.render import Format
from archviz.render.tables import human, render_html, render_rows
from archviz.shape import format_shape
from archviz.trace.record import TensorInfo, Trace


def shapes_report(trace: Trace, depth: int = 1) -> dict[str, Any]:
    """The JSON contract of `archviz shapes` (stable: other tools read it).

    ``input_shape``/``output_shape`` are the first input's and the only output's shape
    (``output_shape`` is null when the model returns several tensors); ``inputs`` and
    ``outputs`` list every one with its name and dtype. A block the forward never called
    (a ModuleList, an unused head) has ``called: false`` and ``output_shape: null``.
    """
    return {
        "arch": trace.arch,
        "title": trace.display_name,  # what tables and diagrams call it (a callable's display name, or --title)
        "input_shape": list(trace.input_shape),
        "output_shape": list(trace.outputs[0].shape) if len(trace.outputs) == 1 else None,
        "inputs": [i.to_dict() for i in trace.inputs],
        "outputs": [o.to_dict() for o in trace.outputs],
        "depth": depth,
        "blocks": [
            {
                "name": n.path,
                "type": n.type,
                "depth": n.depth,
                "output_shape": list(n.output_shape) if n.called else None,
                "params": n.params,
                "trainable_params": n.trainable_params,
                "called": n.called,
            }
            for n in trace.blocks(depth)
        ],
        "total_params": trace.total_params,
        "trainable_params": trace.trainable_params,
        "non_trainable_params": trace.non_trainable_params,
    }


def render_shapes(trace: Trace, depth: int = 1, fmt: Format = Format.table, *, html: bool = False) -> str:
    """The `shapes` table (or JSON, CSV, Markdown); ``html``: the table as HTML, for Jupyter."""
    report = shapes_report(trace, depth)
    if fmt is Format.table or html:
        # The table shows the enclosing blocks too, indented like a tree (as torchinfo does);
        # JSON and CSV list only the blocks at ``depth``, so their params add up to the total.
        rows = [
            {"name": "  " * (n.depth - 1) + n.name, "type": n.type, "output_shape": n.output_shape if n.called else None, "params": n.params}
            for n in trace.nodes
            if 1 <= n.depth <= depth
        ]
    else:
        rows = report["blocks"]
    columns = [("name", "Name"), ("type", "Type"), ("output_shape", "Output shape"), ("params", "Params")]
    footer = [
        io_line("Input", trace.inputs),
        io_line("Output", trace.outputs),
        ("Total params", human(trace.total_params)),
        ("Trainable params", human(trace.trainable_params)),
        ("Non-trainable params", human(trace.non_trainable_params)),
    ]
    title = f"{trace.display_name} @ {inputs_text(trace.inputs)}"
    if html:
        return render_html(rows, columns, title=title, footer=footer)
    return render_rows(rows, columns, fmt, title=title, footer=footer, payload=report)


def _tensor_text(t: TensorInfo) -> str:
    return format_shape(t.shape) + ("" if t.dtype == "float32" else f":{t.dtype}")


def inputs_text(inputs: Sequence[TensorInfo]) -> str:
    """``1x3x224x224``; ``1x3x128x128, 1x3x128x128`` for several; dtype shown unless float32."""
    return ", ".join(_tensor_text(t) for t in inputs)


def io_line(label: str, tensors: Sequence[TensorInfo]) -> tuple[str, str]:
    """``("Input", "1x1x28x28")``, or ``("Outputs", "out 1x21x520x520, aux 1x21x520x520")`` for several, named."""
    if len(tensors) == 1:
        return label, _tensor_text(tensors[0])
    return f"{label}s", ", ".join(f"{t.name} {_tensor_text(t)}" for t in tensors) if tensors else "none"
