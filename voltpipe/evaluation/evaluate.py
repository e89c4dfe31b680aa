"""Scoring a challenger and the current champion on the same test data."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from voltpipe.data.io import read_table
from voltpipe.errors import DataError
from voltpipe.evaluation.gate import GateDecision, decide
from voltpipe.evaluation.metrics import (
    CLASSIFICATION_DETAIL_METRICS,
    classification_details,
    classification_metrics,
    confusion_matrix,
    precision_recall,
    predicted_classes,
    regression_metrics,
)
from voltpipe.evaluation.slices import slice_metrics, slices_markdown


@dataclasses.dataclass
class ModelScore:
    """What scoring one model on the test data gives.

    Attributes:
        metrics: the headline metrics (the kfp Metrics artifact and the registry's lineage).
        details: task-specific extras: precision/recall, the confusion matrix and the ROC curve
            (classification).
        slices: metrics per value of each slice column (see ``slices.slice_metrics``).
        plots_html: the task's plots as an HTML page ("" when the task has none).
    """

    task: str
    metrics: dict[str, float]
    rows: int
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    slices: dict[str, Any] = dataclasses.field(default_factory=dict)
    plots_html: str = ""

    def __iter__(self) -> Iterator[Any]:
        # `metrics, rows = score_model(...)` keeps working for callers of the older tuple API.
        yield self.metrics
        yield self.rows

    @property
    def gate_metrics(self) -> dict[str, float]:
        """The headline metrics plus the scalar details a gate may use (precision, recall)."""
        extra = {k: self.details[k] for k in CLASSIFICATION_DETAIL_METRICS if k in self.details}
        return {**self.metrics, **extra}


@dataclasses.dataclass
class EvaluationResult:
    metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    champion_version: str | None
    decision: GateDecision
    test_rows: int
    task: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    slices: dict[str, Any] = dataclasses.field(default_factory=dict)
    plots_html: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["decision"] = self.decision.to_dict()
        d.pop("plots_html")
        return d


# ----- scoring by task --------------------------------------------------------------------------
# One scorer per task: (loaded model, test table, slice columns, classification threshold,
# the valid split or None). Only forecasters read the valid split: the past of their first test
# forecasts. Forecasting and anomaly scorers live in their own modules (forecast_metrics,
# anomaly_metrics).

Scorer = Callable[[Any, pa.Table, Sequence[str], float | None, pa.Table | None], ModelScore]


def _score_regression(
    loaded: Any,
    table: pa.Table,
    slice_columns: Sequence[str],
    threshold: float | None,
    valid: pa.Table | None = None,
) -> ModelScore:
    from voltpipe.evaluation.plots import regression_plots_html
    from voltpipe.modelling.train import encode_labels

    y, _ = encode_labels(table, loaded.meta["label"], loaded.task, None)
    y = np.asarray(y, dtype="float64").reshape(-1)
    out = np.asarray(loaded.predict_raw(table), dtype="float64").reshape(-1)
    slices = slice_metrics(table, slice_columns, lambda m: regression_metrics(y[m], out[m]))
    residual = y - out
    details = {
        "residuals": {
            "mean": float(residual.mean()),
            "std": float(residual.std()),
            "p05": float(np.quantile(residual, 0.05)),
            "p95": float(np.quantile(residual, 0.95)),
        }
    }
    plots = regression_plots_html(y, out, title=f"Residuals of {loaded.meta['label']}")
    return ModelScore(
        loaded.task, regression_metrics(y, out), table.num_rows, details, slices, plots
    )


def _score_classification(
    loaded: Any,
    table: pa.Table,
    slice_columns: Sequence[str],
    threshold: float | None,
    valid: pa.Table | None = None,
) -> ModelScore:
    from voltpipe.evaluation.plots import classification_plots_html
    from voltpipe.modelling.train import encode_labels

    classes = list(loaded.meta.get("classes") or [])
    y, _ = encode_labels(table, loaded.meta["label"], loaded.task, classes or None)
    y = np.asarray(y).astype(int).reshape(-1)
    proba = np.asarray(loaded.predict_raw(table), dtype="float64")
    n = proba.shape[1]

    def of(mask: np.ndarray) -> dict[str, float]:
        pred = predicted_classes(proba[mask], threshold)
        return {
            **classification_metrics(y[mask], proba[mask], threshold),
            **precision_recall(confusion_matrix(y[mask], pred, n)),
        }

    metrics = classification_metrics(y, proba, threshold)
    details = classification_details(y, proba, classes or [str(k) for k in range(n)], threshold)
    plots = classification_plots_html(
        details, auc=metrics.get("auc"), title=f"Classification of {loaded.meta['label']}"
    )
    slices = slice_metrics(table, slice_columns, of)
    return ModelScore(loaded.task, metrics, table.num_rows, details, slices, plots)


def _score_forecasting(
    loaded: Any,
    table: pa.Table,
    slice_columns: Sequence[str],
    threshold: float | None,
    valid: pa.Table | None = None,
) -> ModelScore:
    from voltpipe.evaluation.forecast_metrics import score_forecaster

    score = score_forecaster(loaded, table, valid)
    return ModelScore(loaded.task, score.metrics, table.num_rows, details=score.details)


def _score_anomaly(
    loaded: Any,
    table: pa.Table,
    slice_columns: Sequence[str],
    threshold: float | None,
    valid: pa.Table | None = None,
) -> ModelScore:
    from voltpipe.evaluation.anomaly_metrics import score_anomaly_detector

    return ModelScore(loaded.task, score_anomaly_detector(loaded, table), table.num_rows)


SCORERS: dict[str, Scorer] = {
    "regression": _score_regression,
    "classification": _score_classification,
    "forecasting": _score_forecasting,
    "anomaly": _score_anomaly,
}


def score_model(
    model_dir: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    *,
    slice_columns: Sequence[str] = (),
    classification_threshold: float | None = None,
    valid_path: str | os.PathLike[str] | None = None,
) -> ModelScore:
    """Scores a saved model on the test data by its task (the dispatch point is ``SCORERS``).

    Slice metrics are computed for regression and classification. A forecaster takes the past
    of its first test forecasts from the valid split at `valid_path` (see
    ``forecast_metrics.score_forecaster``), so every test row is scored.

    Raises:
        DataError: empty test data, a task without evaluation, or unusable test data.
        ConfigError: a slice column is not in the test data.
    """
    from voltpipe.modelling.predict import load_model

    loaded = load_model(model_dir)
    table = read_table(test_path)
    if table.num_rows == 0:
        raise DataError("the test split is empty")
    scorer = SCORERS.get(loaded.task)
    if scorer is None:
        raise DataError(f"task {loaded.task}: evaluation not supported")
    valid = None
    if valid_path is not None and loaded.task == "forecasting":  # only forecasters read it
        valid = read_table(valid_path)
    return scorer(loaded, table, list(slice_columns), classification_threshold, valid)


def evaluate_challenger(
    model_dir: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    *,
    champion_dir: str | os.PathLike[str] | None,
    champion_version: str | None,
    metric: str,
    min_improvement: float = 0.0,
    slice_columns: Sequence[str] = (),
    classification_threshold: float | None = None,
    valid_path: str | os.PathLike[str] | None = None,
) -> EvaluationResult:
    """Scores the challenger and (if any) the champion on the same test split, then decides.

    Forecasters (challenger and champion alike) take their first forecasts' past from the valid
    split at `valid_path`, so both are scored on every test row.

    A champion that can no longer score this data (e.g. a changed schema) is reported and the
    challenger is judged on its own. Slices and plots are the challenger's.
    """
    score = score_model(
        model_dir,
        test_path,
        slice_columns=slice_columns,
        classification_threshold=classification_threshold,
        valid_path=valid_path,
    )
    champion: ModelScore | None = None
    if champion_dir is not None:
        try:
            champion = score_model(
                champion_dir,
                test_path,
                classification_threshold=classification_threshold,
                valid_path=valid_path,
            )
        except DataError as exc:
            print(
                f"voltpipe: the champion cannot score this test data ({exc}); judging the challenger alone"
            )
    decision = decide(
        score.gate_metrics,
        champion.gate_metrics if champion else None,
        metric=metric,
        min_improvement=min_improvement,
    )
    return EvaluationResult(
        score.metrics,
        champion.metrics if champion else None,
        champion_version if champion else None,
        decision,
        score.rows,
        task=score.task,
        details=score.details,
        slices=score.slices,
        plots_html=score.plots_html,
    )


def decision_report_markdown(result: EvaluationResult) -> str:
    """The decision (``reports.decision_markdown``) plus precision/recall and slice tables."""
    from voltpipe.reports import decision_markdown

    parts = [decision_markdown(result)]
    d = result.details
    if "precision" in d:
        rule = (
            f"p >= {d['threshold']:g}" if d.get("threshold") is not None else "most probable class"
        )
        parts.append(
            f"Precision {d['precision']:.4g}, recall {d['recall']:.4g} (predicted class: {rule}).\n"
        )
    if "targets" in d:  # forecasting: what the metrics were computed on
        where = (
            f"the last {d['history_rows']} rows of each series in the valid split"
            if d["history"] == "valid"
            else "each test series' first rows (no valid split: those rows are not scored)"
        )
        parts.append(
            f"Scored {d['windows']:,} forecasts ({d['targets']:,} targets) over "
            f"{d['test_rows']:,} test rows; the first forecasts' history is {where}. The "
            "naive baselines are scored on the same targets.\n"
        )
    if result.slices:
        parts.append("## Slice metrics\n\n" + slices_markdown(result.slices))
    return "\n".join(parts)
