"""Monitoring a champion: its stored reference sample against a current window of data."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from voltpipe.config import MultivariateDriftConfig, PerformanceEstimationConfig
from voltpipe.data.io import read_table
from voltpipe.errors import ConfigError, DataError
from voltpipe.monitoring.cluster_drift import ClusterDrift
from voltpipe.monitoring.drift import DriftResult, compute_drift, performance_decay
from voltpipe.monitoring.estimation import PerformanceEstimate
from voltpipe.monitoring.multivariate import MultivariateDrift
from voltpipe.monitoring.report import render_drift_html

REFERENCE_FILE = "reference_sample.parquet"


@dataclasses.dataclass
class MonitorResult:
    """Per-feature drift, and beside it the multivariate tests and the estimated performance.

    ``drift_detected`` (what triggers retraining) is set by a per-feature or prediction drift,
    a decay of the realised metric, and, when their ``retrain`` option is on, a multivariate
    drift or an estimated metric past its limit.
    """

    drift: DriftResult
    html: str
    decay: dict[str, Any] | None
    multivariate: MultivariateDrift | None = None
    estimate: PerformanceEstimate | None = None
    options: MonitoringOptions | None = None
    clusters: ClusterDrift | None = None  # clustering / embedding champions

    @property
    def triggers(self) -> list[str]:
        """What fired: ``features``, ``predictions``, ``decay``, ``multivariate``, ``estimate``."""
        o = self.options or MonitoringOptions()
        out = []
        if self.drift.drifted_features:
            out.append("features")
        if self.drift.prediction and self.drift.prediction.drifted:
            out.append("predictions")
        if self.decay and self.decay.get("degraded"):
            out.append("decay")
        if self.multivariate and self.multivariate.drifted and o.multivariate.retrain:
            out.append("multivariate")
        if self.estimate and self.estimate.degraded and o.performance_estimation.retrain:
            out.append("estimate")
        if self.clusters and self.clusters.drifted:
            out.append("clusters")
        return out

    @property
    def drift_detected(self) -> bool:
        return bool(self.triggers)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.drift.to_dict(),
            "performance_decay": self.decay,
            "multivariate": None if self.multivariate is None else self.multivariate.to_dict(),
            "performance_estimate": None if self.estimate is None else self.estimate.to_dict(),
            "clusters": None if self.clusters is None else self.clusters.to_dict(),
            "triggers": self.triggers,
            "drift_detected": self.drift_detected,
        }


@dataclasses.dataclass(frozen=True)
class WindowSource:
    """Where the window came from (for the warehouse pushdown of a large window)."""

    warehouse: str
    sql: str
    parameters: dict[str, dict[str, Any]]
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


def window_rows(path: str | os.PathLike[str]) -> int:
    """Rows of a parquet Dataset, from the files' footers (nothing is read)."""
    from voltpipe.data.io import parquet_files

    return sum(pq.ParquetFile(f).metadata.num_rows for f in parquet_files(path))


def sample_window(path: str | os.PathLike[str], rows: int, total: int, seed: int = 0) -> Any:
    """A seeded Bernoulli sample of about `rows` rows, read batch by batch (bounded memory)."""
    import numpy as np
    import pyarrow as pa

    from voltpipe.data.io import parquet_files

    rng = np.random.default_rng(seed)
    share = min(1.0, rows / max(total, 1))
    parts = []
    for f in parquet_files(path):
        for batch in pq.ParquetFile(f).iter_batches(batch_size=262_144):
            keep = rng.random(batch.num_rows) < share
            parts.append(batch.filter(pa.array(keep)))
    return pa.Table.from_batches(parts) if parts else read_table(path)


@dataclasses.dataclass(frozen=True)
class MonitoringOptions:
    """The ``monitoring`` keys the drift step reads beyond the thresholds."""

    multivariate: MultivariateDriftConfig = dataclasses.field(
        default_factory=MultivariateDriftConfig
    )
    performance_estimation: PerformanceEstimationConfig = dataclasses.field(
        default_factory=PerformanceEstimationConfig
    )
    classification_threshold: float | None = None
    pushdown_rows: int = 1_000_000
    sample_rows: int = 100_000  # window rows the model-based checks use above pushdown_rows

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> MonitoringOptions:
        """From ``{"multivariate": {...}, "performance_estimation": {...}}``.

        Raises:
            ConfigError: a bad key or value, named.
        """
        from pydantic import ValidationError

        o = dict(options or {})
        try:
            return cls(
                MultivariateDriftConfig(**(o.get("multivariate") or {})),
                PerformanceEstimationConfig(**(o.get("performance_estimation") or {})),
                o.get("classification_threshold"),
                int(o.get("pushdown_rows", 1_000_000)),
                int(o.get("sample_rows", 100_000)),
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(f"monitoring.{'.'.join(map(str, err['loc']))}: {err['msg']}") from exc


def detect_drift(
    current_path: str | os.PathLike[str],
    champion_dir: str | os.PathLike[str],
    *,
    thresholds: dict[str, Any] | None = None,
    predictions: bool = True,
    options: MonitoringOptions | dict[str, Any] | None = None,
    source: WindowSource | None = None,
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
    opts = (
        options if isinstance(options, MonitoringOptions) else MonitoringOptions.from_dict(options)
    )
    total = window_rows(current_path)
    pushed = source is not None and total > opts.pushdown_rows
    # Above monitoring.pushdown_rows the window is never loaded whole: the per-feature
    # statistics are computed in the warehouse, the model-based ones on a seeded sample.
    current = (
        sample_window(current_path, opts.sample_rows, total) if pushed else read_table(current_path)
    )
    meta = read_model_meta(champion_dir)
    features = feature_plan(meta).names
    ref_pred = cur_pred = None
    decay = estimate = None
    clusters = None
    if meta.get("task") in ("clustering", "embedding") and current.num_rows:
        from voltpipe.modelling.predict import load_model
        from voltpipe.monitoring.cluster_drift import cluster_drift

        champion = load_model(champion_dir)
        clusters = cluster_drift(champion.model, meta, current, thresholds)
        predictions = False  # its outputs are compared by cluster_drift
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
            if opts.performance_estimation.enabled and model.task in (
                "regression",
                "classification",
            ):
                estimate = _estimate(model, reference, current, ref_pred, cur_pred, features, opts)
            if ref_pred.ndim > 1:  # class probabilities: compare the positive / top class score
                ref_pred, cur_pred = ref_pred.max(axis=1), cur_pred.max(axis=1)
    if pushed:
        from voltpipe.data.warehouse import open_warehouse
        from voltpipe.monitoring.drift import prediction_drift
        from voltpipe.monitoring.pushdown import compute_drift_in_warehouse

        assert source is not None
        result = compute_drift_in_warehouse(
            reference,
            open_warehouse(source.warehouse, source.options),
            source.sql,
            source.parameters,
            features=features,
            thresholds=thresholds,
        )
        if ref_pred is not None and cur_pred is not None:
            result.prediction = prediction_drift(
                ref_pred, cur_pred, threshold=result.thresholds["prediction_psi"]
            )
        print(
            f"voltpipe: window of {total:,} rows: histograms computed in the warehouse, "
            f"model-based checks on a sample of {current.num_rows:,} rows"
        )
    else:
        result = compute_drift(
            reference,
            current,
            features=features,
            thresholds=thresholds,
            reference_predictions=ref_pred,
            current_predictions=cur_pred,
        )
    multivariate = None
    if opts.multivariate.enabled and current.num_rows:
        from voltpipe.monitoring.multivariate import multivariate_drift

        m = opts.multivariate
        multivariate = multivariate_drift(
            reference,
            current,
            [f for f in features if f in current.column_names],
            alpha=m.alpha,
            pca_variance=m.pca_variance,
            min_auc=m.min_auc,
            max_rows=m.max_rows,
        )
    html = render_drift_html(
        result, reference, current, multivariate=multivariate, estimate=estimate
    )
    if clusters is not None:
        from voltpipe.monitoring.cluster_drift import cluster_drift_html

        html = html.replace("</body>", cluster_drift_html(clusters) + "</body>", 1)
    return MonitorResult(result, html, decay, multivariate, estimate, opts, clusters)


def _estimate(
    model: Any,
    reference: Any,
    current: Any,
    ref_pred: Any,
    cur_pred: Any,
    features: list[str],
    opts: MonitoringOptions,
) -> PerformanceEstimate | None:
    """CBPE/DLE of the champion on the window, calibrated on the labelled reference rows; the
    realised metric beside it where the window has labels."""
    import numpy as np

    from voltpipe.modelling.train import encode_labels
    from voltpipe.monitoring.estimation import estimate_performance

    label = model.meta["label"]
    if label not in reference.column_names:
        return None
    p = opts.performance_estimation
    classes = model.meta.get("classes")
    ref_ok = reference.column(label).is_valid().to_numpy(zero_copy_only=False)
    ref_pred = np.asarray(ref_pred)
    rows = np.flatnonzero(ref_ok)
    if len(rows) > p.calibration_rows:
        rows = np.sort(np.random.default_rng(0).choice(rows, p.calibration_rows, replace=False))
    calib = reference.take(rows)
    y_ref, _ = encode_labels(calib, label, model.task, classes)
    y_cur = labelled = None
    if label in current.column_names and current.column(label).null_count < current.num_rows:
        labelled = current.column(label).is_valid().to_numpy(zero_copy_only=False)
        y_cur, _ = encode_labels(current.filter(labelled), label, model.task, classes)
    metric = p.metric
    if model.task == "classification":
        metric = "accuracy"
    elif metric == "accuracy":
        raise ConfigError("monitoring.performance_estimation.metric: accuracy needs a classifier")
    return estimate_performance(
        model.task,
        calib,
        current,
        features=features,
        y_reference=np.asarray(y_ref),
        reference_outputs=ref_pred[rows],
        current_outputs=np.asarray(cur_pred),
        y_current=None if y_cur is None else np.asarray(y_cur),
        labelled=labelled,
        metric=metric,
        threshold=p.threshold,
        tolerance=p.tolerance,
        classification_threshold=opts.classification_threshold,
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
