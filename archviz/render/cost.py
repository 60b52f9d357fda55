"""The `cost` and `compare` views: tables of a cost report. Nothing here computes a number."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from archviz.choices import Mode
from archviz.estimate.blocks import MEMORY_KEYS, REMAINDER_TEXT
from archviz.estimate.units import format_bytes
from archviz.render import Format
from archviz.render.tables import human, render_html, render_rows
from archviz.shape import format_shape

if TYPE_CHECKING:
    from archviz.estimate.blocks import KindCost, Remainder
    from archviz.estimate.receptive import ReceptiveField
    from archviz.estimate.report import BlockCost, Comparison, CostReport
    from archviz.estimate.sweep import SweepReport, SweepRow
    from archviz.trace.record import TensorInfo

_CATEGORY_ORDER = ("params", "buffers", "grads", "optimizer", "activations", "temporaries", "input")


def _rf(rf: ReceptiveField | None) -> tuple[str, str]:
    if rf is None:
        return "?", "?"
    if rf.whole_input:
        return "all", "-"
    size, jump = rf.size, rf.jump or ()  # one entry per spatial axis (1, 2 or 3)
    return (str(size[0]) if len(set(size)) == 1 else "x".join(map(str, size))), (str(jump[0]) if len(set(jump)) == 1 else "x".join(map(str, jump)))


def render_cost(report: CostReport, fmt: Format = Format.table, by: str = "block", *, html: bool = False) -> str:
    """Table, CSV or Markdown of a cost report (``by``: "block" or "kind"); JSON is ``report.to_dict()``; ``html``: an HTML table, for Jupyter."""
    table = fmt is Format.table or html
    text = table or fmt is Format.markdown
    size = format_bytes if text else (lambda n: n)
    if by == "kind":
        rows = [dict(name=k.kind, params=k.params, macs=k.macs, **_memory_cells(k, size, text)) for k in report.by_kind]
        remainder, eval_remainder = report.by_kind_remainder, report.eval_by_kind_remainder
        columns = [("name", "Kind"), *_SHARES, *_memory_columns(report.settings.mode)]
    else:
        rows = [
            dict(
                name=("  " * (b.node.depth - 1)) + b.node.path if table else b.node.path,
                type=b.node.type,
                output_shape=list(b.node.output_shape) if b.node.called else None,
                params=b.node.params,
                macs=b.node.macs,
                **dict(zip(("rf_size", "rf_jump"), _rf(b.receptive_field), strict=True)),
                **_memory_cells(b, size, text),
            )
            for b in report.blocks
        ]
        remainder, eval_remainder = report.memory_remainder, report.eval_memory_remainder
        columns = [("name", "Name"), ("type", "Type"), ("output_shape", "Output shape"), *_SHARES, *_memory_columns(report.settings.mode)]
        columns += [("rf_size", "RF"), ("rf_jump", "RF jump")]
    rows.append(_rest_row(remainder, eval_remainder, size, text))
    title = f"{report.trace.display_name} @ {_tensors(report.trace.inputs)}" + (" by layer kind" if by == "kind" else "")
    footer = _footer(report, remainder, eval_remainder)
    if html:  # bytes shown rounded carry the exact count as the cell's title
        exact = {key.removesuffix("_bytes"): key for key in MEMORY_KEYS} | {"peak_share": "peak_share_bytes", "eval_share": "eval_share_bytes"}
        return render_html(rows, columns, title=title, footer=footer, exact=exact)
    return render_rows(rows, columns, fmt, title=title, footer=footer, payload=report.to_dict() if fmt is Format.json else None)


_SHARES = [("params", "Params"), ("params_pct", "Params %"), ("macs", "MACs"), ("macs_pct", "MACs %")]


def _pct(value: float | None, text: bool) -> Any:
    return (f"{value:.1f}%" if text else value) if value is not None else None


def _memory_columns(mode: Mode) -> list[tuple[str, str]]:
    """The memory at the peak: split by what it is, or (--mode both) train beside eval."""
    if mode is Mode.both:
        return [("peak_share", "Train at peak"), ("peak_pct", "Train %"), ("eval_share", "Eval at peak"), ("eval_pct", "Eval %")]
    split = [("weights", "Weights"), ("activations", "Activations"), ("temporaries", "Temporary")]
    if mode is not Mode.eval:
        split = [("weights", "Weights"), ("grads", "Grads"), ("optimizer", "Optimizer"), ("activations", "Kept"), ("temporaries", "Temporary")]
    return [*split, ("peak_share", "At peak"), ("peak_pct", "Peak %")]


def _memory_cells(row: BlockCost | KindCost, size: Any, text: bool) -> dict[str, Any]:
    m, e = row.memory, row.eval_memory
    cells = {key.removesuffix("_bytes"): size(getattr(m, key)) for key in MEMORY_KEYS} | {key: getattr(m, key) for key in MEMORY_KEYS}
    cells.update(params_pct=_pct(row.params_percent, text), macs_pct=_pct(row.macs_percent, text))
    cells.update(peak_share=size(m.peak_share_bytes), peak_share_bytes=m.peak_share_bytes, peak_pct=_pct(m.peak_percent, text))
    if e is not None:
        cells.update(eval_share=size(e.peak_share_bytes), eval_share_bytes=e.peak_share_bytes, eval_pct=_pct(e.peak_percent, text))
    return cells


def _rest_row(remainder: Remainder, eval_remainder: Remainder | None, size: Any, text: bool) -> dict[str, Any]:
    """The bytes at the peak no block made (input batch, loss, ...): blocks + this row = the peak."""
    row = {"name": "(rest)", "peak_share": size(remainder.bytes), "peak_share_bytes": remainder.bytes, "peak_pct": _pct(remainder.percent, text)}
    if eval_remainder is not None:
        row.update(eval_share=size(eval_remainder.bytes), eval_share_bytes=eval_remainder.bytes, eval_pct=_pct(eval_remainder.percent, text))
    return row


def _rest_text(remainder: Remainder) -> str:
    return " + ".join(f"{text} {format_bytes(getattr(remainder, k))}" for k, text in REMAINDER_TEXT.items() if getattr(remainder, k)) or "nothing"


def _footer(report: CostReport, remainder: Remainder, eval_remainder: Remainder | None) -> list[tuple[str, str]]:
    m, s, trace = report.memory, report.memory.settings, report.trace
    precision = f"fp32 weights, {'fp16' if s.dtype == 'fp16' else 'bf16'} autocast" if s.amp else s.dtype
    mode = "train and eval" if report.settings.mode is Mode.both else s.mode
    settings = f"{mode}, {s.optimizer}, {precision}, {s.device}, batch {m.batch}"
    breakdown = " + ".join(f"{k} {format_bytes(m.peak_breakdown[k])}" for k in _CATEGORY_ORDER if m.peak_breakdown.get(k))
    footer = [
        ("Input", f"{_tensors(trace.inputs)} -> output {_tensors(trace.outputs)}"),
        ("Params", f"{human(trace.total_params)} (trainable {human(trace.trainable_params)})"),
        ("Forward", f"{human(report.macs)} MACs = {human(trace.flops)} FLOPs (FLOPs = 2 x MACs)"),
        ("Training", f"{human(report.training_flops_per_image)} FLOPs per image (forward + backward = 3 x forward)"),
        ("Memory", settings),
        ("Peak", f"{format_bytes(m.peak_bytes)} ({human(m.peak_bytes)} bytes), in {m.peak_phase}: {breakdown}"),
        (
            "Totals",
            f"params {format_bytes(m.params_bytes)}, grads {format_bytes(m.grads_bytes)}, optimizer {format_bytes(m.optimizer_bytes)}, "
            f"kept for backward {format_bytes(m.activations_bytes)}, largest temporary {format_bytes(m.largest_temporary_bytes)}, "
            f"input {format_bytes(m.input_bytes)}",
        ),
        ("Eval forward peak", format_bytes(m.inference_peak_bytes)),
        ("At peak", "bytes alive at the peak by the block (or kind) that made them; the rows plus (rest) add up to the peak exactly"),
        ("Rest", _rest_text(remainder)),
    ]
    if eval_remainder is not None:
        footer.append(("Eval rest", _rest_text(eval_remainder)))
    footer += [("Step", m.step), ("Loss", report.loss), ("Kernel scratch at the peak", f"{format_bytes(m.kernel_scratch_bytes)} ({m.kernel_rules})")]
    budget = report.budget
    if budget:
        if budget.largest_batch is not None:
            text = f"largest batch {human(budget.largest_batch)} (predicted peak {format_bytes(budget.peak_bytes)})"
        else:
            text = f"batch 1 does not fit: it needs {format_bytes(budget.batch1_peak_bytes)}"
        footer.append((f"Budget {format_bytes(budget.budget_bytes)}", text))
    rf = report.receptive_field
    if rf is not None and not rf.whole_input:
        footer.append(("Receptive field at the output", f"{_rf(rf)[0]} pixels, jump {_rf(rf)[1]}"))
    footer.append(("Not counted (no FLOP rule)", ", ".join(report.uncounted_ops) or "none"))
    if report.receptive_field_unknown:
        footer.append(("Receptive field unknown after", ", ".join(report.receptive_field_unknown)))
    return footer


def render_compare(report: Comparison, fmt: Format = Format.table) -> str:
    numbers = fmt in (Format.csv, Format.json)
    rows = []
    for r in report.archs:  # the arch is shown literally (render_rows passes rich Text, never markup)
        peak = r.peak_bytes if numbers else "n/a" if r.peak_bytes is None else format_bytes(r.peak_bytes)
        rows.append(dict(vars(r), input=_tensors(r.inputs), peak=peak, smallest=format_shape(r.smallest_input) if r.smallest_input else "-"))
    columns = [("arch", "Architecture"), ("input", "Input"), ("total_params", "Params"), ("macs", "MACs"), ("training_flops_per_image", "Train FLOPs/image")]
    columns += [("peak", "Train peak"), ("output_shape", "Output shape"), ("smallest", "Smallest input")]
    footer = [
        ("Train peak", f"predicted peak of a training step at the input's batch size ({report.optimizer}, fp32, {report.device})"),
        ("MACs", "forward multiply-accumulates per batch; Train FLOPs/image = 3 x forward FLOPs per image (FLOPs = 2 x MACs)"),
    ]
    footer += [(f"Train peak of {r.arch}", f"n/a because {r.peak_note}") for r in report.archs if r.peak_note]
    return render_rows(rows, columns, fmt, footer=footer, payload=report.to_dict() if fmt is Format.json else None)


def _tensors(tensors: Iterable[TensorInfo]) -> str:
    """Every input (or output) as ``2x8, 2x6:int64``."""
    return ", ".join(format_shape(t.shape) + ("" if t.dtype == "float32" else f":{t.dtype}") for t in tensors)


SWEEP_MARK = "archviz cost sweep curve"  # in every curve archviz writes, so a rerun may replace its own file


def render_sweep(report: SweepReport, fmt: Format = Format.table) -> str:
    """One row per sweep point; a point that cannot run or does not fit says why in Note."""
    rows, columns, footer, title = _sweep_view(report, fmt in (Format.table, Format.markdown))
    return render_rows(rows, columns, fmt, title=title, footer=footer, payload=report.to_dict() if fmt is Format.json else None)


def render_sweep_html(report: SweepReport) -> str:
    """The sweep as an HTML table (Jupyter): the terminal table's cells, each peak's exact bytes as its title."""
    rows, columns, footer, title = _sweep_view(report, True)
    return render_html(rows, columns, title=title, footer=footer, exact={"train": "train_peak_bytes", "eval": "eval_peak_bytes"})


def _sweep_view(report: SweepReport, text: bool) -> tuple[list[dict[str, Any]], list[tuple[str, str]], list[tuple[str, str]], str]:
    size = format_bytes if text else (lambda n: n)
    notes: list[str] = []  # long reasons go under the table, once each, so the table stays narrow

    def note(reason: str) -> str:
        if not text or len(reason) <= 60:
            return reason
        if reason not in notes:
            notes.append(reason)
        return f"see note {notes.index(reason) + 1}"

    def peak(n: int | None) -> Any:
        return size(n) if n is not None or not text else "n/a"

    rows = [
        dict(vars(r), input=format_shape(r.input_shape), train=peak(r.train_peak_bytes), eval=peak(r.eval_peak_bytes), note=note(r.note)) for r in report.rows
    ]
    columns = [("batch", "Batch"), ("input", "Input"), ("params", "Params"), ("macs", "MACs"), ("train", "Train peak"), ("eval", "Eval peak")]
    if report.budget_bytes is not None:
        columns.append(("largest_batch", "Largest batch"))
    columns.append(("note", "Note"))
    precision = f"fp32 weights, {'fp16' if report.dtype == 'fp16' else 'bf16'} autocast" if report.amp else report.dtype
    footer = [
        ("Memory", f"predicted peak of a training step ({report.optimizer}, {precision}, {report.device}) and of an eval forward under no_grad"),
        ("MACs", "forward multiply-accumulates of the whole batch (FLOPs = 2 x MACs)"),
    ]
    if report.budget_bytes is not None:
        fits = f"the largest batch whose training step fits in {format_bytes(report.budget_bytes)} at that input size (0: not even one)"
        footer.append(("Largest batch", fits))
    footer += [(f"Note {i}", reason) for i, reason in enumerate(notes, 1)]
    return rows, columns, footer, f"{report.arch}: sweep over {' and '.join(report.swept) or 'nothing'}"


def sweep_curve_svg(report: SweepReport) -> str:
    """Peak memory against the batch size, one line per input size (train solid, eval dashed), and the budget."""
    from archviz.train.plot import COLOURS, Level, Series, line_chart_svg

    sizes: dict[str, list[SweepRow]] = {}
    for r in report.rows:
        sizes.setdefault(format_shape(r.input_shape[2:]), []).append(r)  # the spatial size: H x W
    series = []
    for i, (size, rows) in enumerate(sizes.items()):
        colour = COLOURS[i % len(COLOURS)]
        label = f" {size}" if len(sizes) > 1 else ""
        series.append(Series([(r.batch, r.train_peak_bytes) for r in rows if r.train_peak_bytes is not None], f"train{label}", colour))
        series.append(Series([(r.batch, r.eval_peak_bytes) for r in rows if r.eval_peak_bytes is not None], f"eval{label}", colour, "2,3"))
    budget = report.budget_bytes
    levels = [Level(budget, f"budget {format_bytes(budget)}")] if budget is not None else []
    values = [y for s in series for _, y in s.points] + [lv.value for lv in levels]
    batches = sorted({r.batch for r in report.rows})
    return line_chart_svg(
        series,
        title=f"{report.arch}: peak memory against batch size ({report.optimizer}, {report.device})",
        x_label="batch size",
        x_range=(0, batches[-1]),
        x_ticks=batches,
        y_max=max(values, default=1) * 1.08 or 1,
        y_text=format_bytes,
        levels=levels,
        comment=SWEEP_MARK,
        legend_width=150,
    )
