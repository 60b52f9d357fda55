"""`archviz gallery`: regenerate the diagrams and tables of every built-in, for docs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from archviz.cli.app import command
from archviz.gallery import DEFAULT_DIR, write_gallery


@command("gallery", ["archviz gallery", "archviz gallery docs/img"])
def gallery(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Where to write the SVGs and README.md.")] = DEFAULT_DIR,
    force: Annotated[bool, typer.Option("--force", help="Replace files in DIR that archviz did not write (a README.md of yours, say).")] = False,
) -> str:
    """Write a block-level and a detailed SVG of every built-in, plus a README.md with its shape table, params and MACs."""
    written = write_gallery(directory, force=force)
    return f"wrote {len(written)} files to {directory}/"
