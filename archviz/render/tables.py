"""Generic rendering of rows (lists of dicts) as a box table, CSV, Markdown or JSON."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rich.cells import cell_len

from archviz.render import Format
from archviz.safe import printable


def human(n: int | float) -> str:
    """12345678 -> '12,345,678'; keeps exact counts readable."""
    return f"{n:,}" if isinstance(n, int) else f"{n:,.3g}"


def shape_text(shape: Sequence[int] | None) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]" if shape is not None else "-"


def render_rows(
    rows: list[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    fmt: Format,
    *,
    title: str = "",
    footer: Sequence[tuple[str, str]] = (),
    payload: Mapping[str, Any] | None = None,
) -> str:
    """``columns`` maps row keys to headings; ``footer`` is (label, text) lines under the table.

    JSON ignores columns and prints ``payload`` (the stable machine-readable contract).
    """
    if fmt is Format.json:
        return json.dumps(payload if payload is not None else rows, indent=2)
    if fmt is Format.csv:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([key for key, _ in columns])
        for row in rows:
            writer.writerow([_csv_cell(row.get(key)) for key, _ in columns])
        return buf.getvalue().rstrip("\n")
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    if fmt is Format.markdown:
        lines = [f"**{_md(printable(title, newlines=False))}**", ""] if title else []
        lines.append("| " + " | ".join(_md(h) for _, h in columns) + " |")
        lines.append("|" + "|".join("---:" if _numeric(rows, k) else "---" for k, _ in columns) + "|")
        lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in cells]
        if footer:
            lines.append("")
            lines += [f"- {_md(label)}: {_md(printable(text, newlines=False))}" for label, text in footer]
        return "\n".join(lines)
    return _box_table(rows, cells, columns, title, footer)


def _numeric(rows: list[dict[str, Any]], key: str) -> bool:
    return any(isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool) for r in rows)


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    if isinstance(value, int | float):
        return human(value)
    if isinstance(value, list | tuple):
        return shape_text(value)
    return printable(value, newlines=False)  # names come from specs and models: no escapes (archviz/safe.py)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return "x".join(str(v) for v in value)
    if isinstance(value, str):
        return csv_safe(printable(value, newlines=False))
    return "" if value is None else value


def csv_safe(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet executes: a leading ``= + - @``, tab or CR gets a ``'``
    (OWASP's CSV-injection advice; issue 20: a layer named ``=cmd|' /C calc'!A0``). Numbers and a
    lone ``-`` pass as they are."""
    if text.startswith(_FORMULA_START) and text != "-" and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def _md(text: str) -> str:
    """A Markdown table cell: HTML inert (``<script>`` shows as text), pipes escaped."""
    return html.escape(text, quote=False).replace("|", "\\|")


def _box_table(rows, cells, columns, title, footer) -> str:
    """The terminal table, drawn line by line in rich's ``HEAVY_HEAD`` box (the look this project had when rich drew
    it; rich spends about a millisecond a row measuring cells, minutes for a 100k-layer spec).

    Text is drawn as written, never read as markup: a layer named ``[red]x[/red]`` shows as that. Widths are
    terminal cells (``rich.cells.cell_len``: a CJK character takes two). Nothing is cut or wrapped, however wide:
    a file or pipe gets every name and number whole (rich at 200 columns turned them into ``…``), and a terminal
    wraps or, under ``less -S``, scrolls. Lines carry no trailing spaces.
    """
    headers = [heading for _, heading in columns]
    widths = [max([_cells(h), *(_cells(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    right = [_numeric(rows, key) for key, _ in columns]

    def rule(left: str, fill: str, cross: str, end: str) -> str:
        return left + cross.join(fill * (w + 2) for w in widths) + end

    def line(values: list[str], bar: str) -> str:
        pads = (" " * (w - _cells(v)) for v, w in zip(values, widths, strict=True))
        return bar + bar.join(f" {p}{v} " if r else f" {v}{p} " for v, p, r in zip(values, pads, right, strict=True)) + bar

    lines = [printable(title, newlines=False).rstrip()] if title else []
    lines += [rule("\u250f", "\u2501", "\u2533", "\u2513"), line(headers, "\u2503"), rule("\u2521", "\u2501", "\u2547", "\u2529")]
    lines += [line(row, "\u2502") for row in cells]
    lines.append(rule("\u2514", "\u2500", "\u2534", "\u2518"))
    lines += [f"{label}: {printable(text, newlines=False)}".rstrip() for label, text in footer]
    return "\n".join(lines)


def _cells(text: str) -> int:
    # cells come through printable(): ASCII ones are one column a character, and len() is ten times cell_len's cost
    return len(text) if text.isascii() else cell_len(text)


def render_html(
    rows: list[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    *,
    title: str = "",
    footer: Sequence[tuple[str, str]] = (),
    exact: Mapping[str, str] | None = None,
) -> str:
    """An HTML table for Jupyter (``_repr_html_``): the same cells as the text table.

    ``exact`` maps a column shown rounded (``64.0 KiB``) to the row key of its exact count, given as the cell's
    ``title`` (``65,536 bytes``), so a reader can hover for the number ``to_dict()`` holds.
    """
    from html import escape

    exact = exact or {}

    def td(r: dict[str, Any], k: str) -> str:
        hint = f" title='{human(r[exact[k]])} bytes'" if k in exact and isinstance(r.get(exact[k]), int) else ""
        return f"<td style='text-align:{'right' if _numeric(rows, k) else 'left'}'{hint}>{_html_cell(r.get(k))}</td>"

    head = "".join(f"<th style='text-align:{'right' if _numeric(rows, k) else 'left'}'>{escape(h)}</th>" for k, h in columns)
    body = "".join("<tr>" + "".join(td(r, k) for k, _ in columns) + "</tr>" for r in rows)
    caption = f"<caption style='text-align:left'><b>{escape(title)}</b></caption>" if title else ""
    notes = "".join(f"{escape(label)}: {escape(text)}<br/>" for label, text in footer)
    return f"<div><table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table><p>{notes}</p></div>"


def _html_cell(value: Any) -> str:
    from html import escape

    text = _cell(value)
    indent = len(text) - len(text.lstrip(" "))
    return "&nbsp;" * indent + escape(text.lstrip(" "))  # the tree's indentation survives HTML's whitespace rules
