"""Evaluation plots as dependency-free inline SVG in HTML: residuals, ROC, confusion matrix."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from voltpipe import svg

SCATTER_MAX_POINTS = 2000
HISTOGRAM_BINS = 40
_W, _H = 640, 320
_LEFT, _RIGHT, _TOP, _BOTTOM = 60, 20, 30, 40


def _frame(
    title: str, x_label: str, y_label: str, x: tuple[float, float], y: tuple[float, float]
) -> list[str]:
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    parts = [
        svg.svg_open(_W, _H),
        svg.title(_LEFT, 18, title),
        *svg.axes(_LEFT, _TOP, pw, ph),
        f"<text x='{_LEFT + pw / 2}' y='{_H - 8}' text-anchor='middle'>{html.escape(x_label)}</text>",
        f"<text x='14' y='{_TOP + ph / 2}' text-anchor='middle' "
        f"transform='rotate(-90 14 {_TOP + ph / 2})'>{html.escape(y_label)}</text>",
    ]
    for frac in (0.0, 0.5, 1.0):
        yv = y[0] + frac * (y[1] - y[0])
        py = _TOP + ph * (1 - frac)
        parts.append(f"<text x='{_LEFT - 6}' y='{py + 4:.1f}' text-anchor='end'>{yv:.4g}</text>")
        xv = x[0] + frac * (x[1] - x[0])
        px = _LEFT + pw * frac
        parts.append(
            f"<text x='{px:.1f}' y='{_TOP + ph + 14}' text-anchor='middle'>{xv:.4g}</text>"
        )
    return parts


def _scale(v: np.ndarray, lo: float, hi: float, size: float, flip: bool) -> np.ndarray:
    span = hi - lo if hi > lo else 1.0
    f = (v - lo) / span
    return (1 - f) * size if flip else f * size


def _range(v: np.ndarray) -> tuple[float, float]:
    lo, hi = (float(v.min()), float(v.max())) if len(v) else (0.0, 1.0)
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)


def residual_scatter_svg(y_pred: np.ndarray, residual: np.ndarray, *, seed: int = 0) -> str:
    """Residual (actual - predicted) against prediction, at most SCATTER_MAX_POINTS points."""
    y_pred = np.asarray(y_pred, dtype="float64").reshape(-1)
    residual = np.asarray(residual, dtype="float64").reshape(-1)
    if len(y_pred) > SCATTER_MAX_POINTS:
        keep = np.random.default_rng(seed).choice(len(y_pred), SCATTER_MAX_POINTS, replace=False)
        y_pred, residual = y_pred[keep], residual[keep]
    xr, yr = _range(y_pred), _range(np.r_[residual, 0.0])
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    parts = _frame("Residual vs prediction", "prediction", "residual", xr, yr)
    zero = _TOP + float(_scale(np.array([0.0]), *yr, ph, True)[0])
    parts.append(
        f"<line x1='{_LEFT}' y1='{zero:.1f}' x2='{_LEFT + pw}' y2='{zero:.1f}' "
        "stroke='#999' stroke-dasharray='4 3'/>"
    )
    xs = _LEFT + _scale(y_pred, *xr, pw, False)
    ys = _TOP + _scale(residual, *yr, ph, True)
    parts.extend(
        f"<circle cx='{x:.1f}' cy='{y:.1f}' r='1.6' fill='#1f77b4' fill-opacity='0.4'/>"
        for x, y in zip(xs.tolist(), ys.tolist(), strict=True)
    )
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(
    values: np.ndarray, *, title: str, x_label: str, bins: int = HISTOGRAM_BINS
) -> str:
    """A histogram of `values` with `bins` equal-width bins."""
    values = np.asarray(values, dtype="float64").reshape(-1)
    counts, edges = np.histogram(values, bins=bins, range=_range(values))
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    top = max(int(counts.max()) if len(counts) else 1, 1)
    parts = _frame(title, x_label, "rows", (float(edges[0]), float(edges[-1])), (0.0, float(top)))
    width = pw / bins
    for i, c in enumerate(counts.tolist()):
        h = ph * c / top
        parts.append(
            f"<rect x='{_LEFT + i * width:.1f}' y='{_TOP + ph - h:.1f}' width='{max(width - 1, 1):.1f}' "
            f"height='{h:.1f}' fill='#ff7f0e'/>"
        )
    parts.append("</svg>")
    return "".join(parts)


def roc_svg(roc: dict[str, list[float]], auc: float | None = None) -> str:
    """The ROC curve with the chance diagonal."""
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    title = "ROC curve" + (f" (AUC {auc:.4g})" if auc is not None and auc == auc else "")
    parts = _frame(title, "false positive rate", "true positive rate", (0.0, 1.0), (0.0, 1.0))
    parts.append(
        f"<line x1='{_LEFT}' y1='{_TOP + ph}' x2='{_LEFT + pw}' y2='{_TOP}' stroke='#bbb' stroke-dasharray='4 3'/>"
    )
    xs = _LEFT + np.asarray(roc["fpr"]) * pw
    ys = _TOP + (1 - np.asarray(roc["tpr"])) * ph
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs.tolist(), ys.tolist(), strict=True))
    parts.append(f"<polyline fill='none' stroke='#1f77b4' stroke-width='2' points='{points}'/>")
    parts.append("</svg>")
    return "".join(parts)


def confusion_matrix_html(categories: list[str], matrix: list[list[int]]) -> str:
    """The confusion matrix as an HTML table (rows: actual, columns: predicted), shaded by count."""
    top = max((max(r) for r in matrix if r), default=1) or 1
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in categories)
    rows = []
    for cat, row in zip(categories, matrix, strict=True):
        cells = "".join(
            f"<td style='background:rgba(31,119,180,{0.1 + 0.8 * v / top:.2f});padding:4px 10px'>{v:,}</td>"
            for v in row
        )
        rows.append(f"<tr><th>{html.escape(str(cat))}</th>{cells}</tr>")
    return (
        "<table style='border-collapse:collapse;font-family:sans-serif;font-size:12px'>"
        f"<tr><th>actual \\ predicted</th>{head}</tr>{''.join(rows)}</table>"
    )


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h2>{html.escape(title)}</h2>{body}</body></html>"
    )


def regression_plots_html(y_true: np.ndarray, y_pred: np.ndarray, *, title: str) -> str:
    """Residual vs prediction scatter (downsampled) and the residual histogram."""
    y_true = np.asarray(y_true, dtype="float64").reshape(-1)
    y_pred = np.asarray(y_pred, dtype="float64").reshape(-1)
    residual = y_true - y_pred
    body = (
        f"<div>{residual_scatter_svg(y_pred, residual)}</div>"
        f"<div>{histogram_svg(residual, title='Residual distribution', x_label='residual (actual - predicted)')}</div>"
    )
    return _page(title, body)


def classification_plots_html(details: dict[str, Any], *, auc: float | None, title: str) -> str:
    """The ROC curve and the confusion matrix of a classifier."""
    cm = details["confusion_matrix"]
    body = (
        f"<div>{roc_svg(details['roc'], auc)}</div><h3>Confusion matrix</h3>"
        f"{confusion_matrix_html(cm['categories'], cm['matrix'])}"
    )
    return _page(title, body)
