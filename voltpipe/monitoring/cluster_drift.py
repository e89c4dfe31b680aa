"""Drift of a clustering or embedding champion on a current window.

Clustering: the share of rows (or profiles) in each cluster against the train shares (Jensen-
Shannon distance and a chi-square test), and the distance of each row to its own centre
against the train distances (PSI and Kolmogorov-Smirnov): a window whose rows sit far from
every centre has drifted even when its proportions have not. Embedding: the reconstruction
error against the train one. The reference is stored with the model at training
(``voltpipe_model.json``: ``clustering.train_sizes`` and ``reference``), so a profile model
needs no reference rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from voltpipe.config import DriftThresholds
from voltpipe.errors import DataError
from voltpipe.monitoring.drift import chi_square, js_distance, ks_2samp, psi


@dataclasses.dataclass
class ClusterDrift:
    """The window against the champion's training.

    Attributes:
        task: clustering or embedding.
        drifted: whether any check fired (`fired`: ``proportions``, ``distances``,
            ``reconstruction``).
        reference_shares, current_shares: per-cluster shares (clustering).
        js_distance, chi2_pvalue: the proportions' comparison (clustering).
        value: what the distances compare (``distance`` to the own centre, or
            ``reconstruction_error``); `psi`, `ks_statistic`, `ks_pvalue` their comparison.
    """

    task: str
    drifted: bool
    fired: list[str]
    rows: int
    value: str
    psi: float
    ks_statistic: float
    ks_pvalue: float
    reference_mean: float
    current_mean: float
    reference_shares: list[float] | None = None
    current_shares: list[float] | None = None
    js_distance: float | None = None
    chi2_pvalue: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def cluster_drift(
    model: Any,
    meta: dict[str, Any],
    current: pa.Table,
    thresholds: DriftThresholds | Mapping[str, Any] | None = None,
) -> ClusterDrift:
    """Compares the window with the champion's training (see the module docstring).

    Proportions drift when their Jensen-Shannon distance exceeds ``thresholds.js_distance``;
    distances (errors) when their PSI exceeds ``thresholds.psi``, or their KS test is
    significant (``ks_pvalue``) with a statistic above ``ks_statistic``.

    Raises:
        DataError: the model stores no reference, or the window has no usable row (profile).
    """
    t = (
        thresholds
        if isinstance(thresholds, DriftThresholds)
        else DriftThresholds(**dict(thresholds or {}))
    )
    task = str(meta["task"])
    section = meta.get(task) or {}
    reference = (meta.get("reference") or {}).get("values")
    if not reference:
        raise DataError(
            "the champion stores no reference distances (voltpipe_model.json: reference); "
            "retrain it with this version of voltpipe"
        )
    z, _ = model.inputs.matrix(current)
    if len(z) == 0:
        raise DataError("the current window has no row (or complete profile) to compare")
    values = model.residuals(z)
    ref = np.asarray(reference, dtype="float64")
    ks_stat, ks_p = ks_2samp(ref, values)
    shift = psi(ref, values)
    fired = []
    if shift > t.psi or (ks_p < t.ks_pvalue and ks_stat > t.ks_statistic):
        fired.append("distances" if task == "clustering" else "reconstruction")
    ref_shares = cur_shares = None
    js = chi_p = None
    if task == "clustering":
        k = model.clusters.k
        train_sizes = np.asarray(section.get("train_sizes") or np.ones(k), dtype="float64")
        counts = np.bincount(model.clusters.assign(z), minlength=k).astype("float64")
        js = float(js_distance(train_sizes, counts))
        chi_p = float(chi_square(train_sizes, counts)[1])
        ref_shares = (train_sizes / train_sizes.sum()).tolist()
        cur_shares = (counts / counts.sum()).tolist()
        if js > t.js_distance:
            fired.insert(0, "proportions")
    return ClusterDrift(
        task=task,
        drifted=bool(fired),
        fired=fired,
        rows=len(z),
        value="distance" if task == "clustering" else "reconstruction_error",
        psi=float(shift),
        ks_statistic=float(ks_stat),
        ks_pvalue=float(ks_p),
        reference_mean=float(ref.mean()),
        current_mean=float(values.mean()),
        reference_shares=ref_shares,
        current_shares=cur_shares,
        js_distance=js,
        chi2_pvalue=chi_p,
    )


def cluster_drift_html(d: ClusterDrift) -> str:
    """A short HTML section for the drift report."""
    rows = ""
    if d.reference_shares is not None and d.current_shares is not None:
        rows = "".join(
            f"<tr><td>cluster {j}</td><td>{r:.1%}</td><td>{c:.1%}</td></tr>"
            for j, (r, c) in enumerate(zip(d.reference_shares, d.current_shares, strict=True))
        )
        rows = (
            "<table><tr><th></th><th>train share</th><th>window share</th></tr>"
            f"{rows}</table><p>Jensen-Shannon distance {d.js_distance:.4f}, chi-square p "
            f"{d.chi2_pvalue:.3g}</p>"
        )
    verdict = "drifted: " + ", ".join(d.fired) if d.drifted else "no drift"
    return (
        f"<h2>{d.task.capitalize()} drift ({verdict})</h2>{rows}<p>{d.value}: train mean "
        f"{d.reference_mean:.4g}, window mean {d.current_mean:.4g}; PSI {d.psi:.4f}, KS "
        f"{d.ks_statistic:.4f} (p {d.ks_pvalue:.3g}) over {d.rows:,} rows</p>"
    )
