"""Test metrics by task, in numpy (no scikit-learn needed)."""

from __future__ import annotations

from typing import Any

import numpy as np

CLASSIFICATION_METRICS = ("accuracy", "auc", "f1", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
# Reported with the test metrics but not in the kfp Metrics artifact (the headline metrics).
CLASSIFICATION_DETAIL_METRICS = ("precision", "recall")


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """rmse, mae and r2 of predictions against targets."""
    y_true = np.asarray(y_true, dtype="float64").reshape(-1)
    y_pred = np.asarray(y_pred, dtype="float64").reshape(-1)
    err = y_pred - y_true
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": float(1.0 - (err**2).sum() / ss_tot) if ss_tot > 0 else 0.0,
    }


def binary_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney U) formula, ties averaged."""
    y_true = np.asarray(y_true).astype(bool)
    n_pos = int(y_true.sum())
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score)[order]
    ranks = np.empty(len(s), dtype="float64")
    # Average ranks over ties.
    _, first, counts = np.unique(s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, threshold: float | None = None
) -> dict[str, float]:
    """accuracy, auc (one-vs-rest macro for several classes), f1 (macro) and log_loss.

    `threshold` (two classes only) predicts class 1 when ``p(class 1) >= threshold``; by default
    the most probable class is predicted.
    """
    y_true = np.asarray(y_true).astype(int).reshape(-1)
    proba = np.asarray(proba, dtype="float64")
    n_classes = proba.shape[1]
    pred = predicted_classes(proba, threshold)
    eps = 1e-15
    p_true = np.clip(proba[np.arange(len(y_true)), y_true], eps, 1.0)
    if n_classes == 2:
        auc = binary_auc(y_true == 1, proba[:, 1])
    else:
        aucs = [binary_auc(y_true == k, proba[:, k]) for k in range(n_classes)]
        aucs = [a for a in aucs if not np.isnan(a)]
        auc = float(np.mean(aucs)) if aucs else float("nan")
    f1s = []
    classes = [1] if n_classes == 2 else range(n_classes)
    for k in classes:
        tp = float(np.sum((pred == k) & (y_true == k)))
        fp = float(np.sum((pred == k) & (y_true != k)))
        fn = float(np.sum((pred != k) & (y_true == k)))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {
        "accuracy": float(np.mean(pred == y_true)),
        "auc": auc,
        "f1": float(np.mean(f1s)),
        "log_loss": float(-np.mean(np.log(p_true))),
    }


ROC_MAX_POINTS = 200


def predicted_classes(proba: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Class indices: the most probable class, or for two classes ``p(class 1) >= threshold``."""
    proba = np.asarray(proba, dtype="float64")
    if threshold is not None and proba.shape[1] == 2:
        return (proba[:, 1] >= threshold).astype(int)
    return proba.argmax(axis=1)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts: row = true class, column = predicted class."""
    y_true = np.asarray(y_true).astype(int).reshape(-1)
    y_pred = np.asarray(y_pred).astype(int).reshape(-1)
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def precision_recall(matrix: np.ndarray) -> dict[str, float]:
    """precision and recall from a confusion matrix: of class 1 for two classes, else macro."""
    m = np.asarray(matrix, dtype="float64")
    tp = np.diag(m)
    predicted, actual = m.sum(axis=0), m.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    if len(m) == 2:
        return {"precision": float(precision[1]), "recall": float(recall[1])}
    return {"precision": float(precision.mean()), "recall": float(recall.mean())}


def roc_curve(
    y_true: np.ndarray, score: np.ndarray, max_points: int = ROC_MAX_POINTS
) -> dict[str, list[float]]:
    """The ROC curve of `score` for the positive `y_true`, at most `max_points` points.

    Points are taken at each distinct score (descending), starting at (0, 0) and ending at
    (1, 1); a longer curve is thinned to evenly spaced points that keep both ends, so fpr and
    tpr stay non-decreasing.
    """
    y = np.asarray(y_true).astype(bool).reshape(-1)
    s = np.asarray(score, dtype="float64").reshape(-1)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last].astype("float64")
    fps = (last + 1 - tps).astype("float64")
    n_pos, n_neg = max(float(y.sum()), 1.0), max(float((~y).sum()), 1.0)
    top = float(s[0]) if len(s) else 1.0
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    thresholds = np.r_[max(1.0, top), s[last]]
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr, thresholds = fpr[keep], tpr[keep], thresholds[keep]
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thresholds.tolist()}


def classification_details(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    threshold: float | None = None,
) -> dict[str, Any]:
    """Confusion matrix, precision/recall and the ROC curve of a classifier's test outputs.

    With two classes the ROC is that of ``classes[1]``; with more it is the micro-average
    one-vs-rest curve (every (row, class) pair scored by its probability).
    """
    y_true = np.asarray(y_true).astype(int).reshape(-1)
    proba = np.asarray(proba, dtype="float64")
    n = proba.shape[1]
    pred = predicted_classes(proba, threshold)
    matrix = confusion_matrix(y_true, pred, n)
    if n == 2:
        roc = roc_curve(y_true == 1, proba[:, 1])
    else:
        roc = roc_curve(np.eye(n, dtype=bool)[y_true].reshape(-1), proba.reshape(-1))
    return {
        **precision_recall(matrix),
        "threshold": threshold,
        "confusion_matrix": {"categories": list(classes), "matrix": matrix.tolist()},
        "roc": roc,
    }
