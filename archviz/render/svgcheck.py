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
