"""One class per task: turns the train/valid tables into datasets, builds the family, finishes
the saved model and writes the task's part of ``voltpipe_model.json``.

``train.fit_tables`` drives them; TensorFlow is imported inside the methods that need it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from voltpipe.config import (
    DEFAULT_FAMILY,
    MODEL_FAMILIES,
    AnomalyConfig,
    ClusteringConfig,
    EmbeddingConfig,
    ForecastingConfig,
    ModelConfig,
    TrainingConfig,
)
from voltpipe.errors import DataError
from voltpipe.modelling import forecasting as fc
from voltpipe.modelling.features import (
    FeaturePlan,
    compact_inputs,
    model_inputs,
    plan_features,
    scale_variance,
)
from voltpipe.modelling.inputs import (
    Batch,
    Shard,
    as_split,
    compact_dataset,
    load_rows,
    machine_memory,
    memory_batches,
    resolve_input_mode,
    stream_batches,
)

VALID_BATCH = 2048
# Forecasting families fitted and scored through ``forecast_features`` (no Keras).
FEATURE_PATH_FAMILIES = ("auto", "gbdt", "statistical")

# What `LoadedModel.predict_raw` returns, stored in voltpipe_model.json as "output".
OUTPUTS = {
    "regression": "float32 (n_rows,): the label, in its units",
    "classification": "float32 (n_rows, n_classes): class probabilities, in `classes` order",
    "forecasting": (
        "float32 (n_windows, horizon): row i forecasts the label over the `horizon` steps after "
        "window i; windows are `window` consecutive rows of one series, ordered by group then "
        "time, one per start row where window + horizon rows of that series exist"
    ),
    "anomaly": (
        "float32 (n_rows,): reconstruction error (mean squared, on the normalised/one-hot "
        "scale); a row is anomalous when its error > anomaly.threshold"
    ),
}


@dataclasses.dataclass
class TaskParams:
    """The task-specific settings handed to training (``task_params`` of the train component)."""

    time_column: str | None = None
    forecasting: ForecastingConfig = dataclasses.field(default_factory=ForecastingConfig)
    anomaly: AnomalyConfig = dataclasses.field(default_factory=AnomalyConfig)
    clustering: ClusteringConfig = dataclasses.field(default_factory=ClusteringConfig)
    embedding: EmbeddingConfig = dataclasses.field(default_factory=EmbeddingConfig)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TaskParams:
        d = dict(d or {})
        keys = {"time_column", "forecasting", "anomaly", "clustering", "embedding"}
        unknown = set(d) - keys
        if unknown:
            raise DataError(
                f"task_params: unknown key(s) {sorted(unknown)}; valid: {', '.join(sorted(keys))}"
            )
        return cls(
            time_column=d.get("time_column") or None,
            forecasting=ForecastingConfig(**(d.get("forecasting") or {})),
            anomaly=AnomalyConfig(**(d.get("anomaly") or {})),
            clustering=ClusteringConfig(**(d.get("clustering") or {})),
            embedding=EmbeddingConfig(**(d.get("embedding") or {})),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "time_column": self.time_column,
            "forecasting": self.forecasting.model_dump(),
            "anomaly": self.anomaly.model_dump(),
            "clustering": self.clustering.model_dump(mode="json"),
            "embedding": self.embedding.model_dump(),
        }


def resolve_family(task: str, mp: ModelConfig) -> str:
    """The model family for `task` (``model.family`` or the task's default).

    Raises:
        DataError: the task is unknown or the family does not fit it.
    """
    if task not in MODEL_FAMILIES:
        raise DataError(f"task {task!r} is unknown; valid: {', '.join(MODEL_FAMILIES)}")
    family = mp.family or DEFAULT_FAMILY[task]
    if family not in MODEL_FAMILIES[task]:
        raise DataError(
            f"model.family {family!r} does not fit task {task!r}; valid: {', '.join(MODEL_FAMILIES[task])}"
        )
    return family


class Problem:
    """The interface ``train.fit_tables`` drives."""

    task: str
    family: str
    loss: str
    metrics: list[str]
    has_valid: bool
    #: Examples per split (``train``, ``valid``...; ``train_windows``, ``train_normal``).
    rows: dict[str, int]

    def datasets(self, tp: TrainingConfig) -> tuple[Any, Any]:
        raise NotImplementedError

    def dataset(
        self,
        part: str,
        tp: TrainingConfig,
        *,
        shard: Shard = Shard(),
        batch: int | None = None,
        drop_remainder: bool = False,
    ) -> Any:
        """The input of split `part` ("train" or "valid") for one input pipeline of a
        distribution strategy: only `shard`'s share of the train rows, `batch` rows a batch."""
        raise NotImplementedError

    def build(self, mp: ModelConfig) -> Any:
        raise NotImplementedError

    def finish(self, core: Any) -> Any:
        """The model to save (e.g. with the output rescaled to the label's units)."""
        return core

    def meta(self) -> dict[str, Any]:
        raise NotImplementedError


# ----- classification and regression ----------------------------------------------------------


def encode_labels(
    table: pa.Table, label: str, task: str, classes: list[str] | None = None
) -> tuple[np.ndarray, list[str] | None]:
    """Returns label targets: float32 for regression, class indices for classification.

    Raises:
        DataError: the label is missing, null, non-finite, non-numeric for regression, or holds
            a class not seen in training.
    """
    if label not in table.column_names:
        raise DataError(
            f"label column {label!r} is missing (columns: {', '.join(table.column_names)})"
        )
    col = table.column(label)
    if col.null_count:
        raise DataError(f"label column {label!r} has {col.null_count} null value(s)")
    if task == "classification":
        as_str = pc.cast(col, pa.string()).to_numpy(zero_copy_only=False).astype(str)
        if classes is None:
            classes = sorted(set(as_str.tolist()))
            if len(classes) < 2:
                raise DataError(
                    f"label column {label!r} has a single class ({classes[0]!r}); classification needs two or more"
                )
        lookup = np.asarray(classes)
        idx = np.searchsorted(lookup, as_str) if sorted(classes) == classes else None
        if idx is None:
            index = {c: i for i, c in enumerate(classes)}
            idx = np.asarray([index.get(v, -1) for v in as_str])
        idx = np.clip(idx, 0, len(classes) - 1)
        unseen = lookup[idx] != as_str
        if unseen.any():
            raise DataError(
                f"label column {label!r} holds class {as_str[unseen][0]!r} not seen in training"
            )
        return idx.astype("int32"), classes
    if not (
        pa.types.is_integer(col.type)
        or pa.types.is_floating(col.type)
        or pa.types.is_decimal(col.type)
    ):
        raise DataError(
            f"label column {label!r} is {col.type}; task {task!r} needs a numeric label"
        )
    y = col.to_numpy(zero_copy_only=False).astype("float32")
    if not np.all(np.isfinite(y)):
        raise DataError(f"label column {label!r} holds NaN or infinite values")
    return y, None


def balanced_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class weights ``n / (k * count)``, as scikit-learn's 'balanced'."""
    counts = np.bincount(y, minlength=n_classes).astype("float64")
    return np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)


class TabularProblem(Problem):
    """Classification and regression with the MLP on a dict of raw columns.

    `train` and `valid` are Arrow tables or ``inputs.ParquetSplit``s (read a column or a row
    group at a time). The Keras fit reads compact rows (``dataset``), in memory or streamed
    (``training.input``); the table families read ``x_train``/``y_train``, made on first use.
    """

    def __init__(
        self,
        train: Any,
        valid: Any,
        *,
        label: str,
        task: str,
        family: str,
        features: list[str] | None,
        exclude: list[str] | None,
        tp: TrainingConfig,
    ) -> None:
        self.task, self.family, self.label = task, family, label
        self.plan = plan_features(train, label=label, features=features, exclude=exclude)
        y_train, self.classes = encode_labels(train, label, task)
        self.splits = {"train": as_split(train), "valid": as_split(valid)}
        self.has_valid = valid.num_rows > 0
        if self.has_valid:
            encode_labels(valid, label, task, self.classes)  # an unseen class fails here
        self.label_mean, self.label_std = 0.0, 1.0
        self.class_weights: list[float] | None = None
        if task == "regression":
            self.label_mean = float(y_train.mean())
            self.label_std = float(y_train.std()) or 1.0
            self.loss, self.metrics = "mse", ["mae"]
        else:
            self.loss, self.metrics = "sparse_categorical_crossentropy", ["accuracy"]
            if tp.class_weight == "balanced":
                cw = balanced_weights(y_train, len(self.classes or []))
                self.class_weights = [float(w) for w in cw]
        self.rows = {"train": train.num_rows, "valid": valid.num_rows}
        row_bytes = 4 * (len(self.plan.names) + 1 + (self.class_weights is not None))
        self.input_mode = resolve_input_mode(tp.input, train.num_rows, row_bytes, machine_memory())
        self._loaded: dict[tuple[str, Shard], Batch] = {}

    # The table families' (n, 1) raw columns (``features.model_inputs``), made on first use.
    @functools.cached_property
    def x_train(self) -> dict[str, np.ndarray]:
        return model_inputs(self.splits["train"], self.plan)

    @functools.cached_property
    def y_train(self) -> np.ndarray:
        return encode_labels(self.splits["train"], self.label, self.task, self.classes)[0]

    @functools.cached_property
    def x_valid(self) -> dict[str, np.ndarray]:
        return model_inputs(self.splits["valid"], self.plan)

    @functools.cached_property
    def y_valid(self) -> np.ndarray:
        return encode_labels(self.splits["valid"], self.label, self.task, self.classes)[0]

    @property
    def weights(self) -> np.ndarray | None:
        if self.class_weights is None:
            return None
        return np.asarray(self.class_weights)[self.y_train]

    def _target(self, y: np.ndarray) -> np.ndarray:
        if self.task == "regression":
            return ((y - self.label_mean) / self.label_std).astype("float32")
        return y

    def _rows_in(self, part: str, groups: list[int]) -> int:
        return self.splits[part].group_rows(groups)

    def _convert(self, part: str) -> Any:
        weights = np.asarray(self.class_weights, "float32") if self.class_weights else None

        def convert(tbl: pa.Table) -> Batch:
            x = compact_inputs(tbl, self.plan)
            y, _ = encode_labels(tbl, self.label, self.task, self.classes)
            if part == "train" and weights is not None:
                return x.numeric, x.codes, self._target(y), weights[y]
            return x.numeric, x.codes, self._target(y)

        return convert

    def dataset(
        self,
        part: str,
        tp: TrainingConfig,
        *,
        shard: Shard = Shard(),
        batch: int | None = None,
        drop_remainder: bool = False,
        shuffle: bool | None = None,
    ) -> Any:
        """The tf.data input of split `part` (train: shuffled), only `shard`'s row groups.

        Memory mode reads them once into compact arrays; stream mode reads them every pass
        (``inputs.stream_batches``)."""
        dtype = "int32" if self.task == "classification" else "float32"
        weighted = part == "train" and self.class_weights is not None
        return tabular_dataset(
            self, part, tp, shard=shard, batch=batch, target=(dtype, ()), weighted=weighted,
            drop_remainder=drop_remainder, shuffle=shuffle,
        )  # fmt: skip

    def datasets(self, tp: TrainingConfig) -> tuple[Any, Any]:
        train = self.dataset("train", tp)
        valid = self.dataset("valid", tp) if self.has_valid else None
        return train, valid

    def build(self, mp: ModelConfig) -> Any:
        from voltpipe.modelling.mlp import build_mlp

        self._mp = mp
        return build_mlp(
            self.plan,
            task=self.task,
            n_classes=len(self.classes or []),
            hidden_units=mp.hidden_units,
            dropout=mp.dropout,
            coded=True,  # trained on lookup indices; the saved model takes strings (finish)
        )

    def finish(self, core: Any) -> Any:
        from voltpipe.modelling.mlp import build_mlp, copy_weights, with_output_scale

        serving = build_mlp(
            self.plan,
            task=self.task,
            n_classes=len(self.classes or []),
            hidden_units=self._mp.hidden_units,
            dropout=self._mp.dropout,
        )
        copy_weights(core, serving)
        if self.task == "classification":
            return serving
        return with_output_scale(serving, self.label_mean, self.label_std)

    def meta(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "features": self.plan.to_dict(),
            "label_stats": (
                {"mean": self.label_mean, "std": self.label_std}
                if self.task == "regression"
                else None
            ),
            "class_weights": self.class_weights,
        }


# ----- forecasting ------------------------------------------------------------------------------


class ForecastProblem(Problem):
    """Sliding windows over one or many series (``forecasting.group_column``) -> horizon."""

    def __init__(
        self,
        train: pa.Table,
        valid: pa.Table,
        *,
        label: str,
        family: str,
        params: TaskParams,
    ) -> None:
        self.task, self.family, self.label = "forecasting", family, label
        if not params.time_column:
            raise DataError(
                "task 'forecasting' needs `time_column` (the column that orders each series)"
            )
        f = self.cfg = params.forecasting
        self.time_column = params.time_column
        self.calendar = f.calendar and fc.has_calendar(train, params.time_column)
        kw: dict[str, Any] = dict(
            label=label,
            time_column=params.time_column,
            group_column=f.group_column,
            covariates=list(f.covariates),
            calendar=self.calendar,
        )
        if label in f.covariates:
            raise DataError(f"forecasting.covariates: the label {label!r} is always an input")
        self.train = fc.series_table(train, **kw)
        self.starts = fc.checked_starts(
            self.train,
            window=f.window,
            horizon=f.horizon,
            split="train",
            group_column=f.group_column,
            stride=f.stride,
        )
        if valid.num_rows:
            self.valid = fc.series_table(valid, **kw)
        values = self.train.values.astype("float64")
        self.channel_mean = values.mean(axis=0)
        self.channel_var = scale_variance(values, axis=0)
        self.label_mean = float(self.train.target.mean())
        self.label_std = float(self.train.target.std()) or 1.0
        self.channels = [label, *f.covariates, *(fc.CALENDAR_CHANNELS if self.calendar else [])]
        self.seasons = f.configured_seasons
        self.season_source = "configured" if self.seasons else "none"
        if not self.seasons:
            from voltpipe.modelling.forecast_features import detect_seasons

            longest = np.bincount(self.train.series_id).argmax()
            y = self.train.target[self.train.series_id == longest]
            self.seasons = detect_seasons(y, max_lag=min(len(y) // 3, 2000))
            self.season_source = "detected" if self.seasons else "none"
        self._prepare_features(valid)
        self.has_valid = len(self.valid_origins) > 0
        if valid.num_rows and not self.has_valid:
            print(
                f"voltpipe: the valid split has no series of horizon = {f.horizon} rows; early "
                "stopping watches the training loss"
            )
        self.loss, self.metrics = "mse", ["mae"]
        self.rows = {
            "train": train.num_rows,
            "valid": valid.num_rows,
            "train_windows": len(self.train_origins),
            "valid_windows": len(self.valid_origins),
        }

    def _prepare_features(self, valid: pa.Table) -> None:
        """The feature path's inputs (``forecast_features``): the train rows followed by the
        valid rows of each series, the origins whose targets are train or valid rows, and the
        naive base with the lowest MAE on the train origins."""
        from voltpipe.modelling import forecast_features as ff

        f = self.cfg
        diffs = ff.SEASONAL_DIFFS
        history = 0  # without a valid split, test forecasts take their past from the test rows
        if valid.num_rows and self.seasons:
            # Keep the context within the shortest valid series where it can be: evaluation
            # takes a test forecast's history from the valid split's tail.
            shortest = int(np.bincount(self.valid.series_id).min())
            diffs = max(1, min(diffs, shortest - max(self.seasons)))
            longest_train = int(np.bincount(self.train.series_id).max())
            history = min(ff.HISTORY_CYCLES * max(self.seasons), shortest, longest_train // 2)
        spec = ff.FeatureSpec(
            f.window,
            f.horizon,
            tuple(self.seasons),
            calendar=self.calendar,
            n_covariates=len(f.covariates),
            diffs=diffs,
            history=history,
        )
        self.series, is_valid = ff.splice(self.train, self.valid if valid.num_rows else None)
        train_o, valid_o = ff.split_origins(
            self.series, is_valid, context=spec.context, horizon=f.horizon
        )
        if len(train_o) == 0:
            raise DataError(
                f"no series of the train split has {spec.context + f.horizon} rows: a forecast "
                f"needs {spec.context} rows of history (forecasting.window, and one cycle plus "
                f"{spec.diffs} steps of every season {list(spec.seasons)}) and "
                f"forecasting.horizon = {f.horizon} targets; lower forecasting.window, set "
                "forecasting.seasons or extract more rows"
            )
        if f.stride > 1:
            first = np.searchsorted(self.series.series_id, self.series.series_id[train_o])
            train_o = train_o[(train_o - first) % f.stride == 0]
        base = ff.choose_base(self.series.target, train_o, f.horizon, spec.seasons)
        self.spec = dataclasses.replace(spec, base=base)
        self.train_origins, self.valid_origins = train_o, valid_o
        # A Keras forecaster predicts the correction to the base in units of its spread.
        truth = self.series.target[train_o[:, None] + np.arange(f.horizon)]
        resid = truth - self.series.target[ff.base_rows(train_o, f.horizon, base)]
        self.residual_std = float(resid.std()) or 1.0

    def _keras_inputs(self, origins: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        from voltpipe.modelling.forecast_features import design, keras_inputs

        d = design(self.series, origins, self.spec)
        truth = self.series.target[origins[:, None] + np.arange(self.spec.horizon)]
        return keras_inputs(d), ((truth - d.base) / self.residual_std).astype("float32")

    @property
    def season(self) -> int | None:
        """The season of the seasonal-naive baseline: the base's, else the shortest."""
        if self.spec.base.startswith("season:"):
            return int(self.spec.base.split(":")[1])
        return self.seasons[0] if self.seasons else None

    def _std(self, y: np.ndarray) -> np.ndarray:
        return ((y - self.label_mean) / self.label_std).astype("float32")

    def datasets(self, tp: TrainingConfig) -> tuple[Any, Any]:
        import tensorflow as tf

        x, y = self._keras_inputs(self.train_origins)
        train = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(min(len(y), tp.shuffle_buffer), seed=tp.seed, reshuffle_each_iteration=True)
            .batch(tp.batch_size)
            .prefetch(2)
        )
        valid = None
        if len(self.valid_origins):
            xv, yv = self._keras_inputs(self.valid_origins)
            valid = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(
                max(_batch_size(tp), VALID_BATCH)
            )
        return train, valid

    def dataset(
        self,
        part: str,
        tp: TrainingConfig,
        *,
        shard: Shard = Shard(),
        batch: int | None = None,
        drop_remainder: bool = False,
    ) -> Any:
        """Windows stay in memory (built from the origins); the train origins are sharded
        every `shard.count`-th."""
        import tensorflow as tf

        origins = self.train_origins if part == "train" else self.valid_origins
        if part == "train":
            origins = origins[shard.index :: shard.count]
        x, y = self._keras_inputs(origins)
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if part == "train":
            ds = ds.shuffle(
                min(len(y), tp.shuffle_buffer), seed=tp.seed, reshuffle_each_iteration=True
            )
        configured = int(tp.batch_size or VALID_BATCH)
        size = batch or (configured if part == "train" else max(configured, VALID_BATCH))
        return ds.batch(size, drop_remainder=drop_remainder).prefetch(2)

    def build(self, mp: ModelConfig) -> Any:
        from voltpipe.modelling.families import build_forecaster

        if self.family in FEATURE_PATH_FAMILIES:  # e.g. the tuner, which trains Keras models
            raise DataError(
                f"model.family {self.family!r} is not a Keras forecaster, and hyperparameter "
                "tuning searches Keras forecasters only: set model.family to one of cnn, lstm, "
                "gru, transformer, mlp, or tuning.enabled: false"
            )

        return build_forecaster(
            mp,
            family=self.family,
            window=self.cfg.window,
            horizon=self.cfg.horizon,
            channel_mean=[float(v) for v in self.channel_mean],
            channel_variance=[float(v) for v in self.channel_var],
            seasons=len(self.spec.seasons),
            label_mean=self.label_mean,
            label_variance=self.label_std**2,
        )

    def finish(self, core: Any) -> Any:
        from voltpipe.modelling.families import with_base_correction

        return with_base_correction(core, self.residual_std)

    def meta(self) -> dict[str, Any]:
        f = self.cfg
        covs = {
            name: {
                "mean": float(self.channel_mean[i + 1]),
                "variance": float(self.channel_var[i + 1]),
            }
            for i, name in enumerate(f.covariates)
        }
        return {
            "classes": None,
            "features": FeaturePlan(numeric=covs, categorical={}, skipped={}).to_dict(),
            "label_stats": {"mean": self.label_mean, "std": self.label_std},
            "forecasting": {
                "time_column": self.time_column,
                "window": f.window,
                "horizon": f.horizon,
                "group_column": f.group_column,
                "covariates": list(f.covariates),
                "calendar": self.calendar,
                "channels": self.channels,
                "season": self.season,
                "season_source": self.season_source,
                "seasons": list(self.seasons),
                "context": self.spec.context,
                "features": self.spec.to_dict(),
                "members": [self.family],
            },
        }


# ----- anomaly detection ------------------------------------------------------------------------


def anomaly_labels(table: pa.Table, label: str) -> np.ndarray | None:
    """The optional 0/1 anomaly label as bools, or None when the column is absent.

    Raises:
        DataError: the label holds nulls or values other than 0/1 (true/false).
    """
    if label not in table.column_names:
        return None
    col = table.column(label)
    if col.null_count:
        raise DataError(f"label column {label!r} has {col.null_count} null value(s)")
    if pa.types.is_boolean(col.type):
        return col.to_numpy(zero_copy_only=False).astype(bool)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise DataError(
            f"label column {label!r} is {col.type}; task 'anomaly' needs 0/1 (or true/false)"
        )
    v = col.to_numpy(zero_copy_only=False).astype("float64")
    if not np.all(np.isin(v, (0.0, 1.0))):
        bad = v[~np.isin(v, (0.0, 1.0))][0]
        raise DataError(f"label column {label!r} holds {bad!r}; task 'anomaly' needs 0/1 labels")
    return v == 1.0


class AnomalyProblem(Problem):
    """An autoencoder on the feature columns; rows labelled 1 (if any) are left out of training.

    Reads compact rows like ``TabularProblem`` (`train`/`valid` tables or parquet splits)."""

    def __init__(
        self,
        train: Any,
        valid: Any,
        *,
        label: str,
        family: str,
        features: list[str] | None,
        exclude: list[str] | None,
        params: TaskParams,
        tp: TrainingConfig | None = None,
    ) -> None:
        self.task, self.family, self.label = "anomaly", family, label
        self.quantile = params.anomaly.threshold_quantile
        excluded = [*(exclude or []), *([params.time_column] if params.time_column else [])]
        self.plan = plan_features(train, label=label, features=features, exclude=excluded)
        self.splits = {"train": as_split(train), "valid": as_split(valid)}
        # Labelled anomalies are dropped when the split has some normal rows (else all kept).
        self._drop_labelled: dict[str, bool] = {}
        self._kept: dict[str, np.ndarray] = {}  # rows kept in each row group
        normal = {}
        for part, data in (("train", train), ("valid", valid)):
            labels = anomaly_labels(data, label)
            normal_rows = None if labels is None else ~labels
            drop = normal_rows is not None and bool(normal_rows.any())
            self._drop_labelled[part] = drop
            sizes = np.asarray([n for *_, n in self.splits[part].groups], "int64")
            normal[part], self._kept[part] = data.num_rows, sizes
            if drop and normal_rows is not None and len(sizes):
                normal[part] = int(normal_rows.sum())
                starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
                self._kept[part] = np.add.reduceat(normal_rows.astype("int64"), starts)
        self.has_valid = valid.num_rows > 0
        self.loss, self.metrics = "mae", []  # the model outputs the (non-negative) error
        self.threshold: float | None = None
        self.rows = {
            "train": train.num_rows,
            "valid": valid.num_rows,
            "train_normal": normal["train"],
        }
        row_bytes = 4 * len(self.plan.names)
        mode = tp.input if tp is not None else "auto"
        self.input_mode = resolve_input_mode(mode, train.num_rows, row_bytes, machine_memory())
        self._loaded: dict[tuple[str, Shard], Batch] = {}

    def _rows_in(self, part: str, groups: list[int]) -> int:
        return int(self._kept[part][groups].sum())

    def _convert(self, part: str) -> Any:
        drop = self._drop_labelled[part]

        def convert(tbl: pa.Table) -> Batch:
            x = compact_inputs(tbl, self.plan)
            if drop:
                labels = anomaly_labels(tbl, self.label)
                if labels is not None:
                    x = x.take(~labels)
            return x.numeric, x.codes

        return convert

    def dataset(
        self,
        part: str,
        tp: TrainingConfig,
        *,
        shard: Shard = Shard(),
        batch: int | None = None,
        drop_remainder: bool = False,
        inputs_only: bool = False,
        shuffle: bool | None = None,
    ) -> Any:
        """The tf.data input of split `part` (see ``TabularProblem.dataset``); the target is
        a zero error (the model outputs the reconstruction error)."""
        return tabular_dataset(
            self, part, tp, shard=shard, batch=batch, target=None,
            zero_target=not inputs_only, shuffle=shuffle, drop_remainder=drop_remainder,
        )  # fmt: skip

    def datasets(self, tp: TrainingConfig) -> tuple[Any, Any]:
        train = self.dataset("train", tp)
        valid = self.dataset("valid", tp) if self.has_valid else None
        return train, valid

    def finish(self, core: Any) -> Any:
        part = "valid" if self.has_valid else "train"
        tp = TrainingConfig.model_validate({"batch_size": VALID_BATCH, "input": self.input_mode})
        ds = self.dataset(part, tp, batch=VALID_BATCH, inputs_only=True, shuffle=False)
        errors = core.predict(ds, verbose=0)
        self.threshold = float(np.quantile(errors.reshape(-1), self.quantile))
        self.threshold_source = part
        from voltpipe.modelling.families import build_autoencoder
        from voltpipe.modelling.mlp import copy_weights

        return copy_weights(core, build_autoencoder(self.plan, self._mp))

    def build(self, mp: ModelConfig) -> Any:
        from voltpipe.modelling.families import build_autoencoder

        self._mp = mp
        return build_autoencoder(self.plan, mp, coded=True)  # strings in the saved one (finish)

    def meta(self) -> dict[str, Any]:
        return {
            "classes": None,
            "features": self.plan.to_dict(),
            "label_stats": None,
            "anomaly": {
                "threshold": self.threshold,
                "threshold_quantile": self.quantile,
                "threshold_source": getattr(self, "threshold_source", None),
            },
        }


def _batch_size(tp: TrainingConfig) -> int:
    """The batch size, which ``train.fit`` resolves (``resolve_budget``) before asking for
    datasets."""
    if tp.batch_size is None:
        raise ValueError("training.batch_size must be resolved (train.resolve_budget) first")
    return tp.batch_size


def make_problem(
    train: Any,
    valid: Any,
    *,
    label: str,
    task: str,
    features: list[str] | None,
    exclude: list[str] | None,
    mp: ModelConfig,
    tp: TrainingConfig,
    params: TaskParams,
) -> Problem:
    """The problem for `task` (with its family resolved and checked)."""
    family = resolve_family(task, mp)
    if train.num_rows == 0:
        raise DataError("the train split is empty")
    if task == "forecasting":
        return ForecastProblem(train, valid, label=label, family=family, params=params)
    if task == "anomaly":
        return AnomalyProblem(
            train,
            valid,
            label=label,
            family=family,
            features=features,
            exclude=exclude,
            params=params,
            tp=tp,
        )
    return TabularProblem(
        train,
        valid,
        label=label,
        task=task,
        family=family,
        features=features,
        exclude=exclude,
        tp=tp,
    )


def tabular_dataset(
    problem: Any,
    part: str,
    tp: TrainingConfig,
    *,
    shard: Shard,
    batch: int | None,
    target: tuple[str, tuple[int, ...]] | None,
    weighted: bool = False,
    zero_target: bool = False,
    shuffle: bool | None = None,
    drop_remainder: bool = False,
) -> Any:
    """The compact input of a row problem's split `part` (its ``splits``, ``_convert``,
    ``plan``, ``input_mode``), only `shard`'s row groups: loaded once (memory) or read every
    pass (stream)."""
    split = problem.splits[part]
    groups = shard.groups(len(split.groups))
    columns = [*problem.plan.names, problem.label]
    shuffle = part == "train" if shuffle is None else shuffle
    configured = int(tp.batch_size or VALID_BATCH)
    size = batch or (configured if part == "train" else max(configured, VALID_BATCH))
    if shard.count > 1:  # which rows each replica reads (the sharding test reads this line)
        print(
            f"voltpipe: input pipeline {shard.index} of {shard.count} reads {part} row groups "
            f"{groups} ({split.group_rows(groups)} of {split.num_rows} rows, "
            f"{problem.input_mode})",
            flush=True,
        )
    convert = problem._convert(part)
    rows = problem._rows_in(part, groups)
    if problem.input_mode == "stream":
        gen = stream_batches(
            split, groups, convert, columns,
            batch=size, shuffle=shuffle, seed=tp.seed, buffer=tp.shuffle_buffer,
            drop_remainder=drop_remainder,
        )  # fmt: skip
    else:
        key = (part, shard)
        if key not in problem._loaded:
            problem._loaded[key] = load_rows(split, groups, convert, columns)
        rows = len(problem._loaded[key][0])
        gen = memory_batches(
            problem._loaded[key], batch=size, shuffle=shuffle, seed=tp.seed,
            drop_remainder=drop_remainder,
        )  # fmt: skip
    batches = rows // size if drop_remainder else -(-rows // size)
    return compact_dataset(
        gen, problem.plan, batches=batches, target=target, weights=weighted,
        zero_target=zero_target,
    )  # fmt: skip
