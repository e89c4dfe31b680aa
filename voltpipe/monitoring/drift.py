"""Drift statistics between a reference sample and a current window: PSI, KS, JS, chi-square.

Every statistic is computed on whole numpy arrays (sorts, ``searchsorted``, ``bincount``) or by
Arrow compute kernels; nothing loops over rows in Python.

Verdicts (thresholds from :class:`voltpipe.config.DriftThresholds`):

* a **numeric** feature drifts when ``PSI > psi`` or when the two-sample Kolmogorov-Smirnov
  test is both significant and large, ``p < ks_pvalue and D > ks_statistic``. The effect-size
  guard keeps million-row windows from firing on differences too small to matter, where
  any p-value is tiny;
* a **categorical** feature (strings, booleans, dictionaries, or a column named in
  ``categorical``) drifts when the Jensen-Shannon distance (base 2) of the category frequencies
  is above ``js_distance`` and the chi-square test of homogeneity confirms it at the same
  significance level as KS (``p < ks_pvalue``): with many categories and a small window the JS
  distance of two samples of one population alone can exceed 0.1;
* **prediction drift** is the PSI of the champion's predictions, compared with
  ``prediction_psi``.

Null (and NaN/inf) values are left out of the distributions; the change of the null rate is
reported beside them.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from voltpipe.config import DriftThresholds
from voltpipe.errors import DataError

__all__ = [
    "PSI_BINS",
    "PSI_EPSILON",
    "DriftResult",
    "FeatureDrift",
    "PerformanceDecay",
    "PredictionDrift",
    "categorical_drift_from_counts",
    "chi2_sf",
    "chi_square",
    "compute_drift",
    "js_distance",
    "kolmogorov_sf",
    "ks_2samp",
    "numeric_drift_from_counts",
    "performance_decay",
    "prediction_drift",
    "psi",
    "reference_sample",
]

PSI_BINS = 10
#: Proportion that stands in for an empty bin, so that PSI stays finite.
PSI_EPSILON = 1e-4
#: Most categories kept per feature in the result (the rest are summed as "other").
MAX_REPORTED_CATEGORIES = 20
_KS_GRID = 4096  # most pivots per sample in the coarse KS pass; see _ks_statistic_sorted
_EXACT_KS_BELOW = 2_000
_PARALLEL_ABOVE = 100_000  # rows (reference + current) below which threads cost more than they save

Kind = Literal["numeric", "categorical"]


# --- numeric statistics -------------------------------------------------------------------------


def _finite_sorted(values: Any) -> np.ndarray:
    """The finite values, sorted: a sort puts -inf first and +inf, then NaN, last, so the finite
    ones are a slice of the sorted array (no mask, no copy)."""
    x = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    lo = int(np.searchsorted(x, -np.inf, side="right"))
    hi = int(np.searchsorted(x, np.inf, side="left"))
    return x[lo:hi]


def _quantile_edges(sorted_ref: np.ndarray, bins: int) -> np.ndarray:
    """Interior bin edges at the reference's i/bins quantiles (linear interpolation), deduplicated."""
    n = sorted_ref.size
    pos = np.arange(1, bins) / bins * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    edges = sorted_ref[lo] + (sorted_ref[hi] - sorted_ref[lo]) * frac
    return np.unique(edges)


def _bin_counts_sorted(sorted_x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in the bins (-inf, e0], (e0, e1], ..., (e_last, inf) of a sorted array."""
    below = np.searchsorted(sorted_x, edges, side="right")
    return np.diff(np.concatenate(([0], below, [sorted_x.size])))


def _psi_from_counts(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    p = ref_counts / max(ref_counts.sum(), 1)
    q = cur_counts / max(cur_counts.sum(), 1)
    p = np.where(p > 0, p, PSI_EPSILON)
    q = np.where(q > 0, q, PSI_EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def psi(reference: Any, current: Any, *, bins: int = PSI_BINS) -> float:
    """Population stability index of `current` against `reference`.

    Bins are the reference's quantiles (``bins`` of equal reference mass, edges deduplicated so a
    point mass takes one bin), the outer bins are open-ended, and an empty bin counts as
    :data:`PSI_EPSILON` of its sample. Non-finite values are ignored.

    Args:
        reference: Numbers of the reference sample.
        current: Numbers of the current window.
        bins: Number of reference quantile bins.

    Returns:
        ``sum((q - p) * ln(q / p))`` over the bins, 0 for identical distributions.

    Raises:
        DataError: either sample has no finite value.
    """
    ref, cur = _finite_sorted(reference), _finite_sorted(current)
    _require_values(ref, cur, "psi")
    return _psi_sorted(ref, cur, bins)[0]


def _psi_sorted(
    ref: np.ndarray, cur: np.ndarray, bins: int
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    edges = _quantile_edges(ref, bins)
    rc, cc = _bin_counts_sorted(ref, edges), _bin_counts_sorted(cur, edges)
    return _psi_from_counts(rc, cc), edges, rc, cc


def kolmogorov_sf(x: float) -> float:
    """Survival function of the Kolmogorov distribution, ``P(K > x)``.

    Equal to ``scipy.special.kolmogorov(x)``. The alternating series
    ``2 Σ (-1)^(k-1) exp(-2 k² x²)`` converges fast for large x; for small x the Jacobi theta
    form ``1 - sqrt(2π)/x Σ exp(-(2k-1)² π² / (8 x²))`` does.
    """
    if x <= 0.0:
        return 1.0
    if x < 1.0:
        k = np.arange(1, 12)
        cdf = (
            math.sqrt(2.0 * math.pi)
            / x
            * float(np.sum(np.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8.0 * x * x))))
        )
        return float(min(max(1.0 - cdf, 0.0), 1.0))
    k = np.arange(1, 101)
    terms = np.exp(-2.0 * k * k * x * x) * np.where(k % 2 == 1, 1.0, -1.0)
    return float(min(max(2.0 * np.sum(terms), 0.0), 1.0))


def _ks_statistic_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """sup |F_a - F_b| of two sorted samples, exactly.

    The supremum is reached at a data point. Searching 2 million points in million-element
    arrays costs more than sorting them, so a coarse pass first evaluates both ECDFs at a few
    thousand pivots. Strictly between two pivots neither ECDF can leave the range of its counts
    there, which bounds the difference inside each open interval; only the points of intervals
    whose bound beats the coarse maximum are evaluated one by one (typically a few intervals).
    """
    n1, n2 = a.size, b.size
    if n1 + n2 <= _EXACT_KS_BELOW:
        pts = np.concatenate((a, b))
        fa = np.searchsorted(a, pts, side="right") / n1
        return float(np.max(np.abs(fa - np.searchsorted(b, pts, side="right") / n2)))
    grid = min(_KS_GRID, 4 * math.isqrt(max(n1, n2)))
    pivots = np.unique(
        np.concatenate(
            (
                a[np.linspace(0, n1 - 1, grid).astype(np.int64)],
                b[np.linspace(0, n2 - 1, grid).astype(np.int64)],
            )
        )
    )
    ca = np.searchsorted(a, pivots, side="right")
    cb = np.searchsorted(b, pivots, side="right")
    d_grid = float(np.max(np.abs(ca / n1 - cb / n2)))
    # Open interval j is (pivot[j-1], pivot[j]) with pivot[-1] = -inf and pivot[len] = +inf;
    # [lo, hi) are the indices of a sample's values inside it (ties at a pivot stay out: the
    # pivot itself was evaluated exactly).
    a_lo = np.concatenate(([0], ca))
    a_hi = np.concatenate((np.searchsorted(a, pivots, side="left"), [n1]))
    b_lo = np.concatenate(([0], cb))
    b_hi = np.concatenate((np.searchsorted(b, pivots, side="left"), [n2]))
    bound = np.maximum(a_hi / n1 - b_lo / n2, b_hi / n2 - a_lo / n1)
    cand = np.flatnonzero(bound > d_grid)
    if cand.size == 0:
        return d_grid
    # The candidate intervals' values, in order: each sample's part is sorted, so its ECDF at a
    # point is the count below the interval plus a search in that (small) part alone.
    len_a, len_b = a_hi[cand] - a_lo[cand], b_hi[cand] - b_lo[cand]
    sub_a, sub_b = a[_ranges(a_lo[cand], a_hi[cand])], b[_ranges(b_lo[cand], b_hi[cand])]
    if sub_a.size + sub_b.size == 0:
        return d_grid
    start_a = a_lo[cand] - (np.cumsum(len_a) - len_a)  # minus the earlier parts' lengths
    start_b = b_lo[cand] - (np.cumsum(len_b) - len_b)
    pts = np.concatenate((sub_a, sub_b))
    interval = np.arange(cand.size)
    which = np.concatenate((np.repeat(interval, len_a), np.repeat(interval, len_b)))
    fa = (start_a[which] + np.searchsorted(sub_a, pts, side="right")) / n1
    fb = (start_b[which] + np.searchsorted(sub_b, pts, side="right")) / n2
    return max(d_grid, float(np.max(np.abs(fa - fb))))


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(start, stop)`` for each pair, without a Python loop."""
    lengths = stops - starts
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return offsets + np.arange(total)


def _ks_pvalue(d: float, n1: int, n2: int) -> float:
    # Asymptotic: sqrt(n1 n2 / (n1 + n2)) * D follows the Kolmogorov distribution (slightly
    # conservative for small samples, which suits an alarm).
    return kolmogorov_sf(math.sqrt(n1 * n2 / (n1 + n2)) * d)


def ks_2samp(reference: Any, current: Any) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test.

    Args:
        reference: Numbers of the reference sample.
        current: Numbers of the current window.

    Returns:
        ``(statistic, pvalue)``: the largest distance between the two empirical CDFs and its
        asymptotic p-value (as ``scipy.stats.ks_2samp(..., method="asymp")`` up to its use of
        the finite-n distribution). Non-finite values are ignored.

    Raises:
        DataError: either sample has no finite value.
    """
    a, b = _finite_sorted(reference), _finite_sorted(current)
    _require_values(a, b, "ks_2samp")
    d = _ks_statistic_sorted(a, b)
    return d, _ks_pvalue(d, a.size, b.size)


def _require_values(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.size == 0 or b.size == 0:
        side = "reference" if a.size == 0 else "current"
        raise DataError(f"{what}: the {side} sample has no finite value")


# --- categorical statistics ---------------------------------------------------------------------


def js_distance(reference_counts: Any, current_counts: Any) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two count (or frequency) vectors.

    The vectors are aligned on the same categories; a category one side never saw has count 0.
    Equal to ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.
    """
    p = np.asarray(reference_counts, dtype=np.float64)
    q = np.asarray(current_counts, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / m[nz])))

    return math.sqrt(max(0.5 * kl(p) + 0.5 * kl(q), 0.0))


def chi2_sf(x: float, dof: int) -> float:
    """Survival function of the chi-square distribution (``scipy.stats.chi2.sf``).

    The regularised upper incomplete gamma function Q(dof/2, x/2): its series below a + 1,
    its continued fraction (modified Lentz) above.
    """
    if dof <= 0:
        return float("nan")
    if x <= 0:
        return 1.0
    a, z = dof / 2.0, x / 2.0
    log_prefactor = a * math.log(z) - z - math.lgamma(a)
    if z < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1.0
            term *= z / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return float(min(max(1.0 - total * math.exp(log_prefactor), 0.0), 1.0))
    tiny = 1e-300
    b = z + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return float(min(max(math.exp(log_prefactor) * h, 0.0), 1.0))


def chi_square(reference_counts: Any, current_counts: Any) -> tuple[float, float, int]:
    """Chi-square test of homogeneity of two count vectors over the same categories.

    Categories empty on both sides are dropped. Equal to
    ``scipy.stats.chi2_contingency([ref, cur], correction=False)``.

    Returns:
        ``(statistic, pvalue, degrees_of_freedom)``; with a single category the statistic is 0,
        the p-value 1 and the degrees of freedom 0.
    """
    obs = np.vstack(
        (
            np.asarray(reference_counts, dtype=np.float64),
            np.asarray(current_counts, dtype=np.float64),
        )
    )
    obs = obs[:, obs.sum(axis=0) > 0]
    dof = obs.shape[1] - 1
    if dof < 1:
        return 0.0, 1.0, 0
    expected = obs.sum(axis=1, keepdims=True) * obs.sum(axis=0, keepdims=True) / obs.sum()
    stat = float(np.sum((obs - expected) ** 2 / expected))
    return stat, chi2_sf(stat, dof), dof


# --- results --------------------------------------------------------------------------------------


@dataclasses.dataclass
class FeatureDrift:
    """The drift statistics and verdict of one feature.

    Attributes:
        name: The column.
        kind: ``numeric`` (PSI, KS) or ``categorical`` (JS distance, chi-square).
        drifted: Whether the thresholds fired.
        fired: The tests that fired: ``psi``, ``ks`` or ``js``.
        reference_count: Non-null values in the reference sample.
        current_count: Non-null values in the current window.
        null_rate_reference: Null (or NaN/inf) share of the reference rows.
        null_rate_current: Same for the current window.
        psi, ks_statistic, ks_pvalue: Numeric statistics (None for categories).
        js_distance, chi2_statistic, chi2_pvalue, chi2_dof: Categorical statistics.
        bin_edges: The PSI bins' interior edges (numbers).
        reference_bin_fractions, current_bin_fractions: Share of each PSI bin (numbers).
        categories: The categories (most frequent first; at most
            :data:`MAX_REPORTED_CATEGORIES`, the rest summed as ``other_*``).
        reference_category_counts, current_category_counts: Their counts.
        other_reference_count, other_current_count: Counts of the categories left out.
    """

    name: str
    kind: Kind
    drifted: bool
    fired: list[str]
    reference_count: int
    current_count: int
    null_rate_reference: float
    null_rate_current: float
    psi: float | None = None
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    js_distance: float | None = None
    chi2_statistic: float | None = None
    chi2_pvalue: float | None = None
    chi2_dof: int | None = None
    bin_edges: list[float] = dataclasses.field(default_factory=list)
    reference_bin_fractions: list[float] = dataclasses.field(default_factory=list)
    current_bin_fractions: list[float] = dataclasses.field(default_factory=list)
    categories: list[str] = dataclasses.field(default_factory=list)
    reference_category_counts: list[int] = dataclasses.field(default_factory=list)
    current_category_counts: list[int] = dataclasses.field(default_factory=list)
    other_reference_count: int = 0
    other_current_count: int = 0

    @property
    def null_rate_change(self) -> float:
        """Current minus reference null rate."""
        return self.null_rate_current - self.null_rate_reference

    def to_dict(self) -> dict[str, Any]:
        out = {k: _json_safe(v) for k, v in dataclasses.asdict(self).items()}
        out["null_rate_change"] = _json_safe(self.null_rate_change)
        return out


@dataclasses.dataclass
class PredictionDrift:
    """PSI (and KS, for information) of the champion's predictions, reference vs current."""

    psi: float
    ks_statistic: float
    ks_pvalue: float
    threshold: float
    drifted: bool
    reference_count: int
    current_count: int

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_safe(v) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass
class PerformanceDecay:
    """A model's metric on the reference period against the current one, once labels arrived.

    ``change`` is current minus reference; ``relative_change`` divides it by the reference
    value; ``degraded`` is true when the metric got worse (rmse up, accuracy down) by more
    than ``tolerance`` relative to the reference.
    """

    metric: str
    reference: float
    current: float
    change: float
    relative_change: float
    tolerance: float
    degraded: bool
    reference_count: int
    current_count: int

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_safe(v) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass
class DriftResult:
    """The drift of every compared feature, reference sample vs current window.

    Attributes:
        features: Per-feature results, in the order compared.
        thresholds: The thresholds applied (``DriftThresholds`` fields).
        reference_rows: Rows of the reference sample.
        current_rows: Rows of the current window.
        skipped: Columns left out because their type has no drift test (timestamps, lists...),
            mapped to that type.
        prediction: Prediction drift, when predictions were given.
    """

    features: dict[str, FeatureDrift]
    thresholds: dict[str, float]
    reference_rows: int
    current_rows: int
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    prediction: PredictionDrift | None = None

    @property
    def drifted_features(self) -> list[str]:
        return [name for name, f in self.features.items() if f.drifted]

    @property
    def drift_detected(self) -> bool:
        """True when a feature drifted or the predictions did."""
        return bool(self.drifted_features) or bool(self.prediction and self.prediction.drifted)

    def summary(self) -> dict[str, Any]:
        """A small JSON-safe summary for alerts and logs."""
        return {
            "drift_detected": self.drift_detected,
            "drifted_features": self.drifted_features,
            "features_compared": len(self.features),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "prediction_drift": None if self.prediction is None else self.prediction.drifted,
            "prediction_psi": None if self.prediction is None else _json_safe(self.prediction.psi),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "drift_detected": self.drift_detected,
            "drifted_features": self.drifted_features,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "thresholds": dict(self.thresholds),
            "skipped": dict(self.skipped),
            "features": {name: f.to_dict() for name, f in self.features.items()},
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
        }


def _json_safe(value: Any) -> Any:
    """Floats that JSON cannot hold (nan, inf) become None; numpy scalars become Python ones."""
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- one feature ---------------------------------------------------------------------------------


def _kind_of(dtype: pa.DataType) -> str:
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "numeric"
    if pa.types.is_boolean(dtype) or pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "categorical"
    if pa.types.is_dictionary(dtype):
        return "categorical"
    return "other"


def _numeric_values(column: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """Sorted finite values and the number of rows (nulls, NaN and inf are left out)."""
    if not pa.types.is_float64(column.type):
        column = pc.cast(column, pa.float64())
    values = column.to_numpy()  # nulls become NaN
    return _finite_sorted(values), len(column)


def _category_counts(column: pa.ChunkedArray) -> dict[str, int]:
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    counts = pc.value_counts(column.drop_null())
    return dict(
        zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
    )


def _numeric_drift(
    name: str, ref_col: pa.ChunkedArray, cur_col: pa.ChunkedArray, t: DriftThresholds, bins: int
) -> FeatureDrift:
    ref, n_ref = _numeric_values(ref_col)
    cur, n_cur = _numeric_values(cur_col)
    if ref.size == 0 or cur.size == 0:
        side = "reference" if ref.size == 0 else "current window"
        raise DataError(
            f"feature {name!r} has no finite value in the {side} (all null, NaN or inf)"
        )
    value, edges, rc, cc = _psi_sorted(ref, cur, bins)
    d = _ks_statistic_sorted(ref, cur)
    p = _ks_pvalue(d, ref.size, cur.size)
    fired = []
    if value > t.psi:
        fired.append("psi")
    if p < t.ks_pvalue and d > t.ks_statistic:
        fired.append("ks")
    return FeatureDrift(
        name=name,
        kind="numeric",
        drifted=bool(fired),
        fired=fired,
        reference_count=int(ref.size),
        current_count=int(cur.size),
        null_rate_reference=1.0 - ref.size / n_ref,
        null_rate_current=1.0 - cur.size / n_cur,
        psi=value,
        ks_statistic=d,
        ks_pvalue=p,
        bin_edges=[float(e) for e in edges],
        reference_bin_fractions=(rc / ref.size).tolist(),
        current_bin_fractions=(cc / cur.size).tolist(),
    )


def numeric_drift_from_counts(
    name: str,
    ref: np.ndarray,
    ref_rows: int,
    edges: np.ndarray,
    at_edges: np.ndarray,
    points: np.ndarray,
    below_points: np.ndarray,
    current_count: int,
    current_rows: int,
    t: DriftThresholds,
) -> FeatureDrift:
    """A numeric feature's drift from the current window's summary (``pushdown``): its finite
    count, ``#(x <= e)`` at the PSI `edges` and ``#(x < p)`` at the KS grid `points`.

    PSI is exact (the same bins as the in-memory path); the KS statistic is read at the grid
    points, so it can be below the exact one by at most the mass of one grid step.
    """
    if current_count == 0:
        raise DataError(
            f"feature {name!r} has no finite value in the current window (all null, NaN or inf)"
        )
    rc = _bin_counts_sorted(ref, edges)
    cc = np.diff(np.concatenate(([0], at_edges, [current_count])))
    value = _psi_from_counts(rc, cc)
    f_ref = np.searchsorted(ref, points, side="left") / ref.size
    d = float(np.max(np.abs(f_ref - below_points / current_count))) if len(points) else 0.0
    p = _ks_pvalue(d, ref.size, current_count)
    fired = []
    if value > t.psi:
        fired.append("psi")
    if p < t.ks_pvalue and d > t.ks_statistic:
        fired.append("ks")
    return FeatureDrift(
        name=name,
        kind="numeric",
        drifted=bool(fired),
        fired=fired,
        reference_count=int(ref.size),
        current_count=int(current_count),
        null_rate_reference=1.0 - ref.size / ref_rows,
        null_rate_current=1.0 - current_count / current_rows,
        psi=value,
        ks_statistic=d,
        ks_pvalue=p,
        bin_edges=[float(e) for e in edges],
        reference_bin_fractions=(rc / ref.size).tolist(),
        current_bin_fractions=(cc / current_count).tolist(),
    )


def _categorical_drift(
    name: str, ref_col: pa.ChunkedArray, cur_col: pa.ChunkedArray, t: DriftThresholds
) -> FeatureDrift:
    return categorical_drift_from_counts(
        name, _category_counts(ref_col), _category_counts(cur_col), len(ref_col), len(cur_col), t
    )


def categorical_drift_from_counts(
    name: str,
    ref: dict[str, int],
    cur: dict[str, int],
    ref_rows: int,
    cur_rows: int,
    t: DriftThresholds,
) -> FeatureDrift:
    """A categorical feature's drift from both sides' category counts (nulls left out)."""
    categories = sorted(set(ref) | set(cur))
    rc = np.array([ref.get(c, 0) for c in categories], dtype=np.int64)
    cc = np.array([cur.get(c, 0) for c in categories], dtype=np.int64)
    js = js_distance(rc, cc)
    stat, p, dof = chi_square(rc, cc)
    fired = ["js"] if js > t.js_distance and p < t.ks_pvalue else []
    n_ref, n_cur = int(rc.sum()), int(cc.sum())
    order = np.argsort(-np.maximum(rc / max(n_ref, 1), cc / max(n_cur, 1)), kind="stable")
    keep = order[:MAX_REPORTED_CATEGORIES]
    return FeatureDrift(
        name=name,
        kind="categorical",
        drifted=bool(fired),
        fired=fired,
        reference_count=n_ref,
        current_count=n_cur,
        null_rate_reference=1.0 - n_ref / ref_rows,
        null_rate_current=1.0 - n_cur / cur_rows,
        js_distance=js,
        chi2_statistic=stat,
        chi2_pvalue=p,
        chi2_dof=dof,
        categories=[categories[i] for i in keep],
        reference_category_counts=rc[keep].tolist(),
        current_category_counts=cc[keep].tolist(),
        other_reference_count=n_ref - int(rc[keep].sum()),
        other_current_count=n_cur - int(cc[keep].sum()),
    )


# --- the whole table -----------------------------------------------------------------------------


def _thresholds(value: DriftThresholds | Mapping[str, Any] | Any | None) -> DriftThresholds:
    if value is None:
        return DriftThresholds()
    if isinstance(value, DriftThresholds):
        return value
    if isinstance(value, Mapping):
        return DriftThresholds(**value)
    fields = DriftThresholds.model_fields
    return DriftThresholds(**{k: getattr(value, k) for k in fields if hasattr(value, k)})


def compute_drift(
    reference: pa.Table,
    current: pa.Table,
    *,
    features: Sequence[str] | None = None,
    thresholds: DriftThresholds | Mapping[str, Any] | None = None,
    categorical: Sequence[str] | None = None,
    bins: int = PSI_BINS,
    reference_predictions: Any = None,
    current_predictions: Any = None,
    workers: int | None = None,
) -> DriftResult:
    """Compares the current window with the reference sample, feature by feature.

    Args:
        reference: The reference sample (typically stored with the champion at training time).
        current: The current window.
        features: Columns to compare; by default every reference column of a numeric, boolean
            or string type (others are listed in ``DriftResult.skipped``).
        thresholds: ``DriftThresholds``, a dict of its fields or an object with those
            attributes; missing fields take the defaults.
        categorical: Numeric columns to treat as categories (e.g. an integer code).
        bins: Number of reference quantile bins of PSI.
        reference_predictions: The champion's predictions on the reference sample; with
            ``current_predictions``, adds prediction drift to the result.
        current_predictions: The champion's predictions on the current window.
        workers: Threads comparing features in parallel (numpy and Arrow release the GIL);
            default ``min(4, cpu count)``.

    Returns:
        A :class:`DriftResult`.

    Raises:
        DataError: the current window (or the reference) has no rows, columns are missing,
            a feature is all null, a feature's type differs between the two or has no test.
    """
    t = _thresholds(thresholds)
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    if current.num_rows == 0:
        raise DataError("the current window has no rows")
    if reference.num_rows == 0:
        raise DataError("the reference sample has no rows")
    ref_names = reference.column_names
    if features is not None:
        unknown = [f for f in features if f not in ref_names]
        if unknown:
            raise DataError(f"feature(s) not in the reference sample: {', '.join(unknown)}")
    wanted = list(features) if features is not None else list(ref_names)
    missing = [f for f in wanted if f not in current.column_names]
    if missing:
        raise DataError(
            f"the current window lacks {len(missing)} column(s) of the reference: {', '.join(missing)}"
        )
    as_category = set(categorical or ())
    unknown_cat = sorted(as_category - set(wanted))
    if unknown_cat:
        raise DataError(
            f"categorical column(s) not among the features compared: {', '.join(unknown_cat)}"
        )

    plan: list[tuple[str, str]] = []
    skipped: dict[str, str] = {}
    problems: list[str] = []
    for name in wanted:
        rtype, ctype = reference.schema.field(name).type, current.schema.field(name).type
        rkind, ckind = _kind_of(rtype), _kind_of(ctype)
        if name in as_category:
            rkind, ckind = (k if k == "other" else "categorical" for k in (rkind, ckind))
        if rkind == "other":
            if features is not None:
                problems.append(
                    f"{name!r} has type {rtype}, which has no drift test "
                    "(numbers, booleans and strings do)"
                )
            else:
                skipped[name] = str(rtype)
            continue
        if rkind != ckind:
            problems.append(
                f"{name!r} is {rtype} in the reference but {ctype} in the current window"
            )
            continue
        plan.append((name, rkind))
    if problems:
        raise DataError("cannot compare: " + "; ".join(problems))
    all_null = [
        f"{name!r} ({side})"
        for name, _ in plan
        for side, table in (("reference", reference), ("current window", current))
        if _all_null(table.column(name))
    ]
    if all_null:
        raise DataError(f"feature(s) with no value, all null: {', '.join(all_null)}")

    def one(item: tuple[str, str]) -> FeatureDrift:
        name, kind = item
        if kind == "numeric":
            return _numeric_drift(name, reference.column(name), current.column(name), t, bins)
        return _categorical_drift(name, reference.column(name), current.column(name), t)

    n_workers = workers or min(4, os.cpu_count() or 1)
    if n_workers > 1 and len(plan) > 1 and reference.num_rows + current.num_rows >= _PARALLEL_ABOVE:
        with ThreadPoolExecutor(max_workers=min(n_workers, len(plan))) as pool:
            results = list(pool.map(one, plan))
    else:
        results = [one(item) for item in plan]

    prediction = None
    if (reference_predictions is None) != (current_predictions is None):
        raise ValueError("pass both reference_predictions and current_predictions, or neither")
    if reference_predictions is not None:
        prediction = prediction_drift(
            reference_predictions, current_predictions, threshold=t.prediction_psi, bins=bins
        )
    return DriftResult(
        features={r.name: r for r in results},
        thresholds=t.model_dump(),
        reference_rows=reference.num_rows,
        current_rows=current.num_rows,
        skipped=skipped,
        prediction=prediction,
    )


def _all_null(column: pa.ChunkedArray) -> bool:
    return column.null_count == len(column)


def prediction_drift(
    reference: Any, current: Any, *, threshold: float = 0.2, bins: int = PSI_BINS
) -> PredictionDrift:
    """Drift of a model's predictions: PSI of current vs reference predictions.

    Args:
        reference: Predictions on the reference sample (numbers; e.g. a regression output or a
            class probability).
        current: Predictions on the current window.
        threshold: PSI above which the predictions drifted (``DriftThresholds.prediction_psi``).
        bins: Reference quantile bins.

    Raises:
        DataError: either side has no finite prediction.
    """
    a, b = _finite_sorted(reference), _finite_sorted(current)
    if a.size == 0 or b.size == 0:
        side = "reference" if a.size == 0 else "current"
        raise DataError(f"prediction drift: the {side} predictions have no finite value")
    value = _psi_sorted(a, b, bins)[0]
    d = _ks_statistic_sorted(a, b)
    return PredictionDrift(
        psi=value,
        ks_statistic=d,
        ks_pvalue=_ks_pvalue(d, a.size, b.size),
        threshold=threshold,
        drifted=value > threshold,
        reference_count=int(a.size),
        current_count=int(b.size),
    )


def performance_decay(
    reference_true: Any,
    reference_pred: Any,
    current_true: Any,
    current_pred: Any,
    *,
    task: Literal["regression", "classification"],
    tolerance: float = 0.1,
) -> PerformanceDecay:
    """How much a model's metric changed once the current window's labels arrived.

    Regression compares rmse; classification compares accuracy, with predictions given as
    labels or as a (rows, classes) probability matrix (argmax taken).

    Args:
        reference_true: Labels of the reference period.
        reference_pred: The model's predictions for it.
        current_true: Labels of the current window.
        current_pred: The model's predictions for it.
        task: ``regression`` or ``classification``.
        tolerance: Relative worsening above which ``degraded`` is set.

    Raises:
        ValueError: unknown task, or labels and predictions of different lengths.
        DataError: a period has no rows.
    """
    if task == "regression":
        metric, fn, higher_better = "rmse", _rmse, False
    elif task == "classification":
        metric, fn, higher_better = "accuracy", _accuracy, True
    else:
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    ref, n_ref = fn(reference_true, reference_pred, "reference")
    cur, n_cur = fn(current_true, current_pred, "current")
    change = cur - ref
    relative = (
        change / abs(ref) if ref else (0.0 if change == 0 else math.copysign(math.inf, change))
    )
    worsening = -relative if higher_better else relative
    return PerformanceDecay(
        metric=metric,
        reference=ref,
        current=cur,
        change=change,
        relative_change=relative,
        tolerance=tolerance,
        degraded=worsening > tolerance,
        reference_count=n_ref,
        current_count=n_cur,
    )


def _pairs(y_true: Any, y_pred: Any, side: str) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"{side}: {t.shape[0]} labels but {p.shape[0]} predictions")
    if t.shape[0] == 0:
        raise DataError(f"performance decay: the {side} period has no labelled rows")
    return t, p


def _rmse(y_true: Any, y_pred: Any, side: str) -> tuple[float, int]:
    t, p = _pairs(y_true, y_pred, side)
    err = p.astype(np.float64).reshape(-1) - t.astype(np.float64).reshape(-1)
    return float(np.sqrt(np.mean(err * err))), int(t.shape[0])


def _accuracy(y_true: Any, y_pred: Any, side: str) -> tuple[float, int]:
    t, p = _pairs(y_true, y_pred, side)
    if p.ndim == 2:
        p = p.argmax(axis=1)
    return float(np.mean(t.reshape(-1) == p.reshape(-1))), int(t.shape[0])


def reference_sample(table: pa.Table, rows: int, seed: int = 0) -> pa.Table:
    """A fixed-size, seeded random sample of a table's rows, in their original order.

    Args:
        table: The training data (or any table).
        rows: Rows wanted; a smaller table is returned whole.
        seed: Seed of ``numpy.random.default_rng``: the same table, rows and seed give the
            same sample.

    Raises:
        ValueError: ``rows`` is not positive.
    """
    if rows < 1:
        raise ValueError(f"rows must be positive, got {rows}")
    if table.num_rows <= rows:
        return table
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(table.num_rows, size=rows, replace=False))
    return table.take(pa.array(idx))
