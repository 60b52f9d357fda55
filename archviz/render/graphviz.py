"""Running graphviz's ``dot`` program on DOT text, and the diagram files: formats, names, atomic writes."""

from __future__ import annotations

import re
import shutil
import subprocess
from enum import StrEnum
from pathlib import Path

from archviz.errors import RunError, UsageError
from archviz.files import write_atomic
from archviz.render.dot import PLAIN, Decoration, Direction, to_dot
from archviz.trace.record import Trace


class DiagramFormat(StrEnum):
    """What ``archviz diagram`` writes: rendered by graphviz, the DOT source itself, or an interactive page (render/html.py)."""

    svg = "svg"
    png = "png"
    pdf = "pdf"
    dot = "dot"
    html = "html"


INSTALL_HINT = "install graphviz (apt-get install graphviz, brew install graphviz or conda install graphviz)"


_PDF_DATE = re.compile(rb"(/(?:CreationDate|ModDate) \(D:)\d{14}")


class GraphvizMissing(RunError):
    """graphviz's ``dot`` program is not on PATH."""


def find_dot() -> str | None:
    """Where graphviz's ``dot`` program is, or None (tests replace this to simulate its absence)."""
    return shutil.which("dot")


def graphviz_version() -> str | None:
    """``"2.43.0"`` for the installed ``dot``, or None when there is none."""
    dot = find_dot()
    if dot is None:
        return None
    out = subprocess.run([dot, "-V"], capture_output=True, text=True, check=False).stderr
    words = out.split()
    return words[words.index("version") + 1] if "version" in words else None


RENDER_TIMEOUT_S = 180
PNG_DPI = 144  # 2x graphviz's 72 dpi: readable on a high-density screen and in print


def png_dpi(dpi: int | None = None, scale: float | None = None) -> int:
    """The resolution of a PNG: ``--dpi``, or 72 x ``--scale``, or 144 (2x)."""
    if dpi is not None and scale is not None:
        raise UsageError(f"--dpi {dpi} and --scale {scale:g} both set the PNG's resolution; give one of them (--scale 2 is --dpi 144).")
    if scale is not None:
        if not 0.25 <= scale <= 8:
            raise UsageError(f"--scale must be between 0.25 and 8 (1 = graphviz's 72 dpi, 2 = 144 dpi), got {scale:g}.")
        return round(72 * scale)
    if dpi is not None and not 18 <= dpi <= 600:
        raise UsageError(f"--dpi must be between 18 and 600 (72 is graphviz's own size, 144 the default), got {dpi}.")
    return dpi or PNG_DPI


def render(source: str, fmt: DiagramFormat, timeout_s: float = RENDER_TIMEOUT_S, dpi: int = PNG_DPI) -> bytes:
    """DOT source -> file contents in ``fmt``; GraphvizMissing when ``dot`` is not installed.

    ``dpi`` sets a PNG's resolution (SVG and PDF are vector graphics: it does not apply).

    Laying out a very dense graph (DenseNet at full depth: each layer reads every earlier
    one) can take graphviz many minutes, so it gets ``timeout_s`` and then a RunError.
    """
    fmt = DiagramFormat(fmt)
    if fmt is DiagramFormat.dot:
        return source.encode()
    if fmt is DiagramFormat.html:
        raise ValueError("an HTML diagram is drawn from the trace (archviz.render.html.to_html), not from DOT source")
    dot = find_dot()
    if dot is None:
        raise GraphvizMissing(f"graphviz's `dot` program was not found on PATH; {INSTALL_HINT}.")
    try:
        args = [dot, f"-T{fmt.value}"] + ([f"-Gdpi={dpi}"] if fmt is DiagramFormat.png else [])
        proc = subprocess.run(args, input=source.encode(), capture_output=True, check=False, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RunError(
            f"graphviz's dot did not finish laying out the diagram within {timeout_s:g} s; "
            "draw fewer boxes with a smaller --depth, or write the DOT source with --format dot."
        ) from None
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise RunError(f"graphviz's dot failed to render {fmt.value} ({detail[-1] if detail else f'exit code {proc.returncode}'}).")
    from archviz.files import mark_pdf, mark_png, mark_svg

    if fmt is DiagramFormat.pdf:
        # cairo stamps PDFs with the current time; a fixed date of the same length keeps the
        # file byte-identical from run to run without moving the offsets of the xref table.
        # archviz names itself the producer, so that rerunning the command may replace it.
        return mark_pdf(_PDF_DATE.sub(rb"\g<1>19700101000000", proc.stdout))
    if fmt is DiagramFormat.png:
        return mark_png(proc.stdout, _graph_title(source))
    return mark_svg(proc.stdout, _graph_title(source))


_DOT_TITLE = re.compile(r'digraph "((?:[^"\\]|\\.)*)"')


def _graph_title(source: str) -> str:
    """The graph's name in DOT source written by :func:`to_dot` (``digraph "lenet" {``)."""
    match = _DOT_TITLE.match(source)
    return re.sub(r"\\(.)", r"\1", match.group(1)) if match else ""


def output_format(path: str | Path | None, fmt: DiagramFormat | str | None) -> DiagramFormat:
    """``--format`` if given, else the extension of ``-o``, else SVG."""
    if fmt is not None:
        return DiagramFormat(fmt)
    if path is None or str(path) == "-":
        return DiagramFormat.svg
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix == "gv":
        return DiagramFormat.dot
    try:
        return DiagramFormat(suffix)
    except ValueError:
        choices = ", ".join(f".{f.value}" for f in DiagramFormat)
        raise UsageError(f"cannot tell the diagram format from {str(path)!r}; end the file name with {choices} or pass --format.") from None


def default_filename(arch: str, fmt: DiagramFormat) -> str:
    """``torchvision:resnet18`` -> ``torchvision_resnet18.svg``."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in arch).strip("._") or "diagram"
    return f"{stem}.{DiagramFormat(fmt).value}"


def check_writable(path: Path) -> None:
    """UsageError unless ``path`` can be created: its folder exists and it is not a folder."""
    if path.is_dir():
        raise UsageError(f"-o {str(path)!r} is a directory; give a file name such as {str(path / 'diagram.svg')!r}.")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"cannot write {str(path)!r}: the directory {str(parent)!r} does not exist (create it first).")


def save_diagram(
    trace: Trace,
    path: Path,
    fmt: DiagramFormat,
    depth: int = 1,
    direction: Direction = Direction.TB,
    fold: bool = True,
    force: bool = False,
    decoration: Decoration = PLAIN,
    dpi: int = PNG_DPI,
    source: str | None = None,
) -> Path:
    """Draw ``trace`` into ``path``; when ``dot`` is missing, write ``path`` with a .dot suffix and raise.

    The .dot file is one the user never named: an existing one archviz did not write is kept
    unless ``force``. Returns the path written. ``source``: DOT text already made from
    ``trace`` (archviz diff draws two traces as one), instead of drawing ``trace``.
    """
    check_writable(path)
    source = source if source is not None else to_dot(trace, depth, direction, fold, decoration)
    try:
        data = render(source, fmt, dpi=dpi)
    except GraphvizMissing:
        from archviz.files import graphviz_output_of, mark_dot, refuse_overwrite

        dot_path = path.with_suffix(".dot")
        try:
            refuse_overwrite(dot_path, graphviz_output_of(trace.arch), force)
        except UsageError:
            raise GraphvizMissing(
                f"graphviz's `dot` program was not found, and the DOT source was not written because {str(dot_path)!r} already exists and is not a "
                f"file archviz recognises as its own; {INSTALL_HINT}, or get the source with `-f dot -o FILE`, or pass --force to replace {str(dot_path)!r}."
            ) from None
        write_atomic(dot_path, mark_dot(source, trace.arch).encode())
        raise GraphvizMissing(
            f"graphviz's `dot` program was not found, so only the DOT source was written to {str(dot_path)!r}; "
            f"{INSTALL_HINT}, then run `dot -T{DiagramFormat(fmt).value} {dot_path} -o {path}` or rerun this command."
        ) from None
    write_atomic(path, file_bytes(data, fmt, trace.arch))  # a full disk never leaves a truncated or 0-byte file
    return path


def file_bytes(data: bytes, fmt: DiagramFormat, title: str) -> bytes:
    """What ``render`` returned, as written to a file: DOT source gets archviz's mark (the other formats have it already)."""
    from archviz.files import mark_dot

    return mark_dot(data.decode(), title).encode() if DiagramFormat(fmt) is DiagramFormat.dot else data
