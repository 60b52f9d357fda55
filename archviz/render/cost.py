"""The `cost` and `compare` views: tables of a cost report. Nothing here computes a number."""

from __future__ import annotations

from typing import Any

from archviz.cost.units import format_bytes
from archviz.render import Format
from archviz.render.tables import human, render_html, render_rows
from archviz.shape import format_shape

_CATEGORY_ORDER = ("params", "buffers", "grads", "optimizer", "activations", "temporaries", "input")


def _rf(rf: dict[str, Any] | None) -> tuple[str, str]:
    if rf is None:
        return "?", "?"
    if rf["whole_input"]:
        return "all", "-"
    size, jump = rf["size"], rf["jump"]  # one entry per spatial axis (1, 2 or 3)
    return (str(size[0]) if len(set(size)) == 1 else "x".join(map(str, size))), (str(jump[0]) if len(set(jump)) == 1 else "x".join(map(str, jump)))


def render_cost(report: dict[str, Any], fmt: Format = Format.table, *, html: bool = False) -> str:
    """Table, CSV or Markdown of a cost report; JSON is the report itself; ``html``: an HTML table, for Jupyter."""
    table = fmt is Format.table or html
    rows = []
    for b in report["blocks"]:
        size, jump = _rf(b["receptive_field"])
        rows.append(
            dict(
                b,
                name=("  " * (b["depth"] - 1)) + b["name"] if table else b["name"],
                activation=format_bytes(b["activation_bytes"]) if table or fmt is Format.markdown else b["activation_bytes"],
                kept=format_bytes(b["kept_bytes"]) if table or fmt is Format.markdown else b["kept_bytes"],
                rf_size=size,
                rf_jump=jump,
            )
        )
    columns = [
        ("name", "Name"),
        ("type", "Type"),
        ("output_shape", "Output shape"),
        ("params", "Params"),
        ("macs", "MACs"),
        ("activation", "Output bytes"),
        ("kept", "Kept for backward"),
        ("rf_size", "RF"),
        ("rf_jump", "RF jump"),
    ]
    m = report["memory"]
    precision = f"fp32 weights, {'fp16' if m['dtype'] == 'fp16' else 'bf16'} autocast" if m["amp"] else m["dtype"]
    settings = f"{m['mode']}, {m['optimizer']}, {precision}, {m['device']}, batch {m['batch']}"
    breakdown = " + ".join(f"{k} {format_bytes(m['peak_breakdown'][k])}" for k in _CATEGORY_ORDER if m["peak_breakdown"].get(k))
    footer = [
        ("Input", f"{_tensors(report, 'inputs', report['input_shape'])} -> output {_tensors(report, 'outputs', report['output_shape'])}"),
        ("Params", f"{human(report['total_params'])} (trainable {human(report['trainable_params'])})"),
        ("Forward", f"{human(report['macs'])} MACs = {human(report['flops'])} FLOPs (FLOPs = 2 x MACs)"),
        ("Training", f"{human(report['training_flops_per_image'])} FLOPs per image (forward + backward = 3 x forward)"),
        ("Memory", settings),
        ("Peak", f"{format_bytes(m['peak_bytes'])} ({human(m['peak_bytes'])} bytes), in {m['peak_phase']}: {breakdown}"),
        (
            "Totals",
            f"params {format_bytes(m['params_bytes'])}, grads {format_bytes(m['grads_bytes'])}, optimizer {format_bytes(m['optimizer_bytes'])}, "
            f"kept for backward {format_bytes(m['activations_bytes'])}, largest temporary {format_bytes(m['largest_temporary_bytes'])}, "
            f"input {format_bytes(m['input_bytes'])}",
        ),
        ("Eval forward peak", format_bytes(m["inference_peak_bytes"])),
        ("Step", m["step"]),
        ("Loss", m["loss"]),
        ("Kernel scratch at the peak", f"{format_bytes(m['kernel_scratch_bytes'])} ({m['kernel_rules']})"),
    ]
    budget = report.get("budget")
    if budget:
        if budget["largest_batch"] is not None:
            text = f"largest batch {human(budget['largest_batch'])} (predicted peak {format_bytes(budget['peak_bytes'])})"
        else:
            text = f"batch 1 does not fit: it needs {format_bytes(budget['batch1_peak_bytes'])}"
        footer.append((f"Budget {format_bytes(budget['budget_bytes'])}", text))
    rf = report.get("receptive_field")
    if rf is not None and not rf["whole_input"]:
        footer.append(("Receptive field at the output", f"{_rf(rf)[0]} pixels, jump {_rf(rf)[1]}"))
    footer.append(("Not counted (no FLOP rule)", ", ".join(report["uncounted_ops"]) or "none"))
    if report.get("receptive_field_unknown"):
        footer.append(("Receptive field unknown after", ", ".join(report["receptive_field_unknown"])))
    title = f"{report['arch']} @ {_tensors(report, 'inputs', report['input_shape'])}"
    if html:
        return render_html(rows, columns, title=title, footer=footer, exact={"activation": "activation_bytes", "kept": "kept_bytes"})
    return render_rows(rows, columns, fmt, title=title, footer=footer, payload=report)


def render_compare(report: dict[str, Any], fmt: Format = Format.table) -> str:
    numbers = fmt in (Format.csv, Format.json)
    rows = [
        dict(
            r,
            arch=r["arch"],  # shown literally (render_rows passes rich Text, never markup)
            input=_tensors(r, "inputs", r["input_shape"]),
            peak=r["peak_bytes"] if numbers else "n/a" if r["peak_bytes"] is None else format_bytes(r["peak_bytes"]),
            smallest=format_shape(r["smallest_input"]) if r["smallest_input"] else "-",
        )
        for r in report["archs"]
    ]
    columns = [
        ("arch", "Architecture"),
        ("input", "Input"),
        ("total_params", "Params"),
        ("macs", "MACs"),
        ("training_flops_per_image", "Train FLOPs/image"),
        ("peak", "Train peak"),
        ("output_shape", "Output shape"),
        ("smallest", "Smallest input"),
    ]
    footer = [
        ("Train peak", f"predicted peak of a training step at the input's batch size ({report['optimizer']}, fp32, {report['device']})"),
        ("MACs", "forward multiply-accumulates per batch; Train FLOPs/image = 3 x forward FLOPs per image (FLOPs = 2 x MACs)"),
    ]
    footer += [(f"Train peak of {r['arch']}", f"n/a because {r['peak_note']}") for r in report["archs"] if r.get("peak_note")]
    return render_rows(rows, columns, fmt, footer=footer, payload=report)


def _tensors(report: dict[str, Any], key: str, shape: Any) -> str:
    """Every input (or output) as ``2x8, 2x6:int64``; the one shape when the report has no list (issue 9)."""
    tensors = report.get(key)
    if not tensors:
        return format_shape(shape)
    return ", ".join(format_shape(t["shape"]) + ("" if t["dtype"] == "float32" else f":{t['dtype']}") for t in tensors)
