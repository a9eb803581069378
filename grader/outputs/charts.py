"""The class summary's three bar charts, drawn as SVG by hand.

They were matplotlib figures: importing it and laying out two or three PNGs took 0.45 s of every
batch run, 5 % of a submission graded alone (measured 2026-12-04). A bar chart is a few
rectangles and labels; SVG draws them crisply at any zoom and needs nothing installed.

Every label goes through ``grader.outputs.escape.html_text`` (escaped, control characters
dropped: valid XML text); the page embeds each chart as a base64
``data:`` image, so nothing in it can reach the page's own markup either.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence

from grader.outputs.escape import html_text
from grader.outputs.points import fmt_points

__all__ = ["failures_chart", "histogram_chart", "img", "pass_rate_chart"]

FONT = 'font-family="DejaVu Sans, Arial, sans-serif" font-size="12"'
GREEN, YELLOW, RED, BLUE, GRID = "#4c9a4c", "#e0b040", "#c85050", "#4878a8", "#dddddd"


def img(svg: str, alt: str) -> str:
    """An ``<img>`` holding ``svg`` (base64 ``data:`` URI) with ``alt`` text."""
    data = base64.b64encode(svg.encode()).decode()
    return f'<img alt="{html_text(alt)}" src="data:image/svg+xml;base64,{data}">'


def histogram_chart(totals: Sequence[float], possible: float) -> str:
    """Students per score bin: ``min(20, max(5, n))`` equal bins over ``[0, max(possible, top score, 1)]``
    (the last bin includes its upper edge)."""
    top = max(possible, max(totals, default=0.0), 1.0)
    bins = min(20, max(5, len(totals)))
    counts = [0] * bins
    for t in totals:
        counts[min(bins - 1, max(0, int(t / top * bins)))] += 1
    plot = _Plot(800, 320, left=60, bottom=50)
    ymax = _nice_max(max(counts, default=0))
    plot.y_ticks([(v, str(v)) for v in _int_ticks(ymax)], ymax)
    w = plot.w / bins
    for i, c in enumerate(counts):
        plot.rect(i * w + 1, plot.h * (1 - c / ymax), w - 2, plot.h * c / ymax, BLUE)
    plot.x_ticks([(plot.w * k / 4, _num(top * k / 4)) for k in range(5)])
    plot.labels(f"automatic points (of {fmt_points(possible)})", "students")
    return plot.svg()


def pass_rate_chart(names: Sequence[str], full: Sequence[float], partial: Sequence[float],
                    none: Sequence[float]) -> str:
    """Per item, the shares (0..1) of students with full, partial and no points, stacked."""
    plot = _Plot(max(600, 45 * len(names) + 260), 360, left=60, bottom=80, right=130)
    plot.y_ticks([(v, f"{v:g}") for v in (0, 0.25, 0.5, 0.75, 1.0)], 1.0)
    w = plot.w / max(len(names), 1)
    for i, name in enumerate(names):
        base = 0.0
        for share, colour in ((full[i], GREEN), (partial[i], YELLOW), (none[i], RED)):
            plot.rect(i * w + 0.15 * w, plot.h * (1 - base - share), 0.7 * w, plot.h * share, colour)
            base += share
        plot.rotated_label(i * w + w / 2, name)
    plot.legend([("full points", GREEN), ("partial", YELLOW), ("none", RED)])
    plot.labels("", "share of students")
    return plot.svg()


def failures_chart(labels: Sequence[str], counts: Sequence[int]) -> str:
    """Horizontal bars: how many students fail each labelled test."""
    plot = _Plot(1000, 28 * len(labels) + 70, left=430, bottom=45)
    xmax = _nice_max(max(counts, default=0))
    h = plot.h / max(len(labels), 1)
    for v in _int_ticks(xmax):
        x = plot.w * v / xmax
        plot.line(x, 0, x, plot.h, GRID)
        plot.text(x, plot.h + 16, str(v), "middle")
    for i, (label, count) in enumerate(zip(labels, counts, strict=True)):
        plot.rect(0, i * h + 0.15 * h, plot.w * count / xmax, 0.7 * h, RED)
        plot.text(-6, i * h + h / 2 + 4, label, "end", size=11)
    plot.labels("students failing it", "")
    return plot.svg()


class _Plot:
    """A plotting area of ``width`` x ``height`` pixels less its margins; coordinates given to the
    methods are inside the area, (0, 0) at its top left."""

    def __init__(self, width: float, height: float, *, left: float, bottom: float, right: float = 20,
                 top: float = 15):
        self.width, self.height, self.left, self.top = width, height, left, top
        self.w, self.h = width - left - right, height - top - bottom
        self.parts: list[str] = []

    def rect(self, x: float, y: float, w: float, h: float, fill: str) -> None:
        if w > 0 and h > 0:
            self.parts.append(f'<rect x="{self.left + x:.1f}" y="{self.top + y:.1f}" width="{w:.1f}" '
                              f'height="{h:.1f}" fill="{fill}"/>')

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str = "#333333") -> None:
        self.parts.append(f'<line x1="{self.left + x1:.1f}" y1="{self.top + y1:.1f}" x2="{self.left + x2:.1f}" '
                          f'y2="{self.top + y2:.1f}" stroke="{stroke}"/>')

    def text(self, x: float, y: float, text: str, anchor: str = "start", size: int = 12, rotate: float = 0) -> None:
        at = f'x="{self.left + x:.1f}" y="{self.top + y:.1f}"'
        turn = f' transform="rotate({rotate:g} {self.left + x:.1f} {self.top + y:.1f})"' if rotate else ""
        self.parts.append(f'<text {at} text-anchor="{anchor}" font-size="{size}"{turn}>{html_text(text)}</text>')

    def y_ticks(self, ticks: list[tuple[float, str]], ymax: float) -> None:
        for v, label in ticks:
            y = self.h * (1 - v / ymax)
            self.line(0, y, self.w, y, GRID)
            self.text(-6, y + 4, label, "end")

    def x_ticks(self, ticks: list[tuple[float, str]]) -> None:
        for x, label in ticks:
            self.line(x, self.h, x, self.h + 4)
            self.text(x, self.h + 18, label, "middle")

    def rotated_label(self, x: float, text: str) -> None:
        self.text(x, self.h + 12, text, "end", rotate=-60)

    def legend(self, entries: list[tuple[str, str]]) -> None:
        for i, (label, colour) in enumerate(entries):
            self.rect(self.w + 12, 4 + 20 * i, 12, 12, colour)
            self.text(self.w + 30, 14 + 20 * i, label, size=11)

    def labels(self, x_label: str, y_label: str) -> None:
        self.line(0, self.h, self.w, self.h)
        self.line(0, 0, 0, self.h)
        if x_label:
            self.text(self.w / 2, self.h + (self.height - self.top - self.h) - 8, x_label, "middle")
        if y_label:
            self.text(-self.left + 16, self.h / 2, y_label, "middle", rotate=-90)

    def svg(self) -> str:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width:.0f}" height="{self.height:.0f}" '
                f'viewBox="0 0 {self.width:.0f} {self.height:.0f}" {FONT}>'
                f'<rect width="100%" height="100%" fill="white"/>{"".join(self.parts)}</svg>')


def _nice_max(value: float) -> int:
    """An axis end at or above ``value`` (at least 1) that integer ticks divide evenly."""
    if value <= 5:
        return max(1, math.ceil(value))
    step = _int_step(value)
    return int(math.ceil(value / step) * step)


def _int_step(value: float) -> int:
    raw = value / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    return int(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))


def _int_ticks(end: int) -> list[int]:
    step = 1 if end <= 5 else _int_step(end)
    return list(range(0, end + 1, step))


def _num(x: float) -> str:
    return f"{x:.4g}"
