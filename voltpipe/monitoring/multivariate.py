"""Multivariate drift: PCA reconstruction error and a domain classifier, reference vs current.

Both see the features together, so a joint shift (wind speed and direction changing together)
with unchanged marginals, which every per-feature test misses, is found.

* **Reconstruction error**: standardise and PCA-fit on one half of the reference (components
  explaining ``pca_variance`` of it), then compare the current window's mean reconstruction
  error with the means of resamples (the window's size) of the other half's errors: the
  ``1 - alpha`` quantile is the threshold, the share of resamples at or above the window's value
  the p-value.
* **Domain classifier**: a gradient-boosted classifier learns to tell reference rows from
  current rows; its out-of-fold AUC (cross-validated, so the rows it scores were not trained
  on) is compared with the ``1 - alpha`` quantile of the AUCs of the same scores under label
  permutations, and must also exceed ``min_auc`` (on a large window a tiny, harmless shift is
  still significant).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from voltpipe.errors import DataError

RESAMPLES = 500
PERMUTATIONS = 300
MAX_ONE_HOT = 20


@dataclasses.dataclass
class MultivariateTest:
    """One multivariate test's statistic, threshold and verdict."""

    test: str
    statistic: float
    threshold: float
    p_value: float
    drifted: bool
    reference_value: float | None = None
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in out.items()
        }


@dataclasses.dataclass
class MultivariateDrift:
    """The reconstruction-error and domain-classifier tests of one window."""

    features: list[str]
    reference_rows: int
    current_rows: int
    tests: dict[str, MultivariateTest]

    @property
    def drifted(self) -> bool:
        return any(t.drifted for t in self.tests.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "features": list(self.features),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "tests": {k: t.to_dict() for k, t in self.tests.items()},
        }


def single_openmp_thread() -> Any:
    """One OpenMP thread for scikit-learn's gradient boosting: on these small matrices its
    threads' start and spin-wait cost more than they save, badly so on a shared machine (a
    10-minute test ran in 10 s with one thread)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def encode(
    reference: pa.Table, current: pa.Table, features: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Both tables as float matrices: numbers standardised by the reference (nulls at its mean,
    plus a null indicator when any are null), categories one-hot on the reference's
    :data:`MAX_ONE_HOT` most frequent values (others share one column).

    Raises:
        DataError: a feature is missing from either table.
    """
    ref_cols, cur_cols, names = [], [], []
    for f in features:
        for side, table in (("reference", reference), ("current window", current)):
            if f not in table.column_names:
                raise DataError(f"multivariate drift: feature {f!r} is not in the {side}")
        rc, cc = reference.column(f), current.column(f)
        if _is_numeric(rc.type) and not pa.types.is_boolean(rc.type):
            r = pc.cast(rc, pa.float64()).to_numpy(zero_copy_only=False)
            c = pc.cast(cc, pa.float64()).to_numpy(zero_copy_only=False)
            r = np.where(np.isfinite(r), r, np.nan)
            c = np.where(np.isfinite(c), c, np.nan)
            if np.all(np.isnan(r)):
                continue
            mu, sd = float(np.nanmean(r)), float(np.nanstd(r)) or 1.0
            rn, cn = np.isnan(r), np.isnan(c)
            ref_cols.append(np.where(rn, 0.0, (r - mu) / sd))
            cur_cols.append(np.where(cn, 0.0, (c - mu) / sd))
            names.append(f)
            if rn.any() or cn.any():
                ref_cols.append(rn.astype(float))
                cur_cols.append(cn.astype(float))
                names.append(f"{f}__null")
        else:
            r = np.asarray(pc.cast(rc, pa.string()).to_pylist(), dtype=object)
            c = np.asarray(pc.cast(cc, pa.string()).to_pylist(), dtype=object)
            values, counts = np.unique(r.astype(str), return_counts=True)
            top = [v for _, v in sorted(zip(-counts, values, strict=True))][:MAX_ONE_HOT]
            for v in top:
                ref_cols.append((r.astype(str) == v).astype(float))
                cur_cols.append((c.astype(str) == v).astype(float))
                names.append(f"{f}={v}")
            ref_cols.append((~np.isin(r.astype(str), top)).astype(float))
            cur_cols.append((~np.isin(c.astype(str), top)).astype(float))
            names.append(f"{f}=(other)")
    if not names:
        raise DataError("multivariate drift: no usable feature")
    return np.column_stack(ref_cols), np.column_stack(cur_cols), names


def _sample_rows(x: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    if len(x) <= rows:
        return x
    return x[np.sort(rng.choice(len(x), rows, replace=False))]


def reconstruction_test(
    x_ref: np.ndarray,
    x_cur: np.ndarray,
    *,
    variance: float = 0.65,
    alpha: float = 0.01,
    seed: int = 0,
) -> MultivariateTest:
    """The PCA reconstruction-error test (see the module docstring)."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    if len(x_ref) < 20:
        raise DataError("multivariate drift: the reference needs at least 20 rows")
    order = rng.permutation(len(x_ref))
    fit, hold = x_ref[order[: len(order) // 2]], x_ref[order[len(order) // 2 :]]
    mean = fit.mean(axis=0)
    pca = PCA(n_components=variance, svd_solver="full", random_state=seed).fit(fit - mean)

    def errors(x: np.ndarray) -> np.ndarray:
        z = x - mean
        back = pca.inverse_transform(pca.transform(z))
        return np.sqrt(((z - back) ** 2).sum(axis=1))

    e_hold, e_cur = errors(hold), errors(x_cur)
    m = min(len(e_cur), len(e_hold))
    idx = rng.integers(0, len(e_hold), size=(RESAMPLES, m))
    null = e_hold[idx].mean(axis=1)
    stat = float(e_cur.mean())
    threshold = float(np.quantile(null, 1 - alpha))
    p = float((1 + np.sum(null >= stat)) / (RESAMPLES + 1))
    return MultivariateTest(
        "reconstruction_error",
        stat,
        threshold,
        p,
        stat > threshold,
        reference_value=float(e_hold.mean()),
        detail={"components": int(pca.n_components_), "explained_variance": variance},
    )


def domain_classifier_test(
    x_ref: np.ndarray,
    x_cur: np.ndarray,
    *,
    alpha: float = 0.01,
    min_auc: float = 0.55,
    folds: int = 5,
    seed: int = 0,
) -> MultivariateTest:
    """The domain-classifier test (see the module docstring)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from voltpipe.evaluation.metrics import binary_auc

    rng = np.random.default_rng(seed)
    n = min(len(x_ref), len(x_cur))  # balanced classes: AUC 0.5 means indistinguishable
    if n < 2 * folds:
        raise DataError(f"multivariate drift: the domain classifier needs {2 * folds} rows a side")
    a, b = _sample_rows(x_ref, n, rng), _sample_rows(x_cur, n, rng)
    x = np.vstack([a, b])
    y = np.r_[np.zeros(n, int), np.ones(n, int)]
    model = HistGradientBoostingClassifier(max_iter=100, max_leaf_nodes=15, random_state=seed)
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    with single_openmp_thread():
        score = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    auc = binary_auc(y, score)
    null = np.array([binary_auc(rng.permutation(y), score) for _ in range(PERMUTATIONS)])
    threshold = max(float(np.quantile(null, 1 - alpha)), min_auc)
    p = float((1 + np.sum(null >= auc)) / (PERMUTATIONS + 1))
    return MultivariateTest(
        "domain_classifier",
        float(auc),
        threshold,
        p,
        bool(auc > threshold),
        reference_value=0.5,
        detail={"rows_per_side": int(n), "folds": folds, "min_auc": min_auc},
    )


def multivariate_drift(
    reference: pa.Table,
    current: pa.Table,
    features: Sequence[str],
    *,
    alpha: float = 0.01,
    pca_variance: float = 0.65,
    min_auc: float = 0.55,
    max_rows: int = 20_000,
    seed: int = 0,
) -> MultivariateDrift:
    """Both multivariate tests of the current window against the reference.

    Args:
        features: the columns compared (the champion's inputs).
        alpha: significance of both thresholds.
        pca_variance: share of the reference's variance the PCA components keep.
        min_auc: the domain classifier's smallest AUC that counts as drift.
        max_rows: rows per side used (a seeded sample of larger tables).

    Raises:
        DataError: too few rows, or no usable feature.
    """
    rng = np.random.default_rng(seed)
    x_ref, x_cur, _ = encode(reference, current, features)
    x_ref, x_cur = _sample_rows(x_ref, max_rows, rng), _sample_rows(x_cur, max_rows, rng)
    tests = {
        "reconstruction_error": reconstruction_test(
            x_ref, x_cur, variance=pca_variance, alpha=alpha, seed=seed
        ),
        "domain_classifier": domain_classifier_test(
            x_ref, x_cur, alpha=alpha, min_auc=min_auc, seed=seed
        ),
    }
    return MultivariateDrift(list(features), reference.num_rows, current.num_rows, tests)
