"""The gallery: a block-level and a detailed diagram of every built-in, with its shape and cost table.

The committed ``gallery/`` folder is exactly what ``write_gallery`` produces; a test
regenerates it and compares, so it can never go stale.
"""

from __future__ import annotations

from pathlib import Path

from archviz import zoo
from archviz.arch import load_arch
from archviz.errors import RunError, UsageError
from archviz.files import graphviz_output_of, refuse_overwrite, write_all_atomic
from archviz.render import Format
from archviz.render.dot import KIND_COLOURS, to_dot
from archviz.render.graphviz import INSTALL_HINT, DiagramFormat, GraphvizMissing, find_dot, render
from archviz.render.tables import human, render_rows
from archviz.shape import format_shape
from archviz.trace.record import Trace

DEFAULT_DIR = Path("gallery")

README_MARK = "<!-- archviz gallery: written by `archviz gallery`, which may replace it -->\n"
_INTRO = (
    README_MARK
    + """\
# Gallery

Every built-in architecture at its default input, drawn by `archviz diagram` from the
same trace that `archviz shapes` prints. Regenerate this folder with `archviz gallery`;
a test fails when it is out of date.

How to read the diagrams: boxes are layers, or whole blocks in the top-level view,
coloured by kind ({kinds}). Arrows follow the real dataflow and carry tensor shapes
(N×C×H×W); a tensor that fans out is labelled on its first arrow only. Grey frames are
blocks; "× N" marks N identical consecutive blocks drawn once. Conv and pool settings
read `in→out · kernel sN pN` (stride, padding). MACs count the multiply-accumulates of
convolutions (plain and transposed), linear layers and matrix products; FLOPs = 2 × MACs.
"""
)


def gallery_files(names: list[str] | None = None) -> dict[str, bytes]:
    """File name -> contents for the gallery of ``names`` (default: every built-in)."""
    names = zoo.list_models() if names is None else names
    files: dict[str, bytes] = {}
    sections, index = [], []
    for name in names:
        trace = load_arch(name).trace()
        blocks, detailed = f"{name}.svg", f"{name}_detailed.svg"
        files[blocks] = render(to_dot(trace, 1), DiagramFormat.svg)
        files[detailed] = render(to_dot(trace, trace.max_depth), DiagramFormat.svg)
        sections.append(_section(name, trace, blocks, detailed))
        index.append(
            {
                "name": f"[{name}](#{name})",
                "input": format_shape(trace.input_shape),
                "params": trace.total_params,
                "macs": trace.flops // 2,
                "flops": trace.flops,
            }
        )
    columns = [("name", "Architecture"), ("input", "Input"), ("params", "Params"), ("macs", "MACs"), ("flops", "FLOPs")]
    readme = [_INTRO.format(kinds=", ".join(k for k in KIND_COLOURS if k != "other")), render_rows(index, columns, Format.markdown), *sections]
    files["README.md"] = ("\n\n".join(part.strip("\n") for part in readme) + "\n").encode()
    return files


def _section(name: str, trace: Trace, blocks: str, detailed: str) -> str:
    arch = load_arch(name)
    rows = [
        {
            "name": n.path,
            "type": n.type,
            "output_shape": list(n.output_shape),
            "params": n.params,
            "macs": n.flops // 2,
        }
        for n in trace.blocks(1)
    ]
    columns = [("name", "Block"), ("type", "Type"), ("output_shape", "Output shape"), ("params", "Params"), ("macs", "MACs")]
    footer = [
        ("Input", format_shape(trace.input_shape)),
        ("Total params", human(trace.total_params)),
        ("MACs", f"{human(trace.flops // 2)} (FLOPs = 2 × MACs = {human(trace.flops)})"),
    ]
    return "\n".join(
        [
            f"## {name}",
            "",
            arch.description,
            "",
            f"![{name}: top-level blocks]({blocks})",
            "",
            "<details><summary>Every layer</summary>",
            "",
            f"![{name}: every layer]({detailed})",
            "",
            "</details>",
            "",
            render_rows(rows, columns, Format.markdown, footer=footer),
            "",
            f"Drawn with `archviz diagram {name} -o {blocks}` and `archviz diagram {name} --depth {trace.max_depth} -o {detailed}`.",
        ]
    )


def _is_ours(filename: str):
    """Recognises a gallery file archviz wrote, from its first bytes."""
    if filename == "README.md":
        return lambda first: first.startswith(README_MARK.encode())
    return graphviz_output_of(filename.removesuffix(".svg").removesuffix("_detailed"))


def write_gallery(out_dir: Path = DEFAULT_DIR, names: list[str] | None = None, force: bool = False) -> list[Path]:
    """Write the gallery into ``out_dir`` (created if its parent exists); returns the paths written.

    A file of the same name that archviz did not write (the user's README.md, say) is not
    replaced unless ``force``: nothing is written then. Every file is written atomically.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{str(out_dir)!r} is a file, not a directory; name a directory for the gallery.")
    if not out_dir.parent.is_dir():
        raise UsageError(f"cannot write the gallery into {str(out_dir)!r}: the directory {str(out_dir.parent)!r} does not exist.")
    if find_dot() is None:
        raise GraphvizMissing(f"the gallery needs graphviz's `dot` program to draw SVGs and it was not found on PATH; {INSTALL_HINT}.")
    names = zoo.list_models() if names is None else names
    for filename in ["README.md"] + [f"{n}{suffix}.svg" for n in names for suffix in ("", "_detailed")]:  # before any work
        refuse_overwrite(out_dir / filename, _is_ours(filename), force, " (the gallery would write a file of that name)")
    files = gallery_files(names)
    try:
        out_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create the gallery directory {str(out_dir)!r}: {exc.strerror or exc}.") from None
    paths = {out_dir / filename: data for filename, data in files.items()}
    write_all_atomic(paths)  # all or none: a full disk leaves the folder as it was (issue 20: 11 of 33 files were left)
    return list(paths)
