"""Scoring a challenger and the current champion on the same test data."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import ValidationError

from voltpipe.config import GateConfig
from voltpipe.data.io import read_table
from voltpipe.errors import ConfigError, DataError
from voltpipe.evaluation.gate import (
    GateDecision,
    Interval,
    PairedOutputs,
    decide,
    forecast_comparison,
    paired_bootstrap,
    row_losses,
    slice_comparison,
)
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
    # Per-row (or per-window) labels and outputs, for the paired comparison; not serialised.
    y_true: np.ndarray | None = dataclasses.field(default=None, repr=False)
    outputs: np.ndarray | None = dataclasses.field(default=None, repr=False)
    # How many predict calls scored the rows (at most SCORE_CHUNK_ROWS each); not serialised.
    chunks: int = dataclasses.field(default=1, repr=False)

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
# Rows per predict call: a model's inputs (feature arrays, tensors) are built for one chunk at a
# time, so scoring a big test split holds the split and its outputs, not several copies of it.
SCORE_CHUNK_ROWS = 262_144


def predict_in_chunks(
    loaded: Any, table: pa.Table, chunk_rows: int | None = None
) -> tuple[np.ndarray, int]:
    """``loaded.predict_raw`` over `table` in slices of `chunk_rows` rows (default
    ``SCORE_CHUNK_ROWS``): ``(outputs, chunks)``."""
    chunk_rows = chunk_rows or SCORE_CHUNK_ROWS
    n = table.num_rows
    if n <= chunk_rows:
        return np.asarray(loaded.predict_raw(table), dtype="float64"), 1
    parts = [
        np.asarray(loaded.predict_raw(table.slice(start, chunk_rows)), dtype="float64")
        for start in range(0, n, chunk_rows)
    ]
    return np.concatenate(parts, axis=0), len(parts)


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
    out, chunks = predict_in_chunks(loaded, table)
    out = out.reshape(-1)
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
        loaded.task,
        regression_metrics(y, out),
        table.num_rows,
        details,
        slices,
        plots,
        y,
        out,
        chunks=chunks,
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
    proba, chunks = predict_in_chunks(loaded, table)
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
    return ModelScore(
        loaded.task, metrics, table.num_rows, details, slices, plots, y, proba, chunks=chunks
    )


def _score_forecasting(
    loaded: Any,
    table: pa.Table,
    slice_columns: Sequence[str],
    threshold: float | None,
    valid: pa.Table | None = None,
) -> ModelScore:
    from voltpipe.evaluation.forecast_metrics import score_forecaster

    # The kept windows' targets and forecasts feed the Diebold-Mariano comparison (gate.py).
    score = score_forecaster(loaded, table, valid)
    if score.y_true is None:  # score_forecaster keeps them; the type allows None
        raise ValueError("score_forecaster returned no scored targets")
    return ModelScore(
        loaded.task,
        score.metrics,
        table.num_rows,
        details={**score.details, "horizon": int(score.y_true.shape[1])},
        y_true=score.y_true,
        outputs=score.pred,
    )


def _score_anomaly(
    loaded: Any,
    table: pa.Table,
    slice_columns: Sequence[str],
    threshold: float | None,
    valid: pa.Table | None = None,
) -> ModelScore:
    from voltpipe.evaluation.anomaly_metrics import score_anomaly_detector

    return ModelScore(loaded.task, score_anomaly_detector(loaded, table), table.num_rows)


def _score_unsupervised(
    loaded: Any,
    table: pa.Table,
    slice_columns: Sequence[str],
    threshold: float | None,
    valid: pa.Table | None = None,
) -> ModelScore:
    from voltpipe.evaluation.cluster_metrics import score_clustering, score_embedding

    # Per-row values (silhouette / explained-variance share, on the same sampled rows for both
    # models) feed the paired bootstrap; `y_true` holds the scored row indices.
    s = (
        score_clustering(loaded, table)
        if loaded.task == "clustering"
        else score_embedding(loaded, table)
    )
    return ModelScore(
        loaded.task, s.metrics, table.num_rows, s.details, {}, s.plots_html, s.rows, s.per_row
    )


SCORERS: dict[str, Scorer] = {
    "regression": _score_regression,
    "classification": _score_classification,
    "forecasting": _score_forecasting,
    "anomaly": _score_anomaly,
    "clustering": _score_unsupervised,
    "embedding": _score_unsupervised,
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
    gate: GateConfig | Mapping[str, Any] | None = None,
    valid_path: str | os.PathLike[str] | None = None,
) -> EvaluationResult:
    """Scores the challenger and (if any) the champion on the same test split, then decides.

    The two are compared paired, row by row (see ``gate``): `gate` (``deploy.gate``) sets the
    confidence, the bootstrap resamples and the slice check; `metric` and `min_improvement`
    override its own. A champion that can no longer score this data (e.g. a changed schema) is
    reported and the challenger is judged on its own. Slices and plots are the challenger's.

    Forecasters (challenger and champion alike) take their first forecasts' past from the valid
    split at `valid_path`, so both are scored on every test row.
    """
    options = _gate_options(gate)
    if champion_dir is not None:
        match_cluster_ids(model_dir, champion_dir, test_path)
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
    table = read_table(test_path)
    provenance = {
        "test_data_hash": table_hash(table),
        "champion_version": champion_version if champion else None,
        "challenger_model": str(model_dir),
    }
    interval, slice_rows = None, None
    if champion is not None and metric in score.gate_metrics and metric in champion.gate_metrics:
        paired = _paired(score, champion, classification_threshold)
        if paired is not None:
            interval = _interval(paired, score, champion, metric, options)
            slice_cols = _gate_slice_columns(options, slice_columns)
            if interval is not None and slice_cols and paired.task != "forecasting":
                slice_rows = slice_comparison(
                    paired,
                    metric,
                    slice_masks(table, slice_cols),
                    max_regression=options.max_slice_regression,
                )
    decision = decide(
        score.gate_metrics,
        champion.gate_metrics if champion else None,
        metric=metric,
        min_improvement=min_improvement,
        interval=interval,
        confidence=options.confidence,
        slices=slice_rows,
        max_slice_regression=options.max_slice_regression if slice_rows is not None else None,
        **provenance,
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


def _gate_options(gate: GateConfig | Mapping[str, Any] | None) -> GateConfig:
    if gate is None:
        return GateConfig()
    if isinstance(gate, GateConfig):
        return gate
    try:
        return GateConfig(**dict(gate))
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(map(str, err["loc"]))
        raise ConfigError(f"deploy.gate.{key}: {err['msg']}") from None


def _gate_slice_columns(options: GateConfig, slice_columns: Sequence[str]) -> list[str]:
    """The slice columns the gate checks: all of ``evaluation.slice_columns`` or the listed ones."""
    if options.slices is True:
        return list(slice_columns)
    if not options.slices:
        return []
    unknown = [c for c in options.slices if c not in slice_columns]
    if unknown:
        raise ConfigError(
            f"deploy.gate.slices: {', '.join(map(repr, unknown))} not in evaluation.slice_columns "
            f"({', '.join(slice_columns) or 'none'})"
        )
    return list(options.slices)


def _paired(
    score: ModelScore, champion: ModelScore, threshold: float | None
) -> PairedOutputs | None:
    """Both models' outputs on the same rows, or None (with a message) when they cannot pair."""
    a, b = score.outputs, champion.outputs
    if score.y_true is None or champion.y_true is None or a is None or b is None:
        return None
    if (
        a.shape != b.shape
        or score.y_true.shape != champion.y_true.shape
        or not np.array_equal(score.y_true, champion.y_true, equal_nan=True)
    ):
        print(
            "voltpipe: the champion's outputs do not line up with the challenger's "
            f"({b.shape} vs {a.shape}: other classes, window or horizon); comparing aggregates"
        )
        return None
    return PairedOutputs(score.task, score.y_true, a, b, threshold)


def _interval(
    paired: PairedOutputs,
    score: ModelScore,
    champion: ModelScore,
    metric: str,
    options: GateConfig,
) -> Interval | None:
    if paired.task == "forecasting":
        if metric not in ("mae", "rmse", "mape", "skill_persistence"):
            print(
                f"voltpipe: forecast metric {metric!r} has no per-window loss; comparing aggregates"
            )
            return None
        return forecast_comparison(
            paired,
            metric,
            horizon=int(score.details.get("horizon", 1)),
            confidence=options.confidence,
            persistence_mae=score.metrics.get("mae_persistence"),
        )
    if (
        paired.task in ("clustering", "embedding")
        and row_losses(metric, paired.task, paired.y_true, paired.challenger) is None
    ):
        print(
            f"voltpipe: {paired.task} metric {metric!r} has no per-row value; comparing aggregates"
        )
        return None
    return paired_bootstrap(
        paired, metric, samples=options.bootstrap_samples, confidence=options.confidence
    )


def match_cluster_ids(
    model_dir: str | os.PathLike[str],
    champion_dir: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
) -> list[int] | None:
    """Renumbers a clustering challenger's ids to agree best with the champion's on the test
    rows (Hungarian assignment), rewriting its model folder; returns the order applied (new id
    i = old id ``order[i]``), or None when not both are clustering models or they cannot
    score the same rows. Running it again changes nothing."""
    from voltpipe.model_dir import read_meta
    from voltpipe.modelling.clustering import matching_permutation
    from voltpipe.modelling.predict import load_model
    from voltpipe.modelling.unsupervised import save_relabelled

    if read_meta(model_dir).get("task") != "clustering":
        return None
    try:
        if read_meta(champion_dir).get("task") != "clustering":
            return None
        challenger, champion = load_model(model_dir), load_model(champion_dir)
        table = read_table(test_path)
        z_new, _ = challenger.model.inputs.matrix(table)
        z_old, _ = champion.model.inputs.matrix(table)
    except DataError as exc:
        print(f"voltpipe: cluster ids not matched to the champion's ({exc})")
        return None
    if len(z_new) != len(z_old) or len(z_new) == 0:
        return None
    new_ids = challenger.model.clusters.assign(z_new)
    old_ids = champion.model.clusters.assign(z_old)
    order = matching_permutation(old_ids, new_ids, challenger.model.clusters.k)
    if order != list(range(len(order))):
        save_relabelled(model_dir, order)
        print(f"voltpipe: cluster ids renumbered to match the champion's: new id i = old {order}")
    return order


def table_hash(table: pa.Table) -> str:
    """sha256 of a table's rows (Arrow IPC stream of its columns): the same split, the same hash."""
    import hashlib

    import pyarrow.ipc as ipc

    digest = hashlib.sha256()
    sink = pa.BufferOutputStream()
    plain = table.replace_schema_metadata(None).combine_chunks()
    with ipc.new_stream(sink, plain.schema) as writer:
        writer.write_table(plain)
    digest.update(sink.getvalue().to_pybytes())
    return "sha256:" + digest.hexdigest()


def slice_masks(table: pa.Table, columns: Sequence[str]) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Row masks of each value of each slice column (its ``MAX_SLICE_VALUES`` most frequent)."""
    import pyarrow.compute as pc

    from voltpipe.evaluation.slices import MAX_SLICE_VALUES, NULL_VALUE

    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    for column in columns:
        if column not in table.column_names:
            raise ConfigError(f"deploy.gate.slices: column {column!r} is not in the test data")
        text = pc.fill_null(pc.cast(table.column(column), pa.string()), NULL_VALUE)
        values, inverse, counts = np.unique(
            np.asarray(text.to_numpy(zero_copy_only=False), dtype=object).astype(str),
            return_inverse=True,
            return_counts=True,
        )
        order = sorted(range(len(values)), key=lambda i: (-counts[i], values[i]))
        out[column] = [(str(values[i]), inverse == i) for i in order[:MAX_SLICE_VALUES]]
    return out


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
