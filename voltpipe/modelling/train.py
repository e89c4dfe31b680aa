"""Training: read parquet splits, build the model family, fit with early stopping, save."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from voltpipe.data.io import read_table, write_json_atomic
from voltpipe.errors import DataError
from voltpipe.modelling.features import FeaturePlan, model_inputs, plan_features

MODEL_FILE = "model.keras"
META_FILE = "voltpipe_model.json"


@dataclasses.dataclass
class TrainResult:
    model_dir: Path
    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int
    rows: dict[str, int]
    seconds: float
    meta: dict[str, Any]


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
        index = {c: i for i, c in enumerate(classes)}
        try:
            y = np.fromiter((index[v] for v in as_str), dtype="int32", count=len(as_str))
        except KeyError as exc:
            raise DataError(
                f"label column {label!r} holds class {exc.args[0]!r} not seen in training"
            ) from None
        return y, classes
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


def _dataset(x: dict[str, np.ndarray], y: np.ndarray, batch: int, shuffle: bool, seed: int) -> Any:
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(min(len(y), 100_000), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)


def train_model(
    train_path: str | os.PathLike[str],
    valid_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    label: str,
    task: str,
    features: list[str] | None = None,
    exclude: list[str] | None = None,
    model_params: dict[str, Any] | None = None,
    training_params: dict[str, Any] | None = None,
) -> TrainResult:
    """Trains a model on the train split, early-stopping on the valid split, and saves it.

    `out_dir` receives ``model.keras`` (preprocessing inside) and ``voltpipe_model.json``
    (task, label, feature plan, classes, hyperparameters). Writes go to a temp folder first
    and are renamed into place, so a killed run leaves no half-written model.

    Raises:
        DataError: the data cannot train this task (see ``encode_labels`` and ``plan_features``).
    """
    from voltpipe.config import ModelConfig, TrainingConfig

    if task not in ("classification", "regression"):
        raise DataError(
            f"task {task!r} has no model family in this version (classification and regression are supported)"
        )
    mp = ModelConfig(**(model_params or {}))
    tp = TrainingConfig(**(training_params or {}))
    started = time.perf_counter()
    train_tbl = read_table(train_path)
    valid_tbl = read_table(valid_path)
    if train_tbl.num_rows == 0:
        raise DataError("the train split is empty")
    plan = plan_features(train_tbl, label=label, features=features, exclude=exclude)
    y_train, classes = encode_labels(train_tbl, label, task)
    x_train = model_inputs(train_tbl, plan)
    has_valid = valid_tbl.num_rows > 0
    if has_valid:
        y_valid, _ = encode_labels(valid_tbl, label, task, classes)
        x_valid = model_inputs(valid_tbl, plan)

    import keras

    keras.utils.set_random_seed(tp.seed)
    label_mean, label_std = 0.0, 1.0
    if task == "regression":
        label_mean, label_std = float(y_train.mean()), float(y_train.std()) or 1.0
    from voltpipe.modelling.mlp import build_mlp, with_output_scale

    # Regression trains on the standardised label (well-conditioned for any unit); the saved
    # model rescales its output back to the label's units.
    core = build_mlp(
        plan,
        task=task,
        n_classes=len(classes or []),
        hidden_units=mp.hidden_units,
        dropout=mp.dropout,
    )
    if task == "classification":
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
        target_train = y_train
        target_valid = y_valid if has_valid else None
    else:
        loss, metrics = "mse", ["mae"]
        target_train = (y_train - label_mean) / label_std
        target_valid = (y_valid - label_mean) / label_std if has_valid else None
    core.compile(
        optimizer=keras.optimizers.Adam(tp.learning_rate),
        loss=loss,
        metrics=metrics,
        steps_per_execution=tp.steps_per_execution,
    )
    monitor = "val_loss" if has_valid else "loss"
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor=monitor, patience=tp.early_stopping_patience, restore_best_weights=True
        ),
    ]
    fit = core.fit(
        _dataset(x_train, target_train, tp.batch_size, True, tp.seed),
        validation_data=(
            _dataset(x_valid, target_valid, max(tp.batch_size, 2048), False, tp.seed)
            if has_valid
            else None
        ),
        epochs=tp.epochs,
        callbacks=callbacks,
        verbose=2,
        shuffle=False,  # tf.data shuffles
    )
    model = core if task == "classification" else with_output_scale(core, label_mean, label_std)
    history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
    best_epoch = int(np.argmin(history[monitor])) + 1
    meta = {
        "format": "voltpipe-keras-v1",
        "task": task,
        "label": label,
        "classes": classes,
        "features": plan.to_dict(),
        "family": mp.family,
        "model_params": mp.model_dump(),
        "training_params": tp.model_dump(),
        "label_stats": {"mean": label_mean, "std": label_std} if task == "regression" else None,
        "rows": {"train": train_tbl.num_rows, "valid": valid_tbl.num_rows},
        "best_epoch": best_epoch,
        "epochs_run": len(history[monitor]),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".tmp-model.keras"
    model.save(tmp)
    os.replace(tmp, out / MODEL_FILE)
    write_json_atomic(out / META_FILE, meta)
    return TrainResult(
        model_dir=out,
        history=history,
        epochs_run=meta["epochs_run"],
        best_epoch=best_epoch,
        rows=meta["rows"],
        seconds=time.perf_counter() - started,
        meta=meta,
    )


def read_model_meta(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(model_dir) / META_FILE
    if not path.exists():
        raise DataError(f"{model_dir} is not a voltpipe model folder (no {META_FILE})")
    return json.loads(path.read_text())


def feature_plan(meta: dict[str, Any]) -> FeaturePlan:
    return FeaturePlan.from_dict(meta["features"])
