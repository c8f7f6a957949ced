"""The monitoring report a person reads: one self-contained HTML file per run, kept as history.

It opens with what a reader needs first (dataset, model version, the two windows with
their row counts, the verdict, the drifted columns ranked by effect size), then data
problems, performance, and one section per column with its statistics and distribution.
No JavaScript and no external files: it opens from disk, from an artifact store or an
e-mail attachment. Each run also leaves a small JSON summary next to the HTML, from which
the history page (``index.html``) is rebuilt.
"""

from __future__ import annotations

import json
import math
import secrets
from html import escape
from pathlib import Path

from mlops_assets.monitoring.charts import VERDICT_COLOURS, distribution_svg, reliability_svg
from mlops_assets.monitoring.drift import ColumnDrift, DriftReport, ShiftTest
from mlops_assets.monitoring.monitor import MonitoringReport
from mlops_assets.monitoring.performance import EstimatedPerformance, Interval, RealizedPerformance
from mlops_assets.monitoring.windows import WindowInfo

HISTORY_INDEX = "index.html"
DOCS_PAGE = "docs/monitoring.md"

_BANNERS = {
    "drift": ("#fdecea", "#c62828", "DRIFT"),
    "no drift": ("#edf7ed", "#2e7d32", "NO DRIFT"),
    "too small": ("#fff4e5", "#b26a00", "NO DRIFT FOUND, WINDOW TOO SMALL"),
    "no data": ("#eceff1", "#455a64", "NO DATA"),
}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;margin:0;background:#f6f7f9}
main{max-width:1120px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:24px;margin:0 0 2px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #e3e6ea;padding-bottom:4px}
h3{font-size:15px;margin:0}.muted{color:#68717d}.sub{color:#68717d;margin:0 0 14px}
.banner{border-left:6px solid;padding:10px 16px;margin:12px 0 16px;font-size:16px}
.banner b{font-size:18px;letter-spacing:.02em;margin-right:8px}
dl.summary{display:grid;grid-template-columns:190px 1fr;gap:4px 14px;margin:0}dl.summary dt{color:#68717d}dl.summary dd{margin:0}
table{border-collapse:collapse;width:100%;margin:6px 0 10px}th,td{padding:4px 8px;border-bottom:1px solid #eceef1;text-align:left;vertical-align:top}
th{background:#f3f5f7;font-weight:600;font-size:13px}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.bar{height:9px;background:#c62828;border-radius:2px;min-width:1px}.barbox{width:120px;background:#f1f2f4}
.column{border:1px solid #e3e6ea;border-radius:6px;padding:10px 14px;margin:10px 0}
.column header{display:flex;gap:10px;align-items:baseline;flex-wrap:wrap;margin-bottom:6px}
.notes li{margin:2px 0}.grid{display:flex;gap:18px;flex-wrap:wrap;align-items:flex-start}
svg.chart text{font-size:11px;fill:#39414d}svg.chart text.muted{fill:#68717d}
tr.drifted td{background:#fff6f5}code{background:#f3f5f7;padding:0 3px;border-radius:3px}
"""


def _badge(verdict: str) -> str:
    return f'<span class="badge" style="background:{VERDICT_COLOURS.get(verdict, "#555")}">{escape(verdict)}</span>'


def _window(info: WindowInfo) -> str:
    return f"{escape(info.description)} · {escape(info.period)} · <b>{info.rows:,} rows</b>"


def _shift(test: ShiftTest) -> str:
    low, high = test.ci95
    if test.unit == "SD":
        return f"{test.estimate:+.3f} SD <span class=muted>[{low:+.3f}, {high:+.3f}]</span>"
    return (f"{100 * test.estimate:+.2f} pts <span class=muted>[{100 * low:+.2f}, {100 * high:+.2f}]</span>")


def _threshold(test: ShiftTest, value: float) -> str:
    return f"{value:.3g} SD" if test.unit == "SD" else f"{100 * value:.2g} pts"


def _value(test: ShiftTest, value: float) -> str:
    return f"{value:.4g}" if test.unit == "SD" else f"{100 * value:.2f}%"


def _p(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.3g}"


def _ranked_table(report: DriftReport) -> str:
    if not report.drifted:
        return ""
    rows = []
    for c in report.drifted:
        best = max((t for t in c.tests if t.drifted), key=lambda t: t.effect)
        width = min(c.effect / 3, 1) * 100
        rows.append(
            f'<tr><td><a href="#col-{escape(c.column)}">{escape(c.column)}</a></td><td>{escape(c.role)}</td>'
            f"<td>{escape(best.statistic)}</td><td class=num>{_shift(best)}</td>"
            f"<td class=num>{_threshold(best, best.margin)}</td>"
            f"<td class=num>{_threshold(best, best.matters)}</td><td class=num>{c.effect:.2f}×</td>"
            f'<td class="barbox"><div class="bar" style="width:{width:.0f}%"></div></td>'
            f"<td class=num>{_p(best.adjusted_p)}</td></tr>")
    return ("<h2>Drifted columns, largest effect first</h2><table><tr><th>column</th><th>role</th><th>what moved</th>"
            "<th>shift [95% CI]</th><th>negligible below</th><th>what matters</th><th>× what matters</th><th></th>"
            "<th>adj. p</th></tr>"
            + "".join(rows) + "</table>")


def _interval(interval: Interval | None, digits: int = 4) -> str:
    if interval is None or interval.value is None or not math.isfinite(interval.value):
        return "<span class=muted>–</span>"
    return (f"{interval.value:.{digits}f} <span class=muted>[{interval.low:.{digits}f}, "
            f"{interval.high:.{digits}f}]</span>")


_METRICS = [("roc_auc", "ROC AUC"), ("pr_auc", "PR AUC"), ("log_loss", "log loss"),
            ("ece", "expected calibration error"), ("accuracy", "accuracy at the threshold"),
            ("expected_cost", "expected cost per decision")]


def _performance(report: MonitoringReport) -> str:
    ref, cur, est = report.reference_performance, report.current_performance, report.estimated_performance
    if not (ref or cur or est):
        return ""
    columns: list[tuple[str, RealizedPerformance | EstimatedPerformance | None]] = [
        ("reference, realized", ref), ("current, realized", cur), ("current, estimated before labels (CBPE)", est)]
    shown = [(name, perf) for name, perf in columns if perf is not None]
    head = "".join(f"<th>{escape(name)}<br><span class=muted>{perf.rows:,} rows</span></th>" for name, perf in shown)
    body = []
    for key, label in _METRICS:
        cells = "".join(f"<td class=num>{_interval(perf.metrics.get(key))}</td>" for _, perf in shown)
        body.append(f"<tr><td>{label}</td>{cells}</tr>")
    threshold = next(p.threshold for _, p in shown)
    curves = {name: perf.reliability for name, perf in (("reference", ref), ("current", cur)) if perf}
    notes = [n for _, perf in shown for n in perf.notes]
    return (
        "<h2>Model performance</h2>"
        f"<p class=muted>Decision threshold {threshold:.3g}; intervals are 95% (bootstrap for realized values; "
        "simulated labels for the estimate). The estimate assumes the relation between inputs and outcome is "
        "unchanged: it follows covariate drift but cannot see concept drift.</p>"
        f'<div class="grid"><table style="width:auto"><tr><th>metric</th>{head}</tr>{"".join(body)}</table>'
        + (reliability_svg(curves) if curves else "") + "</div>"
        + (f'<ul class="notes">{"".join(f"<li>{escape(n)}</li>" for n in dict.fromkeys(notes))}</ul>' if notes else "")
    )


def _column_section(c: ColumnDrift) -> str:
    rows = []
    for t in c.tests:
        rows.append(
            f'<tr class="{"drifted" if t.drifted else ""}"><td>{escape(t.statistic)}</td>'
            f"<td class=num>{_value(t, t.reference_value)}</td><td class=num>{_value(t, t.current_value)}</td>"
            f"<td class=num>{_shift(t)}</td><td class=num>{_threshold(t, t.margin)}</td>"
            f"<td class=num>{_threshold(t, t.matters)}</td><td class=num>{_p(t.p_value)}</td>"
            f"<td class=num>{_p(t.adjusted_p)}</td><td>{'drift' if t.drifted else ''}</td></tr>")
    table = ("<table><tr><th>statistic</th><th>reference</th><th>current</th><th>shift [95% CI]</th>"
             "<th>negligible below</th><th>what matters</th><th>p</th><th>adj. p</th><th></th></tr>"
             + "".join(rows) + "</table>") if rows else ""
    notes = "".join(f"<li>{escape(n)}</li>" for n in c.notes)
    return (
        f'<section class="column" id="col-{escape(c.column)}"><header><h3>{escape(c.column)}</h3>{_badge(c.verdict)}'
        f"<span class=muted>{escape(c.kind)} {escape(c.role)} · {c.reference_values:,} reference / "
        f"{c.current_values:,} current values · largest shift: {escape(c.headline)} ({c.effect:.2f}× what matters)"
        "</span></header>"
        + (f'<ul class="notes">{notes}</ul>' if notes else "")
        + f'<div class="grid"><div style="flex:1 1 520px">{table}</div>{distribution_svg(c.distribution)}</div>'
        "</section>")


def render_html(report: MonitoringReport, run_id: str | None = None) -> str:
    drift = report.drift
    background, colour, word = _BANNERS[drift.verdict]
    tested = [c for c in drift.columns if c.verdict != "not tested"]
    notes = [*drift.notes, *report.notes]
    ordered = sorted(drift.columns, key=lambda c: (not c.drifted, c.verdict == "not tested", -c.effect))
    rules = drift.rules
    verdict_text = ("each column below moved beyond its negligible margin; largest effect first"
                    if drift.verdict == "drift" else drift.summary())
    summary = f"""
<dl class="summary">
<dt>Dataset</dt><dd><b>{escape(report.dataset)}</b></dd>
<dt>Model version</dt><dd>{escape(report.model or "none (no score drift or performance)")}</dd>
<dt>Reference window</dt><dd>{_window(drift.reference)}</dd>
<dt>Current window</dt><dd>{_window(drift.current)}</dd>
<dt>Verdict</dt><dd>{_badge(drift.verdict)} {escape(verdict_text)}</dd>
<dt>Drift share</dt><dd>{len(drift.drifted)} of {len(tested)} columns ({drift.drift_share:.0%})</dd>
<dt>Rule</dt><dd>drift = a shift shown beyond a negligible margin, sized so a change of what matters is caught
{rules.power:.0%} of the time; report-level false-alarm rate {rules.alpha:g} (weighted Holm over all statistics).
What matters by default: {rules.default.numeric_sd:g} SD for a mean or quartile, {100 * rules.default.share:g} points
for a category's share, {100 * rules.default.new_category:g}% new categories, {100 * rules.default.missing:g} points
of missing values. See <code>{DOCS_PAGE}</code>.</dd>
</dl>"""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(report.dataset)} drift report · {escape(drift.verdict)} · {escape(report.created)}</title>
<style>{_CSS}</style></head>
<body><main>
<h1>Drift report: {escape(report.dataset)}</h1>
<p class="sub">{escape(report.model or "no model")} · generated {escape(report.created)}
{f"· run {escape(run_id)}" if run_id else ""} · <a href="{HISTORY_INDEX}">history</a></p>
<div class="banner" style="background:{background};border-color:{colour}"><b style="color:{colour}">{word}</b>
{escape(drift.headline())}</div>
{summary}
{_ranked_table(drift)}
{"<h2>Data problems and limits</h2><ul class='notes'>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>"
 if notes else ""}
{_performance(report)}
<h2>Columns</h2>
<p class=muted>Shifts of means and quartiles are in reference standard deviations, shares in percentage points;
the 95% interval counts the sampling error of both windows. A statistic drifts when its adjusted p-value is
below {rules.alpha:g}: the shift is then beyond the negligible margin with report-level confidence.</p>
{"".join(_column_section(c) for c in ordered)}
</main></body></html>
"""


def write_report(report: MonitoringReport, folder: Path, run_id: str | None = None) -> Path:
    """Write this run's HTML and JSON summary under ``folder`` (never overwriting) and refresh the history page."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = report.created.replace("-", "").replace(":", "")
    stem = f"drift-{stamp}-{(run_id or secrets.token_hex(4))[:8]}"
    path = folder / f"{stem}.html"
    path.write_text(render_html(report, run_id), encoding="utf-8")
    drift = report.drift
    summary = {
        "created": report.created, "dataset": report.dataset, "model": report.model, "run_id": run_id,
        "verdict": drift.verdict, "summary": drift.summary(), "drift_share": drift.drift_share,
        "drifted_columns": drift.drifted_columns, "reference_rows": drift.reference.rows,
        "current_rows": drift.current.rows, "current_period": drift.current.period, "html": path.name,
    }
    (folder / f"{stem}.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    write_history(folder)
    return path


def write_history(folder: Path) -> Path:
    """The history page: every run's verdict, newest first, each linking its report."""
    runs = []
    for file in folder.glob("drift-*.json"):
        try:
            runs.append(json.loads(file.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    runs.sort(key=lambda r: (r.get("created", ""), r.get("html", "")), reverse=True)
    dataset = runs[0]["dataset"] if runs else folder.name
    rows = "".join(
        f'<tr><td><a href="{escape(r["html"])}">{escape(r["created"])}</a></td><td>{escape(str(r.get("model")))}</td>'
        f'<td>{_badge(r["verdict"]) if r["verdict"] in VERDICT_COLOURS else escape(r["verdict"])}</td>'
        f'<td class=num>{r["reference_rows"]:,}</td><td class=num>{r["current_rows"]:,}</td>'
        f'<td>{escape(r.get("current_period", ""))}</td><td>{escape(", ".join(r["drifted_columns"]))}</td></tr>'
        for r in runs)
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(dataset)} drift history</title>
<style>{_CSS}</style></head><body><main><h1>Drift history: {escape(dataset)}</h1>
<p class=sub>{len(runs)} run(s), newest first.</p>
<table><tr><th>run (UTC)</th><th>model</th><th>verdict</th><th>reference rows</th><th>current rows</th>
<th>current period</th><th>drifted columns</th></tr>{rows}</table></main></body></html>"""
    index = folder / HISTORY_INDEX
    index.write_text(page, encoding="utf-8")
    return index
