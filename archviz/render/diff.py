"""The views of `archviz diff`: the JSON contract, a table, and one graph of both networks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from archviz.diff import Diff
from archviz.estimate.units import format_bytes
from archviz.render import Format
from archviz.render.dot import DIFF_MARKS, Decoration, Direction, graph_to_dot
from archviz.render.graph import Graph, Vertex, build_graph, user_id
from archviz.render.tables import human, render_rows
from archviz.shape import format_shape

CONVENTIONS = {
    "rows": "blocks added, removed or changed, at the level where they differ; unchanged blocks are counted, not listed",
    "pairing": "children of paired blocks aligned by (name, type, shapes) with difflib.SequenceMatcher, numeric names left out; "
    "unmatched stretches paired by name, then type and output shape, then position",
    "delta": "B minus A",
    "own": "a row 'PATH (own)' holds a block's params and MACs that its children do not (a parameter or a matmul of its own forward)",
    "totals": "params and MACs deltas of the rows add up exactly to totals.delta",
    "memory": "memory_* per row: the block's output tensor in bytes (cost's activation_bytes); "
    "totals.peak_bytes: the training step's predicted peak, as `archviz cost` reports it",
}


def side(trace: Any, peak: int | None, note: str | None) -> dict[str, Any]:
    return {
        "arch": trace.arch,
        "title": trace.display_name,
        "inputs": [i.to_dict() for i in trace.inputs],
        "total_params": trace.total_params,
        "macs": trace.flops // 2,
        "peak_bytes": peak,
        "peak_note": note,
    }


def diff_report(diff: Diff, peaks: tuple[tuple[int | None, str | None], tuple[int | None, str | None]] = ((None, None), (None, None))) -> dict[str, Any]:
    """The JSON contract of `archviz diff` (stable: other tools read it); ``peaks``: (bytes, note) of A and B."""
    totals: dict[str, Any] = diff.totals()
    (pa, na), (pb, nb) = peaks
    totals["peak_bytes"] = {"a": pa, "b": pb, "delta": pb - pa if pa is not None and pb is not None else None}
    return {
        "a": side(diff.a, pa, na),
        "b": side(diff.b, pb, nb),
        "rows": diff.rows,
        "counts": diff.counts(),
        "totals": totals,
        "conventions": CONVENTIONS,
    }


def _signed(n: int | None, unit: str = "") -> str:
    if n is None:
        return "n/a"
    if unit == "B":
        return ("+" if n > 0 else "\u2212" if n < 0 else "") + format_bytes(abs(n)) if n else "0"
    return f"{n:+,}".replace("-", "\u2212") if n else "0"


def _pair(a: Any, b: Any, show: Any = str) -> str:
    if a == b:
        return show(a) if a is not None else "-"
    return f"{show(a) if a is not None else '-'} \u2192 {show(b) if b is not None else '-'}"


def render_diff(report: dict[str, Any], fmt: Format = Format.table) -> str:
    numbers = fmt in (Format.csv, Format.json)
    rows = []
    for r in report["rows"]:
        rows.append(
            {
                "status": r["status"] if numbers else f"{DIFF_MARKS[r['status']]} {r['status']}",
                "block": r["name"] if numbers or r["name_a"] in (None, r["name_b"]) or r["name_b"] is None else f"{r['name_a']} \u2192 {r['name_b']}",
                "type": _pair(r["type_a"], r["type_b"]),
                "shape": _pair(r["shape_a"], r["shape_b"], format_shape),
                "params": r["params_delta"] if numbers else _signed(r["params_delta"]),
                "macs": r["macs_delta"] if numbers else _signed(r["macs_delta"]),
                "memory": r["memory_delta"] if numbers else _signed(r["memory_delta"], "B"),
            }
        )
    columns = [
        ("status", "Status"),
        ("block", "Block (A \u2192 B)"),
        ("type", "Type"),
        ("shape", "Output shape"),
        ("params", "Params \u0394"),
        ("macs", "MACs \u0394"),
        ("memory", "Output bytes \u0394"),
    ]
    a, b, t, c = report["a"], report["b"], report["totals"], report["counts"]
    peak = t["peak_bytes"]
    peak_text = (
        f"{format_bytes(peak['a'])} \u2192 {format_bytes(peak['b'])} ({_signed(peak['delta'], 'B')}, {peak['delta']:+,} bytes)"
        if peak["delta"] is not None
        else "not predicted (" + "; ".join(dict.fromkeys(x for x in (a["peak_note"], b["peak_note"]) if x)) + ")"
    )
    footer = [
        ("A", f"{a['title']} @ {', '.join(format_shape(i['shape']) for i in a['inputs'])}"),
        ("B", f"{b['title']} @ {', '.join(format_shape(i['shape']) for i in b['inputs'])}"),
        ("Params", f"{human(t['params']['a'])} \u2192 {human(t['params']['b'])} ({_signed(t['params']['delta'])}; the rows add up to this)"),
        ("MACs", f"{human(t['macs']['a'])} \u2192 {human(t['macs']['b'])} ({_signed(t['macs']['delta'])}; the rows add up to this)"),
        ("Training peak", peak_text),
        ("Blocks", f"{c['added']} added, {c['removed']} removed, {c['changed']} changed, {c['unchanged']} unchanged (not listed)"),
    ]
    title = f"diff {a['title']} \u2192 {b['title']}"
    return render_rows(rows, columns, fmt, title=title, footer=footer, payload=report)


# ---------------------------------------------------------------------------------------
# One graph of both networks: B's dataflow, with A's removed blocks put back in, dashed.


def diff_graph(diff: Diff, depth: int = 1) -> tuple[Graph, dict[str, str]]:
    """B's graph at ``depth`` with A's removed blocks added; and each vertex's status (added, removed, changed)."""
    ga, gb = build_graph(diff.a, depth, fold=False), build_graph(diff.b, depth, fold=False)
    status: dict[str, str] = {}

    def path_of(v: Vertex) -> str | None:
        return v.node.path if v.node is not None and v.op is None else v.op.module if v.op is not None and v.op.kind in ("module", "function") else None

    for v in gb.vertices:
        path = path_of(v)
        found = diff.status_of_b(path) if path is not None else None
        if found and (v.op is None or v.op.kind == "module" or found == "added"):
            status[v.id] = found
    removed = set(diff.removed_a())

    def gone(path: str) -> bool:
        return any(path == r or path.startswith(r + ".") for r in removed)

    vertices = list(gb.vertices)
    ids_b = {v.id for v in gb.vertices}
    to_b: dict[str, str] = {}  # A vertex id -> vertex id in the drawing
    for v in ga.vertices:
        path = path_of(v)
        if v.kind == "io" and v.id in ids_b:
            to_b[v.id] = v.id
        elif path is not None and gone(path):
            new_id = "@removed:" + v.id
            clusters = tuple(diff.pairs[c] for c in v.clusters if c in diff.pairs and diff.pairs[c] in gb.clusters)
            vertices.append(replace(v, id=new_id, clusters=clusters))
            status[new_id] = "removed"
            to_b[v.id] = new_id
        elif path is not None and path in diff.pairs:
            own = v.node.path if v.op is None else v.op.id  # a block, a layer, or a function op "module:add"
            mapped = user_id(diff.pairs[path] + own[len(path) :])
            if mapped in ids_b:
                to_b[v.id] = mapped
    edges = list(gb.edges)
    for x, y, shape in ga.edges:
        if (status.get(to_b.get(x, "")) == "removed" or status.get(to_b.get(y, "")) == "removed") and x in to_b and y in to_b:
            edges.append((to_b[x], to_b[y], shape))
    clusters = dict(gb.clusters)
    return Graph(diff.b, depth, vertices, edges, clusters), status


def diff_dot(diff: Diff, depth: int = 1, direction: Direction = Direction.TB) -> str:
    """DOT source of the diff drawing: additions bold green, removals dashed vermillion, changes double blue (Okabe-Ito), with a legend."""
    graph, status = diff_graph(diff, depth)
    title = f"{diff.a.display_name} \u2192 {diff.b.display_name}"
    return graph_to_dot(graph, direction, Decoration(title=title, status=status))
