"""Configuration: pydantic models, YAML loading, ``--set`` overrides and path resolution.

The config is loaded once, at the entry point (the CLI or a user's code), and handed down as
arguments and pipeline parameters. Unknown keys and bad values are rejected with a message that
names the key.
"""

from __future__ import annotations

import importlib.resources
import math
import re
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from voltpipe.data.params import normalize_parameters
from voltpipe.errors import ConfigError
from voltpipe.modelling.search_space import TUNABLE, section_of, space_problems

TASKS = ("classification", "regression", "forecasting", "anomaly", "clustering", "embedding")
UNSUPERVISED_TASKS = ("clustering", "embedding")  # `label` optional: never a feature
DEFAULT_IMAGE = "europe-west1-docker.pkg.dev/PROJECT/voltpipe/voltpipe:0.1.0"
EMBEDDED_WAREHOUSE_FILE = "warehouse.duckdb"
PRIMARY_METRIC = {
    "classification": "auc",
    "regression": "rmse",
    "forecasting": "mae",
    "anomaly": "f1",
    "clustering": "silhouette",
    "embedding": "explained_variance",
}
LOWER_IS_BETTER = {
    "rmse",
    "mae",
    "log_loss",
    "mape",
    "reconstruction_error",
    "davies_bouldin",
    "mean_distance",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(_Strict):
    """How extracted rows are split into train/valid/test."""

    method: Literal["random", "hash", "time"] = "random"
    column: str | None = None
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 42

    @field_validator("fractions")
    @classmethod
    def _fractions_sum_to_one(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in v) or v[0] <= 0 or v[2] <= 0 or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(
                f"must be three non-negative fractions summing to 1 (train and test > 0), got {list(v)}"
            )
        return v

    @model_validator(mode="after")
    def _column_when_needed(self) -> SplitConfig:
        if self.method in ("hash", "time") and not self.column:
            raise ValueError(f"split.method '{self.method}' needs split.column")
        return self


MODEL_FAMILIES = {
    "classification": ("auto", "linear", "mlp", "gbdt"),
    "regression": ("auto", "linear", "mlp", "gbdt"),
    "forecasting": ("auto", "cnn", "lstm", "gru", "transformer", "mlp", "gbdt", "statistical"),
    "anomaly": ("autoencoder",),
    "clustering": ("auto", "kmeans", "gmm"),
    "embedding": ("pca", "autoencoder"),
}
DEFAULT_FAMILY = {
    "classification": "auto",
    "regression": "auto",
    "forecasting": "auto",
    "anomaly": "autoencoder",
    "clustering": "auto",
    "embedding": "pca",
}
ALL_FAMILIES = (
    "auto",
    "linear",
    "mlp",
    "gbdt",
    "cnn",
    "lstm",
    "gru",
    "transformer",
    "statistical",
    "autoencoder",
    "kmeans",
    "gmm",
    "pca",
)


class GbdtConfig(_Strict):
    """Gradient-boosted trees (LightGBM), family gbdt, for tables and forecasting."""

    max_trees: int = Field(2000, ge=1)  # early stopping on the valid split picks the number used
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(20, ge=1)
    feature_fraction: float = Field(1.0, gt=0, le=1)
    bagging_fraction: float = Field(1.0, gt=0, le=1)
    lambda_l2: float = Field(0.0, ge=0)
    early_stopping_rounds: int = Field(100, ge=1)


class ModelConfig(_Strict):
    """Model family and its architecture (each family reads the keys it needs)."""

    family: str | None = None  # default by task: auto (tables, forecasting); autoencoder (anomaly)
    hidden_units: list[int] = Field(default_factory=lambda: [64, 32])
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    filters: int = Field(32, ge=1)  # cnn
    kernel_size: int = Field(3, ge=1)  # cnn
    rnn_units: int = Field(32, ge=1)  # lstm, gru
    num_heads: int = Field(2, ge=1)  # transformer
    key_dim: int = Field(16, ge=1)  # transformer
    encoder_layers: int = Field(1, ge=1)  # cnn, transformer, lstm/gru blocks
    latent_dim: int = Field(4, ge=1)  # autoencoder bottleneck
    gbdt: GbdtConfig = GbdtConfig()  # family gbdt (LightGBM)

    @model_validator(mode="before")
    @classmethod
    def _deprecated_keys(cls, data: Any) -> Any:
        # Accepted (configs written for older versions keep loading) but never read by any
        # family: an embedding's size comes from its column's vocabulary (modelling.mlp).
        if isinstance(data, dict) and "embedding_max_categories" in data:
            data = {k: v for k, v in data.items() if k != "embedding_max_categories"}
            warnings.warn(
                "model.embedding_max_categories is deprecated and has no effect; remove it "
                "from the config",
                FutureWarning,
                stacklevel=2,
            )
        return data

    @model_validator(mode="before")
    @classmethod
    def _dotted_gbdt_keys(cls, data: Any) -> Any:
        # Tuned values arrive flat ({"gbdt.learning_rate": 0.1}): fold them into `gbdt`.
        if isinstance(data, dict) and any(str(k).startswith("gbdt.") for k in data):
            data = dict(data)
            gbdt = dict(data.get("gbdt") or {})
            for key in [k for k in data if str(k).startswith("gbdt.")]:
                gbdt[key.removeprefix("gbdt.")] = data.pop(key)
            data["gbdt"] = gbdt
        return data

    @field_validator("family")
    @classmethod
    def _known_family(cls, v: str | None) -> str | None:
        if v is not None and v not in ALL_FAMILIES:
            raise ValueError(f"unknown model family {v!r}; valid: {', '.join(ALL_FAMILIES)}")
        return v

    @field_validator("hidden_units")
    @classmethod
    def _positive_units(cls, v: list[int]) -> list[int]:
        if not v or any(u <= 0 for u in v):
            raise ValueError(f"needs one or more positive layer sizes, got {v}")
        return v


class TrainingVertexConfig(_Strict):
    """Machines for training as a Vertex AI CustomJob (and for tuning trials)."""

    machine_type: str = "n1-standard-4"
    accelerator_type: str | None = None  # e.g. NVIDIA_TESLA_T4
    accelerator_count: int = Field(0, ge=0)
    replica_count: int = Field(1, ge=1)  # > 1: MultiWorkerMirroredStrategy across replicas


class TrainingConfig(_Strict):
    """Optimisation settings for the training step."""

    # None (the default) = derived from the train size: batch clip(rows // 16, 32, 512), and an
    # epoch cap that allows `min_steps` optimizer steps (bounded for tiny and big tables).
    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    min_steps: int = Field(2000, ge=1)  # optimizer steps the derived epoch cap allows at least
    max_seconds: float | None = Field(600.0, gt=0)  # stop fitting after this long; None: no limit
    learning_rate: float = Field(1e-3, gt=0)
    # None = derived: epochs covering a few hundred steps (noisy small valid splits need them)
    early_stopping_patience: int | None = Field(None, ge=0)
    reduce_lr_patience: int | None = Field(None, ge=0)  # None: ~a third of the patience; 0: never
    reduce_lr_factor: float = Field(0.5, gt=0.0, lt=1.0)
    steps_per_execution: int = Field(8, ge=1)
    class_weight: Literal["none", "balanced"] = "none"
    shuffle_buffer: int = Field(100_000, ge=1)
    # memory: compact float32/int32 rows in memory; stream: row groups read from the parquet
    # shards every epoch (memory bounded by shuffle_buffer); auto: stream when the compact rows
    # would exceed a quarter of the machine's memory (Keras row families: mlp, autoencoder)
    input: Literal["auto", "memory", "stream"] = "auto"
    backup_dir: str | None = None  # default: "<model dir>.backup"; on Vertex AIP_CHECKPOINT_DIR
    seed: int = 42
    # vertex: the train step submits a Vertex AI CustomJob sized by `vertex` that runs the same
    # training code (python -m voltpipe.modelling.trial); needs --target vertex and an image.
    backend: Literal["local", "vertex"] = "local"
    vertex: TrainingVertexConfig = TrainingVertexConfig()


class ForecastingConfig(_Strict):
    """Sliding-window forecasting (task: forecasting): `window` past steps -> `horizon` next."""

    window: int = Field(48, ge=1)
    horizon: int = Field(1, ge=1)
    group_column: str | None = None  # one series per value (e.g. turbine_id), one model for all
    covariates: list[str] = Field(default_factory=list)  # numeric columns seen over the window
    season: int | None = Field(None, ge=2)  # steps; default: detected from the autocorrelation
    calendar: bool = True  # hour-of-day and day-of-week channels from time_column
    stride: int = Field(1, ge=1)  # training windows start every `stride` steps
    # Season lengths in steps (e.g. [48, 336]: daily and weekly for half-hourly data); default:
    # `season` if set, else detected. Seasonal lags y[t+k-m] are model inputs for each season m.
    seasons: list[int] | None = None
    # family auto: the families it backtests on the valid split (plus the mean of the best two)
    candidates: list[str] = Field(default_factory=lambda: ["gbdt", "statistical"])

    @field_validator("seasons")
    @classmethod
    def _seasons_at_least_two(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(m < 2 for m in v)):
            raise ValueError(f"needs one or more season lengths of 2 steps or more, got {v}")
        return sorted(set(v)) if v else v

    @field_validator("candidates")
    @classmethod
    def _candidate_families(cls, v: list[str]) -> list[str]:
        valid = [f for f in MODEL_FAMILIES["forecasting"] if f != "auto"]
        bad = [f for f in v if f not in valid]
        if bad or not v:
            raise ValueError(f"unknown candidate family {bad or v}; valid: {', '.join(valid)}")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _season_agrees(self) -> ForecastingConfig:
        if self.season and self.seasons and self.season not in self.seasons:
            raise ValueError(
                f"season {self.season} is not in seasons {self.seasons}; set one of the two"
            )
        return self

    @property
    def configured_seasons(self) -> list[int]:
        """`seasons`, else `[season]`, else [] (detect)."""
        return list(self.seasons or ([self.season] if self.season else []))


class AnomalyConfig(_Strict):
    """Autoencoder anomaly detection (task: anomaly)."""

    threshold_quantile: float = Field(0.99, gt=0.0, lt=1.0)


class ProfileConfig(_Strict):
    """Profiles for clustering: one vector per group and period from a long series table.

    Each period (a calendar day or an ISO week, Monday first, in the time column's own clock)
    of each `group_column` value becomes one row of `points` values (e.g. 48 half-hourly
    readings of `value`). `normalise`:

    - ``none``: the readings as they are;
    - ``shape``: each profile divided by its own mean (a curve averaging 1, so customers of
      different size but the same daily shape fall together; an all-zero profile stays zero);
    - ``level``: the profile's mean only (one number per period: how much, not when).

    A period missing at most `max_missing` points is kept (the gaps linearly interpolated) with
    a warning; one missing more is dropped and counted in the report.
    """

    time_column: str
    value: str
    period: Literal["day", "week"] = "day"
    group_column: str | None = None
    normalise: Literal["none", "shape", "level"] = "none"
    max_missing: int = Field(0, ge=0)


class ClusteringConfig(_Strict):
    """Clustering (task: clustering): k-means or a Gaussian mixture on rows or profiles.

    `k`: a number of clusters, a ``[min, max]`` range to choose from (silhouette for k-means,
    BIC for the mixture), or None for the range 2..10. The seed is `training.seed`.
    """

    k: int | tuple[int, int] | None = None
    profile: ProfileConfig | None = None
    stability_resamples: int = Field(10, ge=0)  # bootstrap refits scored by ARI; 0: skip

    @field_validator("k")
    @classmethod
    def _k_at_least_two(cls, v: int | tuple[int, int] | None) -> int | tuple[int, int] | None:
        if isinstance(v, int) and v < 2:
            raise ValueError(f"needs 2 or more clusters, got {v}")
        if isinstance(v, tuple) and not 2 <= v[0] <= v[1]:
            raise ValueError(f"a range [min, max] with 2 <= min <= max, got {list(v)}")
        return v

    @property
    def k_range(self) -> tuple[int, int]:
        """The k values to try, as an inclusive (min, max)."""
        if self.k is None:
            return (2, 10)
        if isinstance(self.k, int):
            return (self.k, self.k)
        return self.k


class EmbeddingConfig(_Strict):
    """Dimension reduction (task: embedding): PCA or the autoencoder's latent space.

    `n_components` fixed, else the fewest PCA components explaining `variance_target` of the
    variance (the autoencoder's width is `model.latent_dim` unless `n_components` is set).
    """

    n_components: int | None = Field(None, ge=1)
    variance_target: float = Field(0.95, gt=0.0, le=1.0)


# Tunable keys and their config sections live with the search space (TUNABLE: re-exported).


class TuningConfig(_Strict):
    """Hyperparameter search: one space for the local (Optuna) and the Vertex AI backends.

    `space` maps a tunable key to a list of choices or to ``{min, max, log}`` (ints when both
    bounds are ints).
    """

    enabled: bool = False
    max_trials: int = Field(20, ge=1)
    algorithm: Literal["bayesian", "random", "hyperband"] = "bayesian"
    space: dict[str, Any] = Field(default_factory=dict)
    folds: int = Field(0, ge=0)  # 0: the valid split; k >= 2: k-fold (expanding-window) CV
    backend: Literal["local", "vertex"] = "local"
    max_epochs: int | None = Field(None, ge=1)  # per trial; default training.epochs
    # local: at most this many epochs in all (trials x folds); the trial running when it runs
    # out is stopped and counts as pruned, and no trial starts after it
    max_total_epochs: int | None = Field(None, ge=1)
    parallel_trials: int = Field(1, ge=1)  # Vertex
    timeout_seconds: float | None = Field(None, gt=0)  # local
    seed: int = 42

    @field_validator("folds")
    @classmethod
    def _folds(cls, v: int) -> int:
        if v == 1:
            raise ValueError("use 0 (the valid split) or 2 or more folds")
        return v

    @field_validator("space")
    @classmethod
    def _space(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, dom in v.items():
            if section_of(key) is None:
                raise ValueError(f"space: unknown key {key!r}; tunable: {', '.join(TUNABLE)}")
            if isinstance(dom, list):
                if not dom:
                    raise ValueError(f"space.{key}: needs one or more choices")
            elif isinstance(dom, dict):
                extra = set(dom) - {"min", "max", "log"}
                if extra or "min" not in dom or "max" not in dom:
                    raise ValueError(f"space.{key}: a range is {{min, max, log}}, got {dom}")
                if not float(dom["min"]) < float(dom["max"]):
                    raise ValueError(f"space.{key}: min must be below max, got {dom}")
                if dom.get("log") and float(dom["min"]) <= 0:
                    raise ValueError(f"space.{key}: a log range needs min > 0, got {dom}")
            else:
                raise ValueError(f"space.{key}: give a list of choices or {{min, max, log}}")
        return v

    @model_validator(mode="after")
    def _budget(self) -> TuningConfig:
        one_trial = (self.max_epochs or 0) * max(1, self.folds)
        if self.max_total_epochs is not None and self.max_total_epochs < one_trial:
            raise ValueError(
                f"max_total_epochs: {self.max_total_epochs} is less than one trial's {one_trial} "
                f"epochs (max_epochs {self.max_epochs} x {max(1, self.folds)} fold(s))"
            )
        return self


class ValidationConfig(_Strict):
    """Data validation: against a schema given here, or the one stored with the champion."""

    compare_with_champion: bool = True
    schema_: dict[str, Any] | None = Field(None, alias="schema")


class GateConfig(_Strict):
    """Champion/challenger gate: the challenger must beat the champion on `metric`, paired on the
    same test rows: the improvement's interval's lower bound must beat `min_improvement`."""

    metric: str | None = None  # default: auc (classification), rmse (regression)
    min_improvement: float = Field(0.0, ge=0.0)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)  # of the improvement's interval
    bootstrap_samples: int = Field(1000, ge=100, le=100_000)  # paired bootstrap resamples
    slices: bool | list[str] = False  # true: every evaluation.slice_columns; or a list of them
    max_slice_regression: float = Field(0.1, ge=0.0)  # relative worsening allowed per slice


class DeployConfig(_Strict):
    """Gate and deployment settings (local server or a Vertex AI endpoint)."""

    gate: GateConfig = GateConfig()
    endpoint: str | None = None  # Vertex endpoint display name; default: "<name>-endpoint"
    canary_percent: int = Field(100, ge=1, le=100)
    keep_versions: int = Field(2, ge=1)
    machine_type: str = "n1-standard-2"
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(1, ge=1)
    target: Literal["local", "vertex"] = "local"  # vertex needs a vertex:// registry
    health_check: bool = True  # predict sample rows after deploying; roll back if it fails
    health_check_attempts: int = Field(3, ge=1)
    deploy_timeout_seconds: float | None = Field(None, gt=0)  # Vertex deployModel request


class ServingConfig(_Strict):
    """The prediction server (Vertex AI custom-container contract)."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    max_instances: int = Field(1000, ge=1)
    max_body_bytes: int = Field(1_500_000, ge=1024)


# Google Cloud labels (Vertex AI and BigQuery alike): keys and values of lowercase letters,
# digits, "_" and "-", keys starting with a letter, each at most 63 characters, at most 64 labels
# per resource; voltpipe adds up to 4 of its own (voltpipe-model, -promoted, -task, -label).
MAX_USER_LABELS = 60


def _label_char(ch: str) -> bool:
    return ch in "_-" or ch.isdigit() or (ch.isalpha() and not ch.isupper())


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Refuses labels Vertex AI and BigQuery would refuse, naming the bad one."""
    if len(labels) > MAX_USER_LABELS:
        raise ValueError(
            f"{len(labels)} labels: at most {MAX_USER_LABELS} (Google Cloud allows 64 on a "
            "resource and voltpipe adds up to 4 of its own)"
        )
    for key, value in labels.items():
        key, value = str(key), str(value)
        if not key or len(key) > 63 or not all(map(_label_char, key)) or not key[0].isalpha():
            raise ValueError(
                f"label key {key!r}: 1-63 lowercase letters, digits, '_' or '-', starting with "
                "a lowercase letter"
            )
        if len(value) > 63 or not all(map(_label_char, value)):
            raise ValueError(
                f"label {key!r}: value {value!r} must be at most 63 lowercase letters, digits, "
                "'_' or '-'"
            )
    return labels


class VertexConfig(_Strict):
    """Vertex AI settings for `--target vertex` and the Vertex registry/deployment."""

    project: str | None = None
    location: str = "europe-west1"
    pipeline_root: str | None = None  # gs://BUCKET/PATH
    service_account: str | None = None
    network: str | None = None
    encryption_key: str | None = None
    experiment: str | None = None
    api_endpoint: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    staging_bucket: str | None = None
    template_repository: str | None = None  # https://REGION-kfp.pkg.dev/PROJECT/REPO

    _labels_valid = field_validator("labels")(lambda cls, v: check_labels(v))


class KfpConfig(_Strict):
    """Kubeflow Pipelines cluster settings for `--target kfp`."""

    host: str | None = None
    namespace: str = "kubeflow"
    experiment: str = "voltpipe"


class DriftThresholds(_Strict):
    psi: float = Field(0.2, gt=0)
    ks_pvalue: float = Field(0.001, gt=0, lt=1)
    ks_statistic: float = Field(0.1, gt=0, le=1)
    js_distance: float = Field(0.1, gt=0, le=1)
    prediction_psi: float = Field(0.2, gt=0)


def _every_alert_event() -> list[Literal["drift", "failure"]]:
    return ["drift", "failure"]


class AlertsConfig(_Strict):
    webhook_url: str | None = None
    on: list[Literal["drift", "failure"]] = Field(default_factory=_every_alert_event)


class MultivariateDriftConfig(_Strict):
    """Multivariate drift: PCA reconstruction error and a domain classifier (all features)."""

    enabled: bool = True
    alpha: float = Field(0.01, gt=0.0, lt=0.5)  # significance of both tests' thresholds
    pca_variance: float = Field(0.65, gt=0.0, lt=1.0)  # variance the PCA components keep
    min_auc: float = Field(0.55, ge=0.5, lt=1.0)  # smallest domain-classifier AUC that drifts
    max_rows: int = Field(10_000, ge=100)  # rows per side (a seeded sample of larger ones)
    retrain: bool = True  # a multivariate drift triggers retraining


class PerformanceEstimationConfig(_Strict):
    """Label-free performance estimation of the champion on the window (CBPE / DLE)."""

    enabled: bool = True
    metric: Literal["rmse", "mae", "accuracy"] | None = None  # default: rmse / accuracy
    threshold: float | None = None  # absolute limit (an rmse above, an accuracy below it)
    tolerance: float = Field(0.1, ge=0.0)  # else: relative worsening vs the reference
    calibration_rows: int = Field(20_000, ge=100)  # reference rows the estimator is fitted on
    retrain: bool = True  # an estimate past the limit triggers retraining


class MonitoringConfig(_Strict):
    """Drift monitoring: the current window to compare with the champion's reference."""

    current_query: str | None = None
    current_query_file: Path | None = None
    current_query_parameters: dict[str, Any] = Field(default_factory=dict)
    thresholds: DriftThresholds = DriftThresholds()
    reference_sample_rows: int = Field(100_000, ge=100)
    retrain_on_drift: bool = True
    retrain_query_parameters: dict[str, Any] = Field(
        default_factory=dict
    )  # override query_parameters

    @field_validator("current_query_parameters", "retrain_query_parameters")
    @classmethod
    def _typed_parameters(cls, v: dict[str, Any]) -> dict[str, Any]:
        _check_parameters(v)  # raises ConfigError naming the parameter
        return v

    alerts: AlertsConfig = AlertsConfig()
    multivariate: MultivariateDriftConfig = MultivariateDriftConfig()
    performance_estimation: PerformanceEstimationConfig = PerformanceEstimationConfig()
    # Windows above this many rows get their PSI/KS histograms computed in the warehouse (SQL).
    pushdown_rows: int = Field(1_000_000, ge=1)


class EvaluationConfig(_Strict):
    """Test-split evaluation: slice metrics and the binary decision threshold."""

    slice_columns: list[str] = Field(default_factory=list)  # metrics per value (top 50 values)
    classification_threshold: float | None = Field(None, gt=0.0, lt=1.0)  # binary; default argmax


class PredictionVertexConfig(_Strict):
    """The machines of a Vertex AI BatchPredictionJob (``prediction.backend: vertex``)."""

    machine_type: str = "n1-standard-4"
    starting_replica_count: int = Field(1, ge=1)
    max_replica_count: int = Field(10, ge=1)


class PredictionConfig(_Strict):
    """Batch prediction (`voltpipe run prediction`): score a query's rows into a table."""

    query: str | None = None
    query_file: Path | None = None
    query_parameters: dict[str, Any] = Field(default_factory=dict)
    destination_table: str = "predictions.predictions"  # dataset.table (DuckDB: schema.table)
    model: str = "champion"  # a registry alias or a version number of the config's model
    write_mode: Literal["append", "replace"] = "append"
    batch_size: int = Field(262_144, ge=1)
    # local: the step scores in its own process; vertex: a BatchPredictionJob (BigQuery in and
    # out, the model from the Vertex Model Registry)
    backend: Literal["local", "vertex"] = "local"
    vertex: PredictionVertexConfig = PredictionVertexConfig()

    @field_validator("query_parameters")
    @classmethod
    def _typed_parameters(cls, v: dict[str, Any]) -> dict[str, Any]:
        _check_parameters(v)  # raises ConfigError naming the parameter
        return v

    @field_validator("destination_table")
    @classmethod
    def _table_name(cls, v: str) -> str:
        if not re.fullmatch(r"([\w-]+\.)?\w+\.\w+", v):
            raise ValueError(f"{v!r}: expected DATASET.TABLE or PROJECT.DATASET.TABLE")
        return v


_CPU = re.compile(r"([0-9]*[.])?[0-9]+m?")  # as KFP's set_cpu_limit takes it
_MEMORY = re.compile(r"[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?")  # as KFP's set_memory_limit
_MEMORY_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_MEMORY_UNITS |= {"E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_MEMORY_UNITS |= {"Pi": 2**50, "Ei": 2**60}


class StepResources(_Strict):
    """One pipeline step's machine on Vertex (unset: Vertex's default machine)."""

    cpu: str | None = None  # CPU limit: "4", "0.5" or "500m"
    memory: str | None = None  # memory limit: "16G", "32Gi", "512M"
    accelerator_type: str | None = None  # e.g. NVIDIA_TESLA_T4, NVIDIA_L4
    accelerator_count: int | None = Field(None, ge=1)

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, v: Any) -> Any:
        if v is None:
            return v
        text = str(v)
        if isinstance(v, bool) or not _CPU.fullmatch(text) or float(text.rstrip("m")) <= 0:
            raise ValueError(
                f"{v!r}: expected a positive number of CPUs (4, 0.5) or millicores (500m)"
            )
        return text

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> Any:
        if v is None:
            return v
        text = str(v)
        if isinstance(v, bool) or not _MEMORY.fullmatch(text) or memory_bytes(text) == 0:
            raise ValueError(f"{v!r}: expected a size such as 16G, 32Gi or 512M")
        return text

    @field_validator("accelerator_type")
    @classmethod
    def _accelerator(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Z][A-Z0-9_]*", v):
            raise ValueError(f"{v!r}: expected a Vertex accelerator type such as NVIDIA_TESLA_T4")
        return v

    @model_validator(mode="after")
    def _count_needs_type(self) -> StepResources:
        if self.accelerator_count is not None and self.accelerator_type is None:
            raise ValueError("accelerator_count needs accelerator_type (e.g. NVIDIA_TESLA_T4)")
        return self

    @property
    def memory_bytes(self) -> int | None:
        return memory_bytes(self.memory) if self.memory else None


def memory_bytes(size: str) -> int:
    """``"16G"`` -> 16e9, ``"2Gi"`` -> 2 * 2**30 (KFP's and Kubernetes' units)."""
    m = re.fullmatch(r"([0-9]+)([A-Za-z]*)", size)
    if not m or m.group(2) not in _MEMORY_UNITS:
        raise ValueError(f"{size!r}: expected a size such as 16G, 32Gi or 512M")
    return int(m.group(1)) * _MEMORY_UNITS[m.group(2)]


class ResourcesConfig(_Strict):
    """Per-step machines on Vertex, compiled into the pipeline spec (``resources.<step>``)."""

    extract: StepResources = StepResources()
    extract_window: StepResources = StepResources()
    validate_: StepResources = Field(StepResources(), alias="validate")
    tune: StepResources = StepResources()
    train: StepResources = StepResources()
    evaluate: StepResources = StepResources()
    register_: StepResources = Field(StepResources(), alias="register")
    deploy: StepResources = StepResources()
    keep_champion: StepResources = StepResources()
    batch_predict: StepResources = StepResources()
    drift: StepResources = StepResources()

    def for_step(self, step: str) -> StepResources:
        """The resources of `step` (a component name: ``keep-champion`` or ``keep_champion``)."""
        key = step.replace("-", "_")
        return getattr(self, f"{key}_" if key in ("validate", "register") else key)


class TrackingConfig(_Strict):
    """MLflow tracking; the default store is a sqlite file under the work dir."""

    enabled: bool = True
    mlflow_uri: str | None = None


class BigQueryConfig(_Strict):
    """BigQuery client settings (used when `warehouse` is ``bigquery://PROJECT``)."""

    project: str | None = None
    location: str | None = None
    api_endpoint: str | None = None
    read_api_endpoint: str | None = None  # BigQuery Storage Read API (gRPC host:port)
    maximum_bytes_billed: int | None = Field(None, gt=0)
    labels: dict[str, str] = Field(default_factory=dict)
    destination_table: str | None = None

    _labels_valid = field_validator("labels")(lambda cls, v: check_labels(v))


class VoltpipeConfig(_Strict):
    """A voltpipe config file (YAML). See the README's config reference."""

    name: str = "wind-power"
    warehouse: str | None = None
    query: str | None = None
    query_file: Path | None = None
    query_parameters: dict[str, Any] = Field(default_factory=dict)
    label: str = ""  # required, except for clustering and embedding (never a feature there)
    task: str
    features: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    workdir: Path = Path(".voltpipe")
    image: str = DEFAULT_IMAGE
    split: SplitConfig = SplitConfig()
    time_column: str | None = None  # forecasting: orders each series
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    forecasting: ForecastingConfig = ForecastingConfig()
    anomaly: AnomalyConfig = AnomalyConfig()
    clustering: ClusteringConfig = ClusteringConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    tuning: TuningConfig = TuningConfig()
    deploy: DeployConfig = DeployConfig()
    tracking: TrackingConfig = TrackingConfig()
    bigquery: BigQueryConfig = BigQueryConfig()
    validation: ValidationConfig = ValidationConfig()
    vertex: VertexConfig = VertexConfig()
    kfp: KfpConfig = KfpConfig()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    prediction: PredictionConfig = PredictionConfig()
    resources: ResourcesConfig = ResourcesConfig()

    @field_validator("name")
    @classmethod
    def _name_is_resource_safe(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,62}", v):
            raise ValueError(
                f"{v!r} must start with a lowercase letter and use only a-z, 0-9 and '-' (max 63)"
            )
        return v

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        if v not in TASKS:
            raise ValueError(f"unknown task {v!r}; valid: {', '.join(TASKS)}")
        return v

    @field_validator("warehouse")
    @classmethod
    def _known_warehouse(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^(duckdb:///|bigquery://)", v):
            raise ValueError(
                f"{v!r}: use duckdb:///relative/path.duckdb, duckdb:////absolute/path.duckdb "
                "or bigquery://PROJECT"
            )
        return v

    @field_validator("query_parameters")
    @classmethod
    def _typed_parameters(cls, v: dict[str, Any]) -> dict[str, Any]:
        _check_parameters(v)  # raises ConfigError naming the parameter
        return v

    @model_validator(mode="after")
    def _one_query(self) -> VoltpipeConfig:
        if (self.query is None) == (self.query_file is None):
            raise ValueError("give exactly one of `query` and `query_file`")
        if self.label in self.exclude or (self.features and self.label in self.features):
            raise ValueError(f"label {self.label!r} cannot also be a feature or excluded")
        return self

    @model_validator(mode="after")
    def _unsupervised_keys(self) -> VoltpipeConfig:
        if not self.label and self.task not in UNSUPERVISED_TASKS:
            raise ValueError(f"label: required key is missing (task {self.task!r} predicts it)")
        for section in UNSUPERVISED_TASKS:
            if section in self.model_fields_set and self.task != section:
                raise ValueError(
                    f"{section}: these keys configure task {section!r}, but task is "
                    f"{self.task!r}; remove the section or set task: {section}"
                )
        if self.tuning.enabled and self.task in UNSUPERVISED_TASKS:
            raise ValueError(
                f"tuning.enabled: task {self.task!r} has no hyperparameter search (clustering "
                "chooses k over clustering.k's range; embedding by embedding.variance_target)"
            )
        profile = self.clustering.profile
        if profile is not None:
            # A row split would cut every period into pieces: split whole groups (or times).
            group = profile.group_column
            by_group = self.split.method == "hash" and group and self.split.column == group
            by_time = self.split.method == "time" and self.split.column == profile.time_column
            if not (by_group or by_time):
                want = (
                    f"{{method: hash, column: {group}}}"
                    if group
                    else (f"{{method: time, column: {profile.time_column}}}")
                )
                raise ValueError(
                    f"split: clustering.profile needs whole periods in each split; set split: "
                    f"{want} (got method {self.split.method!r}, column {self.split.column!r})"
                )
        return self

    @model_validator(mode="after")
    def _vertex_prediction_fits(self) -> VoltpipeConfig:
        if self.prediction.backend != "vertex":
            return self
        if not (self.warehouse or "").startswith("bigquery://"):
            raise ValueError(
                "prediction.backend: vertex scores BigQuery rows into BigQuery: set warehouse "
                "to bigquery://PROJECT"
            )
        if self.deploy.target != "vertex":
            raise ValueError(
                "prediction.backend: vertex needs the model in the Vertex AI Model Registry: "
                "set deploy.target: vertex"
            )
        return self

    @model_validator(mode="after")
    def _family_fits_task(self) -> VoltpipeConfig:
        family = self.model.family
        if family is not None and family not in MODEL_FAMILIES[self.task]:
            raise ValueError(
                f"model.family: {family!r} does not serve task {self.task!r}; valid for "
                f"{self.task}: {', '.join(MODEL_FAMILIES[self.task])}"
            )
        return self

    @model_validator(mode="after")
    def _space_fits_family(self) -> VoltpipeConfig:
        if self.tuning.space:
            family = self.model.family or DEFAULT_FAMILY[self.task]
            problems = space_problems(
                self.task, family, self.tuning.space, MODEL_FAMILIES[self.task]
            )
            if problems:
                raise ValueError(problems[0])
        return self

    # ----- derived values ---------------------------------------------------------------

    @property
    def sql(self) -> str:
        """The query text (from `query` or the contents of `query_file`)."""
        if self.query is not None:
            return self.query
        assert self.query_file is not None
        try:
            return self.query_file.read_text()
        except OSError as exc:
            raise ConfigError(f"query_file: cannot read {self.query_file}: {exc.strerror}") from exc

    @property
    def typed_parameters(self) -> dict[str, dict[str, Any]]:
        return normalize_parameters(self.query_parameters)

    @property
    def monitoring_sql(self) -> str:
        """The monitoring window's query (`monitoring.current_query` or its file)."""
        m = self.monitoring
        if m.current_query is not None:
            return m.current_query
        if m.current_query_file is None:
            raise ConfigError(
                "monitoring.current_query (or current_query_file) is not set: "
                "the query that selects the current window to compare with the champion"
            )
        try:
            return m.current_query_file.read_text()
        except OSError as exc:
            raise ConfigError(
                f"monitoring.current_query_file: cannot read {m.current_query_file}: {exc.strerror}"
            ) from exc

    @property
    def prediction_sql(self) -> str:
        """The batch-prediction query (`prediction.query` or its file)."""
        p = self.prediction
        if p.query is not None:
            return p.query
        if p.query_file is None:
            raise ConfigError(
                "prediction.query (or prediction.query_file) is not set: "
                "the query that selects the rows to score"
            )
        try:
            return p.query_file.read_text()
        except OSError as exc:
            raise ConfigError(
                f"prediction.query_file: cannot read {p.query_file}: {exc.strerror}"
            ) from exc

    def for_retraining(self) -> VoltpipeConfig:
        """This config with `monitoring.retrain_query_parameters` laid over `query_parameters`."""
        return self.model_copy(
            update={
                "query_parameters": {
                    **self.query_parameters,
                    **self.monitoring.retrain_query_parameters,
                }
            }
        )

    @property
    def warehouse_uri(self) -> str:
        """The warehouse URI; the embedded DuckDB file under the work dir when none is set."""
        if self.warehouse is None:
            return f"duckdb:///{(self.workdir / EMBEDDED_WAREHOUSE_FILE).resolve()}"
        return self.warehouse

    @property
    def uses_embedded_warehouse(self) -> bool:
        return self.warehouse is None

    @property
    def registry_uri(self) -> str:
        """The local registry under the work dir; the Vertex AI Model Registry when
        ``deploy.target`` is ``vertex``."""
        if self.deploy.target == "vertex":
            from voltpipe.registry.uri import vertex_registry_uri

            if not self.vertex.project:
                raise ConfigError(
                    "vertex.project is not set: needed for the Vertex AI Model Registry"
                )
            return vertex_registry_uri(
                self.vertex.project,
                self.vertex.location,
                image=self.image,
                api_endpoint=self.vertex.api_endpoint,
                labels=self.vertex.labels,
                encryption_key=self.vertex.encryption_key,
            )
        return str((self.workdir / "registry").resolve())

    @property
    def tracking_uri(self) -> str:
        if not self.tracking.enabled:
            return ""
        return self.tracking.mlflow_uri or f"sqlite:///{(self.workdir / 'mlflow.db').resolve()}"

    @property
    def gate_metric(self) -> str:
        return self.deploy.gate.metric or PRIMARY_METRIC.get(self.task, "rmse")


# ----- loading ------------------------------------------------------------------------------


def _format_validation_error(exc: ValidationError, model: type[BaseModel]) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parent = _model_at(model, err["loc"][:-1])
            valid = (
                ", ".join(f.alias or k for k, f in parent.model_fields.items()) if parent else ""
            )
            lines.append(f"{loc}: unknown key" + (f" (valid keys here: {valid})" if valid else ""))
        elif err["type"] == "missing":
            lines.append(f"{loc}: required key is missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            # ConfigErrors raised inside validators already start with their own key.
            lines.append(msg if loc and msg.startswith(f"{loc}.") else f"{loc or 'config'}: {msg}")
    return "; ".join(lines)


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (
            isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        ):
            return None
        current = field.annotation
    return current


def _check_parameters(raw: dict[str, Any]) -> None:
    """Types the query parameters; refuses NaN and infinities, which pipeline parameters (JSON)
    cannot carry."""
    for name, param in normalize_parameters(raw).items():
        values = param["value"] if isinstance(param["value"], list | dict) else [param["value"]]
        if isinstance(values, dict):
            values = list(values.values())
        for value in values:
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(
                    f"query_parameters.{name}: {value!r} is not a finite number; pipeline "
                    "parameters are JSON, which has no NaN or infinity (write it in the query, "
                    "e.g. CAST('NaN' AS FLOAT64))"
                )


# Bounds for config YAML: a file is small and flat; an alias bomb ("billion laughs") or a
# pathologically deep document is refused while it is read, before it can exhaust memory.
MAX_YAML_DEPTH = 64
MAX_YAML_VALUES = 100_000


class _BoundedLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses nesting deeper than `MAX_YAML_DEPTH` and documents that
    expand (aliases counted at every use) to more than `MAX_YAML_VALUES` values."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise yaml.MarkedYAMLError(
                problem=f"nested deeper than {MAX_YAML_DEPTH} levels",
                problem_mark=self.peek_event().start_mark,
            )
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None and id(node) not in self._sizes:
            children: list[Any] = []
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            size = 1 + sum(self._sizes.get(id(c), 1) for c in children)
            if size > MAX_YAML_VALUES:
                raise yaml.MarkedYAMLError(
                    problem=f"expands to more than {MAX_YAML_VALUES:,} values (aliases counted "
                    "at every use); a config is far smaller",
                    problem_mark=node.start_mark,
                )
            self._sizes[id(node)] = size
        return node


def load_yaml(text: str) -> Any:
    """Parses config YAML with bounded depth and size (see `_BoundedLoader`).

    Raises:
        yaml.YAMLError: invalid, too deep, or too large once aliases are expanded.
    """
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """`` at line L, column C: problem`` (one line) for a YAML error."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{where}: {problem}"


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parses ``KEY=VALUE`` (dotted key, YAML value) from ``--set``."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. training.epochs=5")
    try:
        parsed = load_yaml(value) if value.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value {value!r} is not valid YAML") from exc
    return key.strip().split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Returns a copy of `raw` with each ``KEY=VALUE`` override applied."""
    data = dict(raw)
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[path[-1]] = value
    return data


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    out = dict(data)
    if out.get("query_file"):
        out["query_file"] = str((base / str(out["query_file"])).resolve())
    out["workdir"] = str((base / str(out.get("workdir", ".voltpipe"))).resolve())
    wh = out.get("warehouse")
    if isinstance(wh, str) and wh.startswith("duckdb:///") and not wh.startswith("duckdb:////"):
        out["warehouse"] = f"duckdb:///{(base / wh[len('duckdb:///') :]).resolve()}"
    return out


# `terraform output -json` names (terraform/envs/*/outputs.tf) -> config keys they fill.
TERRAFORM_OUTPUTS = {
    "vertex_project": "vertex.project",
    "vertex_location": "vertex.location",
    "pipeline_root": "vertex.pipeline_root",
    "service_account": "vertex.service_account",
    "template_repository": "vertex.template_repository",
    "bigquery_project": "bigquery.project",
    "bigquery_location": "bigquery.location",
}


def terraform_defaults(path: str | Path) -> dict[str, Any]:
    """Reads ``terraform output -json`` into a nested dict of config defaults.

    `image_repository` becomes ``image: REPO/voltpipe:VERSION`` and `bigquery_project` also
    ``warehouse: bigquery://PROJECT``.

    Raises:
        ConfigError: the file cannot be read or is not terraform's JSON output.
    """
    import json

    from voltpipe import __version__

    try:
        outputs = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"--terraform-output {path}: cannot read terraform's JSON output ({exc})"
        ) from exc
    if not isinstance(outputs, dict):
        raise ConfigError(
            f"--terraform-output {path}: expected the object `terraform output -json` prints"
        )
    values = {
        k: (v.get("value") if isinstance(v, dict) and "value" in v else v)
        for k, v in outputs.items()
    }
    data: dict[str, Any] = {}
    for name, key in TERRAFORM_OUTPUTS.items():
        if values.get(name) is not None:
            section, field = key.split(".")
            data.setdefault(section, {})[field] = values[name]
    if values.get("image_repository"):
        data["image"] = f"{values['image_repository']}/voltpipe:{__version__}"
    if values.get("bigquery_project"):
        data["warehouse"] = f"bigquery://{values['bigquery_project']}"
    return data


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    cwd: Path | None = None,
    terraform_output: str | Path | None = None,
) -> VoltpipeConfig:
    """Loads, overrides and validates a config; without `path`, the built-in demo config.

    Relative paths resolve against the config file's folder (the built-in config: the current
    directory, so its work dir is ``./.voltpipe``). Values from `terraform_output` fill keys the
    file leaves out; ``--set`` overrides win over both.

    Raises:
        ConfigError: the file cannot be read or parsed, or a key or value is invalid.
    """
    if path is None:
        text = importlib.resources.files("voltpipe.demo").joinpath("demo.yaml").read_text()
        base = (cwd or Path.cwd()).resolve()
        source = "built-in demo config"
        query_base = Path(str(importlib.resources.files("voltpipe.pipelines")))
    else:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise ConfigError(f"config file {p}: {exc.strerror}") from exc
        base = p.resolve().parent
        source = str(p)
        query_base = base
    try:
        raw = load_yaml(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML{_yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    if terraform_output is not None:
        raw = _merge(terraform_defaults(terraform_output), raw)
    raw = apply_overrides(raw, overrides or [])
    data = _resolve_paths(raw, base)
    if raw.get("query_file"):
        data["query_file"] = str((query_base / str(raw["query_file"])).resolve())
    monitoring = raw.get("monitoring")
    if isinstance(monitoring, dict) and monitoring.get("current_query_file"):
        data["monitoring"] = {
            **monitoring,
            "current_query_file": str(
                (query_base / str(monitoring["current_query_file"])).resolve()
            ),
        }
    prediction = raw.get("prediction")
    if isinstance(prediction, dict) and prediction.get("query_file"):
        data["prediction"] = {
            **prediction,
            "query_file": str((query_base / str(prediction["query_file"])).resolve()),
        }
    try:
        return VoltpipeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_format_validation_error(exc, VoltpipeConfig)}") from None
