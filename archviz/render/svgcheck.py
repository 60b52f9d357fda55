"""Reading back a drawn SVG: each node's box, and the pairs of node boxes that overlap.

Used by the tests and by ``benchmarks/diagram_speed.py`` to check that no node label is
drawn over another (graphviz writes a node as ``<g class="node">`` with a polygon, path or
ellipse for its outline and ``<text>`` elements for its label).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"
Box = tuple[float, float, float, float]  # x0, y0, x1, y1
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


def _points(element: ET.Element) -> list[tuple[float, float]]:
    if element.tag == f"{SVG}ellipse":
        cx, cy, rx, ry = (float(element.get(k, 0)) for k in ("cx", "cy", "rx", "ry"))
        return [(cx - rx, cy - ry), (cx + rx, cy + ry)]
    text = element.get("points") or element.get("d") or ""
    numbers = [float(n) for n in _NUMBER.findall(text)]
    return list(zip(numbers[0::2], numbers[1::2], strict=False))


def node_boxes(svg: bytes | str) -> dict[str, Box]:
    """``{node title: (x0, y0, x1, y1)}``: the outline of every node (its label's background), in SVG units."""
    root = ET.fromstring(svg)
    boxes: dict[str, Box] = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") != "node":
            continue
        title = g.find(f"{SVG}title")
        name = title.text if title is not None and title.text else g.get("id", "")
        points = [p for child in g.iter() if child.tag in (f"{SVG}polygon", f"{SVG}path", f"{SVG}ellipse") for p in _points(child)]
        if points:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            boxes[name] = (min(xs), min(ys), max(xs), max(ys))
    return boxes


def overlapping(boxes: dict[str, Box], tolerance: float = 0.5) -> list[tuple[str, str]]:
    """Pairs of nodes whose boxes overlap by more than ``tolerance`` units in both directions (sweep over x)."""
    items = sorted(boxes.items(), key=lambda kv: kv[1][0])
    found = []
    for i, (a, (ax0, ay0, ax1, ay1)) in enumerate(items):
        for b, (bx0, by0, bx1, by1) in items[i + 1 :]:
            if bx0 >= ax1 - tolerance:
                break
            if min(ax1, bx1) - max(ax0, bx0) > tolerance and min(ay1, by1) - max(ay0, by0) > tolerance:
                found.append((a, b))
    return found


def cluster_boxes(svg: bytes | str) -> dict[str, Box]:
    """``{block path: box}`` of every cluster (a framed block) drawn."""
    root = ET.fromstring(svg)
    boxes: dict[str, Box] = {}
    for g in root.iter(f"{SVG}g"):
        title = g.find(f"{SVG}title")
        if g.get("class") != "cluster" or title is None or not title.text:
            continue
        points = [p for child in g if child.tag in (f"{SVG}polygon", f"{SVG}path") for p in _points(child)]
        if points:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            boxes[title.text.removeprefix("cluster_")] = (min(xs), min(ys), max(xs), max(ys))
    return boxes


def edge_points(svg: bytes | str) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """``{(tail, head): points}``: the points of every edge's spline (its Bezier control points)."""
    root = ET.fromstring(svg)
    edges: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for g in root.iter(f"{SVG}g"):
        title, path = g.find(f"{SVG}title"), g.find(f"{SVG}path")
        if g.get("class") == "edge" and title is not None and title.text and path is not None:
            tail, _, head = title.text.partition("->")
            edges[(tail, head)] = _points(path)
    return edges


def foreign_crossings(svg: bytes | str, edges: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(tail, head, cluster) for each of ``edges`` that passes inside a cluster holding neither of its ends."""
    clusters, points = cluster_boxes(svg), edge_points(svg)
    found = []
    for tail, head in edges:
        for path, (x0, y0, x1, y1) in clusters.items():
            if any(end == path or end.startswith((path + ".", path + ":")) for end in (tail, head)):
                continue
            if any(x0 + 1 < x < x1 - 1 and y0 + 1 < y < y1 - 1 for x, y in points.get((tail, head), [])):
                found.append((tail, head, path))
                break
    return found
