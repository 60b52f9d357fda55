"""Generic rendering of rows (lists of dicts) as a rich table, CSV, Markdown or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from archviz.render import Format


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
        lines = [f"**{title}**", ""] if title else []
        lines.append("| " + " | ".join(h for _, h in columns) + " |")
        lines.append("|" + "|".join("---:" if _numeric(rows, k) else "---" for k, _ in columns) + "|")
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        if footer:
            lines.append("")
            lines += [f"- {label}: {text}" for label, text in footer]
        return "\n".join(lines)
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
    return str(value)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return "x".join(str(v) for v in value)
    return "" if value is None else value


def _rich_table(rows, cells, columns, title, footer) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None, title_justify="left", header_style="bold")
    for key, heading in columns:
        table.add_column(heading, justify="right" if _numeric(rows, key) else "left", no_wrap=True)
    for row in cells:
        table.add_row(*row)
    console = Console(width=200, record=True, file=io.StringIO(), force_terminal=False, color_system=None)
    console.print(table)
    for label, text in footer:
        console.print(f"{label}: {text}", highlight=False)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())
