"""`archviz list`: the built-in architectures."""

from __future__ import annotations

from typing import Annotated

import typer

from archviz import zoo
from archviz.arch import load_arch
from archviz.cli.app import command
from archviz.cli.options import FormatOpt
from archviz.render import Format
from archviz.render.tables import render_rows
from archviz.shape import format_shape


def builtin_rows(pattern: str = "*") -> list[dict]:
    rows = []
    for name in zoo.list_models(pattern):
        arch = load_arch(name)
        trace = arch.trace()
        rows.append(
            {
                "name": name,
                "default_input": list(arch.default_input),
                "params": trace.total_params,
                "output_shape": list(trace.output_shape),
                "description": arch.description,
            }
        )
    return rows


@command("list", ["archviz list", "archviz list 'lenet*' --format json"])
def list_(
    pattern: Annotated[str, typer.Argument(help="Shell-style wildcard on the name.")] = "*",
    format: FormatOpt = Format.table,
) -> str:
    """List the built-in architectures with their default input and parameter count."""
    rows = builtin_rows(pattern)
    shown = [dict(r, default_input=format_shape(r["default_input"])) for r in rows]
    columns = [("name", "Name"), ("default_input", "Default input"), ("params", "Params"), ("description", "Description")]
    return render_rows(shown, columns, format, payload=rows)
