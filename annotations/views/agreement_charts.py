"""SVG charts of the agreement page, built on the dashboard's chart helpers.

Every figure carries its n and interval in the drawing itself (and in a
``<title>`` tooltip), so a screenshot can be read without the tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString

from annotations.views.charts import SERIES_COLOURS, WIDTH, svg_document, svg_text

from ..stats.agreement import Estimate
from ..stats.drift import Drift
from ..stats.raters import KappaMatrix


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def fmt_ci(est: Estimate, digits: int = 2) -> str:
    """``0.62 [0.41, 0.80]`` or just the value without an interval."""
    if est.value is None:
        return "undefined"
    if est.ci_low is None or est.ci_high is None:
        return fmt(est.value, digits)
    return (
        f"{fmt(est.value, digits)} [{fmt(est.ci_low, digits)}, "
        f"{fmt(est.ci_high, digits)}]"
    )


def _kappa_fill(kappa: float | None) -> str:
    """White (0 or below) to dark green (1) through pale green; grey undefined."""
    if kappa is None:
        return "#eef1f4"
    t = max(0.0, min(1.0, kappa))
    start, end = (250, 236, 232), (20, 110, 60)
    r, g, b = (round(s + (e - s) * t) for s, e in zip(start, end, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def kappa_heatmap(matrix: KappaMatrix, *, title: str) -> SafeString:
    """Pairwise quadratic kappa; each cell shows kappa and the common items."""
    names = [str(r) for r in matrix.raters]
    size = len(names)
    left, top = 120, 60
    cell = min(70.0, (WIDTH - left - 10) / max(size, 1))
    body = []
    for j, name in enumerate(names):
        x = left + j * cell + cell / 2
        body.append(
            f'<text class="label" x="{x:.1f}" y="{top - 8}" text-anchor="start" '
            f'transform="rotate(-35 {x:.1f} {top - 8})">{escape(name)}</text>'
        )
    for i, row_name in enumerate(names):
        y = top + i * cell
        body.append(svg_text(left - 8, y + cell / 2 + 4, row_name, "label", "end"))
        for j in range(size):
            x = left + j * cell
            kappa, n = matrix.kappa[i][j], matrix.n[i][j]
            diagonal = i == j
            fill = "#ffffff" if diagonal else _kappa_fill(kappa)
            tip = (
                f"{row_name}: {n} images rated"
                if diagonal
                else f"{row_name} × {names[j]}: κ = {fmt(kappa)} on {n} common images"
            )
            body.append(
                f'<rect class="cell" x="{x:.1f}" y="{y:.1f}" width="{cell - 2:.1f}" '
                f'height="{cell - 2:.1f}" fill="{fill}" stroke="#d5dbe1">'
                f"<title>{escape(tip)}</title></rect>"
            )
            strong = kappa is not None and kappa > 0.6 and not diagonal
            cls = "on-bar" if strong else "label"
            main = "—" if diagonal else fmt(kappa)
            cx = x + (cell - 2) / 2
            body.append(svg_text(cx, y + cell / 2 - 2, main, cls, "middle"))
            small = "on-bar small" if strong else "tick small"
            body.append(svg_text(cx, y + cell / 2 + 12, f"n={n}", small, "middle"))
    height = top + size * cell + 30
    legend_y = height - 14
    for k, tick in enumerate((0.0, 0.2, 0.4, 0.6, 0.8, 1.0)):
        x = left + k * 44
        body.append(
            f'<rect x="{x}" y="{legend_y - 10}" width="40" height="10" '
            f'fill="{_kappa_fill(tick)}" stroke="#d5dbe1"/>'
        )
        body.append(svg_text(x + 20, legend_y + 12, f"{tick:.1f}", "tick", "middle"))
    body.append(svg_text(left - 8, legend_y, "κ ≤ 0 … 1", "tick", "end"))
    return svg_document(int(height) + 14, body, title)


def nice_ceiling(value: float, most: int = 6) -> float:
    """The first round tick at or above ``value`` (axis top from zero)."""
    ticks = nice_ticks(0.0, value, most)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else value
    return math.ceil(value / step - 1e-9) * step


@dataclass(frozen=True)
class ForestRow:
    """A labelled line of the forest plot: ``(series, estimate)`` pairs, or
    ``(series, estimate, n_text)`` to say what the n counts."""

    label: str
    estimates: Sequence[tuple[str, Estimate] | tuple[str, Estimate, str]]


def nice_ticks(low: float, high: float, most: int = 7) -> list[float]:
    """Round tick values from ``low`` to ``high``: steps of 1, 2, 2.5 or 5 × 10^k."""
    span = high - low
    if span <= 0:
        return [low]
    magnitude = 10 ** math.floor(math.log10(span))
    for factor in (0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10):
        step = factor * magnitude
        if span / step <= most - 1:
            break
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    return [round(k * step, 10) for k in range(first, last + 1)]


def forest(
    rows: Sequence[ForestRow],
    *,
    title: str,
    low: float = 0.0,
    high: float = 1.0,
    reference: float | None = None,
    reference_label: str = "",
    percent: bool = False,
) -> SafeString:
    """One line per row, a dot per series with its interval as a whisker, and
    the value, interval and n written out on the right."""
    series = list(dict.fromkeys(entry[0] for r in rows for entry in r.estimates))
    multi = len(series) > 1
    left, right, row_h = 130, 320, 22 * max(1, len(series))
    top = 26 if multi or reference is not None else 10
    bottom = top + row_h * len(rows)

    def x_of(v: float) -> float:
        v = max(low, min(high, v))
        return left + (v - low) / (high - low) * (right - left)

    def show(v: float | None) -> str:
        return "–" if v is None else (f"{v:.0%}" if percent else f"{v:.2f}")

    body = []
    for tick in nice_ticks(low, high, most=6):
        x = x_of(tick)
        body.append(
            f'<line class="grid" x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" '
            f'y2="{bottom}"/>'
        )
        body.append(svg_text(x, bottom + 14, show(tick), "tick", "middle"))
    if reference is not None:
        x = x_of(reference)
        body.append(
            f'<line class="reference" x1="{x:.1f}" y1="{top - 8}" x2="{x:.1f}" '
            f'y2="{bottom}"/>'
        )
        body.append(svg_text(x, top - 12, reference_label, "tick", "middle"))
    if multi:
        x = float(right + 10)
        for s, name in enumerate(series):
            colour = SERIES_COLOURS[s % len(SERIES_COLOURS)]
            body.append(f'<circle cx="{x:.1f}" cy="8" r="5" fill="{colour}"/>')
            body.append(svg_text(x + 9, 12, name, "legend"))
            x += 24 + 7 * len(name)
    for i, row in enumerate(rows):
        y0 = top + i * row_h
        body.append(svg_text(left - 8, y0 + row_h / 2 + 4, row.label, "label", "end"))
        for entry in row.estimates:
            name, est = entry[0], entry[1]
            n_text = entry[2] if len(entry) > 2 else f"n={est.n}"  # type: ignore[misc]
            s = series.index(name)
            y = y0 + 11 + s * 22
            colour = SERIES_COLOURS[s % len(SERIES_COLOURS)]
            text = (
                f"{show(est.value)} [{show(est.ci_low)}, {show(est.ci_high)}]"
                if est.ci_low is not None
                else show(est.value)
            )
            text = f"{text}  {n_text}" if est.value is not None else "undefined"
            if est.value is not None:
                if est.ci_low is not None and est.ci_high is not None:
                    body.append(
                        f'<line class="whisker" x1="{x_of(est.ci_low):.1f}" y1="{y}" '
                        f'x2="{x_of(est.ci_high):.1f}" y2="{y}" stroke="{colour}"/>'
                    )
                body.append(
                    f'<circle cx="{x_of(est.value):.1f}" cy="{y}" r="5" '
                    f'fill="{colour}"><title>{escape(row.label)} · {escape(name)}: '
                    f"{escape(text)}</title></circle>"
                )
            body.append(svg_text(right + 10, y + 4, text, "label"))
    return svg_document(bottom + 26, body, title)


def trend(
    fit: Drift,
    *,
    title: str,
    y_label: str,
    y_low: float,
    y_high: float,
    unit: str = "",
) -> SafeString:
    """Binned means against position in the session, with the fitted line."""
    left, right, top, bottom = 50, WIDTH - 20, 28, 200
    body = []

    def y_of(v: float) -> float:
        v = max(y_low, min(y_high, v))
        return bottom - (v - y_low) / (y_high - y_low) * (bottom - top)

    for tick in nice_ticks(y_low, y_high, most=6):
        y = y_of(tick)
        body.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>'
        )
        body.append(svg_text(left - 6, y + 4, f"{tick:g}", "tick", "end"))
    body.append(svg_text(8, 14, f"{y_label} ↑", "axis-name"))
    body.append(svg_text(left, bottom + 32, "position in session →", "axis-name"))
    if not fit.bins:
        return svg_document(bottom + 40, body, title)
    last = max(b.last for b in fit.bins)

    def x_of(pos: float) -> float:
        return left + (pos - 1) / max(last - 1, 1) * (right - left)

    shown: list[float] = []
    for pos in [1, last, *nice_ticks(1, last, most=8)]:
        x = x_of(pos)
        if all(abs(x - seen) > 28 for seen in shown):
            shown.append(x)
            body.append(svg_text(x, bottom + 16, f"{pos:g}", "tick", "middle"))
    points = []
    for b in fit.bins:
        mid = (b.first + b.last) / 2
        x, y = x_of(mid), y_of(b.mean)
        points.append(f"{x:.1f},{y:.1f}")
        body.append(
            f'<circle class="dot dot-hi" cx="{x:.1f}" cy="{y:.1f}" r="4"><title>'
            f"items {b.first}–{b.last}: mean {b.mean:.2f}{escape(unit)}, n={b.n}"
            "</title></circle>"
        )
    if len(points) > 1:
        body.append(
            f'<polyline class="series" points="{" ".join(points)}" '
            f'stroke="{SERIES_COLOURS[0]}"/>'
        )
    if fit.slope.value is not None and fit.intercept is not None:
        y1 = y_of(fit.intercept + fit.slope.value * 1)
        y2 = y_of(fit.intercept + fit.slope.value * last)
        body.append(
            f'<line class="fit" x1="{x_of(1):.1f}" y1="{y1:.1f}" x2="{x_of(last):.1f}" '
            f'y2="{y2:.1f}"/>'
        )
    return svg_document(bottom + 40, body, title)
