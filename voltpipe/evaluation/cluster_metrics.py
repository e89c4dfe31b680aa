"""Evaluation of the unsupervised tasks on the test split, and their plots (inline SVG).

Clustering: silhouette (per row, on a seeded sample above ``SILHOUETTE_MAX_ROWS`` rows, so the
gate can pair two models on the same rows), Davies-Bouldin, cluster sizes, stability (mean
adjusted Rand index of refits on bootstrap resamples), and, when the test data carries the
label, its agreement with the clusters (``ari``, ``nmi``). Embedding: explained variance and
reconstruction error. The label is never a model input; here it is only compared with.
"""

from __future__ import annotations

import dataclasses
import html
from typing import Any

import numpy as np
import pyarrow as pa

from voltpipe.errors import DataError
from voltpipe.evaluation.plots import _frame, _page, _range, _scale
from voltpipe.modelling.clustering import SILHOUETTE_MAX_ROWS

#: Seed of the silhouette sample: two models scored on the same test rows share it.
SAMPLE_SEED = 0
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
TOP_LOADINGS = 5
_W, _H = 640, 320
_LEFT, _RIGHT, _TOP, _BOTTOM = 60, 20, 30, 40


@dataclasses.dataclass
class UnsupervisedScore:
    """Metrics, details and plots of one model, with per-row values for the paired gate.

    `rows` are the scored row indices (the silhouette sample; every row for embeddings) and
    `per_row` (n, 2): clustering: silhouette and distance to the own centre; embedding: the
    row's share of the explained variance (its mean is ``explained_variance``) and its
    reconstruction error.
    """

    metrics: dict[str, float]
    details: dict[str, Any]
    plots_html: str
    rows: np.ndarray
    per_row: np.ndarray
    ids: np.ndarray | None = None


def sample_rows(n: int, max_rows: int = SILHOUETTE_MAX_ROWS, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Sorted indices of a seeded sample of `max_rows` of `n` rows (all of them below that)."""
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))


def _labels_for(loaded: Any, table: pa.Table, keys: pa.Table | None, n: int) -> np.ndarray | None:
    """The label of each scored row (profiles: of its group), or None without one."""
    label = loaded.meta.get("label") or ""
    if not label or label not in table.column_names:
        return None
    values = np.asarray(table.column(label).to_numpy(zero_copy_only=False), dtype=object)
    if keys is None:
        return values.astype(str)
    profile = loaded.model.inputs.profile or {}
    group = profile.get("group_column")
    if not group or group not in table.column_names:
        return None
    groups = np.asarray(table.column(group).to_numpy(zero_copy_only=False), dtype=object)
    first: dict[Any, Any] = {}
    for g, v in zip(groups.tolist(), values.tolist(), strict=True):
        first.setdefault(g, v)
    key_col = keys.column(group) if group in keys.column_names else keys.column(0)
    return np.asarray([str(first.get(g)) for g in key_col.to_pylist()], dtype=object)


def score_clustering(loaded: Any, table: pa.Table) -> UnsupervisedScore:
    """Scores a clustering model (``LoadedModel`` of task clustering) on the test table.

    Raises:
        DataError: the test data has fewer than two rows (or profiles) to score.
    """
    from sklearn.metrics import (
        adjusted_rand_score,
        davies_bouldin_score,
        normalized_mutual_info_score,
        silhouette_samples,
    )

    from voltpipe.modelling.clustering import bootstrap_stability

    model = loaded.model
    clusters = model.clusters
    z, keys = model.inputs.matrix(table)
    if len(z) < 2:
        raise DataError(f"the test split has {len(z)} row(s) or profile(s) to cluster; need 2+")
    ids = clusters.assign(z)
    dist = clusters.distances(z)
    own = dist[np.arange(len(z)), ids]
    k = clusters.k
    sizes = np.bincount(ids, minlength=k)
    rows = sample_rows(len(z))
    used = len(np.unique(ids[rows]))
    if 2 <= used < len(rows):
        sil = silhouette_samples(z[rows], ids[rows])
    else:
        sil = np.full(len(rows), np.nan)
    metrics: dict[str, float] = {
        "silhouette": float(np.nanmean(sil)) if np.isfinite(sil).any() else float("nan"),
        "davies_bouldin": float(davies_bouldin_score(z, ids))
        if 2 <= len(np.unique(ids)) < len(z)
        else float("nan"),
        "k": float(k),
        "mean_distance": float(own.mean()),
        "smallest_cluster_share": float(sizes.min() / len(z)),
    }
    meta_c = loaded.meta.get("clustering") or {}
    stability = bootstrap_stability(
        z,
        ids,
        method=clusters.method,
        k=k,
        resamples=int(meta_c.get("stability_resamples", 10)),
        seed=int(meta_c.get("seed", 42)),
    )
    if stability is not None:
        metrics["stability_ari"] = stability
    truth = _labels_for(loaded, table, keys, len(z))
    if truth is not None:
        metrics["ari"] = float(adjusted_rand_score(truth, ids))
        metrics["nmi"] = float(normalized_mutual_info_score(truth, ids))
    details: dict[str, Any] = {
        "sizes": sizes.tolist(),
        "proportions": (sizes / len(z)).tolist(),
        "silhouette_rows": len(rows),
        "scored": len(z),
        "unit": "profiles" if keys is not None else "rows",
        "family": loaded.meta.get("family"),
    }
    if truth is not None:
        details["label_crosstab"] = _crosstab(truth, ids, k)
    plots = [
        scatter_svg(z, ids, clusters.centers, title="Test rows on their first two principal axes")
    ]
    if keys is not None:
        plots.append(profile_curves_svg(z, ids, k, points=model.inputs.features))
    title = f"Clustering ({loaded.meta.get('family')}, k={k})"
    body = "".join(f"<div>{p}</div>" for p in plots) + _sizes_table(sizes)
    per_row = np.column_stack([sil, own[rows]])
    return UnsupervisedScore(metrics, details, _page(title, body), rows, per_row, ids)


def score_embedding(loaded: Any, table: pa.Table) -> UnsupervisedScore:
    """Scores an embedding model on the test table: explained variance (1 - residual / total
    sum of squares about the train mean, on the model's standardised scale) and the mean
    squared reconstruction error per value.

    Raises:
        DataError: the test data has no row.
    """
    model = loaded.model
    emb = model.embedding
    z, _ = model.inputs.matrix(table)
    if len(z) == 0:
        raise DataError("the test split has no row to embed")
    rebuilt = emb.reconstruct(z)
    centre = emb.mean if emb.mean is not None else np.zeros(z.shape[1])
    sse = ((z - rebuilt) ** 2).sum(axis=1)
    sst = ((z - centre) ** 2).sum(axis=1)
    total = float(sst.mean())
    ev_rows = 1.0 - sse / total if total > 0 else np.full(len(z), np.nan)
    recon = sse / z.shape[1]
    metrics = {
        "explained_variance": float(ev_rows.mean()),
        "reconstruction_error": float(recon.mean()),
        "n_components": float(emb.n_components),
    }
    details: dict[str, Any] = {"scored": len(z), "family": loaded.meta.get("family")}
    plots = []
    if emb.explained_variance_ratio is not None and emb.components is not None:
        details["explained_variance_ratio"] = emb.explained_variance_ratio.tolist()
        details["top_loadings"] = top_loadings(emb.components, model.inputs.features)
        plots.append(variance_curve_svg(emb.explained_variance_ratio))
        plots.append(loadings_table(details["top_loadings"]))
    title = f"Embedding ({loaded.meta.get('family')}, {emb.n_components} components)"
    body = "".join(f"<div>{p}</div>" for p in plots)
    per_row = np.column_stack([ev_rows, recon])
    return UnsupervisedScore(metrics, details, _page(title, body), np.arange(len(z)), per_row)


def top_loadings(components: np.ndarray, features: list[str]) -> list[list[dict[str, Any]]]:
    """Per component, its `TOP_LOADINGS` features with the largest absolute loading."""
    out = []
    for row in np.asarray(components):
        order = np.argsort(-np.abs(row), kind="stable")[:TOP_LOADINGS]
        out.append([{"feature": features[j], "loading": float(row[j])} for j in order])
    return out


def _crosstab(truth: np.ndarray, ids: np.ndarray, k: int) -> dict[str, list[int]]:
    out = {}
    for value in sorted(set(truth.tolist())):
        out[str(value)] = np.bincount(ids[truth == value], minlength=k).tolist()
    return out


# ----- plots ---------------------------------------------------------------------------------------


def _colour(j: int) -> str:
    return PALETTE[j % len(PALETTE)]


def scatter_svg(
    z: np.ndarray, ids: np.ndarray, centers: np.ndarray, *, title: str, max_points: int = 2000
) -> str:
    """Rows projected on their first two principal axes, coloured by cluster; centres as
    crosses."""
    z = np.asarray(z, dtype="float64")
    mean = z.mean(axis=0)
    _, _, vt = np.linalg.svd(z - mean, full_matrices=False)
    axes = vt[:2].T if vt.shape[0] >= 2 else np.c_[vt.T, np.zeros((z.shape[1], 1))]
    keep = sample_rows(len(z), max_points)
    p = (z[keep] - mean) @ axes
    c = (centers - mean) @ axes
    xr, yr = _range(np.r_[p[:, 0], c[:, 0]]), _range(np.r_[p[:, 1], c[:, 1]])
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    parts = _frame(title, "axis 1", "axis 2", xr, yr)
    xs, ys = _LEFT + _scale(p[:, 0], *xr, pw, False), _TOP + _scale(p[:, 1], *yr, ph, True)
    for x, y, j in zip(xs.tolist(), ys.tolist(), ids[keep].tolist(), strict=True):
        parts.append(
            f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2' fill='{_colour(j)}' fill-opacity='0.5'/>"
        )
    cx, cy = _LEFT + _scale(c[:, 0], *xr, pw, False), _TOP + _scale(c[:, 1], *yr, ph, True)
    for j, (x, y) in enumerate(zip(cx.tolist(), cy.tolist(), strict=True)):
        parts.append(
            f"<text x='{x:.1f}' y='{y + 4:.1f}' text-anchor='middle' font-size='14' "
            f"font-weight='bold' fill='{_colour(j)}' stroke='#000' stroke-width='0.3'>"
            f"x{j}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def profile_curves_svg(z: np.ndarray, ids: np.ndarray, k: int, *, points: list[str]) -> str:
    """Each cluster's mean profile with a band from its members' 10th to 90th percentile."""
    d = z.shape[1]
    x = np.arange(d, dtype="float64")
    lo_all, hi_all = [], []
    curves = []
    for j in range(k):
        members = z[ids == j]
        if len(members) == 0:
            continue
        q10, q90 = np.quantile(members, [0.1, 0.9], axis=0)
        curves.append((j, members.mean(axis=0), q10, q90, len(members)))
        lo_all.append(q10.min())
        hi_all.append(q90.max())
    xr = (0.0, float(max(d - 1, 1)))
    yr = _range(np.array([min(lo_all, default=0.0), max(hi_all, default=1.0)]))
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    parts = _frame("Cluster profiles: mean and 10-90% band", "point of the period", "value", xr, yr)
    px = _LEFT + _scale(x, *xr, pw, False)
    for j, mean, q10, q90, n in curves:
        up = _TOP + _scale(q90, *yr, ph, True)
        down = _TOP + _scale(q10, *yr, ph, True)
        band = [f"{a:.1f},{b:.1f}" for a, b in zip(px.tolist(), up.tolist(), strict=True)]
        band += [
            f"{a:.1f},{b:.1f}" for a, b in zip(px[::-1].tolist(), down[::-1].tolist(), strict=True)
        ]
        parts.append(
            f"<polygon points='{' '.join(band)}' fill='{_colour(j)}' fill-opacity='0.15'/>"
        )
        line = _TOP + _scale(mean, *yr, ph, True)
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px.tolist(), line.tolist(), strict=True))
        parts.append(
            f"<polyline fill='none' stroke='{_colour(j)}' stroke-width='2' points='{pts}'>"
            f"<title>cluster {j} ({n} profiles)</title></polyline>"
        )
    parts.append("</svg>")
    return "".join(parts)


def variance_curve_svg(ratios: np.ndarray) -> str:
    """Explained-variance ratio per component (bars) and its cumulative sum (line)."""
    r = np.asarray(ratios, dtype="float64")
    m = len(r)
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    parts = _frame(
        "Explained variance by component", "component", "share", (1.0, float(max(m, 2))), (0.0, 1.0)
    )
    width = pw / max(m, 1)
    for i, v in enumerate(r.tolist()):
        h = ph * v
        parts.append(
            f"<rect x='{_LEFT + i * width:.1f}' y='{_TOP + ph - h:.1f}' "
            f"width='{max(width - 2, 1):.1f}' height='{h:.1f}' fill='#1f77b4'/>"
        )
    cum = np.cumsum(r)
    pts = " ".join(
        f"{_LEFT + (i + 0.5) * width:.1f},{_TOP + ph * (1 - c):.1f}"
        for i, c in enumerate(cum.tolist())
    )
    parts.append(f"<polyline fill='none' stroke='#d62728' stroke-width='2' points='{pts}'/>")
    parts.append("</svg>")
    return "".join(parts)


def loadings_table(loadings: list[list[dict[str, Any]]]) -> str:
    rows = []
    for i, top in enumerate(loadings):
        cells = ", ".join(f"{html.escape(t['feature'])} ({t['loading']:+.3f})" for t in top)
        rows.append(f"<tr><th>pc{i + 1}</th><td>{cells}</td></tr>")
    return (
        "<h3>Top loadings</h3><table style='font-family:sans-serif;font-size:12px'>"
        + "".join(rows)
        + "</table>"
    )


def _sizes_table(sizes: np.ndarray) -> str:
    total = max(int(sizes.sum()), 1)
    cells = "".join(
        f"<tr><th style='color:{_colour(j)}'>cluster {j}</th><td>{int(s):,}</td>"
        f"<td>{s / total:.1%}</td></tr>"
        for j, s in enumerate(sizes.tolist())
    )
    return (
        "<h3>Cluster sizes (test)</h3><table style='font-family:sans-serif;font-size:12px'>"
        f"{cells}</table>"
    )
