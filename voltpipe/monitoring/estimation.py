"""Label-free performance estimation: CBPE (classification) and DLE (regression).

Both are calibrated on the reference sample stored with the champion (its rows carry the
label; the champion's predictions on it are computed at monitoring time) and then applied to a
window whose labels have not arrived:

* **CBPE** (confidence-based): an isotonic calibration maps the champion's score to the
  probability that its predicted class is right; the expected accuracy of a window is the mean
  of those probabilities, and (two classes) the expected confusion matrix gives precision,
  recall and f1. The interval is the sampling spread of the realised metric given those
  probabilities (a sum of Bernoulli variables).
* **DLE** (direct loss estimation): a gradient-boosted model learns the champion's squared
  and absolute error from the features and the prediction on the reference; its mean over a
  window estimates mse (rmse) and mae. The interval comes from the loss model's out-of-fold
  residual spread on the reference.

The reference is the training split, so the champion's errors there can be a little smaller
than on unseen rows: the estimate is then a little optimistic. ``compare_realised`` sets an
estimate beside the realised metric (with its bootstrap interval) once labels exist.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from voltpipe.config import LOWER_IS_BETTER
from voltpipe.errors import DataError

Z95 = 1.959963984540054


@dataclasses.dataclass
class PerformanceEstimate:
    """An estimated metric of one window, its interval and how it compares with the reference.

    ``degraded`` is set when the estimate is worse than ``threshold`` (absolute, when given) or
    than the reference's realised value by more than ``tolerance`` (relative).
    """

    method: str
    metric: str
    estimate: float
    low: float
    high: float
    reference: float
    rows: int
    degraded: bool
    threshold: float | None = None
    tolerance: float | None = None
    others: dict[str, float] = dataclasses.field(default_factory=dict)
    realised: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return v

        return clean(dataclasses.asdict(self))


def _worse(metric: str, value: float, than: float) -> float:
    """How much `value` is worse than `than` (positive: worse)."""
    return value - than if metric in LOWER_IS_BETTER else than - value


def _degraded(
    metric: str, estimate: float, reference: float, threshold: float | None, tolerance: float
) -> bool:
    if threshold is not None:
        return _worse(metric, estimate, threshold) > 0
    return _worse(metric, estimate, reference) > tolerance * abs(reference)


# ----- CBPE -------------------------------------------------------------------------------------


@dataclasses.dataclass
class CBPE:
    """A calibrated map from the champion's top score to P(prediction is right)."""

    calibrator: Any
    binary: bool
    threshold: float | None
    reference_accuracy: float

    @classmethod
    def fit(cls, y_true: np.ndarray, proba: np.ndarray, threshold: float | None = None) -> CBPE:
        """Calibrates on the reference's labels and the champion's probabilities."""
        from sklearn.isotonic import IsotonicRegression

        y = np.asarray(y_true).astype(int).reshape(-1)
        p = np.asarray(proba, "float64")
        if len(y) < 20:
            raise DataError("performance estimation: the reference needs at least 20 labelled rows")
        binary = p.shape[1] == 2
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        if binary:
            iso.fit(p[:, 1], (y == 1).astype(float))
        else:
            iso.fit(p.max(axis=1), (p.argmax(axis=1) == y).astype(float))
        pred = _predicted(p, threshold)
        return cls(iso, binary, threshold, float(np.mean(pred == y)))

    def correct_probability(self, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P(right), predicted class) per row."""
        p = np.asarray(proba, "float64")
        pred = _predicted(p, self.threshold)
        if self.binary:
            c1 = self.calibrator.predict(p[:, 1])
            return np.where(pred == 1, c1, 1.0 - c1), pred
        return self.calibrator.predict(p.max(axis=1)), pred

    def estimate(
        self,
        proba: np.ndarray,
        *,
        threshold: float | None = None,
        tolerance: float = 0.1,
    ) -> PerformanceEstimate:
        """The expected accuracy of a window (and, for two classes, precision/recall/f1)."""
        c, pred = self.correct_probability(proba)
        n = len(c)
        if n == 0:
            raise DataError("performance estimation: the window has no rows")
        acc = float(c.mean())
        half = Z95 * math.sqrt(float(np.sum(c * (1 - c)))) / n
        others: dict[str, float] = {}
        if self.binary:
            tp, fp = float(c[pred == 1].sum()), float((1 - c[pred == 1]).sum())
            fn = float((1 - c[pred == 0]).sum())
            others = {
                "precision": tp / (tp + fp) if tp + fp else float("nan"),
                "recall": tp / (tp + fn) if tp + fn else float("nan"),
                "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan"),
            }
        return PerformanceEstimate(
            "cbpe",
            "accuracy",
            acc,
            max(acc - half, 0.0),
            min(acc + half, 1.0),
            self.reference_accuracy,
            n,
            _degraded("accuracy", acc, self.reference_accuracy, threshold, tolerance),
            threshold,
            tolerance,
            others,
        )


def _predicted(p: np.ndarray, threshold: float | None) -> np.ndarray:
    if threshold is not None and p.shape[1] == 2:
        return (p[:, 1] >= threshold).astype(int)
    return p.argmax(axis=1)


# ----- DLE --------------------------------------------------------------------------------------


@dataclasses.dataclass
class DLE:
    """Loss models of the champion's squared and absolute errors (features + prediction)."""

    squared: Any
    absolute: Any
    residual_var_sq: float
    residual_var_abs: float
    reference_rmse: float
    reference_mae: float

    @classmethod
    def fit(cls, x: np.ndarray, prediction: np.ndarray, y_true: np.ndarray, seed: int = 0) -> DLE:
        """Fits both loss models on the reference (out-of-fold residuals give the spread)."""
        from sklearn.ensemble import HistGradientBoostingRegressor
        from sklearn.model_selection import cross_val_predict

        pred = np.asarray(prediction, "float64").reshape(-1)
        err = np.asarray(y_true, "float64").reshape(-1) - pred
        if len(err) < 50:
            raise DataError("performance estimation: the reference needs at least 50 labelled rows")
        from voltpipe.monitoring.multivariate import single_openmp_thread

        xx = _loss_inputs(x, pred)
        models, variances = [], []
        with single_openmp_thread():
            for target in (err * err, np.abs(err)):
                model = HistGradientBoostingRegressor(
                    max_iter=100, max_leaf_nodes=31, random_state=seed
                )
                oof = cross_val_predict(model, xx, target, cv=3)
                variances.append(float(np.var(target - np.maximum(oof, 0.0))))
                models.append(model.fit(xx, target))
        return cls(
            models[0],
            models[1],
            variances[0],
            variances[1],
            float(np.sqrt(np.mean(err * err))),
            float(np.mean(np.abs(err))),
        )

    def estimate(
        self,
        x: np.ndarray,
        prediction: np.ndarray,
        *,
        metric: str = "rmse",
        threshold: float | None = None,
        tolerance: float = 0.1,
    ) -> PerformanceEstimate:
        """The estimated rmse (or mae) of a window, with mae (rmse) beside it."""
        if metric not in ("rmse", "mae"):
            raise ValueError(f"DLE estimates rmse or mae, not {metric!r}")
        xx = _loss_inputs(x, np.asarray(prediction, "float64").reshape(-1))
        n = len(xx)
        if n == 0:
            raise DataError("performance estimation: the window has no rows")
        from voltpipe.monitoring.multivariate import single_openmp_thread

        with single_openmp_thread():
            mse = float(np.maximum(self.squared.predict(xx), 0.0).mean())
            mae = float(np.maximum(self.absolute.predict(xx), 0.0).mean())
        half_sq = Z95 * math.sqrt(self.residual_var_sq / n)
        half_abs = Z95 * math.sqrt(self.residual_var_abs / n)
        if metric == "rmse":
            est, low, high = (
                math.sqrt(mse),
                math.sqrt(max(mse - half_sq, 0)),
                math.sqrt(mse + half_sq),
            )
            ref, others = self.reference_rmse, {"mae": mae}
        else:
            est, low, high = mae, max(mae - half_abs, 0.0), mae + half_abs
            ref, others = self.reference_mae, {"rmse": math.sqrt(mse)}
        return PerformanceEstimate(
            "dle",
            metric,
            est,
            low,
            high,
            ref,
            n,
            _degraded(metric, est, ref, threshold, tolerance),
            threshold,
            tolerance,
            others,
        )


def _loss_inputs(x: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    return np.column_stack([np.asarray(x, "float64"), prediction])


# ----- realised -----------------------------------------------------------------------------------


def realised_metric(
    metric: str,
    y_true: np.ndarray,
    outputs: np.ndarray,
    *,
    threshold: float | None = None,
    samples: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """The realised metric of labelled rows and its 95% bootstrap interval."""
    y = np.asarray(y_true)
    out = np.asarray(outputs, "float64")
    if metric == "accuracy":
        loss = (_predicted(out, threshold) == y.astype(int)).astype(float)
        finish = lambda v: v  # noqa: E731
    elif metric == "rmse":
        loss = (out.reshape(-1) - y.astype(float).reshape(-1)) ** 2
        finish = np.sqrt
    elif metric == "mae":
        loss = np.abs(out.reshape(-1) - y.astype(float).reshape(-1))
        finish = lambda v: v  # noqa: E731
    else:
        raise ValueError(f"no realised {metric!r}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(loss), size=(samples, len(loss)))
    boot = finish(loss[idx].mean(axis=1))
    low, high = np.quantile(boot, [0.025, 0.975])
    return {
        "metric": metric,
        "value": float(finish(loss.mean())),
        "low": float(low),
        "high": float(high),
        "rows": len(loss),
    }


def compare_realised(estimate: PerformanceEstimate, realised: dict[str, Any]) -> dict[str, Any]:
    """The realised metric beside the estimate: the error and whether it lies in the interval."""
    return {
        **realised,
        "estimate_error": estimate.estimate - realised["value"],
        "estimate_within_realised_interval": bool(
            realised["low"] <= estimate.estimate <= realised["high"]
        ),
    }


# ----- one window --------------------------------------------------------------------------------


def estimate_performance(
    task: str,
    reference: pa.Table,
    current: pa.Table,
    *,
    features: Sequence[str],
    y_reference: np.ndarray,
    reference_outputs: np.ndarray,
    current_outputs: np.ndarray,
    y_current: np.ndarray | None = None,
    labelled: np.ndarray | None = None,
    metric: str | None = None,
    threshold: float | None = None,
    tolerance: float = 0.1,
    classification_threshold: float | None = None,
) -> PerformanceEstimate:
    """CBPE or DLE of the champion on the current window, calibrated on the reference.

    Args:
        y_reference: the reference labels (class indices for classification).
        reference_outputs, current_outputs: the champion's outputs (values or probabilities).
        y_current: the labels of the window's labelled rows (those `labelled` marks; all rows
            when it is None): the realised metric is set beside the estimate.
        metric: rmse (default) or mae for regression; accuracy for classification.
        threshold: the absolute limit that marks the estimate degraded.
        tolerance: otherwise, the relative worsening vs the reference that does.

    Raises:
        DataError: too few reference rows, or an empty window.
        ValueError: a task with no estimator.
    """
    if task == "classification":
        est = CBPE.fit(y_reference, reference_outputs, classification_threshold).estimate(
            current_outputs, threshold=threshold, tolerance=tolerance
        )
        realised_name = "accuracy"
    elif task == "regression":
        from voltpipe.monitoring.multivariate import encode

        x_ref, x_cur, _ = encode(reference, current, features)
        dle = DLE.fit(x_ref, reference_outputs, y_reference)
        realised_name = metric or "rmse"
        est = dle.estimate(
            x_cur, current_outputs, metric=realised_name, threshold=threshold, tolerance=tolerance
        )
    else:
        raise ValueError(f"no performance estimator for task {task!r}")
    if y_current is not None and len(y_current):
        outputs = np.asarray(current_outputs)
        if labelled is not None:
            outputs = outputs[np.asarray(labelled, bool)]
        est.realised = compare_realised(
            est,
            realised_metric(realised_name, y_current, outputs, threshold=classification_threshold),
        )
    return est
