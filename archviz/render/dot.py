"""The DOT text of a diagram: render/graph.py's graph as graphviz source. Pure text and deterministic: same trace and options, same bytes."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from archviz.choices import NodeFigure
from archviz.errors import UsageError
from archviz.render.graph import Graph, Run, Vertex, build_graph, composition, shape_text, si
from archviz.safe import printable
from archviz.spec import ops as O
from archviz.trace.record import Node, Op, Shape, Trace


class Direction(StrEnum):
    """Graphviz ``rankdir``: top to bottom or left to right."""

    TB = "TB"
    LR = "LR"


# Kinds of layer, in legend order, with their fill colours (pastel, readable in print).
KIND_COLOURS: dict[str, str] = {
    "conv": "#c6dbef",
    "pool": "#c7e9c0",
    "norm": "#fff2b2",
    "activation": "#fdd9b5",
    "linear": "#dadaeb",
    "dropout": "#e0e0e0",
    "reshape": "#f7f7f7",
    "merge": "#fcbba1",
    "block": "#d9f0f3",
    "other": "#ffffff",
}
# Cluster fills by nesting level, lightest outside.
_CLUSTER_FILLS = ("#f8f8f8", "#f0f0f0", "#e8e8e8", "#e0e0e0")
_FONT = "Helvetica"


assert tuple(KIND_COLOURS) == O.KINDS, "every diagram kind of the op table has a colour"


@dataclass(frozen=True)
class Decoration:
    """What a diagram adds to the plain drawing; the default adds nothing (same bytes as without it).

    ``show``: figures on every layer and block (``--show``); ``title``: the heading instead of
    the trace's ARCH (``--title``, or a callable's display name); ``failed``: the op id of the
    layer a forward failed in and the error, drawn in red (a partial diagram); ``status``:
    vertex id -> "added", "removed" or "changed" (``archviz diff``).
    """

    show: tuple[NodeFigure, ...] = ()
    title: str | None = None
    failed: tuple[str, str] | None = None
    status: Mapping[str, str] = field(default_factory=dict)


PLAIN = Decoration()

# archviz diff: Okabe & Ito's colour-blind-safe palette, and a line style per status so that
# colour is never the only cue (bold = added, dashed = removed, double border = changed).
DIFF_STYLES: dict[str, tuple[str, str]] = {
    "added": ("#009E73", 'style="rounded,filled,bold", penwidth=2.4'),
    "removed": ("#D55E00", 'style="rounded,filled,dashed", penwidth=2'),
    "changed": ("#0072B2", "peripheries=2, penwidth=1.6"),
}
DIFF_MARKS = {"added": "+", "removed": "\u2212", "changed": "~"}
FAILED_COLOUR = "#d62728"


def parse_figures(text: str | None) -> tuple[NodeFigure, ...]:
    """``"params,macs"`` -> the figures ``--show`` names, in the order given; UsageError on an unknown name."""
    if not text:
        return ()
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    valid = ", ".join(f.value for f in NodeFigure)
    for name in names:
        if name not in NodeFigure.__members__:
            raise UsageError(f"--show does not know {name!r}; give a comma-separated subset of {valid}, e.g. --show params,macs.")
    return tuple(dict.fromkeys(NodeFigure(n) for n in names))


def to_dot(trace: Trace, depth: int = 1, direction: Direction = Direction.TB, fold: bool = True, decoration: Decoration = PLAIN) -> str:
    """The graphviz DOT source of ``trace`` at ``depth`` (1 = top-level blocks)."""
    return graph_to_dot(build_graph(trace, depth, fold), Direction(direction), decoration)


class _Figures:
    """The numbers ``--show`` puts on nodes: the same ones `archviz cost --format json` reports per block."""

    def __init__(self, trace: Trace, show: tuple[NodeFigure, ...]):
        self.show = show
        self.fields: dict = {}
        self.at_block: dict = {}
        if NodeFigure.rf in show:
            from archviz.estimate.receptive import block_fields, receptive_fields

            self.fields = receptive_fields(trace)
            self.at_block = block_fields(trace, self.fields)
        # cost's activation_bytes: 4 bytes per element, 2 when the network runs in 16-bit floats
        floats = {i.dtype for i in trace.inputs if "float" in i.dtype}
        self.element = 2 if floats and floats <= {"bfloat16", "float16"} else 4

    def line(self, v: Vertex) -> str:
        if not self.show:
            return ""
        node = v.node if v.node is not None and (v.op is None or v.op.kind == "module") else None
        if node is not None:
            params, macs, shape = node.params, node.macs, node.output_shape
            rf = self.fields.get(v.op.id) if v.op is not None else self.at_block.get(node.path)
        elif v.op is not None:
            params, macs, shape, rf = 0, v.op.flops // 2, v.op.output_shape, self.fields.get(v.op.id)
        else:
            return ""
        parts = []
        for figure in self.show:
            if figure is NodeFigure.params:
                parts.append(f"{params:,} params")
            elif figure is NodeFigure.macs:
                parts.append(f"{macs:,} MACs")
            elif figure is NodeFigure.memory:
                parts.append(f"{math.prod(shape) * self.element:,} B out" if shape else "")
            elif figure is NodeFigure.rf and rf is not None:
                parts.append("RF whole input" if rf.whole_input else "RF " + "\u00d7".join(str(s) for s in rf.size))
        text = " \u00b7 ".join(p for p in parts if p)
        return text + (" each" if v.count > 1 and text else "")


def graph_to_dot(graph: Graph, direction: Direction = Direction.TB, decoration: Decoration = PLAIN) -> str:
    trace = graph.trace
    figures = _Figures(trace, decoration.show)
    lines = [
        f"digraph {_q(trace.arch)} {{",
        f'  graph [rankdir={direction.value}, newrank=true, nodesep=0.2, ranksep=0.28, fontname="{_FONT}", fontsize=12,'
        f' labelloc=t, labeljust=c, pad=0.2, bgcolor="white", label={_title(trace, decoration.title)}];',
        f'  node [shape=box, style="rounded,filled", fontname="{_FONT}", fontsize=10, margin="0.1,0.03", height=0.3, penwidth=0.8, color="#555555"];',
        f'  edge [fontname="{_FONT}", fontsize=8, fontcolor="#444444", color="#666666", arrowsize=0.6, penwidth=0.8];',
    ]
    tree: dict[str, list[str | Vertex]] = {}  # cluster path ("" = top) -> members in order
    for vertex in graph.vertices:
        parent = ""
        for path in vertex.clusters:
            members = tree.setdefault(parent, [])
            if path not in members:
                members.append(path)
            parent = path
        tree.setdefault(parent, []).append(vertex)

    def emit(parent: str, indent: str, level: int) -> None:
        for member in tree.get(parent, []):
            if isinstance(member, Vertex):
                lines.append(f"{indent}{_q(member.id)} [{_decorated_attrs(member, trace, figures, decoration)}];")
                continue
            node, run = graph.clusters.get(member), graph.folds.get(member)
            fill = _CLUSTER_FILLS[min(level, len(_CLUSTER_FILLS) - 1)]
            lines.append(f"{indent}subgraph {_q('cluster_' + member)} {{")
            lines.append(
                f'{indent}  graph [label={_cluster_label(node, run)}, labeljust=l, style="rounded,filled", fillcolor="{fill}",'
                f' color="#aaaaaa", penwidth=0.8, fontsize=9, margin=6];'
            )
            emit(member, indent + "  ", level + 1)
            lines.append(f"{indent}}}")

    emit("", "  ", 0)
    kinds = {v.id: v.kind for v in graph.vertices}
    bottom, decoder = _u_decoder(graph) if trace.layout == "u" and direction is Direction.TB else ("", set())
    across: list[tuple[str, str]] = []
    labelled: set[tuple[str, Shape]] = set()
    for a, b, shape in graph.edges:
        # A tensor fanning out (Inception's four paths, a shortcut) is labelled once, on its first
        # edge; a skip edge into a merge (ResNet's identity shortcut into the add) always is.
        first = (a, shape) not in labelled
        label = " " + shape_text(shape) if first or kinds.get(b) == "merge" else ""
        labelled.add((a, shape))
        attrs = [f"label={_q(label)}"] if label else []
        if not first and kinds.get(b) == "merge":
            attrs.append("weight=0")  # a skip edge: let the main path set the ranks, the shortcut runs beside it
        status = {decoration.status.get(a), decoration.status.get(b)}
        if "removed" in status or "added" in status:
            colour, _ = DIFF_STYLES["removed" if "removed" in status else "added"]
            attrs.append(f'color="{colour}", style={"dashed" if "removed" in status else "bold"}')
        if b in decoder and (a in decoder or a == bottom):  # the U's right side: drawn upwards (the edge is laid out reversed, its arrow still points to b)
            attrs.append("dir=back")
            a, b = b, a
        elif b in decoder:  # a skip across the U: same row as where it starts
            attrs.append("constraint=false")
            across.append((a, b))
        lines.append(f"  {_q(a)} -> {_q(b)}" + (f" [{', '.join(attrs)}];" if attrs else ";"))
    lines += [f"  {{rank=same; {_q(a)}; {_q(b)};}}" for a, b in across]
    legend = _diff_legend(decoration.status) if decoration.status else _legend(graph.kinds, direction)
    lines.append(f"  legend [shape=plain, style=solid, label={legend}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _u_decoder(graph: Graph) -> tuple[str, set[str]]:
    """A spec with ``layout: u`` (a U-Net): the vertices of the decoder, drawn upwards beside the encoder.

    The bottom of the U is the first vertex at the smallest spatial size; everything after it
    (in execution order) is the decoder. Edges from the bottom and inside the decoder
    are laid out reversed so that it climbs back up; a skip edge from the encoder into the
    decoder is put on one row (``rank=same``) and takes no part in the ranking.
    """
    sizes = [(_spatial(v), v.id) for v in graph.vertices]
    smallest = min((s for s, _ in sizes if s), default=0)
    if len({s for s, _ in sizes if s}) < 2:  # blocks collapsed to one resolution: nothing goes down and up again
        return "", set()
    bottom = next(i for i, (s, _) in enumerate(sizes) if s == smallest)
    return sizes[bottom][1], {vid for _, vid in sizes[bottom + 1 :]}


def _spatial(v: Vertex) -> int:
    """The largest spatial side of a vertex's output (0 without spatial axes)."""
    shape = v.node.output_shape if v.node is not None and v.op is None else v.op.output_shape if v.op is not None else ()
    return max(shape[2:]) if len(shape) > 2 else 0


def _decorated_attrs(v: Vertex, trace: Trace, figures: _Figures, decoration: Decoration) -> str:
    attrs = _vertex_attrs(v, trace, figures.line(v), skip_params=NodeFigure.params in decoration.show)
    status = decoration.status.get(v.id)
    if status:
        colour, style = DIFF_STYLES[status]
        attrs += f', color="{colour}", {style}'
    if decoration.failed and v.op is not None and v.op.id == decoration.failed[0]:
        error = _wrap(decoration.failed[1], 60)
        attrs = attrs.replace("</TABLE>>", "".join(f"<TR><TD>{_small(line, FAILED_COLOUR)}</TD></TR>" for line in error) + "</TABLE>>", 1)
        attrs += f', color="{FAILED_COLOUR}", fillcolor="#fde0dd", penwidth=2.4, fontcolor="{FAILED_COLOUR}"'
    return attrs


def _wrap(text: str, width: int, max_lines: int = 4) -> list[str]:
    import textwrap

    lines = textwrap.wrap(text, width) or [""]
    return lines[: max_lines - 1] + [textwrap.shorten(" ".join(lines[max_lines - 1 :]), width)] if len(lines) > max_lines else lines


def _diff_legend(status: Mapping[str, str]) -> str:
    """One swatch per diff status, in its colour and line style, plus the plain case."""
    cells = ['<TD><FONT POINT-SIZE="9">diff:</FONT></TD>']
    for name, (colour, _) in DIFF_STYLES.items():
        style = {"added": "<B>added (bold)</B>", "removed": "removed (dashed)", "changed": "changed (double)"}[name]
        cells.append(f'<TD BORDER="2" COLOR="{colour}"><FONT COLOR="{colour}">{DIFF_MARKS[name]} {style}</FONT></TD>')
    cells.append('<TD BORDER="1" COLOR="#888888">unchanged</TD>')
    return f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="3" CELLPADDING="3"><TR>{"".join(cells)}</TR></TABLE>>'


def _q(text: str) -> str:
    text = printable(text, newlines=False)  # no control characters in DOT or SVG (archviz/safe.py)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _e(text: object) -> str:
    return html.escape(printable(text, newlines=False), quote=True)


def _params(n: int, each: bool = False) -> str:
    return f"{n:,} params" + (" each" if each else "") if n else ""


def _rows(*rows: str) -> str:
    cells = "".join(f"<TR><TD>{r}</TD></TR>" for r in rows if r)
    return f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">{cells}</TABLE>>'


def _small(text: str, colour: str = "#555555") -> str:
    return f'<FONT POINT-SIZE="8" COLOR="{colour}">{_e(text)}</FONT>' if text else ""


def _vertex_attrs(v: Vertex, trace: Trace, figures: str = "", skip_params: bool = False) -> str:
    """``figures``: the --show line; ``skip_params``: it holds the params, so the plain params line goes."""
    fill = KIND_COLOURS.get(v.kind, "#ffffff")
    extra = _small(figures, "#222222")
    if v.op is not None and v.op.kind in ("input", "output"):
        title = "Input" if v.op.kind == "input" else "Output"
        name = v.op.id.partition(":")[2]  # several inputs/outputs are named: "output:aux" -> "aux"
        label = _rows(f"<B>{title}</B>" + (f" {_e(name)}" if name else ""), _small(shape_text(v.op.output_shape) + _dtype(trace, v.op)))
        return f'label={label}, fillcolor="#ffffff", penwidth=1.2'
    if v.op is not None and v.op.kind == "function":
        if v.kind == "merge":
            symbol = getattr(O.FUNCTIONS.get(v.op.type), "symbol", "") or v.op.type  # the op table's "+" for add
            return f'label={_rows(f"<B>{_e(symbol)}</B>")}, shape=ellipse, style=filled, fillcolor="{fill}", margin="0.02,0.02"'
        return f'label={_rows(f"<B>{_e(v.op.type)}</B>  " + _small(v.op.id), extra)}, fillcolor="{fill}"'
    node = v.node
    if v.op is not None:  # a layer
        if node is None:  # a module the trace has no record of: name and type only
            return f'label={_rows(f"<B>{_e(v.op.type)}</B>  " + _small(v.op.module), extra)}, fillcolor="{fill}"'
        params = "" if skip_params else _small(_params(node.params))
        label = _rows(f"<B>{_e(node.type)}</B>  " + _small(node.path), _e(O.label(node.type, node.attrs)), params, extra)
        return f'label={label}, fillcolor="{fill}"'
    assert node is not None
    name = node.path if v.count == 1 else f"{node.path} \u2013 {v.last}"
    times = f" \u00d7 {v.count}" if v.count > 1 else ""
    label = _rows(
        f"<B>{_e(node.type)}{times}</B>  " + _small(name),
        _small(composition(trace, node.path), "#333333"),
        "" if skip_params else _small(_params(node.params, each=v.count > 1)),
        extra,
    )
    return f'label={label}, fillcolor="{fill}", penwidth=1.2'


def _dtype(trace: Trace, op: Op) -> str:
    """`` int64`` when an input or output is not float32 (token ids, a bf16 run); nothing for float32."""
    infos = trace.inputs if op.kind == "input" else trace.outputs
    name = op.id.partition(":")[2] or op.kind
    info = next((i for i in infos if i.name == name), infos[0] if len(infos) == 1 else None)
    return f" {info.dtype}" if info is not None and info.dtype != "float32" else ""


def _cluster_label(node: Node | None, run: Run | None) -> str:
    if node is None:  # a container the trace has no record of
        return "<>"
    name = node.path if run is None else f"{node.path} \u2013 {run.paths[-1]}"
    times = f" \u00d7 {len(run.paths)}" if run else ""
    params = _params(node.params, each=run is not None)
    return f"<<B>{_e(name)}</B>  {_e(node.type)}{times}" + (f"  <FONT COLOR='#555555'>{_e(params)}</FONT>" if params else "") + ">"


def _title(trace: Trace, title: str | None = None) -> str:
    macs = trace.flops // 2
    cost = f"{si(macs)}MACs ({si(trace.flops)}FLOPs)" if trace.flops else ""
    facts = " \u00b7 ".join(x for x in (f"input {shape_text(trace.input_shape)}", f"{trace.total_params:,} params", cost) if x)
    return f'<<B>{_e(title or trace.display_name)}</B><BR/><FONT POINT-SIZE="9">{_e(facts)}</FONT>>'


def _legend(kinds: list[str], direction: Direction) -> str:
    """One swatch per kind of layer drawn: a row beside the input (TB), a column above it (LR)."""
    cells = [f'<TD BGCOLOR="{KIND_COLOURS[k]}" BORDER="1" COLOR="#888888">{_e(k)}</TD>' for k in kinds]
    cells.insert(0, '<TD><FONT POINT-SIZE="9">layers:</FONT></TD>')
    rows = "<TR>" + "".join(cells) + "</TR>" if direction is Direction.TB else "".join(f"<TR>{c}</TR>" for c in cells)
    return f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="3" CELLPADDING="3">{rows}</TABLE>>'
