"""Small, dependency-free report renderers: SVG line charts in HTML, Markdown decisions."""

from __future__ import annotations

import html
from typing import Any

from voltpipe import svg

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def line_chart_svg(
    series: dict[str, list[float]], *, width: int = 640, height: int = 300, title: str = ""
) -> str:
    """An SVG line chart of named series over their index (epochs), with axes and a legend."""
    pts = [v for vals in series.values() for v in vals if v == v]
    if not pts:
        return "<svg xmlns='http://www.w3.org/2000/svg'/>"
    lo, hi = min(pts), max(pts)
    hi = hi if hi > lo else lo + 1.0
    n = max(len(v) for v in series.values())
    left, right, top, bottom = 60, 150, 30, 40
    pw, ph = width - left - right, height - top - bottom

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (pw * i / max(n - 1, 1))
        y = top + ph * (1 - (v - lo) / (hi - lo))
        return x, y

    parts = [svg.svg_open(width, height), svg.title(left, 18, title), *svg.axes(left, top, pw, ph)]
    for frac in (0.0, 0.5, 1.0):
        v = lo + frac * (hi - lo)
        _, y = xy(0, v)
        parts.append(f"<text x='{left - 6}' y='{y + 4:.1f}' text-anchor='end'>{v:.4g}</text>")
    parts.append(f"<text x='{left + pw / 2}' y='{height - 8}' text-anchor='middle'>epoch</text>")
    for i in range(n):
        x, _ = xy(i, lo)
        parts.append(
            f"<text x='{x:.1f}' y='{top + ph + 14}' text-anchor='middle'>{i + 1}</text>"
            if n <= 30 or i % 5 == 0
            else ""
        )
    for k, (name, vals) in enumerate(series.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        path = " ".join(
            f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in enumerate(vals) if v == v)
        )
        parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{path}'/>")
        ly = top + 14 * k + 6
        parts.append(
            f"<line x1='{left + pw + 12}' y1='{ly}' x2='{left + pw + 30}' y2='{ly}' stroke='{colour}' stroke-width='2'/>"
        )
        parts.append(f"<text x='{left + pw + 34}' y='{ly + 4}'>{html.escape(name)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def history_html(history: dict[str, list[float]], *, title: str) -> str:
    """An HTML page with one chart per metric family (loss, then each other metric)."""
    families: dict[str, dict[str, list[float]]] = {}
    for key, values in history.items():
        base = key.removeprefix("val_")
        if base == "learning_rate":
            continue
        families.setdefault(base, {})[key] = values
    charts = "".join(f"<div>{line_chart_svg(s, title=name)}</div>" for name, s in families.items())
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h2>{html.escape(title)}</h2>{charts}</body></html>"
    )


_VERDICT_TITLE = {
    "promote": "PROMOTE the challenger",
    "hold": "HOLD: keep the champion (the difference is not significant)",
    "reject": "REJECT the challenger: keep the champion",
}


def decision_markdown(result: Any) -> str:
    """The champion/challenger decision as Markdown: verdict, reason, the paired comparison
    (improvement and its interval), metrics side by side and the per-slice comparison."""
    d = result.decision
    verdict = getattr(d, "verdict", "promote" if d.promote else "hold")
    lines = [
        "# Champion / challenger decision",
        "",
        f"**Decision:** {_VERDICT_TITLE.get(verdict, verdict)}",
        "",
        f"{d.reason}",
        "",
        f"Gate metric: `{d.metric}`, required improvement > {d.min_improvement:g}. "
        f"Test rows: {result.test_rows:,}.",
        "",
    ]
    interval = getattr(d, "interval", None)
    if interval:
        lines += [
            "| comparison | value |",
            "|---|---|",
            f"| method | {d.method} ({d.rows:,} paired {'windows' if d.method == 'diebold-mariano' else 'rows'}"
            + (f", {d.samples:,} resamples" if d.samples else "")
            + ") |",
            f"| improvement (positive: challenger better) | {d.improvement:+.6g} |",
            f"| {d.confidence:.0%} interval | {interval[0]:+.6g} to {interval[1]:+.6g} |",
            f"| p-value | {'–' if d.p_value is None else f'{d.p_value:.3g}'} |",
            f"| test data | `{d.test_data_hash or '–'}` |",
            "",
        ]
    lines += [
        "| metric | challenger | champion"
        + (f" (v{result.champion_version})" if result.champion_version else "")
        + " |",
        "|---|---|---|",
    ]
    for key, value in result.metrics.items():
        champ = (result.champion_metrics or {}).get(key)
        lines.append(f"| {key} | {value:.6g} | {'–' if champ is None else f'{champ:.6g}'} |")
    slices = getattr(d, "slices", None)
    if slices:
        lines += ["", *gate_slices_markdown(slices, d.metric, d.max_slice_regression)]
    return "\n".join(lines) + "\n"


def gate_slices_markdown(
    slices: list[dict[str, Any]], metric: str, max_regression: float | None
) -> list[str]:
    """The gate's per-slice comparison as Markdown lines (the decision report and model card)."""

    def num(v: Any) -> str:
        return "–" if v is None else f"{v:.4g}"

    limit = (
        "" if max_regression is None else f" (a slice may get at most {max_regression:.0%} worse)"
    )
    lines = [
        f"## Slices: `{metric}`, champion vs challenger{limit}",
        "",
        "| slice | rows | champion | challenger | change | |",
        "|---|---|---|---|---|---|",
    ]
    for s in slices:
        rel = s.get("relative_change")
        change = "–" if rel is None else f"{rel:+.1%} worse" if rel > 0 else f"{-rel:.1%} better"
        value = str(s["value"]).replace("|", "\\|")
        lines.append(
            f"| {s['column']}={value} | {s['rows']:,} | {num(s['champion'])} | "
            f"{num(s['challenger'])} | {change} | {'REGRESSED' if s['regressed'] else ''} |"
        )
    return lines
