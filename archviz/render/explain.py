"""The `explain` views of a walkthrough: terminal text, Markdown, HTML (Jupyter) and JSON. Nothing here computes a number."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from archviz.choices import ExplainFormat
from archviz.estimate.units import format_bytes
from archviz.render import Format
from archviz.render.shapes import inputs_text
from archviz.render.tables import render_html as html_table
from archviz.render.tables import render_rows
from archviz.safe import printable
from archviz.shape import format_shape
from archviz.spec.ops import Formula

# The walkthrough's Explanation and Step (archviz/walkthrough.py) are read by attribute: that module
# renders itself through this one (__str__, _repr_html_), so importing it back would be a cycle.
Explanation = Step = Any


def render_explain(expl: Explanation, fmt: ExplainFormat | str = ExplainFormat.table) -> str:
    fmt = ExplainFormat(fmt)
    if fmt is ExplainFormat.json:
        return json.dumps(expl.to_dict(), indent=2)
    if fmt is ExplainFormat.markdown:
        return render_markdown(expl)
    return render_text(expl)


def _title(expl: Explanation) -> str:
    level = "top-level blocks" if expl.depth == 1 else f"blocks and layers to depth {expl.depth}"
    return f"{expl.trace.arch} @ {inputs_text(expl.trace.inputs)}: {len(expl.steps)} steps ({level})"


def _shape(shape: Any) -> str:
    return format_shape(shape) if shape is not None else "-"


def _heading(step: Step) -> str:
    inputs = ", ".join(_shape(s) for s in step.input_shapes) or "-"
    return f"{printable(step.name, newlines=False) or '(model)'} ({printable(step.type, newlines=False)}): {inputs} -> {_shape(step.output_shape)}"


def _value(f: Formula) -> str:
    return _shape(f.value) if isinstance(f.value, tuple) else f"{f.value:,}"


def _formula(f: Formula) -> str:
    return f"{f.what} = {f.text} = {_value(f)}"


def _receptive(step: Step) -> str:
    rf = step.receptive_field
    if rf is None:
        return "-"
    if rf.whole_input:
        return "all"
    jump = "x".join(map(str, rf.jump)) if rf.jump and len(set(rf.jump)) > 1 else str(rf.jump[0]) if rf.jump else "-"
    return f"{rf.text()} (j {jump})"


def _rows(expl: Explanation) -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            "type": s.type,
            "output_shape": s.output_shape,
            "params": s.params,
            "macs": s.macs,
            "activation": format_bytes(s.activation_bytes),
            "rf": _receptive(s),
        }
        for s in expl.steps
    ]


_COLUMNS = [
    ("name", "Name"),
    ("type", "Type"),
    ("output_shape", "Output shape"),
    ("params", "Params"),
    ("macs", "MACs"),
    ("activation", "Output bytes"),
    ("rf", "Receptive field"),
]


def _footer(expl: Explanation) -> list[tuple[str, str]]:
    return [("Total params", f"{expl.total_params:,}"), ("MACs", f"{expl.macs:,} (FLOPs = 2 x MACs = {expl.trace.flops:,})")]


def render_text(expl: Explanation) -> str:
    """The terminal view: each step with its arithmetic, the summary table, the conclusions."""
    lines = [printable(_title(expl), newlines=False), ""]
    width = len(str(len(expl.steps)))
    for i, step in enumerate(expl.steps, 1):
        lines.append(f"{i:>{width}}. {_heading(step)}")
        pad = " " * (width + 4)
        for f in step.formulas:
            lines.append(f"{pad}{printable(_formula(f), newlines=False)}" + (f"    [{f.rule}]" if f.rule else ""))
        if step.note:
            lines.append(f"{pad}{step.note}")
    lines.append("")
    lines.append(render_rows(_rows(expl), _COLUMNS, Format.table, title="Summary", footer=_footer(expl)))
    lines.append("")
    lines.append("Conclusions:")
    lines += [f"- {printable(c.text, newlines=False)}" for c in expl.conclusions]
    return "\n".join(lines)


def _md(text: str) -> str:
    """Text outside code spans: Markdown's emphasis marks (C_in, k*k) and table bars escaped."""
    text = printable(text, newlines=False).replace("`", "'")
    for ch in "\\|*_":
        text = text.replace(ch, "\\" + ch)
    return text


def render_markdown(expl: Explanation) -> str:
    lines = [f"## {_md(_title(expl))}", ""]
    for i, step in enumerate(expl.steps, 1):
        inputs = ", ".join(_shape(s) for s in step.input_shapes) or "-"
        lines.append(f"{i}. **{_md(step.name or '(model)')}** ({_md(step.type)}): {inputs} → {_shape(step.output_shape)}")
        for f in step.formulas:
            lines.append(f"   - {_md(f.what)}: `{f.text} = {_value(f)}`" + (f" ({_md(f.rule)})" if f.rule else ""))
        if step.note:
            lines.append(f"   - {_md(step.note)}")
    lines += ["", render_rows(_rows(expl), _COLUMNS, Format.markdown, title="Summary", footer=_footer(expl)), "", "**Conclusions**", ""]
    lines += [f"- {_md(c.text)}" for c in expl.conclusions]
    return "\n".join(lines)


def render_html(expl: Explanation) -> str:
    """HTML for Jupyter: an ordered list of steps with their formulas, the summary as a <table>, the conclusions."""
    items = []
    for step in expl.steps:
        parts = [f"<b>{escape(printable(step.name, newlines=False) or '(model)')}</b> ({escape(step.type)}): "]
        parts.append(escape(", ".join(_shape(s) for s in step.input_shapes) or "-") + " &rarr; " + escape(_shape(step.output_shape)))
        sub = [f"<li>{escape(f.what)}: <code>{escape(f'{f.text} = {_value(f)}')}</code>{_html_rule(f)}</li>" for f in step.formulas]
        if step.note:
            sub.append(f"<li>{escape(step.note)}</li>")
        items.append("<li>" + "".join(parts) + (f"<ul>{''.join(sub)}</ul>" if sub else "") + "</li>")
    table = html_table(_rows(expl), _COLUMNS, title="Summary", footer=_footer(expl))
    conclusions = "".join(f"<li>{escape(c.text)}</li>" for c in expl.conclusions)
    return f"<div><h4>{escape(_title(expl))}</h4><ol>{''.join(items)}</ol>{table}<p><b>Conclusions</b></p><ul>{conclusions}</ul></div>"


def _html_rule(f: Formula) -> str:
    return f" <i>({escape(f.rule)})</i>" if f.rule else ""
