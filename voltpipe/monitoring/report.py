"""The drift report: one self-contained HTML page with a summary, a table and inline SVG plots."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from voltpipe import svg
from voltpipe.monitoring.drift import DriftResult, FeatureDrift

__all__ = ["categorical_bars_svg", "histogram_overlay_svg", "render_drift_html"]

HIST_BINS = 30
_REF, _CUR = "#1f77b4", "#ff7f0e"
_CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 8px} h2{font-size:17px;margin:28px 0 8px}
.verdict{display:inline-block;padding:6px 12px;border-radius:4px;font-weight:600;color:#fff}
.drift{background:#c62828} .ok{background:#2e7d32}
table{border-collapse:collapse;font-size:13px;margin-top:8px}
th,td{border-bottom:1px solid #ddd;padding:4px 10px;text-align:right;white-space:nowrap}
th{background:#f5f5f5} td.name,th.name{text-align:left}
tr.drifted td{background:#fdecea} .fired{color:#c62828;font-weight:600} .muted{color:#777}
.plots{display:flex;flex-wrap:wrap;gap:12px}
.plot{border:1px solid #e0e0e0;border-radius:4px;padding:6px}
"""


def _fmt(v: float | int | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, int):
        return f"{v:,}"
    if v != 0 and abs(v) < 1e-4:
        return f"{v:.2e}"
    return f"{v:.{digits}g}"


def _tick(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _finite(column: pa.ChunkedArray) -> np.ndarray:
    x = (
        pc.cast(column, pa.float64()).to_numpy()
        if not pa.types.is_float64(column.type)
        else column.to_numpy()
    )
    return x[np.isfinite(x)]


def histogram_overlay_svg(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    title: str = "",
    marks: list[float] | None = None,
    bins: int = HIST_BINS,
    width: int = 540,
    height: int = 230,
) -> str:
    """Overlaid histograms (share of values per bin) of two samples of numbers, as SVG.

    The bins are equal-width over the span of both samples' central 99 % (values beyond fall in
    the outer bins), so a shifted window is visible beside the reference. ``marks`` (e.g. the
    PSI bin edges of the reference) are drawn as faint vertical lines.
    """
    left, right, top, bottom = 50, 26, 26, 34
    pw, ph = width - left - right, height - top - bottom
    head = svg.svg_open(width, height) + svg.title(left, 16, title, bold=True)
    if reference.size == 0 or current.size == 0:
        return head + f"<text x='{left}' y='{top + 20}'>no values</text></svg>"
    lo = float(min(np.quantile(reference, 0.005), np.quantile(current, 0.005)))
    hi = float(max(np.quantile(reference, 0.995), np.quantile(current, 0.995)))
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)

    def shares(x: np.ndarray) -> np.ndarray:
        idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
        return np.bincount(idx, minlength=bins) / x.size

    r, c = shares(reference), shares(current)
    top_share = float(max(r.max(), c.max())) or 1.0
    bw = pw / bins
    parts = [head]
    for m in marks or []:
        if lo < m < hi:
            x = left + pw * (m - lo) / (hi - lo)
            parts.append(
                f"<line x1='{x:.1f}' y1='{top}' x2='{x:.1f}' y2='{top + ph}' stroke='#bbb' "
                "stroke-dasharray='2,3'/>"
            )
    for shares_, colour in ((r, _REF), (c, _CUR)):
        for i, s in enumerate(shares_):
            if s <= 0:
                continue
            h = ph * s / top_share
            parts.append(
                f"<rect x='{left + i * bw:.1f}' y='{top + ph - h:.1f}' width='{max(bw - 1, 1):.1f}' "
                f"height='{h:.1f}' fill='{colour}' fill-opacity='0.45' stroke='{colour}' stroke-width='0.6'/>"
            )
    parts += [
        *svg.axes(left, top, pw, ph),
        f"<text x='{left - 5}' y='{top + 4}' text-anchor='end'>{top_share:.0%}</text>",
        f"<text x='{left - 5}' y='{top + ph}' text-anchor='end'>0</text>",
    ]
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + pw * frac
        parts.append(
            f"<text x='{x:.1f}' y='{top + ph + 14}' text-anchor='middle'>{_tick(lo + frac * (hi - lo))}</text>"
        )
    parts.append(_legend(left + pw - 150, 8))
    parts.append("</svg>")
    return "".join(parts)


def categorical_bars_svg(
    categories: list[str],
    reference_counts: list[int],
    current_counts: list[int],
    *,
    title: str = "",
    other: tuple[int, int] = (0, 0),
    width: int = 540,
) -> str:
    """Side-by-side horizontal bars (share of rows) per category, reference vs current, as SVG."""
    labels = list(categories) + (["(other)"] if any(other) else [])
    ref = np.array(list(reference_counts) + ([other[0]] if any(other) else []), dtype=np.float64)
    cur = np.array(list(current_counts) + ([other[1]] if any(other) else []), dtype=np.float64)
    ref_share = ref / ref.sum() if ref.sum() else ref
    cur_share = cur / cur.sum() if cur.sum() else cur
    row, left, top, right = 26, 140, 28, 60
    height = top + row * len(labels) + 10
    pw = width - left - right
    top_share = float(max(ref_share.max(initial=0), cur_share.max(initial=0))) or 1.0
    parts = [
        svg.svg_open(width, height) + svg.title(8, 16, title, bold=True),
        _legend(width - 160, 8),
    ]
    for i, label in enumerate(labels):
        y = top + i * row
        short = label if len(label) <= 20 else label[:19] + "…"
        parts.append(
            f"<text x='{left - 6}' y='{y + 15}' text-anchor='end'>{html.escape(short)}</text>"
        )
        for j, (share, colour) in enumerate(((ref_share[i], _REF), (cur_share[i], _CUR))):
            w = pw * share / top_share
            yy = y + 2 + j * 11
            parts.append(
                f"<rect x='{left}' y='{yy}' width='{max(w, 0.5):.1f}' height='10' fill='{colour}' "
                f"fill-opacity='0.8'/><text x='{left + w + 4:.1f}' y='{yy + 9}'>{share:.1%}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _legend(x: float, y: float) -> str:
    return (
        f"<rect x='{x}' y='{y}' width='10' height='10' fill='{_REF}' fill-opacity='0.6'/>"
        f"<text x='{x + 14}' y='{y + 9}'>reference</text>"
        f"<rect x='{x + 80}' y='{y}' width='10' height='10' fill='{_CUR}' fill-opacity='0.6'/>"
        f"<text x='{x + 94}' y='{y + 9}'>current</text>"
    )


def _row(f: FeatureDrift, t: dict[str, float]) -> str:
    def stat(value: float | None, test: str, limit: str) -> str:
        cls = " class='fired'" if test in f.fired else ""
        shown = (
            "≈ 0" if value == 0.0 and "&lt;" in limit else _fmt(value)
        )  # a p-value below float range
        return f"<td{cls}>{shown}</td><td class='muted'>{limit}</td>"

    if f.kind == "numeric":
        cells = (
            stat(f.psi, "psi", f"&gt; {_fmt(t['psi'])}")
            + stat(f.ks_statistic, "ks", f"&gt; {_fmt(t['ks_statistic'])}")
            + stat(f.ks_pvalue, "ks", f"&lt; {_fmt(t['ks_pvalue'])}")
            + "<td>–</td><td></td><td>–</td><td></td>"
        )
    else:
        cells = (
            "<td>–</td><td></td><td>–</td><td></td><td>–</td><td></td>"
            + stat(f.js_distance, "js", f"&gt; {_fmt(t['js_distance'])}")
            + stat(f.chi2_pvalue, "js", f"&lt; {_fmt(t['ks_pvalue'])}")
        )
    verdict = (
        ("<span class='fired'>DRIFT (" + ", ".join(f.fired) + ")</span>") if f.drifted else "ok"
    )
    nulls = f"{f.null_rate_reference:.1%} → {f.null_rate_current:.1%}"
    return (
        f"<tr class='{'drifted' if f.drifted else ''}'><td class='name'>{html.escape(f.name)}</td>"
        f"<td class='name'>{f.kind}</td>{cells}<td>{nulls}</td><td class='name'>{verdict}</td></tr>"
    )


def _plot(f: FeatureDrift, reference: pa.Table, current: pa.Table) -> str:
    title = f"{f.name} — {'DRIFT' if f.drifted else 'ok'}"
    if f.kind == "categorical":
        return categorical_bars_svg(
            f.categories,
            f.reference_category_counts,
            f.current_category_counts,
            title=title,
            other=(f.other_reference_count, f.other_current_count),
        )
    if f.name not in reference.column_names or f.name not in current.column_names:
        return f"<p class='muted'>{html.escape(f.name)}: no data to plot</p>"
    return histogram_overlay_svg(
        _finite(reference.column(f.name)),
        _finite(current.column(f.name)),
        title=title,
        marks=f.bin_edges,
    )


def render_drift_html(
    result: DriftResult,
    reference: pa.Table,
    current: pa.Table,
    *,
    title: str = "Drift report",
    multivariate: Any = None,
    estimate: Any = None,
) -> str:
    """The drift report as one self-contained HTML page (inline CSS and SVG, no scripts).

    Args:
        result: The result of :func:`voltpipe.monitoring.drift.compute_drift`.
        reference: The reference sample the result was computed from (for the histograms).
        current: The current window.
        title: Page title.
        multivariate: The multivariate tests (``multivariate.MultivariateDrift``), if run.
        estimate: The estimated performance (``estimation.PerformanceEstimate``), if any.

    Returns:
        The HTML text.
    """
    t = result.thresholds
    drifted = result.drifted_features
    if result.drift_detected:
        what = (
            f"in {len(drifted)} of {len(result.features)} features"
            if drifted
            else "in the predictions"
        )
        badge = f"<span class='verdict drift'>Drift detected {what}</span>"
    else:
        badge = f"<span class='verdict ok'>No drift in {len(result.features)} features</span>"
    summary = [
        f"<p>{badge}</p>",
        f"<p>Reference sample: <b>{result.reference_rows:,}</b> rows · current window: "
        f"<b>{result.current_rows:,}</b> rows.</p>",
    ]
    if drifted:
        summary.append(
            "<p>Drifted features: "
            + ", ".join(f"<b>{html.escape(n)}</b>" for n in drifted)
            + "</p>"
        )
    if result.prediction is not None:
        p = result.prediction
        state = "<span class='fired'>drifted</span>" if p.drifted else "stable"
        summary.append(
            f"<p>Predictions: {state} (PSI {_fmt(p.psi)}, threshold {_fmt(p.threshold)}; "
            f"KS {_fmt(p.ks_statistic)}).</p>"
        )
    if result.skipped:
        summary.append(
            "<p class='muted'>Not compared (no drift test for their type): "
            + ", ".join(f"{html.escape(n)} ({html.escape(ty)})" for n, ty in result.skipped.items())
            + "</p>"
        )
    rule = (
        f"A number drifts when PSI &gt; {_fmt(t['psi'])}, or when KS p &lt; {_fmt(t['ks_pvalue'])} and "
        f"KS D &gt; {_fmt(t['ks_statistic'])}; a category when the Jensen-Shannon distance &gt; "
        f"{_fmt(t['js_distance'])} and the chi-square p &lt; {_fmt(t['ks_pvalue'])}."
    )
    header = (
        "<tr><th class='name'>feature</th><th class='name'>kind</th><th>PSI</th><th>limit</th>"
        "<th>KS D</th><th>limit</th><th>KS p</th><th>limit</th><th>JS distance</th><th>limit</th>"
        "<th>chi² p</th><th>limit</th><th>nulls ref → cur</th><th class='name'>verdict</th></tr>"
    )
    rows = "".join(_row(f, t) for f in result.features.values())
    ordered = sorted(result.features.values(), key=lambda f: not f.drifted)  # drifted first
    plots = "".join(f"<div class='plot'>{_plot(f, reference, current)}</div>" for f in ordered)
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{''.join(summary)}"
        f"{_multivariate_html(multivariate)}{_estimate_html(estimate)}"
        f"<h2>Features</h2><p class='muted'>{rule}</p><table>{header}{rows}</table>"
        f"<h2>Distributions, reference vs current</h2><p class='muted'>Share of values per bin; dashed "
        f"lines are the reference's PSI bin edges.</p><div class='plots'>{plots}</div></body></html>"
    )


def _multivariate_html(m: Any) -> str:
    """The multivariate tests: statistic, threshold, p-value and verdict of each."""
    if m is None:
        return ""
    names = {
        "reconstruction_error": "PCA reconstruction error (mean per row)",
        "domain_classifier": "domain classifier AUC (reference vs current, out of fold)",
    }
    rows = "".join(
        f"<tr><td class='name'>{names.get(k, k)}</td><td>{_fmt(t.statistic)}</td>"
        f"<td>{_fmt(t.reference_value)}</td><td>{_fmt(t.threshold)}</td><td>{_fmt(t.p_value)}</td>"
        f"<td class='name'>{'<span class=fired>drift</span>' if t.drifted else 'ok'}</td></tr>"
        for k, t in m.tests.items()
    )
    return (
        "<h2>Multivariate drift</h2><p class='muted'>All features together: a joint shift with "
        "unchanged marginals shows here and not in the per-feature tests.</p><table><tr>"
        "<th class='name'>test</th><th>current</th><th>reference</th><th>threshold</th>"
        f"<th>p</th><th class='name'>verdict</th></tr>{rows}</table>"
    )


def _estimate_html(e: Any) -> str:
    """The estimated metric (CBPE/DLE) and its interval, and the realised one where known."""
    if e is None:
        return ""
    limit = (
        f"limit {_fmt(e.threshold)}"
        if e.threshold is not None
        else f"tolerance {_fmt(e.tolerance)} relative to the reference"
    )
    state = "<span class='fired'>degraded</span>" if e.degraded else "ok"
    parts = [
        f"<h2>Estimated performance ({html.escape(e.method.upper())}, before labels)</h2>",
        f"<p>Estimated {html.escape(e.metric)} <b>{_fmt(e.estimate)}</b> (95% interval "
        f"{_fmt(e.low)} to {_fmt(e.high)}) on {e.rows:,} rows; reference {_fmt(e.reference)}; "
        f"{limit}: {state}.</p>",
    ]
    if e.others:
        parts.append(
            "<p class='muted'>Also estimated: "
            + ", ".join(f"{html.escape(k)} {_fmt(v)}" for k, v in e.others.items())
            + "</p>"
        )
    r = e.realised
    if r:
        inside = "inside" if r["estimate_within_realised_interval"] else "outside"
        parts.append(
            f"<p>Realised {html.escape(r['metric'])} on the {r['rows']:,} labelled rows: "
            f"<b>{_fmt(r['value'])}</b> (bootstrap 95% interval {_fmt(r['low'])} to "
            f"{_fmt(r['high'])}); the estimate is {inside} it (error "
            f"{_fmt(r['estimate_error'])}).</p>"
        )
    return "".join(parts)
