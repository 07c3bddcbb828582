"""Server-rendered SVG line charts: no JavaScript, no CDN, readable without a legend.

Each series is labelled at its last point, so the reader never matches colours
to a key; lines also differ by dash pattern for readers who cannot tell the
colours apart. The same numbers are on the page as a table.
"""

from __future__ import annotations

import math
from datetime import date
from html import escape

from outcomes.selectors import Chart

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 165, 16, 34
COLOURS = ("#1b4f9c", "#b3541e", "#2e7d32", "#6a1b9a")
DASHES = ("", "6 3", "2 3", "8 3 2 3")


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return float(step * magnitude)
    return float(10 * magnitude)


def _fmt(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def line_chart(chart: Chart) -> str:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    values = [v for s in chart.series for v in s.values if v is not None]
    top = nice_ceiling(max(values, default=0))
    count = max(len(chart.days) - 1, 1)

    def x(i: int) -> float:
        return LEFT + plot_w * i / count

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    slug = escape(chart.key)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-{slug}-title chart-{slug}-desc" class="chart" width="100%">',
        f'<title id="chart-{slug}-title">{escape(chart.title)} ({escape(chart.unit)})</title>',
        f'<desc id="chart-{slug}-desc">{escape(chart.description)} The table below holds every value.</desc>',
        # Presentation attributes, not CSS: they work under a strict Content-Security-Policy.
        '<g font-family="system-ui, sans-serif" font-size="11" fill="#333">',
    ]
    for step in range(5):
        value = top * step / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{_fmt(value)}</text>'
        )
    for i, day in _ticks(chart.days):
        parts.append(f'<text x="{x(i):.1f}" y="{HEIGHT - 12}" text-anchor="middle">{day:%b %d}</text>')
    if not values:
        parts.append(
            f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle">'
            "No values in this period yet.</text>"
        )
    labels: list[tuple[float, float, str, str]] = []
    for n, series in enumerate(chart.series):
        colour, dash = COLOURS[n % len(COLOURS)], DASHES[n % len(DASHES)]
        style = f'stroke="{colour}"' + (f' stroke-dasharray="{dash}"' if dash else "")
        for run in _runs(series.values):
            points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in run)
            if len(run) == 1:
                i, v = run[0]
                parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
            else:
                parts.append(f'<polyline points="{points}" fill="none" stroke-width="2" {style}/>')
        last = next(((i, v) for i, v in reversed(list(enumerate(series.values))) if v is not None), None)
        if last is not None:
            labels.append((y(last[1]) + 4, x(last[0]) + 6, colour, f"{series.label} {_fmt(last[1])}"))
    # Labels of lines ending close together are pushed apart so none hides another.
    floor = -math.inf
    for label_y, label_x, colour, text in sorted(labels):
        label_y = max(label_y, floor + 13)
        floor = label_y
        parts.append(
            f'<text x="{label_x:.1f}" y="{label_y:.1f}" fill="{colour}" font-weight="bold">{escape(text)}</text>'
        )
    parts.append("</g></svg>")
    return "".join(parts)


def _runs(values: list[float | None]) -> list[list[tuple[int, float]]]:
    """Unbroken stretches of values: a day without a snapshot is a gap, not a zero."""
    runs: list[list[tuple[int, float]]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((i, value))
    return [run for run in runs if run]


def _ticks(days: list[date]) -> list[tuple[int, date]]:
    step = max(len(days) // 6, 1)
    return [(i, day) for i, day in enumerate(days) if i % step == 0 or i == len(days) - 1][:8]
