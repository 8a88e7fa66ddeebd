"""Charts as SVG written on the server: no script, no font download, no network (LGWAN).

Each function returns one `<svg>` element (escaped text, `role="img"` and a `<title>`, so a
screen reader reads what it shows). Colours come from one palette per level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

PALETTE = ("#1f6fb2", "#e07b24", "#2e9d5b", "#8e5bb5", "#c23b4a")
TARGET = "#333333"
GRID = "#d9dde3"
FONT = 'font-family="sans-serif"'


def colour(index: int) -> str:
    """The colour of the `index`-th series (level 1 is index 0)."""
    return PALETTE[index % len(PALETTE)]


def _svg(width: int, height: int, title: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" {FONT} font-size="12">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {extra}>{escape(text)}</text>'


@dataclass(frozen=True)
class Bar:
    """One bar: its label, value, and the target it is measured against (None: no target)."""

    label: str
    value: int
    target: int | None = None


def bar_chart(title: str, bars: Sequence[Bar], width: int = 500) -> Markup:
    """Horizontal bars of `value`, each with its target as a dark tick and the percent."""
    row, left, right = 34, 80, 150
    height = row * len(bars) + 30
    top = max([b.value for b in bars] + [b.target or 0 for b in bars] + [1])
    scale = (width - left - right) / top
    body = [f'<line x1="{left}" y1="6" x2="{left}" y2="{height - 20}" stroke="{GRID}"/>']
    for i, bar in enumerate(bars):
        y = 8 + i * row
        body.append(_text(left - 8, y + 17, bar.label, "end"))
        body.append(
            f'<rect x="{left}" y="{y + 4}" width="{bar.value * scale:.1f}" height="20" '
            f'fill="{colour(i)}"><title>{escape(bar.label)}: {bar.value}</title></rect>'
        )
        note = f"{bar.value}"
        if bar.target:
            tx = left + bar.target * scale
            body.append(
                f'<line x1="{tx:.1f}" y1="{y}" x2="{tx:.1f}" y2="{y + 28}" stroke="{TARGET}" '
                'stroke-width="3"/>'
            )
            note += f" / {bar.target}（{bar.value * 100 / bar.target:.1f}%）"
        body.append(_text(left + max(bar.value, bar.target or 0) * scale + 6, y + 18, note))
    body.append(_text(left, height - 4, "▮ 到達人数　┃ 目標人数", extra='fill="#555"'))
    return _svg(width, height, title, body)


@dataclass(frozen=True)
class Series:
    """One line: a label and a value per x position (None: no point there)."""

    label: str
    values: Sequence[int | None]
    dashed: bool = False
    step: bool = False
    colour: str = PALETTE[0]


def line_chart(
    title: str, x_labels: Sequence[str], series: Sequence[Series], width: int = 660
) -> Markup:
    """Lines over `x_labels` (every third labelled); `step` series are drawn as steps."""
    height, left, bottom, top_pad = 280, 48, 40, 14
    values = [v for s in series for v in s.values if v is not None]
    top = max([*values, 1])
    plot_w, plot_h = width - left - 130, height - bottom - top_pad
    dx = plot_w / max(len(x_labels) - 1, 1)

    def xy(i: int, v: int) -> tuple[float, float]:
        return left + i * dx, top_pad + plot_h - v * plot_h / top

    body: list[str] = []
    for k in range(5):
        v = round(top * k / 4)
        _, y = xy(0, v)
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{GRID}"/>'
        )
        body.append(_text(left - 6, y + 4, str(v), "end"))
    for i, label in enumerate(x_labels):
        if i % 6 == 0:
            x, _ = xy(i, 0)
            body.append(_text(x, height - bottom + 16, label, "middle"))
    for n, s in enumerate(series):
        points: list[str] = []
        for i, value in enumerate(s.values):
            if value is None:
                continue
            x, y = xy(i, value)
            if s.step and points:
                points.append(f"{x:.1f},{float(points[-1].split(',')[1]):.1f}")
            points.append(f"{x:.1f},{y:.1f}")
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        body.append(
            f'<polyline points="{" ".join(points)}" fill="none" stroke="{s.colour}" '
            f'stroke-width="2.5"{dash}/>'
        )
        ly = top_pad + 6 + n * 18
        body.append(
            f'<line x1="{width - 124}" y1="{ly}" x2="{width - 100}" y2="{ly}" stroke="{s.colour}" '
            f'stroke-width="2.5"{dash}/>'
        )
        body.append(_text(width - 96, ly + 4, s.label))
    return _svg(width, height, title, body)


def funnel(title: str, steps: Sequence[tuple[str, int]], width: int = 560) -> Markup:
    """Centred bars narrowing from the first step, each with its count and share of the first."""
    row = 40
    height = row * len(steps) + 10
    first = max(steps[0][1] if steps else 1, 1)
    middle, span = width / 2 + 60, width - 220
    body: list[str] = []
    for i, (label, count) in enumerate(steps):
        w = max(span * count / first, 2)
        y = 6 + i * row
        body.append(_text(8, y + 21, label))
        body.append(
            f'<rect x="{middle - w / 2:.1f}" y="{y}" width="{w:.1f}" height="30" rx="3" '
            f'fill="{colour(i)}"><title>{escape(label)}: {count}</title></rect>'
        )
        share = f"{count}人（{count * 100 / first:.0f}%）"
        body.append(
            _text(middle, y + 20, share, "middle", 'fill="#fff" font-weight="bold"')
            if w > 110
            else _text(middle + w / 2 + 6, y + 20, share)
        )
    return _svg(width, height, title, body)


def column_chart(
    title: str, labels: Sequence[str], values: Sequence[int], width: int = 760
) -> Markup:
    """Vertical columns, one per label (e.g. facts received per day)."""
    height, left, bottom = 220, 44, 44
    top = max([*values, 1])
    plot_w, plot_h = width - left - 10, height - bottom - 10
    w = plot_w / max(len(values), 1)
    body = [
        f'<line x1="{left}" y1="{10 + plot_h}" x2="{width - 10}" y2="{10 + plot_h}" stroke="{GRID}"/>'
    ]
    body.append(_text(left - 6, 16, str(top), "end"))
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        h = v * plot_h / top
        x = left + i * w
        body.append(
            f'<rect x="{x + 2:.1f}" y="{10 + plot_h - h:.1f}" width="{max(w - 4, 1):.1f}" '
            f'height="{h:.1f}" fill="{PALETTE[0]}"><title>{escape(label)}: {v}</title></rect>'
        )
        if len(values) <= 16 or i % max(len(values) // 8, 1) == 0:
            body.append(_text(x + w / 2, height - bottom + 16, label, "middle"))
    return _svg(width, height, title, body)
