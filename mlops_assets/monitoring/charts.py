"""The report's pictures: small inline SVGs for the HTML (no JavaScript, a few KB each) and one PNG
for Dagster's metadata panel, where only Markdown images render."""

from __future__ import annotations

import io
import math
from html import escape

from mlops_assets.monitoring.drift import DriftReport
from mlops_assets.monitoring.performance import ReliabilityBin
from mlops_assets.monitoring.summaries import Distribution

REFERENCE_COLOUR = "#8c96a3"
CURRENT_COLOUR = "#1f6fd1"
VERDICT_COLOURS = {"drift": "#c62828", "no drift": "#2e7d32", "too small": "#b26a00", "not tested": "#8c96a3",
                   "no data": "#455a64"}


def _legend(x: float, y: float) -> str:
    return (f'<rect x="{x}" y="{y - 8}" width="10" height="10" fill="{REFERENCE_COLOUR}" fill-opacity="0.6"/>'
            f'<text x="{x + 14}" y="{y + 1}">reference</text>'
            f'<rect x="{x + 90}" y="{y - 8}" width="10" height="10" fill="{CURRENT_COLOUR}" fill-opacity="0.6"/>'
            f'<text x="{x + 104}" y="{y + 1}">current</text>')


def distribution_svg(distribution: Distribution | None, width: int = 520) -> str:
    """Overlaid histograms (numeric) or paired bars per category, reference grey and current blue."""
    if distribution is None or not distribution.labels:
        return '<p class="muted">no values to plot</p>'
    if distribution.kind == "histogram":
        return _histogram_svg(distribution, width)
    return _bars_svg(distribution, width)


def _histogram_svg(d: Distribution, width: int, height: int = 170) -> str:
    left, right, top, bottom = 8, 8, 18, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    edges = [float(e) for e in d.labels]
    bins = len(edges) - 1
    peak = max(max(d.reference, default=0), max(d.current, default=0)) or 1.0
    bar_w = plot_w / bins
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             'role="img" aria-label="distribution">']
    for series, colour in ((d.reference, REFERENCE_COLOUR), (d.current, CURRENT_COLOUR)):
        for i, share in enumerate(series):
            h = plot_h * share / peak
            parts.append(f'<rect x="{left + i * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar_w - 1, 0.5):.1f}"'
                         f' height="{h:.1f}" fill="{colour}" fill-opacity="0.55"><title>{escape(d.labels[i])} to '
                         f'{escape(d.labels[i + 1])}: {share:.1%}</title></rect>')
    axis_y = top + plot_h
    parts.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#555"/>')
    for i in (0, bins // 2, bins):
        anchor = "start" if i == 0 else "end" if i == bins else "middle"
        parts.append(f'<text x="{left + i * bar_w:.1f}" y="{axis_y + 14}" text-anchor="{anchor}">'
                     f'{float(d.labels[i]):.4g}</text>')
    parts.append(_legend(left, height - 6))
    parts.append("</svg>")
    return "".join(parts)


def _bars_svg(d: Distribution, width: int) -> str:
    label_w, row_h, top = 150, 26, 8
    plot_w = width - label_w - 60
    rows = len(d.labels)
    height = top + rows * row_h + 22
    peak = max(max(d.reference, default=0), max(d.current, default=0)) or 1.0
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             'role="img" aria-label="category shares">']
    for i, name in enumerate(d.labels):
        y = top + i * row_h
        shown = name if len(name) <= 22 else name[:21] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(shown)}</text>')
        for j, (share, colour) in enumerate(((d.reference[i], REFERENCE_COLOUR), (d.current[i], CURRENT_COLOUR))):
            w = plot_w * share / peak
            parts.append(f'<rect x="{label_w}" y="{y + 2 + j * 10}" width="{w:.1f}" height="9" fill="{colour}" '
                         f'fill-opacity="0.75"><title>{escape(name)}: {share:.1%}</title></rect>')
        parts.append(f'<text x="{label_w + plot_w * max(d.reference[i], d.current[i]) / peak + 4:.1f}" y="{y + 15}" '
                     f'class="muted">{d.reference[i]:.1%} → {d.current[i]:.1%}</text>')
    parts.append(_legend(label_w, height - 6))
    parts.append("</svg>")
    return "".join(parts)


def reliability_svg(curves: dict[str, list[ReliabilityBin]], size: int = 260) -> str:
    """Observed positive rate against mean score per bin; the diagonal is perfect calibration."""
    pad = 30
    plot = size - 2 * pad
    colours = {"reference": REFERENCE_COLOUR, "current": CURRENT_COLOUR}

    def xy(x: float, y: float) -> tuple[float, float]:
        return pad + x * plot, pad + (1 - y) * plot

    parts = [f'<svg class="chart" viewBox="0 0 {size} {size + 16}" width="{size}" height="{size + 16}" role="img" '
             'aria-label="reliability curve">',
             f'<rect x="{pad}" y="{pad}" width="{plot}" height="{plot}" fill="none" stroke="#ccc"/>',
             f'<line x1="{pad}" y1="{pad + plot}" x2="{pad + plot}" y2="{pad}" stroke="#aaa" stroke-dasharray="4 3"/>',
             f'<text x="{size / 2}" y="{size - 6}" text-anchor="middle">mean score</text>',
             f'<text x="10" y="{size / 2}" transform="rotate(-90 10 {size / 2})" text-anchor="middle">observed rate</text>']
    for name, bins in curves.items():
        points = [xy(b.mean_score, b.positive_rate) for b in bins]
        if not points:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colours.get(name, "#333")}" stroke-width="2"/>')
        for (x, y), b in zip(points, bins):
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colours.get(name, "#333")}"><title>{name}: '
                         f'{b.rows:,} rows, mean score {b.mean_score:.3f}, observed {b.positive_rate:.3f}</title></circle>')
    parts.append(_legend(pad, size + 12))
    parts.append("</svg>")
    return "".join(parts)


def effects_png(report: DriftReport, max_columns: int = 20) -> bytes:
    """Each column's largest shift in units of what matters (1 = the size the config cares about)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = sorted((c for c in report.columns if c.tests), key=lambda c: -c.effect)[:max_columns]
    fig, ax = plt.subplots(figsize=(6.4, 0.32 * max(len(columns), 3) + 1.1), dpi=100)
    names = [c.column for c in columns][::-1]
    effects = [min(c.effect, 10.0) for c in columns][::-1]
    colours = [VERDICT_COLOURS.get(c.verdict, "#888") for c in columns][::-1]
    ax.barh(names, effects, color=colours)
    ax.axvline(1.0, color="#333", linestyle="--", linewidth=1)
    ax.set_xlabel("largest shift / what matters (dashed line = what matters)")
    ax.set_title(f"Drift: {report.verdict} ({len(report.drifted)} of {len(columns)} columns; red = drift)")
    upper = max([*effects, 1.2])
    ax.set_xlim(0, math.ceil(upper * 1.1 * 10) / 10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
