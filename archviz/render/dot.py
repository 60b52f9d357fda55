"""The diagram view of a trace: graphviz DOT text drawn from the dataflow graph (``Trace.ops``).

The graph is the real dataflow, not a chain of modules: GoogLeNet's four Inception paths
fan out from one producer and meet at the ``cat`` op, ResNet's shortcut joins at ``add``.

``depth`` picks the level of detail with one mechanism: every op is mapped to its
enclosing module at ``depth`` (or drawn itself when it sits shallower), and edges that
fall inside one such block disappear. Blocks shallower than ``depth`` become clusters.
``fold`` draws a run of identical consecutive blocks (same type, attributes, shapes and
parameters, all the way down, fed one into the next) once, marked "x N".

DOT generation is pure text and deterministic: same trace and options, same bytes.
Rendering calls graphviz's ``dot`` program.
"""

from __future__ import annotations

import html
import math
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from archviz.choices import NodeFigure
from archviz.errors import RunError, UsageError
from archviz.safe import printable
from archviz.spec import ops as O
from archviz.trace.record import Node, Op, Shape, Trace


class DiagramFormat(StrEnum):
    """What ``archviz diagram`` writes: rendered by graphviz, the DOT source itself, or an interactive page (render/html.py)."""

    svg = "svg"
    png = "png"
    pdf = "pdf"
    dot = "dot"
    html = "html"


class Direction(StrEnum):
    """Graphviz ``rankdir``: top to bottom or left to right."""

    TB = "TB"
    LR = "LR"


INSTALL_HINT = "install graphviz (apt-get install graphviz, brew install graphviz or conda install graphviz)"

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
_MERGE_SYMBOLS = {"cat": "concat", "add": "+", "sub": "\u2212", "mul": "\u00d7", "div": "\u00f7"}
# Cluster fills by nesting level, lightest outside.
_CLUSTER_FILLS = ("#f8f8f8", "#f0f0f0", "#e8e8e8", "#e0e0e0")
_FONT = "Helvetica"


assert tuple(KIND_COLOURS) == O.KINDS, "every diagram kind of the op table has a colour"


layer_kind = O.layer_kind  # the op table decides an op's kind (cost --by kind reads it too)


# ---------------------------------------------------------------------------------------
# The graph to draw: vertices (ops or collapsed blocks), clusters, edges.


@dataclass
class _Run:
    """Identical consecutive blocks drawn once: ``paths[0]`` stands for all of them."""

    paths: list[str]

    def instance(self, module: str) -> int | None:
        for i, p in enumerate(self.paths):
            if module == p or module.startswith(p + "."):
                return i
        return None

    def to_first(self, op_id: str, index: int) -> str:
        return self.paths[0] + op_id[len(self.paths[index]) :]


@dataclass
class Vertex:
    """One drawn node: an op (layer call, function, input, output) or a collapsed block."""

    id: str
    kind: str  # colour category, or "io"
    op: Op | None = None  # set for ops drawn themselves
    node: Node | None = None  # the module record (leaf module ops and blocks)
    clusters: tuple[str, ...] = ()  # enclosing block paths, outermost first
    count: int = 1  # > 1 when it stands for a folded run
    last: str = ""  # path of the last block of the folded run


@dataclass
class Graph:
    """What a diagram shows, before any DOT syntax: the data behind ``to_dot``."""

    trace: Trace
    depth: int
    vertices: list[Vertex]
    edges: list[tuple[str, str, Shape]]  # (from vertex, to vertex, tensor shape)
    clusters: dict[str, Node]  # block path -> record, for every cluster drawn (that the trace knows)
    folds: dict[str, _Run] = field(default_factory=dict)  # first block path -> its run

    @property
    def kinds(self) -> list[str]:
        """Colour categories present, in legend order."""
        present = {v.kind for v in self.vertices}
        return [k for k in KIND_COLOURS if k in present]


def build_graph(trace: Trace, depth: int = 1, fold: bool = True) -> Graph:
    """Collapse ``trace.ops`` to the blocks at ``depth``; fold identical runs if ``fold``."""
    if depth < 1:
        raise UsageError(f"--depth must be at least 1 (1 = top-level blocks), got {depth}.")
    nodes = {n.path: n for n in trace.nodes}
    ops = {o.id: o for o in trace.ops}
    runs = _find_runs(trace, nodes, depth) if fold else []

    def canonical(op_id: str) -> str:
        for run in runs:
            index = run.instance(ops[op_id].module)
            if index:
                op_id = run.to_first(op_id, index)
        return op_id

    vertices: dict[str, Vertex] = {}
    where: dict[str, str] = {}  # op id -> vertex id
    for op in trace.ops:
        if canonical(op.id) != op.id:
            continue  # a later copy in a folded run
        vertex = _vertex(op, nodes, depth)
        where[op.id] = vertex.id
        vertices.setdefault(vertex.id, vertex)

    edges: dict[tuple[str, str, str], Shape] = {}
    for op, inputs in _chained_concats(trace.ops, where):
        for src in inputs:
            dst = op.id
            for run in runs:
                i, j = run.instance(ops[src].module), run.instance(ops[dst].module)
                if i is not None and j is not None and i != j:
                    break  # from one copy into the next: inside the folded run
                src = run.to_first(src, i) if i else src
                dst = run.to_first(dst, j) if j else dst
            else:
                a, b = where[src], where[dst]
                if a != b:
                    edges.setdefault((a, b, src), ops[src].output_shape)

    folds = {run.paths[0]: run for run in runs}
    for vertex in vertices.values():
        run = folds.get(vertex.node.path) if vertex.node is not None and vertex.op is None else None
        if run:
            vertex.count, vertex.last = len(run.paths), run.paths[-1]
    cluster_paths = {c for v in vertices.values() for c in v.clusters}
    clusters = {p: nodes[p] for p in nodes if p in cluster_paths}
    return Graph(trace, depth, list(vertices.values()), [(a, b, s) for (a, b, _), s in edges.items()], clusters, folds)


def _chained_concats(ops: tuple[Op, ...], where: Mapping[str, str]) -> list[tuple[Op, tuple[str, ...]]]:
    """Each op with the inputs to draw; a concat that repeats an earlier drawn concat's inputs reads that concat instead.

    torchvision's DenseNet concatenates every earlier feature map in every layer
    (``torch.cat(prev_features)``): n layers draw n(n+1)/2 edges, and graphviz needs minutes
    to lay out DenseNet-121 at full depth. Concatenation is associative, so a concat whose
    first inputs are exactly an earlier concat's inputs is drawn reading that concat plus the
    new inputs: the same data, as d2l's DenseNet writes it (``X = torch.cat((X, Y), dim=1)``).
    Only when the earlier concat is drawn as itself (not inside a collapsed block).
    """
    drawn_cats: dict[tuple[str, ...], str] = {}
    out = []
    for op in ops:
        inputs = op.inputs
        if op.kind == "function" and op.type == "cat" and len(inputs) >= 2:
            for k in range(len(inputs) - 1, 1, -1):
                prev = drawn_cats.get(inputs[:k])
                if prev is not None:
                    inputs = (prev, *inputs[k:])
                    break
            if where.get(op.id) == user_id(op.id):
                drawn_cats.setdefault(op.inputs, op.id)
        out.append((op, inputs))
    return out


def _ancestors(path: str, upto: int) -> tuple[str, ...]:
    """``"b3.0.p1.0", 2 -> ("b3", "b3.0")``: enclosing paths at depths 1..upto."""
    parts = path.split(".") if path else []
    return tuple(".".join(parts[:k]) for k in range(1, min(upto, len(parts)) + 1))


def user_id(name: str) -> str:
    """The vertex id of a layer, block or function: its path, kept apart from the diagram's own ids (issue 20).

    The diagram's own vertices are ``legend`` and ids starting with ``@`` (``@input``,
    ``@output:aux``, ``@removed:...``). A layer named ``legend``, ``@input`` or ``%x`` gets a
    ``%`` in front, so no name can collide with them (and the mapping stays one-to-one).
    """
    return "%" + name if name == "legend" or name.startswith(("@", "%")) else name


def _vertex(op: Op, nodes: Mapping[str, Node], depth: int) -> Vertex:
    if op.kind in ("input", "output"):  # one vertex per input and per output ("input", "output:aux")
        return Vertex(f"@{op.id}", "io", op=op)
    return _layer_vertex(op, nodes, depth)


def _layer_vertex(op: Op, nodes: Mapping[str, Node], depth: int) -> Vertex:
    vertex = _plain_vertex(op, nodes, depth)
    vertex.id = user_id(vertex.id)
    return vertex


def _plain_vertex(op: Op, nodes: Mapping[str, Node], depth: int) -> Vertex:
    module = nodes.get(op.module)
    level = module.depth if module is not None else len(op.module.split(".")) if op.module else 0
    if op.kind == "function":
        if level < depth:  # drawn itself, inside the module whose forward called it
            return Vertex(op.id, layer_kind(op.kind, op.type), op=op, clusters=_ancestors(op.module, level))
    elif level <= depth:
        return Vertex(op.id, layer_kind(op.kind, op.type), op=op, node=module, clusters=_ancestors(op.module, level - 1))
    block = ".".join(op.module.split(".")[:depth])
    if block not in nodes:  # a module the trace does not know: draw the op itself
        return Vertex(op.id, layer_kind(op.kind, op.type), op=op, node=module)
    return Vertex(block, "block", node=nodes[block], clusters=_ancestors(block, depth - 1))


def _find_runs(trace: Trace, nodes: Mapping[str, Node], depth: int) -> list[_Run]:
    """Runs of identical consecutive sibling blocks at depths 1..depth, outer runs first."""
    children: dict[str, list[Node]] = {}
    for n in trace.nodes[1:]:
        children.setdefault(n.path.rpartition(".")[0], []).append(n)
    consumers: dict[str, list[Op]] = {}
    for op in trace.ops:
        for src in op.inputs:
            consumers.setdefault(src, []).append(op)
    module_of = {o.id: o.module for o in trace.ops}
    op_list = trace.ops

    def inside(module: str, path: str) -> bool:
        return module == path or module.startswith(path + ".")

    def signature(path: str) -> tuple:
        cut = len(path)
        sub = [n for n in trace.nodes if inside(n.path, path)]
        sub_ops = [o for o in op_list if inside(o.module, path)]
        return (
            tuple((n.path[cut:], n.type, n.is_leaf, n.input_shapes, n.output_shape, n.params, n.trainable_params, repr(sorted(n.attrs.items()))) for n in sub),
            tuple((o.id[cut:], o.type, tuple(i[cut:] if inside(module_of[i], path) else "^" for i in o.inputs)) for o in sub_ops),
        )

    def chained(prev: str, nxt: str) -> bool:
        """Everything entering ``nxt`` comes from ``prev``, everything leaving ``prev`` goes to ``nxt``."""
        for op in op_list:
            if inside(op.module, nxt) and any(not inside(module_of[i], nxt) and not inside(module_of[i], prev) for i in op.inputs):
                return False
            if inside(op.module, prev):
                for user in consumers.get(op.id, ()):
                    if not inside(user.module, prev) and not inside(user.module, nxt):
                        return False
        return True

    runs: list[_Run] = []
    dropped: list[str] = []  # later copies: nothing inside them is drawn
    for parent in trace.nodes:
        if parent.is_leaf or parent.depth >= depth or any(inside(parent.path, d) for d in dropped):
            continue
        current: list[Node] = []
        current_sig = None
        for child in children.get(parent.path, []) + [None]:
            sig = signature(child.path) if child is not None and not child.is_leaf else None
            if sig is not None and sig == current_sig and chained(current[-1].path, child.path):
                current.append(child)
                continue
            if len(current) > 1:
                runs.append(_Run([n.path for n in current]))
                dropped += [n.path for n in current[1:]]
            current, current_sig = ([child], sig) if child is not None else ([], None)
    return runs


# ---------------------------------------------------------------------------------------
# DOT text.


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
        label = " " + _shape(shape) if first or kinds.get(b) == "merge" else ""
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


def _shape(shape: Shape) -> str:
    return "\u00d7".join(str(d) for d in shape)


def _dim(value: object) -> str:
    """``(3, 3) -> "3\u00d73"``, ``(2, 2)`` -> ``"2"`` for strides and padding, ints as is."""
    if isinstance(value, list | tuple):
        return str(value[0]) if len(set(value)) == 1 else "\u00d7".join(str(v) for v in value)
    return str(value)


def hyperparameters(node: Node) -> str:
    """The settings that matter for a layer, e.g. ``1\u21926 \u00b7 5\u00d75 s1 p0``."""
    a = node.attrs
    parts = []
    if "in_channels" in a and "out_channels" in a:
        parts.append(f"{a['in_channels']}\u2192{a['out_channels']}")
    elif "in_features" in a and "out_features" in a:
        parts.append(f"{a['in_features']}\u2192{a['out_features']}")
    elif "num_features" in a:
        parts.append(f"{a['num_features']} ch")
    elif "num_channels" in a:  # GroupNorm
        parts.append(f"{a['num_channels']} ch \u00b7 {a['num_groups']} groups")
    elif "normalized_shape" in a:  # LayerNorm
        parts.append("over " + "\u00d7".join(str(v) for v in a["normalized_shape"]))
    if "kernel_size" in a:
        k = a["kernel_size"]
        kernel = "\u00d7".join(str(v) for v in k) if isinstance(k, list | tuple) else f"{k}\u00d7{k}"
        window = f"{kernel} s{_dim(a.get('stride', 1))} p{_dim(a.get('padding', 0))}"
        if _dim(a.get("dilation", 1)) != "1":
            window += f" d{_dim(a['dilation'])}"
        if a.get("groups", 1) != 1:
            window += f" g{a['groups']}"
        parts.append(window)
    if "output_size" in a:
        size = a["output_size"]
        parts.append("\u2192 " + ("\u00d7".join(str(v) for v in size) if isinstance(size, list | tuple) else f"{size}\u00d7{size}"))
    if node.type == "Upsample":
        factor = a.get("scale_factor")
        factors = tuple(f"{f:g}" for f in (factor if isinstance(factor, tuple) else (factor,)) if f is not None)
        target = f"\u2192 {_dim(a['size'])}" if a.get("size") else f"\u00d7{_dim(factors)}"
        parts.append(f"{target} {a.get('mode', '')}".strip())
    if node.type == "LocalResponseNorm":
        parts.append(f"size {a['size']}")
    if "p" in a and "dropout" in node.type.lower():
        parts.append(f"p={a['p']}")
    return " \u00b7 ".join(parts)


_PLAIN_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")


def _composition(trace: Trace, path: str) -> str:
    """What a block is made of, e.g. ``Inception\u00d72 \u00b7 MaxPool2d``: its children, seen through plain containers."""
    counts: Counter[str] = Counter()

    def visit(parent: str) -> None:
        for child in trace.children(parent):
            if child.type in _PLAIN_CONTAINERS and not child.is_leaf:
                visit(child.path)
            else:
                counts[child.type] += 1

    visit(path)
    return " \u00b7 ".join(t if c == 1 else f"{t}\u00d7{c}" for t, c in counts.items())


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
        label = _rows(f"<B>{title}</B>" + (f" {_e(name)}" if name else ""), _small(_shape(v.op.output_shape) + _dtype(trace, v.op)))
        return f'label={label}, fillcolor="#ffffff", penwidth=1.2'
    if v.op is not None and v.op.kind == "function":
        if v.kind == "merge":
            symbol = _MERGE_SYMBOLS.get(v.op.type, v.op.type)
            return f'label={_rows(f"<B>{_e(symbol)}</B>")}, shape=ellipse, style=filled, fillcolor="{fill}", margin="0.02,0.02"'
        return f'label={_rows(f"<B>{_e(v.op.type)}</B>  " + _small(v.op.id), extra)}, fillcolor="{fill}"'
    node = v.node
    if v.op is not None:  # a layer
        if node is None:  # a module the trace has no record of: name and type only
            return f'label={_rows(f"<B>{_e(v.op.type)}</B>  " + _small(v.op.module), extra)}, fillcolor="{fill}"'
        params = "" if skip_params else _small(_params(node.params))
        label = _rows(f"<B>{_e(node.type)}</B>  " + _small(node.path), _e(hyperparameters(node)), params, extra)
        return f'label={label}, fillcolor="{fill}"'
    assert node is not None
    name = node.path if v.count == 1 else f"{node.path} \u2013 {v.last}"
    times = f" \u00d7 {v.count}" if v.count > 1 else ""
    label = _rows(
        f"<B>{_e(node.type)}{times}</B>  " + _small(name),
        _small(_composition(trace, node.path), "#333333"),
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


def _cluster_label(node: Node | None, run: _Run | None) -> str:
    if node is None:  # a container the trace has no record of
        return "<>"
    name = node.path if run is None else f"{node.path} \u2013 {run.paths[-1]}"
    times = f" \u00d7 {len(run.paths)}" if run else ""
    params = _params(node.params, each=run is not None)
    return f"<<B>{_e(name)}</B>  {_e(node.type)}{times}" + (f"  <FONT COLOR='#555555'>{_e(params)}</FONT>" if params else "") + ">"


def _title(trace: Trace, title: str | None = None) -> str:
    macs = trace.flops // 2
    cost = f"{_si(macs)}MACs ({_si(trace.flops)}FLOPs)" if trace.flops else ""
    facts = " \u00b7 ".join(x for x in (f"input {_shape(trace.input_shape)}", f"{trace.total_params:,} params", cost) if x)
    return f'<<B>{_e(title or trace.display_name)}</B><BR/><FONT POINT-SIZE="9">{_e(facts)}</FONT>>'


def _si(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} "


def _legend(kinds: list[str], direction: Direction) -> str:
    """One swatch per kind of layer drawn: a row beside the input (TB), a column above it (LR)."""
    cells = [f'<TD BGCOLOR="{KIND_COLOURS[k]}" BORDER="1" COLOR="#888888">{_e(k)}</TD>' for k in kinds]
    cells.insert(0, '<TD><FONT POINT-SIZE="9">layers:</FONT></TD>')
    rows = "<TR>" + "".join(cells) + "</TR>" if direction is Direction.TB else "".join(f"<TR>{c}</TR>" for c in cells)
    return f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="3" CELLPADDING="3">{rows}</TABLE>>'


# ---------------------------------------------------------------------------------------
# Rendering and writing files.


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


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically (see archviz/files.py): a full disk never leaves a truncated or 0-byte file."""
    from archviz.files import write_atomic

    write_atomic(path, data)


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
        write_bytes(dot_path, mark_dot(source, trace.arch).encode())
        raise GraphvizMissing(
            f"graphviz's `dot` program was not found, so only the DOT source was written to {str(dot_path)!r}; "
            f"{INSTALL_HINT}, then run `dot -T{DiagramFormat(fmt).value} {dot_path} -o {path}` or rerun this command."
        ) from None
    write_bytes(path, file_bytes(data, fmt, trace.arch))
    return path


def file_bytes(data: bytes, fmt: DiagramFormat, title: str) -> bytes:
    """What ``render`` returned, as written to a file: DOT source gets archviz's mark (the other formats have it already)."""
    from archviz.files import mark_dot

    return mark_dot(data.decode(), title).encode() if DiagramFormat(fmt) is DiagramFormat.dot else data
