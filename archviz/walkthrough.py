"""The walkthrough of `archviz explain`: one trace, block by block, with the arithmetic behind each number.

A view of the trace (STYLE.md: spec -> module -> trace -> report), like `shapes` and `cost`:
every number is the trace's (params, MACs = FLOPs / 2, output shapes) or cost's receptive
fields (``archviz/estimate/receptive.py``); the formulas that show where they come from are the
op table's (``archviz/spec/ops.py``, each entry's ``explain``), and a formula whose result
disagrees with the trace is dropped, never shown wrong. Conclusions are computed from the
same steps. Nothing here imports torch or prints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from archviz.estimate.receptive import ReceptiveField, block_outputs, receptive_fields
from archviz.spec import ops as O
from archviz.spec.ops import Formula
from archviz.trace.record import Node, Op, Shape, Trace

ELEMENT_BYTES = 4  # activation bytes at float32, as `archviz cost`'s activation_bytes (no --amp, --dtype fp32)

CONVENTIONS = {
    "macs": "multiply-accumulates (FLOPs = 2 x MACs) of convolutions, linear layers and matrix products; "
    "pooling, norms, activations, adds and concatenations count 0",
    "params": "learnable parameters; batch norm's running mean and variance are buffers, not parameters",
    "activation_bytes": "the step's output tensor at float32 (4 bytes per value), as `archviz cost` reports it",
    "receptive_field": "input pixels one output position sees (r) and input pixels between neighbouring positions (j), per spatial axis, as `archviz cost`",
    "formulas": "each formula's value equals the trace's number; a layer without a formula shows its shapes only",
}


@dataclass(frozen=True)
class Step:
    """One row of the walk: a block or layer at the chosen depth, or a merge (add, concat) between them."""

    name: str
    type: str
    kind: str  # the op table's diagram kind: conv, pool, norm, activation, linear, merge, block, other
    depth: int
    input_shapes: tuple[Shape, ...]
    output_shape: Shape | None  # None: a module the forward never called
    params: int
    macs: int
    activation_bytes: int
    receptive_field: ReceptiveField | None
    attrs: dict[str, Any] = field(default_factory=dict)
    formulas: tuple[Formula, ...] = ()
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "kind": self.kind,
            "depth": self.depth,
            "input_shapes": [list(s) for s in self.input_shapes],
            "output_shape": list(self.output_shape) if self.output_shape is not None else None,
            "params": self.params,
            "macs": self.macs,
            "activation_bytes": self.activation_bytes,
            "receptive_field": self.receptive_field.to_dict() if self.receptive_field is not None else None,
            "attrs": {k: list(v) if isinstance(v, tuple) else v for k, v in self.attrs.items()},
            "formulas": [
                {"what": f.what, "text": f.text, "value": list(f.value) if isinstance(f.value, tuple) else f.value, "rule": f.rule} for f in self.formulas
            ],
            "note": self.note,
        }


@dataclass(frozen=True)
class Conclusion:
    """One sentence drawn from the steps, with the numbers behind it."""

    topic: str  # "spatial", "channels", "most_params", "most_macs", "most_activation_bytes", "conv_vs_linear"
    text: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "text": self.text, **self.data}


@dataclass(frozen=True)
class Explanation:
    """What ``archviz explain`` shows; ``to_dict()`` is its ``--format json``."""

    trace: Trace = field(repr=False)
    depth: int
    steps: tuple[Step, ...]
    conclusions: tuple[Conclusion, ...]

    @property
    def total_params(self) -> int:
        return self.trace.total_params

    @property
    def macs(self) -> int:
        return self.trace.flops // 2

    def to_dict(self) -> dict[str, Any]:
        t = self.trace
        return {
            "arch": t.arch,
            "input_shape": list(t.input_shape),
            "output_shape": list(t.outputs[0].shape) if len(t.outputs) == 1 else None,
            "inputs": [i.to_dict() for i in t.inputs],
            "outputs": [o.to_dict() for o in t.outputs],
            "depth": self.depth,
            "total_params": t.total_params,
            "macs": t.flops // 2,
            "flops": t.flops,
            "steps": [s.to_dict() for s in self.steps],
            "conclusions": [c.to_dict() for c in self.conclusions],
            "conventions": CONVENTIONS,
        }

    def __str__(self) -> str:
        from archviz.render.explain import render_text

        return render_text(self)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from archviz.render.explain import render_html

        return render_html(self)


# ---- the steps -----------------------------------------------------------------------


@dataclass
class _Index:
    """The trace looked up by path and id, built once (a walk over a 100k-layer spec stays linear)."""

    trace: Trace
    fields: dict[str, ReceptiveField | None]
    outputs: dict[str, str]  # module path -> id of the op giving its output
    ops_by_id: dict[str, Op]
    ops_in: dict[str, list[Op]]  # shown block -> the ops run inside it, in order
    merges_at: dict[str, list[Op]]  # module path -> the merges its forward calls
    children: dict[str, list[Node]]
    leaves: dict[str, Node]


def _index(trace: Trace, shown: list[Node]) -> _Index:
    blocks = {n.path for n in shown if not n.is_leaf}
    ops_in: dict[str, list[Op]] = {}
    merges_at: dict[str, list[Op]] = {}
    for op in trace.ops:
        if op.kind not in ("module", "function"):
            continue
        if op.kind == "function" and _is_merge(op):
            merges_at.setdefault(op.module, []).append(op)
        path = op.module
        while True:
            if path in blocks:
                ops_in.setdefault(path, []).append(op)
            if not path:
                break
            path = path.rpartition(".")[0]
    children: dict[str, list[Node]] = {}
    for n in trace.nodes[1:]:
        children.setdefault(n.path.rpartition(".")[0] if n.depth > 1 else "", []).append(n)
    leaves = {n.path: n for n in trace.nodes if n.is_leaf}
    return _Index(trace, receptive_fields(trace), block_outputs(trace), {op.id: op for op in trace.ops}, ops_in, merges_at, children, leaves)


def explain(trace: Trace, depth: int = 1) -> Explanation:
    """The walkthrough of ``trace`` at ``depth`` (1: top-level blocks; deeper: their layers)."""
    nodes = trace.blocks(depth)
    ix = _index(trace, nodes)
    position = {op.id: i for i, op in enumerate(trace.ops)}
    shown = {n.path for n in nodes}
    keyed: list[tuple[int, int, Step]] = []
    last = 0
    for node in nodes:
        last = position.get(ix.outputs.get(node.path, ""), last) if node.called else last
        keyed.append((last, len(keyed), _node_step(ix, node)))
    for op in trace.ops:
        if op.kind == "function" and _is_merge(op) and not _inside_shown(op.module, shown):
            keyed.append((position[op.id], len(keyed), _merge_step(op, ix)))
    steps = tuple(step for _, _, step in sorted(keyed, key=lambda k: (k[0], k[1])))
    return Explanation(trace, depth, steps, tuple(_conclusions(trace, steps)))


def _is_merge(op: Op) -> bool:
    f = O.FUNCTIONS.get(op.type)
    return f is not None and f.kind == "merge" and len(op.inputs) > 1


def _inside_shown(module: str, shown: set[str]) -> bool:
    """A merge inside a step already shown: a block (its row shows the rule) or a leaf that adds inside its forward."""
    path = module
    while path:
        if path in shown:
            return True
        path = path.rpartition(".")[0]
    return False


def _torch_type(node: Node) -> O.TorchType | None:
    """The op table's entry for a node: by its class name, or for a subclass (a library's ``Conv2dSame``) by the
    attributes the module tracer read from its registered base class, when they name one explanation."""
    t = O.TORCH_TYPES.get(node.type)
    if t is not None or not node.attrs:
        return t
    return _BY_ATTRS.get(frozenset(node.attrs))


def _by_attrs() -> dict[frozenset[str], O.TorchType]:
    groups: dict[frozenset[str], list[O.TorchType]] = {}
    for t in O.TORCH_TYPES.values():
        if t.attrs:
            groups.setdefault(frozenset(t.attrs), []).append(t)
    return {k: v[0] for k, v in groups.items() if len({(t.explain, t.kind, t.receptive) for t in v}) == 1}


_BY_ATTRS = _by_attrs()


def _kind(node: Node) -> str:
    t = _torch_type(node)
    if t is not None:
        return t.kind
    return "other" if node.is_leaf else "block"


def _verified(formulas: list[Formula], output: Shape, params: int, macs: int) -> tuple[list[Formula], bool]:
    """The formulas whose value equals the traced number each claims; False if any had to go."""
    kept, ok = [], True

    def holds(check: str, value: Any) -> bool:
        if check == "params":
            return value == params
        if check == "macs":
            return value == macs
        if check == "shape":
            return tuple(value) == tuple(output)
        axis = int(check.partition(":")[2])
        return axis < len(output) and value == output[axis]

    for f in formulas:
        if f.checks and all(holds(c, f.value) for c in f.checks):
            kept.append(f)
        else:
            ok = False
    return kept, ok


def _node_step(ix: _Index, node: Node) -> Step:
    kind = _kind(node)
    out_shape = tuple(node.output_shape) if node.called else None
    rf = ix.fields.get(ix.outputs.get(node.path, "")) if node.called else None
    base = dict(
        name=node.path,
        type=node.type,
        kind=kind,
        depth=node.depth,
        input_shapes=tuple(tuple(s) for s in node.input_shapes),
        output_shape=out_shape,
        params=node.params,
        macs=node.macs,
        activation_bytes=math.prod(node.output_shape) * ELEMENT_BYTES if node.called else 0,
        receptive_field=rf,
        attrs=dict(node.attrs),
    )
    if not node.called:
        return Step(**base, note="not called by the forward pass (a container or an unused module): parameters only")
    if not node.is_leaf:
        formulas = _block_sums(ix, node) + _block_receptive(ix, node)
        for op in ix.merges_at.get(node.path, []):
            formulas += _merge_formulas(op, ix.ops_by_id)
        return Step(**base, formulas=tuple(formulas), note="" if formulas else "a block: see its layers with a larger --depth")
    spec = _torch_type(node)
    x = tuple(node.input_shapes[0]) if node.input_shapes else None
    if spec is None or spec.explain is None or x is None:
        what = "an unknown module type" if spec is None else f"{'an' if spec.kind[0] in 'aeiou' else 'a'} {spec.kind} layer"
        keeps = x is not None and x == out_shape
        return Step(**base, note=f"no formula ({what}): {'it keeps the shape' if keeps else 'input and output shapes only'}")
    formulas, complete = _verified(spec.explain(node.attrs, x, out_shape), out_shape, node.params, node.macs)
    formulas += _receptive_formulas(node, spec, ix.fields, ix.ops_by_id)
    note = "" if complete else "a formula its attributes give disagrees with the trace, so it is left out (shapes only for that part)"
    if not formulas and complete:
        note = "no formula from its attributes: input and output shapes only"
    return Step(**base, formulas=tuple(formulas), note=note)


def _block_sums(ix: _Index, node: Node) -> list[Formula]:
    """A block's params and MACs as the sum of its children's, when they add up (a shared tensor counts once)."""
    children = ix.children.get(node.path, [])
    out = []
    for what, get, total in (("params", lambda n: n.params, node.params), ("MACs", lambda n: n.macs, node.macs)):
        parts = [get(c) for c in children if get(c)]
        if len(parts) > 1 and sum(parts) == total:
            out.append(Formula(what, " + ".join(f"{p:,}" for p in parts), total, (what.lower(),), "the sum of its parts"))
    return out


def _block_receptive(ix: _Index, node: Node) -> list[Formula]:
    """A chain of layers (a VGG block, LeNet's conv part): its field as the input's plus each window's growth,
    r = r_in + sum of dilation*(kernel-1)*j over its windows, j = j_in times its strides. Square fields only."""
    inside, fields = ix.ops_in.get(node.path, []), ix.fields
    if not inside or any(len(op.inputs) != 1 for op in inside) or any(op.inputs[0] != prev.id for prev, op in zip(inside, inside[1:], strict=False)):
        return []
    before, after = fields.get(inside[0].inputs[0]), fields.get(inside[-1].id)
    if any(f is None or f.whole_input or f.jump is None or len(set(f.size)) != 1 or len(set(f.jump)) != 1 for f in (before, after)):
        return []
    r, j = before.size[0], before.jump[0]
    terms, strides = [], []
    for op in inside:
        leaf = ix.leaves.get(op.module) if op.kind == "module" else None
        spec = _torch_type(leaf) if leaf is not None else None
        if spec is not None and spec.receptive == "window" and "kernel_size" in leaf.attrs:
            n = len(after.size)
            k, s, d = (
                set(_axes(leaf.attrs.get(key) or default, n)) for key, default in (("kernel_size", 1), ("stride", leaf.attrs["kernel_size"]), ("dilation", 1))
            )
            if len(k) != 1 or len(s) != 1 or len(d) != 1:
                return []
            k, s, d = k.pop(), s.pop(), d.pop()
            terms.append(f"({k}-1)*{j}" if d == 1 else f"{d}*({k}-1)*{j}")
            r += d * (k - 1) * j
            strides.append(s)
            j *= s
        elif (spec is None or spec.receptive != "pointwise") and (op.kind == "module" or fields.get(op.id) != fields.get(op.inputs[0])):
            return []  # a layer whose field rule is not a window or pointwise: no sum to show
    if not terms or (r, j) != (after.size[0], after.jump[0]):
        return []
    return [
        Formula("receptive field r", f"{before.size[0]} + " + " + ".join(terms), r, (), "r_in + the sum of dilation*(kernel-1)*j_in over its windows"),
        Formula("jump j", "*".join(map(str, [before.jump[0], *strides])), j, (), "j_in times each window's stride"),
    ]


def _merge_formulas(op: Op, ops_by_id: dict) -> list[Formula]:
    spec = O.FUNCTIONS[op.type]
    if spec.explain is None:
        return []
    xs = [tuple(ops_by_id[i].output_shape) for i in op.inputs if i in ops_by_id]
    out = tuple(op.output_shape)
    formulas, _ = _verified(spec.explain(xs, out), out, 0, 0)
    return [Formula(f"{op.type}: {f.what}", f.text, f.value, f.checks, f.rule) for f in formulas]


def _merge_step(op: Op, ix: _Index) -> Step:
    ops_by_id = ix.ops_by_id
    formulas = _merge_formulas(op, ops_by_id)
    return Step(
        name=op.id,
        type=op.type,
        kind="merge",
        depth=op.module.count(".") + 2 if op.module else 1,
        input_shapes=tuple(tuple(ops_by_id[i].output_shape) for i in op.inputs if i in ops_by_id),
        output_shape=tuple(op.output_shape),
        params=0,
        macs=op.flops // 2,
        activation_bytes=math.prod(op.output_shape) * ELEMENT_BYTES,
        receptive_field=ix.fields.get(op.id),
        formulas=tuple(formulas),
        note="" if formulas else "no formula for this merge: input and output shapes only",
    )


def _receptive_formulas(node: Node, spec: O.TorchType, fields: dict, ops_by_id: dict) -> list[Formula]:
    """r = r_in + d*(k-1)*j_in and j = j_in*s for a sliding window, with cost's numbers on each side."""
    a = node.attrs
    op = ops_by_id.get(node.path)
    if spec.receptive != "window" or op is None or len(op.inputs) != 1 or "kernel_size" not in a:
        return []
    before, after = fields.get(op.inputs[0]), fields.get(op.id)
    if before is None or after is None or before.whole_input or after.whole_input or before.jump is None or after.jump is None:
        return []
    n = len(after.size)
    if len(before.size) != n:
        return []
    k = _axes(a["kernel_size"], n)
    s = _axes(a.get("stride") or a["kernel_size"], n)
    d = _axes(a.get("dilation") or 1, n)
    names = O.AXIS_NAMES.get(n, tuple(str(i) for i in range(n)))
    groups: dict[tuple[int, ...], list[int]] = {}
    for i in range(n):
        groups.setdefault((before.size[i], before.jump[i], k[i], s[i], d[i], after.size[i], after.jump[i]), []).append(i)
    out = []
    for (r0, j0, ki, si, di, r1, j1), axes in groups.items():
        suffix = "" if len(groups) == 1 else " " + ", ".join(names[i] for i in axes)
        r_text = f"{r0} + ({ki}-1)*{j0}" if di == 1 else f"{r0} + {di}*({ki}-1)*{j0}"
        r_value = r0 + di * (ki - 1) * j0
        if r_value == r1:
            out.append(Formula(f"receptive field r{suffix}", r_text, r1, (), "r_in + dilation*(kernel-1)*j_in"))
        if j0 * si == j1:
            out.append(Formula(f"jump j{suffix}", f"{j0}*{si}", j1, (), "j_in*stride"))
    return out


def _axes(value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    return value if len(value) == n else (value[-1],) * n


# ---- conclusions -----------------------------------------------------------------------


def _main_path(trace: Trace) -> list[Op]:
    """Ops every path from the input to the output goes through, in execution order: no edge of the
    dataflow graph jumps over them (the body of a residual block and Inception's branches drop out)."""
    position = {op.id: i for i, op in enumerate(trace.ops)}
    crossed = [0] * (len(trace.ops) + 1)
    for op in trace.ops:
        end = position[op.id]
        for i in op.inputs:
            start = position.get(i)
            if start is not None and end - start > 1:
                crossed[start + 1] += 1
                crossed[end] -= 1
    out, depth = [], 0
    for i, op in enumerate(trace.ops):
        depth += crossed[i]
        if depth == 0:
            out.append(op)
    return out


def _run(seq: list[int], factor: float) -> tuple[int, int, int]:
    """The longest run of consecutive changes by ``factor`` (2: doubling, 0.5: halving, rounding either way): (count, first, last)."""
    best = (0, 0, 0)
    start = 0
    for i in range(1, len(seq) + 1):
        ok = i < len(seq) and (seq[i] == 2 * seq[i - 1] if factor == 2 else seq[i] in (seq[i - 1] // 2, (seq[i - 1] + 1) // 2))
        if not ok:
            if i - 1 - start > best[0]:
                best = (i - 1 - start, seq[start], seq[i - 1])
            start = i
    return best


def _changes(values: list[Any]) -> list[Any]:
    out = []
    for v in values:
        if not out or out[-1] != v:
            out.append(v)
    return out


def _size_text(size: tuple[int, ...]) -> str:
    return str(size[0]) if len(set(size)) == 1 else "x".join(map(str, size))


def _step_text(a: int, b: int) -> str:
    if b in (a // 2, (a + 1) // 2) and a > 1:
        return "halved"
    if b == 2 * a:
        return "doubled"
    if b > a and b % a == 0:
        return f"multiplied by {b // a}"  # upsampling
    if b < a and a % b == 0:
        return f"divided by {a // b}"  # a window with a large stride (ViT's 16x16 patches)
    return f"reduced by {a - b}" if b < a else f"increased by {b - a}"


def _pattern(seq: list[int]) -> str:
    """``"halved 2 times, reduced by 4 2 times"``: each kind of change along ``seq``, counted, in order of first appearance."""
    counts: dict[str, int] = {}
    for a, b in zip(seq, seq[1:], strict=False):
        text = _step_text(a, b)
        counts[text] = counts.get(text, 0) + 1
    return ", ".join(f"{text} {_times(n)}" for text, n in counts.items())


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def _evolution(trace: Trace) -> list[Conclusion]:
    shapes = [tuple(op.output_shape) for op in _main_path(trace) if op.kind != "output" and len(op.output_shape) >= 3]
    if not shapes:
        return []
    shapes = [s for s in shapes if len(s) == len(shapes[0])]  # a ViT's tokens (N x L x C) are not N x C x H x W
    axes = {1: "L", 2: "H and W", 3: "D, H and W"}.get(len(shapes[0]) - 2, "the spatial axes")
    out = []
    sizes = _changes([s[2:] for s in shapes])
    global_pool = len(sizes) > 1 and all(v == 1 for v in sizes[-1])
    body = sizes[:-1] if global_pool else sizes
    tail = f", then global pooling makes them {_size_text(sizes[-1])}" if global_pool else ""
    halvings = 0
    if len(body) == 1:
        text = f"{axes} stay {_size_text(body[0])}{tail}"
    elif all(len(set(z)) == 1 for z in body):
        seq = [z[0] for z in body]
        halvings = sum(_step_text(a, b) == "halved" for a, b in zip(seq, seq[1:], strict=False))
        if halvings == len(seq) - 1:
            text = f"{axes} halve {halvings} times, {seq[0]} -> {seq[-1]}{tail}"
        else:
            kinds = [_step_text(a, b) for a, b in zip(seq, seq[1:], strict=False)]
            ratios = ", ".join(f"{a / b:.1f}" for a, b in zip(seq, seq[1:], strict=False) if b)
            how = _pattern(seq) if len(set(kinds)) <= 2 and len(set(kinds)) < len(kinds) else f"divided by about {ratios}"
            text = f"{axes} go {' -> '.join(map(str, seq))} ({how}){tail}"
    else:
        text = f"{axes} go {' -> '.join(_size_text(z) for z in body)}{tail}"
    out.append(Conclusion("spatial", text, {"sizes": [list(z) for z in sizes], "halvings": halvings}))
    channels = _changes([s[1] for s in shapes])
    if len(channels) > 1:
        doublings, a, b = _run(channels, 2)
        text = f"channels go {' -> '.join(map(str, channels))}"
        if doublings == len(channels) - 1:
            text = f"channels double {doublings} times, {a} -> {b}"
        elif doublings > 1:
            text += f"; they double {doublings} times in a row, {a} -> {b}"
        out.append(Conclusion("channels", text, {"channels": channels, "doublings": doublings}))
    return out


def _share(part: int, total: int) -> str:
    return f"{100 * part / total:.1f}%" if total else "-"


def _most(steps: Sequence[Step], key: str, total: int, unit: str, topic: str) -> Conclusion | None:
    candidates = [s for s in steps if s.kind != "merge" and getattr(s, key) > 0]
    if not candidates:
        return None
    top = max(candidates, key=lambda s: getattr(s, key))
    value = getattr(top, key)
    what = {"params": "parameters", "macs": "MACs", "activation_bytes": "activation memory (output bytes)"}[key]
    if key == "activation_bytes":
        of = f"{value:,} bytes ({_share(value, total)} of all steps' outputs)"
    else:
        of = f"{value:,} of {total:,} {unit} ({_share(value, total)})"
    ties = sum(getattr(s, key) == value for s in candidates) - 1
    who = f"'{top.name}' ({top.type})" + (f" and {ties:,} other step{'s' if ties > 1 else ''} with as many" if ties else "")
    verb = "hold" if ties else "holds"
    return Conclusion(topic, f"{who} {verb} the most {what}: {of}{' each' if ties else ''}", {"name": top.name, "value": value, "total": total, "ties": ties})


def _split(trace: Trace) -> Conclusion | None:
    """Params and MACs of convolutional layers vs linear (fully connected) layers; the rest is 'other'."""
    parts = {"conv": [0, 0], "linear": [0, 0]}
    for node in trace.nodes:
        if node.is_leaf:
            kind = _kind(node)
            if kind in parts:
                parts[kind][0] += node.params
                parts[kind][1] += node.macs
    for op in trace.ops:  # matrix products between modules (attention) count as linear
        f = O.FUNCTIONS.get(op.type)
        if op.kind == "function" and f is not None and f.kind in parts:
            parts[f.kind][1] += op.flops // 2
    total_params, total_macs = trace.total_params, trace.flops // 2
    if not any(p or m for p, m in parts.values()):
        return None
    data = {k: {"params": p, "macs": m} for k, (p, m) in parts.items()}
    data["other"] = {"params": total_params - sum(p for p, _ in parts.values()), "macs": total_macs - sum(m for _, m in parts.values())}
    conv, lin = parts["conv"], parts["linear"]
    text = (
        f"convolutions hold {conv[0]:,} params ({_share(conv[0], total_params)}) and {conv[1]:,} MACs ({_share(conv[1], total_macs)}); "
        f"linear layers {lin[0]:,} params ({_share(lin[0], total_params)}) and {lin[1]:,} MACs ({_share(lin[1], total_macs)})"
    )
    return Conclusion("conv_vs_linear", text, data)


def _conclusions(trace: Trace, steps: Sequence[Step]) -> list[Conclusion]:
    out = _evolution(trace)
    nodes = [s for s in steps if s.kind != "merge"]
    activation_total = sum(s.activation_bytes for s in nodes)
    for key, total, unit, topic in (
        ("params", trace.total_params, "params", "most_params"),
        ("macs", trace.flops // 2, "MACs", "most_macs"),
        ("activation_bytes", activation_total, "bytes", "most_activation_bytes"),
    ):
        c = _most(nodes, key, total, unit, topic)
        if c is not None:
            out.append(c)
    split = _split(trace)
    if split is not None:
        out.append(split)
    return out
