"""The graph a diagram draws (render/dot.py as DOT text, render/html.py as a page): the real dataflow, not a chain of modules.

GoogLeNet's four Inception paths fan out from one producer and meet at the ``cat`` op.
``depth`` picks the level of detail with one mechanism: every op is mapped to its
enclosing module at ``depth`` (or drawn itself when it sits shallower), and edges that
fall inside one such block disappear. Blocks shallower than ``depth`` become clusters.
``fold`` draws a run of identical consecutive blocks (same type, attributes, shapes and
parameters, all the way down, fed one into the next) once, marked "x N".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from archviz.errors import UsageError
from archviz.spec import ops as O
from archviz.trace.record import Node, Op, Shape, Trace


@dataclass
class Run:
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
    folds: dict[str, Run] = field(default_factory=dict)  # first block path -> its run

    @property
    def kinds(self) -> list[str]:
        """Colour categories present, in legend order."""
        present = {v.kind for v in self.vertices}
        return [k for k in O.KINDS if k in present]


def build_graph(trace: Trace, depth: int = 1, fold: bool = True) -> Graph:
    """Collapse ``trace.ops`` to the blocks at ``depth``; fold identical runs if ``fold``."""
    if depth < 1:
        raise UsageError(f"--depth must be at least 1 (1 = top-level blocks), got {depth}.")
    nodes = {n.path: n for n in trace.nodes}
    ops = {o.id: o for o in trace.ops}
    runs = find_runs(trace, nodes, depth) if fold else []

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
    vertex = _plain_vertex(op, nodes, depth)
    vertex.id = user_id(vertex.id)
    return vertex


def _plain_vertex(op: Op, nodes: Mapping[str, Node], depth: int) -> Vertex:
    module = nodes.get(op.module)
    level = module.depth if module is not None else len(op.module.split(".")) if op.module else 0
    if op.kind == "function":
        if level < depth:  # drawn itself, inside the module whose forward called it
            return Vertex(op.id, O.layer_kind(op.kind, op.type), op=op, clusters=_ancestors(op.module, level))
    elif level <= depth:
        return Vertex(op.id, O.layer_kind(op.kind, op.type), op=op, node=module, clusters=_ancestors(op.module, level - 1))
    block = ".".join(op.module.split(".")[:depth])
    if block not in nodes:  # a module the trace does not know: draw the op itself
        return Vertex(op.id, O.layer_kind(op.kind, op.type), op=op, node=module)
    return Vertex(block, "block", node=nodes[block], clusters=_ancestors(block, depth - 1))


def find_runs(trace: Trace, nodes: Mapping[str, Node], depth: int) -> list[Run]:
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

    runs: list[Run] = []
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
                runs.append(Run([n.path for n in current]))
                dropped += [n.path for n in current[1:]]
            current, current_sig = ([child], sig) if child is not None else ([], None)
    return runs


# ---------------------------------------------------------------------------------------
# Labels: the text on a box.


def shape_text(shape: Shape) -> str:
    return "\u00d7".join(str(d) for d in shape)


_PLAIN_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")


def composition(trace: Trace, path: str) -> str:
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


def si(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} "
