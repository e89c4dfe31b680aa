"""Monitoring a champion: its stored reference sample against a current window of data."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from voltpipe.data.io import read_table
from voltpipe.errors import DataError
from voltpipe.monitoring.drift import DriftResult, compute_drift, performance_decay
from voltpipe.monitoring.report import render_drift_html

REFERENCE_FILE = "reference_sample.parquet"


@dataclasses.dataclass
class MonitorResult:
    drift: DriftResult
    html: str
    decay: dict[str, Any] | None

    @property
    def drift_detected(self) -> bool:
        return self.drift.drift_detected or bool(self.decay and self.decay.get("degraded"))

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.drift.to_dict(),
            "performance_decay": self.decay,
            "drift_detected": self.drift_detected,
        }


def detect_drift(
    current_path: str | os.PathLike[str],
    champion_dir: str | os.PathLike[str],
    *,
    thresholds: dict[str, Any] | None = None,
    predictions: bool = True,
) -> MonitorResult:
    """Compares the champion's reference sample with the current window.

    Features are the champion's model inputs; with `predictions`, the champion also scores
    both tables (prediction drift), and when the current window carries the label, the
    performance change is reported too.

    Raises:
        DataError: no reference sample with the champion, an empty current window, missing
            or all-null feature columns (see ``compute_drift``).
    """
    from voltpipe.modelling.train import feature_plan, read_model_meta

    ref_file = Path(champion_dir) / REFERENCE_FILE
    if not ref_file.exists():
        raise DataError(
            f"the champion at {champion_dir} has no reference sample ({REFERENCE_FILE}); "
            "re-register it with this version of voltpipe"
        )
    reference = pq.read_table(ref_file)
    current = read_table(current_path)
    meta = read_model_meta(champion_dir)
    features = feature_plan(meta).names
    ref_pred = cur_pred = None
    decay = None
    if predictions and current.num_rows:
        from voltpipe.modelling.predict import load_model

        missing = [f for f in features if f not in current.column_names]
        if not missing:
            model = load_model(champion_dir)
            ref_pred, cur_pred = model.predict_raw(reference), model.predict_raw(current)
            label = meta["label"]
            if (
                model.task in ("regression", "classification")
                and label in current.column_names
                and label in reference.column_names
                and current.column(label).null_count < current.num_rows
            ):
                decay = _decay(model, reference, current, ref_pred, cur_pred, label)
            if ref_pred.ndim > 1:  # class probabilities: compare the positive / top class score
                ref_pred, cur_pred = ref_pred.max(axis=1), cur_pred.max(axis=1)
    result = compute_drift(
        reference,
        current,
        features=features,
        thresholds=thresholds,
        reference_predictions=ref_pred,
        current_predictions=cur_pred,
    )
    return MonitorResult(
        drift=result, html=render_drift_html(result, reference, current), decay=decay
    )


def _decay(
    model: Any, reference: Any, current: Any, ref_pred: Any, cur_pred: Any, label: str
) -> dict[str, Any] | None:
    """The champion's metric on the reference sample vs the labelled rows of the window
    (their predictions taken from `cur_pred`, not computed again)."""
    import numpy as np

    from voltpipe.modelling.train import encode_labels

    classes = model.meta.get("classes")
    labelled = current.column(label).is_valid().to_numpy(zero_copy_only=False)
    if not labelled.any():
        return None
    current = current.filter(labelled)
    cur_pred = np.asarray(cur_pred)[labelled]
    y_ref, _ = encode_labels(reference, label, model.task, classes)
    y_cur, _ = encode_labels(current, label, model.task, classes)
    decay = performance_decay(y_ref, ref_pred, y_cur, cur_pred, task=model.task)
    return decay.to_dict()
