"""Anomaly-detection metrics at the model's stored threshold, in numpy."""

from __future__ import annotations

from typing import Any

import numpy as np

ANOMALY_METRICS = ("precision", "recall", "f1", "auc", "anomaly_rate", "reconstruction_error")


def anomaly_metrics(
    errors: np.ndarray, threshold: float, labels: np.ndarray | None = None
) -> dict[str, float]:
    """Metrics of reconstruction errors flagged above `threshold`.

    Always: ``anomaly_rate`` (share flagged), ``reconstruction_error`` (mean) and ``threshold``.
    With 0/1 `labels` (1 = anomaly): ``precision``, ``recall``, ``f1`` at the threshold and the
    threshold-free ``auc`` of the error as a score.
    """
    from voltpipe.evaluation.metrics import binary_auc

    errors = np.asarray(errors, dtype="float64").reshape(-1)
    flagged = errors > threshold
    out = {
        "anomaly_rate": float(flagged.mean()) if len(errors) else float("nan"),
        "reconstruction_error": float(errors.mean()) if len(errors) else float("nan"),
        "threshold": float(threshold),
    }
    if labels is not None:
        y = np.asarray(labels).astype(bool).reshape(-1)
        tp = float(np.sum(flagged & y))
        fp = float(np.sum(flagged & ~y))
        fn = float(np.sum(~flagged & y))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        out.update(
            {
                "precision": precision,
                "recall": recall,
                "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
                "auc": binary_auc(y, errors),
            }
        )
    return out


def score_anomaly_detector(loaded: Any, table: Any) -> dict[str, float]:
    """Scores a loaded anomaly model on a table (labels used when the label column is there)."""
    from voltpipe.modelling.problems import anomaly_labels

    errors = loaded.predict_raw(table)
    labels = anomaly_labels(table, loaded.meta["label"])
    return anomaly_metrics(errors, float(loaded.meta["anomaly"]["threshold"]), labels)
