"""MkDocs hooks: the pages that are generated from the code and the results, never hand-copied.

- ``spec-ops.md``: the op reference, from the op table in ``archviz/spec/ops.py``;
- ``gallery/``: ``gallery/README.md`` and its SVGs, copied into the site at build time;
- ``example.md``: ``docs/example.ipynb`` as Markdown (its prose and code cells);
- markers in hand-written pages, replaced at build time:
  ``<!-- archviz:help CMD -->`` (the command's ``--help``),
  ``<!-- archviz:results NAME -->`` (``benchmarks/results/NAME.md``, its title dropped, headings demoted),
  ``<!-- archviz:json ARGS -->`` (every key of ``archviz ARGS --format json``, with its type and value in that run).

``scripts/docs`` builds the site with these hooks (``mkdocs.yml``: ``hooks: [docs/hooks.py]``).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the checkout being documented, before any installed archviz

_MARKER = re.compile(r"<!-- archviz:(help|results|json) ([^>]+?) -->")


# ---- the op reference ----------------------------------------------------------------


def _default(field) -> str:
    if field.required:
        return "required"
    if field.default is None:
        return "none"
    if isinstance(field.default, bool):
        return "`" + str(field.default).lower() + "`"
    if isinstance(field.default, tuple | list):
        return "`[]`" if not field.default else "`" + json.dumps(list(field.default)) + "`"
    return f"`{field.default}`"


def _text(doc: str) -> str:
    """An op's doc in a Markdown table: ``C*r*r`` is arithmetic, not emphasis; ``|`` is not a column."""
    return doc.replace("*", "\\*").replace("|", "&#124;")


def ops_page() -> str:
    """The op reference as Markdown: one section per op of ``archviz.spec.ops.OPS``, in the table's order."""
    from archviz.spec.ops import OPS, TORCH_TYPES

    lines = [
        "# Op reference",
        "",
        "Generated from the op table in `archviz/spec/ops.py` when the site is built: every op a spec",
        "can use, with its fields, their defaults and what they accept. Primitives build one `torch.nn`",
        "class (chosen by the input's rank where there are several); blocks hold layers; macros expand into",
        "primitives. See [the spec language](spec.md) for how a spec is written.",
        "",
        "| op | what it is | kind |",
        "|---|---|---|",
    ]
    lines += [f"| [`{name}`](#{name}) | {_text(op.doc)} | {_op_kind(op)} |" for name, op in OPS.items()]
    for name, op in OPS.items():
        lines += ["", f"## {name}", "", _text(op.doc[0].upper() + op.doc[1:]) + ".", ""]
        if op.torch:
            kinds = sorted({TORCH_TYPES[t].kind for t in op.torch if t in TORCH_TYPES})
            lines.append(f"Builds: {', '.join(f'`nn.{t}`' for t in op.torch)}" + (f" (diagram kind: {', '.join(kinds)})." if kinds else "."))
            lines.append("")
        if not op.fields:
            lines.append("No fields.")
            continue
        lines += ["| field | default | accepts |", "|---|---|---|"]
        for key, field in op.fields.items():
            accepts = field.kind.describe + (f"; {field.doc}" if field.doc else "")
            lines.append(f"| `{key}` | {_default(field)} | {_text(accepts)} |")
    return "\n".join(lines) + "\n"


def _op_kind(op) -> str:
    if op.rule is not None:
        return "primitive"
    if op.children:
        return "block"
    return "macro"


# ---- markers in hand-written pages -------------------------------------------------------


def _run(args: list[str]) -> str:
    """``archviz ARGS``'s stdout, run in this process."""
    from typer.testing import CliRunner

    from archviz.cli import app

    result = CliRunner().invoke(app, args, prog_name="archviz", env={"COLUMNS": "100", "TERM": "dumb"})
    if result.exit_code != 0:
        raise RuntimeError(f"archviz {' '.join(args)} exited with {result.exit_code}: {result.output}")
    return result.stdout


def command_help(name: str) -> str:
    """``archviz NAME --help`` as the terminal shows it, 100 columns wide."""
    return "```text\n$ archviz " + name + " --help\n" + _run([name, "--help"]).rstrip() + "\n```"


def json_keys(args: str) -> str:
    """A table of every key in ``archviz ARGS --format json`` (lists: their first item), with its JSON type and value."""
    data = json.loads(_run([*args.split(), "--format", "json"]))
    rows = ["| key | type | in this run |", "|---|---|---|"]

    def walk(value, path: str) -> None:
        kind = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}[type(value)]
        if path:
            shown = "" if isinstance(value, dict) or (isinstance(value, list) and value and isinstance(value[0], dict)) else json.dumps(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            rows.append(f"| `{path}` | {kind} | {('`' + shown.replace('|', '&#124;') + '`') if shown else ''} |")
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else key)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            walk(value[0], f"{path}[]")

    walk(data, "")
    return f"`archviz {args} --format json`:\n\n" + "\n".join(rows)


def results(name: str) -> str:
    """``benchmarks/results/NAME.md`` without its title, its headings one level down."""
    path = ROOT / "benchmarks" / "results" / f"{name}.md"
    lines = path.read_text().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join("#" + line if line.startswith("#") else line for line in lines).strip()


def expand_markers(markdown: str) -> str:
    expand = {"help": command_help, "results": results, "json": json_keys}
    return _MARKER.sub(lambda m: expand[m[1]](m[2].strip()), markdown)


# ---- the example notebook ----------------------------------------------------------------


def notebook_page(path: Path) -> str:
    """The notebook as Markdown: its prose, its code, and the outputs of its code cells up to the first
    shell (``!``) cell, run here when the site is built (the training run and what reads it are shown as code)."""
    cells = json.loads(path.read_text())["cells"]
    namespace: dict = {}
    running = True
    blocks = []
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            blocks.append(source)
            continue
        shell = any(line.lstrip().startswith("!") for line in source.splitlines())
        blocks.append(("```ipython3\n" if shell else "```python\n") + source + "\n```")  # IPython's lexer knows `!`
        running = running and not shell
        if running:
            blocks.append(_cell_output(source, namespace))
    title, _, intro = blocks[0].partition("\n")  # "# archviz in a notebook", then its text
    note = (
        "!!! note\n"
        f"    This page is `docs/{path.name}`, turned into Markdown when the site is built, with the outputs of its "
        "cells up to the training run, computed then. "
        f"[Download the notebook]({path.name}) to run it all; the test suite executes it in a real Jupyter kernel "
        "(`tests/test_notebook.py`), so it cannot rot."
    )
    return "\n\n".join([title, note, intro.strip(), *blocks[1:]]) + "\n"


def _cell_output(source: str, namespace: dict) -> str:
    """Run one cell as a kernel would and return what Jupyter would show: HTML, SVG or the plain text."""
    import ast
    import contextlib
    import io

    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(tree, "<example.ipynb>", "exec"), namespace)
        value = eval(compile(ast.Expression(last.value), "<example.ipynb>", "eval"), namespace) if last else None
    parts = ["```text\n" + printed.getvalue().rstrip() + "\n```"] if printed.getvalue().strip() else []
    if value is None:
        return "\n\n".join(parts)
    svg = getattr(value, "_repr_svg_", lambda: None)()
    html = getattr(value, "_repr_html_", lambda: None)()
    if html:
        parts.append('<div class="archviz-output">' + " ".join(html.split("\n")) + "</div>")
    elif svg:
        svg = svg[svg.index("<svg") :]  # no XML declaration or doctype inside a page
        parts.append('<div class="archviz-output">' + " ".join(line for line in svg.splitlines() if line.strip()) + "</div>")
    else:
        parts.append("```text\n" + repr(value) + "\n```")
    return "\n\n".join(parts)


# ---- mkdocs events -----------------------------------------------------------------------


def _generated(config, uri: str, *, content: str | None = None, source: Path | None = None) -> File:
    if source is not None:
        return File.generated(config, uri, abs_src_path=os.fspath(source))
    return File.generated(config, uri, content=content)


def on_files(files, config):
    files.append(_generated(config, "spec-ops.md", content=ops_page()))
    gallery = ROOT / "gallery"
    # md_in_html reads Markdown inside an HTML block only when asked: the detailed diagrams sit in <details>
    readme = (gallery / "README.md").read_text().replace("<details>", '<details markdown="1">')
    files.append(_generated(config, "gallery/index.md", content=readme))
    for svg in sorted(gallery.glob("*.svg")):
        files.append(_generated(config, f"gallery/{svg.name}", source=svg))
    files.append(_generated(config, "example.md", content=notebook_page(Path(config["docs_dir"]) / "example.ipynb")))
    return files


def on_page_markdown(markdown, page, config, files):
    return expand_markers(markdown)
