"""The learning curve as a small self-contained SVG (d2l's Animator plot: loss, train acc, test acc per epoch).

Hand-written because matplotlib is not a dependency; about as much code as calling it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

SERIES = (("loss", "train loss", "#1f77b4", ""), ("train_acc", "train acc", "#9467bd", "6,3"), ("test_acc", "test acc", "#2ca02c", "2,3"))
W, H, LEFT, RIGHT, TOP, BOTTOM = 480, 320, 48, 110, 30, 40


def learning_curve_svg(records: Sequence[dict[str, Any]], title: str = "") -> str:
    """An SVG line chart of ``records`` (metrics.json rows): x = epoch, y from 0 to max(1, largest loss)."""
    epochs = [r["epoch"] for r in records]
    x_max = max(epochs, default=1)
    y_max = max([1.0] + [float(r[key]) for r in records for key, *_ in SERIES if r.get(key) is not None])
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(epoch: float) -> float:  # epochs 1..x_max, as d2l's Animator
        return LEFT + ((epoch - 1) / max(x_max - 1, 1)) * pw

    def y(value: float) -> float:
        return TOP + ph - (value / y_max) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{LEFT}" y="18" font-size="13">{escape(title)}</text>',
        f'<path d="M{LEFT},{TOP} V{TOP + ph} H{LEFT + pw}" fill="none" stroke="#333"/>',
    ]
    for i in range(5):  # y grid and ticks
        value = y_max * i / 4
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.2g}</text>')
    step = max(1, round(x_max / 10))
    for epoch in range(1, x_max + 1, step):  # x ticks
        out.append(f'<text x="{x(epoch):.1f}" y="{TOP + ph + 16}" text-anchor="middle">{epoch}</text>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 6}" text-anchor="middle">epoch</text>')
    for row, (key, label, color, dash) in enumerate(SERIES):
        points = [(x(r["epoch"]), y(float(r[key]))) for r in records if r.get(key) is not None]
        if points:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{_dash(dash)}/>')
            out += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{color}"/>' for px, py in points]
        ly = TOP + 10 + 18 * row
        out.append(f'<line x1="{W - RIGHT + 10}" x2="{W - RIGHT + 34}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"{_dash(dash)}/>')
        out.append(f'<text x="{W - RIGHT + 40}" y="{ly + 4}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _dash(pattern: str) -> str:
    return f' stroke-dasharray="{pattern}"' if pattern else ""
