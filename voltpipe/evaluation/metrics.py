"""Test metrics by task, in numpy (no scikit-learn needed)."""

from __future__ import annotations

import numpy as np

CLASSIFICATION_METRICS = ("accuracy", "auc", "f1", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")


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


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """accuracy, auc (one-vs-rest macro for several classes), f1 (macro) and log_loss."""
    y_true = np.asarray(y_true).astype(int).reshape(-1)
    proba = np.asarray(proba, dtype="float64")
    n_classes = proba.shape[1]
    pred = proba.argmax(axis=1)
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
