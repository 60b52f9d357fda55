"""`archviz diff`: two traces compared block by block (added, removed, changed), with exact totals.

Blocks are paired level by level, as a text diff pairs lines: the children of two paired
blocks are aligned with a sequence alignment (``difflib.SequenceMatcher``) on a key of
(name, type), where a numeric name (``features.3``, ``layer1.0``) is left out of the key
so that VGG-11's and VGG-16's layer lists align by type, not by index. Inside a stretch
the alignment could not match, blocks of the same name that are both blocks (ResNet-18's
BasicBlock ``layer1.0`` and ResNet-50's Bottleneck ``layer1.0``), then blocks of the same
type and output shape, are paired in order; the rest are added or removed. Paired blocks
of the same type that differ are compared child by child (recursively); anything else that
differs is one "changed" row.

Exact totals: a block's own parameters and MACs that its children do not hold (a
parameter owned by the block itself, a matmul in its forward) appear as a row
``PATH (own)`` when they differ, so the params and MACs deltas of the rows always add up
to the difference of the two networks' totals.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from archviz.trace.record import Node, Trace

STATUSES = ("added", "removed", "changed")


@dataclass
class _Side:
    trace: Trace
    element: int  # bytes per element of an activation (cost's activation_bytes)
    children: dict[str, list[Node]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for n in self.trace.nodes[1:]:
            self.children.setdefault(n.path.rpartition(".")[0] if n.depth > 1 else "", []).append(n)

    def memory(self, n: Node) -> int:
        return math.prod(n.output_shape) * self.element if n.called else 0


def _key(n: Node) -> tuple[Any, ...]:
    return ("" if n.name.isdigit() else n.name, n.type, n.input_shapes, n.output_shape)


def _same_leaf(x: Node, y: Node) -> bool:
    return (x.type, x.input_shapes, x.output_shape, x.params, x.trainable_params, x.flops, repr(sorted(x.attrs.items()))) == (
        y.type,
        y.input_shapes,
        y.output_shape,
        y.params,
        y.trainable_params,
        y.flops,
        repr(sorted(y.attrs.items())),
    )


class _Differ:
    def __init__(self, a: _Side, b: _Side):
        self.a, self.b = a, b
        self.rows: list[dict[str, Any]] = []
        self.pairs: dict[str, str] = {}  # path in A -> path in B, for every paired block
        self.unchanged = 0

    def row(self, status: str, x: Node | None, y: Node | None, name: str | None = None, own: tuple[int, int, int, int] | None = None) -> None:
        if own is not None:
            pa, pb, ma, mb = own
            values = {"params": (pa, pb), "macs": (ma, mb), "memory": (0, 0)}
        else:
            values = {
                "params": (x.params if x else 0, y.params if y else 0),
                "macs": (x.macs if x else 0, y.macs if y else 0),
                "memory": (self.a.memory(x) if x else 0, self.b.memory(y) if y else 0),
            }
        row: dict[str, Any] = {
            "status": status,
            "name": name or (y.path if y is not None else x.path),  # type: ignore[union-attr]
            "name_a": x.path if x is not None else None,
            "name_b": y.path if y is not None else None,
            "type_a": ("(own)" if own else x.type) if x is not None else None,
            "type_b": ("(own)" if own else y.type) if y is not None else None,
            "shape_a": list(x.output_shape) if x is not None and x.called and not own else None,
            "shape_b": list(y.output_shape) if y is not None and y.called and not own else None,
        }
        for key, (va, vb) in values.items():
            row[f"{key}_a"], row[f"{key}_b"], row[f"{key}_delta"] = va, vb, vb - va
        self.rows.append(row)

    def pair(self, x: Node, y: Node, root: bool = False) -> None:
        self.pairs[x.path] = y.path
        cx, cy = self.a.children.get(x.path, []), self.b.children.get(y.path, [])
        if cx and cy and (x.type == y.type or root):
            before = len(self.rows)
            self.align(cx, cy)
            own = (
                x.params - sum(c.params for c in cx),
                y.params - sum(c.params for c in cy),
                x.macs - sum(c.macs for c in cx),
                y.macs - sum(c.macs for c in cy),
            )
            if own[0] != own[1] or own[2] != own[3]:
                self.row("changed", x, y, name=f"{y.path or '(network)'} (own)", own=own)
            if len(self.rows) == before and x.output_shape == y.output_shape:
                self.unchanged += 1
            elif len(self.rows) == before:  # same parts, another output shape (a different input): one row says so
                self.row("changed", x, y)
            return
        if not cx and not cy and _same_leaf(x, y):
            self.unchanged += 1
            return
        self.row("changed", x, y)

    def align(self, xs: list[Node], ys: list[Node]) -> None:
        matcher = difflib.SequenceMatcher(None, [_key(n) for n in xs], [_key(n) for n in ys], autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                for x, y in zip(xs[i1:i2], ys[j1:j2], strict=True):
                    self.pair(x, y)
            else:
                self.stretch(xs[i1:i2], ys[j1:j2])

    def stretch(self, xs: list[Node], ys: list[Node]) -> None:
        """Pair what can be paired in a stretch the alignment left unmatched; the rest is removed or added, in order."""
        matched: dict[int, int] = {}
        rules = (
            lambda x, y: x.name == y.name and (x.type == y.type or (not x.is_leaf and not y.is_leaf)),
            lambda x, y: x.type == y.type and x.output_shape == y.output_shape,
            lambda x, y: x.type == y.type and not x.name.isdigit() and not y.name.isdigit(),
        )
        for rule in rules:
            j0 = 0
            for i, x in enumerate(xs):
                if i in matched:
                    continue
                for j in range(j0, len(ys)):
                    if j not in matched.values() and rule(x, ys[j]):
                        matched[i] = j
                        j0 = j + 1
                        break
        rest_x = [i for i in range(len(xs)) if i not in matched]
        rest_y = [j for j in range(len(ys)) if j not in matched.values()]
        if len(rest_x) == len(rest_y) and all(not xs[i].is_leaf and not ys[j].is_leaf for i, j in zip(rest_x, rest_y, strict=True)):
            if all(i < k for i, k in zip(rest_x, rest_x[1:], strict=False)):  # blocks in the same places, named differently (b1.. vs stem, layer1..)
                matched.update(zip(rest_x, rest_y, strict=True))
        by_j = {j: i for i, j in matched.items()}
        i = 0
        for j, y in enumerate(ys):
            if j in by_j:
                while i < by_j[j]:
                    if i not in matched:
                        self.row("removed", xs[i], None)
                    i += 1
                self.pair(xs[by_j[j]], y)
                i = max(i, by_j[j] + 1)
            else:
                self.row("added", None, y)
        for k in range(i, len(xs)):
            if k not in matched:
                self.row("removed", xs[k], None)


def _element(trace: Trace) -> int:
    floats = {i.dtype for i in trace.inputs if "float" in i.dtype}
    return 2 if floats and floats <= {"bfloat16", "float16"} else 4


@dataclass(frozen=True)
class Diff:
    """Two traces compared: rows of added/removed/changed blocks, totals, and the pairing of block paths (A -> B)."""

    a: Trace
    b: Trace
    rows: list[dict[str, Any]]
    pairs: dict[str, str]
    unchanged: int

    def totals(self) -> dict[str, dict[str, int]]:
        a, b = self.a, self.b
        return {
            "params": {"a": a.total_params, "b": b.total_params, "delta": b.total_params - a.total_params},
            "macs": {"a": a.flops // 2, "b": b.flops // 2, "delta": b.flops // 2 - a.flops // 2},
        }

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for r in self.rows if r["status"] == s) for s in STATUSES} | {"unchanged": self.unchanged}

    def status_of_b(self, path: str) -> str | None:
        """How block ``path`` of B fares: added (it or a block around it is new), changed (something in or around it differs), or None."""
        for r in self.rows:
            q = r["name_b"]
            if r["status"] == "added" and (path == q or path.startswith(q + ".")):
                return "added"
        for r in self.rows:
            q = r["name_b"] if r["name_b"] is not None else self.pairs.get(r["name_a"].rpartition(".")[0])  # where in B it happened
            if q is None:
                continue
            inside = q == path or q.startswith(path + ".")  # the change is in this block
            around = r["status"] == "changed" and r["type_b"] != "(own)" and path.startswith(q + ".")  # this block is part of a changed one
            if inside or around:
                return "changed"
        return None

    def removed_a(self) -> Iterator[str]:
        """Paths of A's blocks that were removed (outermost only)."""
        return (r["name_a"] for r in self.rows if r["status"] == "removed")


def diff_traces(a: Trace, b: Trace) -> Diff:
    """Compare two traces block by block; see the module docstring for the pairing rules."""
    differ = _Differ(_Side(a, _element(a)), _Side(b, _element(b)))
    differ.pair(a.root, b.root, root=True)
    return Diff(a, b, differ.rows, differ.pairs, differ.unchanged)
