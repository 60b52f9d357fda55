"""Small self-contained SVG line charts: the learning curve (d2l's Animator plot: loss, train acc,
test acc per epoch) and `archviz cost --sweep`'s peak memory against the batch size.

Hand-written because matplotlib is not a dependency; about as much code as calling it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

SERIES = (("loss", "train loss", "#1f77b4", ""), ("train_acc", "train acc", "#9467bd", "6,3"), ("test_acc", "test acc", "#2ca02c", "2,3"))
COLOURS = ("#1f77b4", "#9467bd", "#2ca02c", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
CURVE_MARK = "<!-- archviz learning curve: written by archviz train, which may replace it -->"
W, H, LEFT, RIGHT, TOP, BOTTOM = 480, 320, 48, 110, 30, 40


@dataclass(frozen=True)
class Series:
    """One line: its points (x, y), legend label, colour and dash pattern ("" = solid)."""

    points: Sequence[tuple[float, float]]
    label: str
    colour: str
    dash: str = ""


@dataclass(frozen=True)
class Level:
    """A horizontal line across the plot (a budget), with its label."""

    value: float
    label: str
    colour: str = "#d62728"


def line_chart_svg(
    series: Sequence[Series],
    *,
    title: str = "",
    x_label: str = "",
    x_range: tuple[float, float],
    x_ticks: Sequence[float],
    y_max: float,
    y_text: Callable[[float], str] = lambda v: f"{v:.2g}",
    levels: Sequence[Level] = (),
    comment: str = "",
    legend_width: int = RIGHT,
) -> str:
    """An SVG line chart; y runs from 0 to ``y_max``; ``comment`` is written as an XML comment after the root tag.

    ``legend_width``: room on the right for the legend (the plot keeps its size; the picture widens)."""
    width = W + legend_width - RIGHT
    pw, ph = width - LEFT - legend_width, H - TOP - BOTTOM
    x_lo, x_hi = x_range

    def x(value: float) -> float:
        return LEFT + ((value - x_lo) / max(x_hi - x_lo, 1e-12)) * pw

    def y(value: float) -> float:
        return TOP + ph - (value / y_max) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{H}" viewBox="0 0 {width} {H}" font-family="sans-serif" font-size="11">']
    if comment:
        out.append(f"<!-- {escape(comment).replace('--', '- -')} -->")
    out += [
        f'<rect width="{width}" height="{H}" fill="white"/>',
        f'<text x="{LEFT}" y="18" font-size="13">{escape(title)}</text>',
        f'<path d="M{LEFT},{TOP} V{TOP + ph} H{LEFT + pw}" fill="none" stroke="#333"/>',
    ]
    for i in range(5):  # y grid and ticks
        value = y_max * i / 4
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{escape(y_text(value))}</text>')
    for tick in x_ticks:
        out.append(f'<text x="{x(tick):.1f}" y="{TOP + ph + 16}" text-anchor="middle">{tick:g}</text>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 6}" text-anchor="middle">{escape(x_label)}</text>')
    rows = [(s.label, s.colour, s.dash) for s in series]
    for s in series:
        points = [(x(px), y(py)) for px, py in s.points]
        if points:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{s.colour}" stroke-width="2"{_dash(s.dash)}/>')
            out += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{s.colour}"/>' for px, py in points]
    for level in levels:
        out.append(
            f'<line class="level" x1="{LEFT}" x2="{LEFT + pw}" y1="{y(level.value):.1f}" y2="{y(level.value):.1f}" stroke="{level.colour}"{_dash("4,3")}/>'
        )
        rows.append((level.label, level.colour, "4,3"))
    for row, (label, colour, dash) in enumerate(rows):
        ly = TOP + 10 + 18 * row
        lx = width - legend_width
        out.append(f'<line x1="{lx + 10}" x2="{lx + 34}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"{_dash(dash)}/>')
        out.append(f'<text x="{lx + 40}" y="{ly + 4}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def learning_curve_svg(records: Sequence[dict[str, Any]], title: str = "") -> str:
    """An SVG line chart of ``records`` (metrics.json rows): x = epoch, y from 0 to max(1, largest loss)."""
    epochs = [r["epoch"] for r in records]
    x_max = max(epochs, default=1)
    y_max = max([1.0] + [float(r[key]) for r in records for key, *_ in SERIES if r.get(key) is not None])
    series = [Series([(r["epoch"], float(r[key])) for r in records if r.get(key) is not None], label, colour, dash) for key, label, colour, dash in SERIES]
    step = max(1, round(x_max / 10))
    # epochs 1..x_max, as d2l's Animator
    return CURVE_MARK + "\n" + line_chart_svg(series, title=title, x_label="epoch", x_range=(1, max(x_max, 2)), x_ticks=range(1, x_max + 1, step), y_max=y_max)


def _dash(pattern: str) -> str:
    return f' stroke-dasharray="{pattern}"' if pattern else ""
