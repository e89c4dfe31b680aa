"""Drift statistics between a reference sample and a current window: PSI, KS, JS, chi-square.

The statistics are in :mod:`voltpipe.monitoring.drift_stats` and the result types in
:mod:`voltpipe.monitoring.drift_results` (both re-exported here); this module reads the
columns (Arrow compute kernels), applies the verdicts and draws the reference sample.

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
from voltpipe.monitoring.drift_results import (
    MAX_REPORTED_CATEGORIES,
    DriftResult,
    FeatureDrift,
    Kind,
    PerformanceDecay,
    PredictionDrift,
)
from voltpipe.monitoring.drift_stats import (
    PSI_BINS,
    PSI_EPSILON,
    _bin_counts_sorted,
    _finite_sorted,
    _ks_pvalue,
    _ks_statistic_sorted,
    _psi_from_counts,
    _psi_sorted,
    chi2_sf,
    chi_square,
    js_distance,
    kolmogorov_sf,
    ks_2samp,
    psi,
)

__all__ = [
    "MAX_REPORTED_CATEGORIES",
    "PSI_BINS",
    "PSI_EPSILON",
    "DriftResult",
    "FeatureDrift",
    "Kind",
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

_PARALLEL_ABOVE = 100_000  # rows (reference + current) below which threads cost more than they save


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
    wanted, as_category = _wanted_columns(reference, current, features, categorical)
    plan, skipped = _comparison_plan(reference, current, wanted, as_category, features is not None)

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


def _wanted_columns(
    reference: pa.Table,
    current: pa.Table,
    features: Sequence[str] | None,
    categorical: Sequence[str] | None,
) -> tuple[list[str], set[str]]:
    """The columns to compare and those to treat as categories, checked against both tables."""
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
    return wanted, as_category


def _comparison_plan(
    reference: pa.Table,
    current: pa.Table,
    wanted: list[str],
    as_category: set[str],
    named: bool,
) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """``(column, kind)`` of each column compared, and the skipped ones with their type (a
    column without a drift test is an error when the caller `named` the features)."""
    plan: list[tuple[str, str]] = []
    skipped: dict[str, str] = {}
    problems: list[str] = []
    for name in wanted:
        rtype, ctype = reference.schema.field(name).type, current.schema.field(name).type
        rkind, ckind = _kind_of(rtype), _kind_of(ctype)
        if name in as_category:
            rkind, ckind = (k if k == "other" else "categorical" for k in (rkind, ckind))
        if rkind == "other":
            if named:
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
    return plan, skipped


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
