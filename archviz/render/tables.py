"""Generic rendering of rows (lists of dicts) as a rich table, CSV, Markdown or JSON."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

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
    plain = _plain_table(rows, cells, columns, title, footer)
    if plain is not None:
        return plain
    return _rich_table(rows, cells, columns, title, footer)


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


def _rich_table(rows, cells, columns, title, footer) -> str:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Text objects, never markup strings: a layer named "[red]x[/red]" or "[/bold]" prints as written.
    table = Table(title=Text(printable(title, newlines=False)) if title else None, title_justify="left", header_style="bold")
    for key, heading in columns:
        table.add_column(Text(heading), justify="right" if _numeric(rows, key) else "left", no_wrap=True)
    for row in cells:
        table.add_row(*(Text(c) for c in row))
    # force_jupyter=False: inside a Jupyter kernel rich would otherwise send every line to the
    # notebook as a display_data output, whatever file it was given (issue 17).
    console = Console(width=200, record=True, file=io.StringIO(), force_terminal=False, force_jupyter=False, color_system=None)
    console.print(table)
    for label, text in footer:
        # soft_wrap: a long footer line stays one line (a terminal wraps it; a file or pipe keeps it whole), as in _plain_table.
        console.print(Text(f"{label}: {printable(text, newlines=False)}"), highlight=False, soft_wrap=True)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


_WIDTH = 200  # the console width _rich_table renders at
_TAG = re.compile(r"\[[a-z#/@][^[]*?\]")  # what rich could read as markup


def _plain_table(rows, cells, columns, title, footer) -> str | None:
    """Exactly the text _rich_table gives, drawn directly: rich spends about a millisecond a row
    measuring cells, which is minutes for a 100k-layer spec. None (use rich) unless every cell is
    printable ASCII without anything markup-like and the table fits the width unwrapped."""
    headers = [heading for _, heading in columns]
    texts = [*headers, *(c for row in cells for c in row), title, *(f"{label}: {text}" for label, text in footer)]
    if not cells or not all(t.isascii() and t.isprintable() and not _TAG.search(t) for t in texts):
        return None
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    total = sum(widths) + 3 * len(widths) + 1
    if total > _WIDTH or len(title) > total or any(len(f"{label}: {text}") > _WIDTH for label, text in footer):
        return None
    right = [_numeric(rows, key) for key, _ in columns]

    def rule(left: str, fill: str, cross: str, end: str) -> str:
        return left + cross.join(fill * (w + 2) for w in widths) + end

    def line(values: list[str], bar: str) -> str:
        padded = (v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True))
        return (bar + bar.join(f" {v} " for v in padded) + bar).rstrip()

    lines = [title] if title else []
    lines += [rule("\u250f", "\u2501", "\u2533", "\u2513"), line(headers, "\u2503"), rule("\u2521", "\u2501", "\u2547", "\u2529")]
    lines += [line(row, "\u2502") for row in cells]
    lines.append(rule("\u2514", "\u2500", "\u2534", "\u2518"))
    lines += [f"{label}: {text}".rstrip() for label, text in footer]
    return "\n".join(lines)


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
