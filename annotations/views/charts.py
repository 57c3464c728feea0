"""Small server-rendered SVG charts: no JavaScript, no external library.

Every function returns safe markup; every label is escaped.  Colours come
from presentation attributes and CSS classes, never ``style=`` (the CSP
forbids inline styles).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

SCORE_COLOURS = {1: "#b42318", 2: "#c98a12", 3: "#1e7b44"}
SERIES_COLOURS = ("#0b5cad", "#1e7b44", "#9a5b00", "#7a3fb0", "#b42318")
WIDTH = 520


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for k successes in n trials (95% by default)."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def svg_document(height: int, body: list[str], title: str) -> SafeString:
    return mark_safe(  # noqa: S308 - every interpolated label is escaped above
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def svg_text(x: float, y: float, label: str, cls: str = "", anchor: str = "") -> str:
    attrs = f' class="{cls}"' if cls else ""
    attrs += f' text-anchor="{anchor}"' if anchor else ""
    return f'<text x="{x:.1f}" y="{y:.1f}"{attrs}>{escape(label)}</text>'


# Row labels are 12 px semibold (.chart font, .label weight): Chromium's
# DejaVu Sans runs about 7.5 px a character; 7.8 leaves room for wide ones.
LABEL_PX_PER_CHAR = 7.8


def _cut(text: str, fits: int) -> str:
    if len(text) <= fits:
        return text
    return text[: max(0, fits - 1)].rstrip() + "…" if fits > 0 else ""


def fit_label(label: str, fits: int) -> str:
    """``label`` cut to ``fits`` characters. A ``round · version`` label
    keeps the start of each part, so rows of one round stay told apart by
    their version."""
    if len(label) <= fits:
        return label
    head, sep, tail = label.rpartition(" · ")
    if not sep:
        return _cut(label, fits)
    room = fits - len(sep)
    tail_room = min(len(tail), max(4, room // 2))
    if room - tail_room < 2:  # too narrow for two parts: cut the whole
        return _cut(label, fits)
    return _cut(head, room - tail_room) + sep + _cut(tail, tail_room)


def _row_label(x: float, y: float, label: str, room: float) -> str:
    """A right-aligned row label cut to ``room`` pixels, whole on hover.

    The cut counts average characters, and wide letters (M, W, D) still run
    over; so a label near its column's width is also given that width as
    ``textLength``, which the browser holds to whatever the font.
    """
    shown = fit_label(label, max(4, int(room / LABEL_PX_PER_CHAR)))
    estimate = len(shown) * LABEL_PX_PER_CHAR
    fit = (
        f' textLength="{min(estimate, room):.1f}" lengthAdjust="spacingAndGlyphs"'
        if estimate > 0.75 * room
        else ""
    )
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" class="label" text-anchor="end"{fit}>'
        f"<title>{escape(label)}</title>{escape(shown)}</text>"
    )


def _unit_axis(left: float, right: float, top: float, bottom: float) -> list[str]:
    """Vertical grid lines at 0, 25, 50, 75 and 100 % along a horizontal axis."""
    out = []
    for tick in (0, 0.25, 0.5, 0.75, 1):
        x = left + tick * (right - left)
        out.append(
            f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}"/>'
        )
        out.append(svg_text(x, bottom + 14, f"{tick:.0%}", "tick", "middle"))
    return out


@dataclass(frozen=True)
class ScoreRow:
    label: str
    counts: dict[int, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def stacked_scores(rows: Sequence[ScoreRow], *, title: str) -> SafeString:
    """One 100 % bar per row, split into the shares rated 1, 2 and 3."""
    left, right, row_h = 130, WIDTH - 50, 26
    height = 40 + row_h * len(rows) + 24
    body = _unit_axis(left, right, 24, 24 + row_h * len(rows))
    for i, (score, colour) in enumerate(SCORE_COLOURS.items()):
        x: float = left + i * 80
        body.append(f'<rect x="{x}" y="4" width="12" height="12" fill="{colour}"/>')
        body.append(svg_text(x + 16, 14, f"rated {score}", "legend"))
    for i, row in enumerate(rows):
        y = 28 + i * row_h
        body.append(_row_label(left - 8, y + 13, row.label, left - 12))
        x = float(left)
        for score, colour in SCORE_COLOURS.items():
            share = row.counts.get(score, 0) / row.total if row.total else 0
            w = share * (right - left)
            if w > 0:
                body.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 8}" '
                    f'fill="{colour}"><title>{escape(row.label)}: {share:.0%} rated '
                    f"{score}</title></rect>"
                )
                if w > 30:
                    body.append(
                        svg_text(x + w / 2, y + 13, f"{share:.0%}", "on-bar", "middle")
                    )
            x += w
        body.append(svg_text(right + 6, y + 13, f"n={row.total}", "tick"))
    return svg_document(height, body, title)


@dataclass(frozen=True)
class ShareRow:
    label: str
    k: int
    n: int
    highlight: bool = False

    @property
    def share(self) -> float:
        return self.k / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)


def share_intervals(rows: Sequence[ShareRow], *, title: str) -> SafeString:
    """A dot per row at its share with its 95 % Wilson interval as a whisker."""
    left, right, row_h = 230, WIDTH - 50, 24
    bottom = 12 + row_h * len(rows)
    body = _unit_axis(left, right, 6, bottom)
    for i, row in enumerate(rows):
        y = 18 + i * row_h
        lo, hi = row.interval
        x_lo, x_hi = (left + v * (right - left) for v in (lo, hi))
        x = left + row.share * (right - left)
        cls = "dot dot-hi" if row.highlight else "dot"
        body.append(_row_label(left - 8, y + 4, row.label, left - 12))
        body.append(
            f'<line class="whisker" x1="{x_lo:.1f}" y1="{y}" x2="{x_hi:.1f}" y2="{y}"/>'
        )
        body.append(
            f'<circle class="{cls}" cx="{x:.1f}" cy="{y}" r="5"><title>'
            f"{escape(row.label)}: {row.k} of {row.n} rated 3 ({row.share:.0%}, "
            f"95% CI {lo:.0%}–{hi:.0%})</title></circle>"
        )
        body.append(svg_text(right + 6, y + 4, f"{row.k}/{row.n}", "tick"))
    return svg_document(bottom + 24, body, title)


def metric_lines(
    x_labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    *,
    title: str,
) -> SafeString:
    """Lines across reward versions; a missing value breaks the line."""
    left, right, top, bottom = 50, WIDTH - 20, 30, 210
    values = [v for vs in series.values() for v in vs if v is not None]
    y_min = min([0.0, *values])
    y_max = max([1.0, *values])

    def y_of(v: float) -> float:
        return bottom - (v - y_min) / (y_max - y_min) * (bottom - top)

    body = []
    for tick in sorted({y_min, 0.0, 0.5, 1.0}):
        y = y_of(tick)
        body.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>'
        )
        body.append(svg_text(left - 6, y + 4, f"{tick:.1f}", "tick", "end"))
    step = (right - left) / max(len(x_labels) - 1, 1)

    def x_of(i: int) -> float:
        return left + (i * step if len(x_labels) > 1 else (right - left) / 2)

    for i, label in enumerate(x_labels):
        body.append(svg_text(x_of(i), bottom + 16, label, "tick", "middle"))
    for j, (name, vs) in enumerate(series.items()):
        colour = SERIES_COLOURS[j % len(SERIES_COLOURS)]
        body.append(
            f'<rect x="{left + j * 120}" y="6" width="12" height="12" fill="{colour}"/>'
        )
        body.append(svg_text(left + j * 120 + 16, 16, name, "legend"))
        points = [(x_of(i), y_of(v)) for i, v in enumerate(vs) if v is not None]
        run: list[str] = []
        for i, v in enumerate(vs):
            if v is None:
                run = _flush(body, run, colour)
                continue
            run.append(f"{x_of(i):.1f},{y_of(v):.1f}")
        _flush(body, run, colour)
        for (x, y), v in zip(points, [v for v in vs if v is not None], strict=True):
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}">'
                f"<title>{escape(name)}: {v:.3f}</title></circle>"
            )
    return svg_document(bottom + 26, body, title)


def _flush(body: list[str], run: list[str], colour: str) -> list[str]:
    if len(run) > 1:
        body.append(
            f'<polyline class="series" points="{" ".join(run)}" stroke="{colour}"/>'
        )
    return []


def reward_scatter(
    points: Sequence[tuple[float, float, str]], *, title: str
) -> SafeString:
    """Mean rating (x, 1 to 3) against reward score (y, 0 to 1), one dot an image.

    Points with the same mean rating are spread sideways a little so that
    images rated alike do not hide each other.
    """
    left, right, top, bottom = 50, WIDTH - 20, 28, 240
    body = []
    for tick in (0, 0.25, 0.5, 0.75, 1):
        y = bottom - tick * (bottom - top)
        body.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>'
        )
        body.append(svg_text(left - 6, y + 4, f"{tick:.2f}", "tick", "end"))
    for score in (1, 2, 3):
        x = left + (score - 1) / 2 * (right - left - 40) + 20
        body.append(svg_text(x, bottom + 16, f"rated {score}", "tick", "middle"))
    body.append(svg_text(left, bottom + 32, "mean physician rating →", "axis-name"))
    body.append(svg_text(8, 14, "reward ↑", "axis-name"))
    for i, (mean, reward, label) in enumerate(points):
        jitter = ((i * 37) % 41 - 20) * 1.5
        x = left + (mean - 1) / 2 * (right - left - 40) + 20 + jitter
        y = bottom - max(0.0, min(1.0, reward)) * (bottom - top)
        colour = SCORE_COLOURS[min(3, max(1, round(mean)))]
        body.append(
            f'<circle class="pt" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}">'
            f"<title>{escape(label)}: mean rating {mean:.2f}, reward {reward:.2f}"
            "</title></circle>"
        )
    return svg_document(bottom + 40, body, title)
