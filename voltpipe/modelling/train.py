"""Training: read parquet splits, build the task's model family, fit resumably, save.

The budget is counted in optimizer steps (``resolve_budget``): unless set, the batch size and
the epoch cap derive from the train size so that small tables get thousands of steps, not a
few dozen. Fitting early-stops (restoring the best weights) and reduces the learning rate on
the valid loss, stops after ``training.max_seconds``, runs deterministically for a seed, and
backs its state up every epoch (``keras.callbacks.BackupAndRestore``) to a folder that is
stable across retries, so a killed run started again resumes after its last finished epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import ValidationError

from voltpipe.data.io import read_table, write_json_atomic
from voltpipe.errors import DataError
from voltpipe.model_dir import HISTORY_FILE, META_FILE, MODEL_FILE, FileModel
from voltpipe.modelling.features import FeaturePlan
from voltpipe.modelling.inputs import Split
from voltpipe.modelling.problems import (
    OUTPUTS,
    Problem,
    TaskParams,
    encode_labels,
    make_problem,
)

TABLE_FAMILIES = ("auto", "linear", "gbdt")  # fitted by modelling.auto, not by Keras

__all__ = [
    "META_FILE",
    "MODEL_FILE",
    "Budget",
    "TrainResult",
    "encode_labels",
    "feature_plan",
    "fit_tables",
    "read_model_meta",
    "read_train_result",
    "resolve_budget",
    "train_model",
]

STOPPED_BY = ("early_stopping", "epoch_cap", "time_budget")

# The derived budget (training.batch_size / epochs / early_stopping_patience left unset).
AUTO_BATCH_DIVISOR, AUTO_BATCH_MIN, AUTO_BATCH_MAX = 16, 32, 512
AUTO_MIN_EPOCHS = 10  # big tables: min_steps is a few epochs; early stopping needs more
AUTO_MAX_EPOCHS = 1000  # tiny tables: a few rows per epoch must not mean 10^4 epochs
# With a derived epoch cap an epoch is one pass or this many steps, whichever is longer: the
# fixed cost of an epoch (validation, callbacks, the backup) dwarfs a 5-step pass.
MIN_EPOCH_STEPS = 50
PATIENCE_STEPS = 400  # patience covers this many steps on small tables (noisy valid loss) ...
MIN_PATIENCE = 5  # ... and at least this many epochs on big ones

log = logging.getLogger("voltpipe.modelling")


@dataclasses.dataclass(frozen=True)
class Budget:
    """The fit's budget, resolved from ``training.*`` and the number of train examples."""

    batch_size: int
    epochs: int
    steps_per_epoch: int  # > one pass (repeats) when the epoch cap is derived on small tables
    early_stopping_patience: int
    reduce_lr_patience: int
    max_seconds: float | None
    derived: tuple[str, ...]  # the keys left unset and derived here

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "derived": list(self.derived)}


def resolve_budget(tp: Any, n_train: int) -> Budget:
    """The batch size, epoch cap and patience of a fit on `n_train` examples.

    Unset (None) keys are derived: batch ``clip(n_train // 16, 32, 512)``; an epoch cap giving
    at least ``training.min_steps`` optimizer steps, within [10, 1000] epochs, where an epoch is
    one pass over the train split or 50 steps, whichever is longer; patience covering about 400
    steps (at least 5 epochs); LR reduction after a third of the patience (at least 2 epochs,
    below the patience). Explicit values win
    (an explicit ``epochs`` counts passes).
    """
    derived = []
    batch = tp.batch_size
    if batch is None:
        batch = int(np.clip(n_train // AUTO_BATCH_DIVISOR, AUTO_BATCH_MIN, AUTO_BATCH_MAX))
        derived.append("batch_size")
    steps = max(1, math.ceil(n_train / batch))
    epochs = tp.epochs
    if epochs is None:
        steps = max(steps, MIN_EPOCH_STEPS)
        epochs = int(np.clip(math.ceil(tp.min_steps / steps), AUTO_MIN_EPOCHS, AUTO_MAX_EPOCHS))
        derived.append("epochs")
    patience = tp.early_stopping_patience
    if patience is None:
        patience = max(MIN_PATIENCE, math.ceil(PATIENCE_STEPS / steps))
        derived.append("early_stopping_patience")
    reduce_lr = tp.reduce_lr_patience
    if reduce_lr is None:
        # well inside the patience, and at least 2 epochs (the old default) when it allows
        reduce_lr = min(max(2, patience // 3), max(1, patience - 1)) if patience else 0
        derived.append("reduce_lr_patience")
    return Budget(
        batch_size=int(batch),
        epochs=int(epochs),
        steps_per_epoch=steps,
        early_stopping_patience=int(patience),
        reduce_lr_patience=int(reduce_lr),
        max_seconds=tp.max_seconds,
        derived=tuple(derived),
    )


def train_examples(problem: Problem) -> int:
    """What one epoch iterates over: windows (forecasting), normal rows (anomaly) or rows."""
    rows = problem.rows
    return int(rows.get("train_windows", rows.get("train_normal", rows["train"])))


@dataclasses.dataclass
class TrainResult:
    model_dir: Path
    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int
    rows: dict[str, int]
    seconds: float
    meta: dict[str, Any]
    initial_epoch: int = 0  # > 0: resumed from a backup after this many epochs
    stopped_by: str = "epoch_cap"  # early_stopping | epoch_cap | time_budget
    warnings: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Fitted:
    model: Any
    history: dict[str, list[float]]
    best_epoch: int
    initial_epoch: int
    meta: dict[str, Any]
    monitor: str
    stopped_by: str = "epoch_cap"
    budget: Budget | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def epochs_run(self) -> int:
        return len(self.history.get(self.monitor, []))


def _settings(
    model_params: dict[str, Any] | None, training_params: dict[str, Any] | None, task_params: Any
) -> tuple[Any, Any, TaskParams]:
    from voltpipe.config import ModelConfig, TrainingConfig

    try:
        mp = ModelConfig(**(model_params or {}))
        tp = TrainingConfig(**(training_params or {}))
        params = (
            task_params
            if isinstance(task_params, TaskParams)
            else TaskParams.from_dict(task_params)
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = {
            "ModelConfig": "model",
            "TrainingConfig": "training",
            "ForecastingConfig": "forecasting",
            "AnomalyConfig": "anomaly",
            "ClusteringConfig": "clustering",
            "EmbeddingConfig": "embedding",
            "ProfileConfig": "clustering.profile",
        }.get(exc.title, exc.title)
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise DataError(f"{where}.{key}: {msg}") from None
    return mp, tp, params


def _resumable_history(backup_dir: str | None) -> Any:
    """A callback keeping the history of every epoch across a resume, next to Keras' backup."""
    import keras

    class ResumableHistory(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.path = Path(backup_dir, HISTORY_FILE) if backup_dir else None
            self.history: dict[str, list[float]] = {}
            self.initial_epoch = 0

        def on_train_begin(self, logs: Any = None) -> None:
            # BackupAndRestore (earlier in the list) has set the epoch to resume from.
            self.initial_epoch = int(getattr(self.model, "_initial_epoch", 0) or 0)
            if self.initial_epoch and self.path and self.path.exists():
                saved = json.loads(self.path.read_text())
                self.history = {k: v[: self.initial_epoch] for k, v in saved.items()}
                print(f"voltpipe: resuming training after epoch {self.initial_epoch}", flush=True)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            for k, v in (logs or {}).items():
                if k != "learning_rate":
                    self.history.setdefault(k, []).append(float(v))
            self.history.setdefault("learning_rate", []).append(
                float(np.asarray(self.model.optimizer.learning_rate))
            )
            if self.path:
                write_json_atomic(self.path, self.history)

    return ResumableHistory()


def _time_budget(max_seconds: float | None) -> Any:
    """A callback stopping the fit once it has run `max_seconds` (checked after every step)."""
    import keras

    class TimeBudget(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.fired = False
            self.deadline = math.inf

        def on_train_begin(self, logs: Any = None) -> None:
            self.deadline = time.monotonic() + (max_seconds or math.inf)

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if not self.fired and time.monotonic() > self.deadline:
                self.fired = True
                self.model.stop_training = True

    return TimeBudget()


def enable_determinism(seed: int) -> None:
    """Seeds Python, NumPy and Keras and makes TensorFlow's ops deterministic (process-wide).

    Same config, data, seed and machine then give the same model to the last bit.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _claim_backup(backup_dir: str, fingerprint: dict[str, Any]) -> None:
    """Drops a backup left by a different training setup (it would not fit this model)."""
    import shutil

    marker = Path(backup_dir, "voltpipe_backup.json")
    if Path(backup_dir).exists():
        try:
            same = json.loads(marker.read_text()) == fingerprint
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(backup_dir, ignore_errors=True)
    Path(backup_dir).mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, fingerprint)


def fit_problem(
    problem: Problem,
    mp: Any,
    tp: Any,
    *,
    callbacks: list[Any] | None = None,
    backup_dir: str | os.PathLike[str] | None = None,
    strategy: Any = None,
    verbose: int = 2,
) -> Fitted:
    """Builds, compiles and fits the problem's model; returns the model to save and its history.

    The budget comes from ``resolve_budget``; the best epoch's weights are kept however the fit
    stops (`Fitted.stopped_by`).
    """
    import keras

    enable_determinism(tp.seed)
    budget = resolve_budget(tp, train_examples(problem))
    tp = tp.model_copy(
        update={
            "batch_size": budget.batch_size,
            "epochs": budget.epochs,
            "early_stopping_patience": budget.early_stopping_patience,
            "reduce_lr_patience": budget.reduce_lr_patience,
        }
    )
    passes = math.ceil(train_examples(problem) / budget.batch_size)
    steps_per_epoch = budget.steps_per_epoch if budget.steps_per_epoch > passes else None
    if strategy is not None:
        from voltpipe.modelling.distribute import distributed_datasets

        # each input pipeline reads its share of the row groups; epochs count global steps
        n_valid = int(problem.rows.get("valid_windows", problem.rows.get("valid", 0)))
        train_ds, valid_ds, steps_per_epoch = distributed_datasets(
            strategy, problem, tp, n_train=train_examples(problem), n_valid=n_valid,
            min_steps=budget.steps_per_epoch,
        )  # fmt: skip
    else:
        train_ds, valid_ds = problem.datasets(tp)
        if steps_per_epoch:  # an epoch of several passes (reshuffled each time)
            train_ds = train_ds.repeat()
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        core = trained = problem.build(mp)
        spe = tp.steps_per_execution
        if strategy is not None:  # Keras' own loop fails under a strategy (see there)
            from voltpipe.modelling.distribute import multi_step_model

            trained, spe = multi_step_model(core, spe), 1
        trained.compile(
            optimizer=keras.optimizers.Adam(tp.learning_rate),
            loss=problem.loss,
            metrics=problem.metrics or None,
            steps_per_execution=spe,
        )
    monitor = "val_loss" if valid_ds is not None else "loss"
    early = keras.callbacks.EarlyStopping(
        monitor=monitor, patience=budget.early_stopping_patience, restore_best_weights=True
    )
    timer = _time_budget(budget.max_seconds)
    cbs: list[Any] = [early, timer]
    if budget.reduce_lr_patience:
        cbs.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor,
                factor=tp.reduce_lr_factor,
                patience=budget.reduce_lr_patience,
                min_lr=tp.learning_rate * 1e-3,
                verbose=0,
            )
        )
    backup = str(backup_dir) if backup_dir else None
    if backup:
        fingerprint = {
            "task": problem.task,
            "family": problem.family,
            "model": mp.model_dump(),
            "training": tp.model_dump(exclude={"backup_dir", "vertex", "backend", "max_seconds"}),
            "rows": problem.rows,
        }
        _claim_backup(backup, json.loads(json.dumps(fingerprint, default=str)))
        cbs.append(keras.callbacks.BackupAndRestore(backup))
    history_cb = _resumable_history(backup)
    cbs.append(history_cb)
    cbs.extend(callbacks or [])
    trained.fit(
        train_ds,
        validation_data=valid_ds,
        epochs=tp.epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=cbs,
        verbose=verbose,
        shuffle=False,  # the dataset reshuffles every epoch
    )
    history = history_cb.history
    best_epoch = int(np.argmin(history[monitor])) + 1 if history.get(monitor) else 0
    epochs_run = len(history.get(monitor, []))
    if timer.fired:
        stopped_by = "time_budget"
    elif early.stopped_epoch > 0:
        stopped_by = "early_stopping"
    else:
        stopped_by = "epoch_cap"
    warnings = []
    if epochs_run and best_epoch == epochs_run and stopped_by != "early_stopping":
        warnings.append(
            f"the best epoch is the last one ({best_epoch} of {epochs_run}, stopped by "
            f"{stopped_by}): the {monitor} was still falling; raise "
            + (
                "training.max_seconds"
                if stopped_by == "time_budget"
                else "training.min_steps"
                if "epochs" in budget.derived
                else "training.epochs"
            )
            + " to train longer"
        )
    for w in warnings:
        log.warning(w)
        print(f"voltpipe: warning: {w}", flush=True)
    model = problem.finish(core)
    return Fitted(
        model,
        history,
        best_epoch,
        history_cb.initial_epoch,
        problem.meta(),
        monitor,
        stopped_by=stopped_by,
        budget=budget,
        warnings=warnings,
    )


def fit_tables(
    train: pa.Table | Split,
    valid: pa.Table | Split,
    *,
    label: str,
    task: str,
    features: list[str] | None = None,
    exclude: list[str] | None = None,
    model_params: dict[str, Any] | None = None,
    training_params: dict[str, Any] | None = None,
    task_params: dict[str, Any] | TaskParams | None = None,
    callbacks: list[Any] | None = None,
    backup_dir: str | os.PathLike[str] | None = None,
    strategy: Any = None,
    verbose: int = 2,
) -> tuple[Fitted, Problem]:
    """Trains on in-memory tables (the tuner calls this once per trial and fold).

    Raises:
        DataError: the data or a setting cannot train this task.
    """
    mp, tp, params = _settings(model_params, training_params, task_params)
    if task in ("classification", "regression") and (mp.family or "auto") in TABLE_FAMILIES:
        from voltpipe.modelling.auto import fit_table_family  # gbdt, linear, auto

        fit = dict(callbacks=callbacks, backup_dir=backup_dir, strategy=strategy, verbose=verbose)
        return fit_table_family(
            train,
            valid,
            family=mp.family or "auto",
            label=label,
            task=task,
            features=features,
            exclude=exclude,
            mp=mp,
            tp=tp,
            params=params,
            **fit,
        )
    problem = make_problem(
        train,
        valid,
        label=label,
        task=task,
        features=features,
        exclude=exclude,
        mp=mp,
        tp=tp,
        params=params,
    )
    fitted = fit_problem(
        problem,
        mp,
        tp,
        callbacks=callbacks,
        backup_dir=backup_dir,
        strategy=strategy,
        verbose=verbose,
    )
    fitted.meta.update(
        {
            "format": "voltpipe-keras-v1",
            "task": task,
            "label": label,
            "family": problem.family,
            "output": OUTPUTS[task],
            "model_params": {**mp.model_dump(), "family": problem.family},
            "training_params": tp.model_dump(),
            "task_params": params.to_dict(),
            "rows": problem.rows,
            "best_epoch": fitted.best_epoch,
            "epochs_run": fitted.epochs_run,
            "stopped_by": fitted.stopped_by,
            "budget": fitted.budget.to_dict() if fitted.budget else None,
            "training_warnings": fitted.warnings,
            "resumed_after_epoch": fitted.initial_epoch,
        }
    )
    return fitted, problem


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
    task_params: dict[str, Any] | None = None,
    best_params: dict[str, Any] | None = None,
    callbacks: list[Any] | None = None,
    backup_dir: str | os.PathLike[str] | None = None,
    strategy: Any = None,
) -> TrainResult:
    """Trains a model on the train split, early-stopping on the valid split, and saves it.

    `out_dir` receives ``model.keras`` (preprocessing inside: it takes raw values) and
    ``voltpipe_model.json`` (task, label, classes, features, the task's settings, what
    ``predict_raw`` returns under "output", hyperparameters). Writes go to a temp file first
    and are renamed into place, so a killed run leaves no half-written model.

    Args:
        task_params: ``{time_column, forecasting: {...}, anomaly: {...}}`` (see the config).
        best_params: a tuner's best hyperparameters (``{model, training, forecasting}``),
            applied over `model_params`, `training_params` and `task_params`.
        callbacks: extra Keras callbacks (after voltpipe's own).
        backup_dir: where the per-epoch backup lives; default ``<out_dir>.backup`` (training.
            backup_dir wins over the default; the caller's value over both).
        strategy: a ``tf.distribute.Strategy`` to build the model under (see ``distribute``).

    Raises:
        DataError: the data cannot train this task (a message naming the column or setting).
    """
    from voltpipe.modelling.search_space import apply_best_params

    started = time.perf_counter()
    if best_params:
        model_params, training_params, task_params = apply_best_params(
            best_params, model_params, training_params, task_params
        )
    if _row_family(task, model_params):
        # Keras row models read the parquet shards a column / row group at a time (compact
        # input, streamed above a size: ``training.input``); the table is never in memory.
        from voltpipe.modelling.inputs import ParquetSplit

        train_tbl: Any = ParquetSplit(train_path)
        valid_tbl: Any = ParquetSplit(valid_path)
    else:
        train_tbl = read_table(train_path)
        valid_tbl = read_table(valid_path)
    if task in ("clustering", "embedding"):  # scikit-learn / NumPy models, saved as JSON
        from voltpipe.modelling.unsupervised import train_unsupervised

        mp, tp, params = _settings(model_params, training_params, task_params)
        meta = train_unsupervised(
            train_tbl, valid_tbl, out_dir, label=label, task=task, features=features,
            exclude=list(exclude or []), mp=mp, tp=tp, params=params,
        )  # fmt: skip
        if best_params:
            meta["best_params"] = best_params
            write_json_atomic(Path(out_dir) / META_FILE, meta)
        return read_train_result(out_dir, time.perf_counter() - started)
    if task == "forecasting" and _feature_path_family(model_params):
        from voltpipe.modelling.forecast_auto import train_forecaster

        meta, _ = train_forecaster(
            train_tbl, valid_tbl, out_dir, label=label, model_params=model_params,
            training_params=training_params, task_params=task_params,
        )  # fmt: skip
        if best_params:
            meta["best_params"] = best_params
            write_json_atomic(Path(out_dir) / META_FILE, meta)
        write_json_atomic(Path(out_dir) / HISTORY_FILE, {})
        return read_train_result(out_dir, time.perf_counter() - started)
    backup = (
        backup_dir
        or (training_params or {}).get("backup_dir")
        or f"{os.fspath(out_dir).rstrip('/')}.backup"
    )
    fitted, _ = fit_tables(
        train_tbl,
        valid_tbl,
        label=label,
        task=task,
        features=features,
        exclude=exclude,
        model_params=model_params,
        training_params=training_params,
        task_params=task_params,
        callbacks=callbacks,
        backup_dir=backup,
        strategy=strategy,
    )
    meta = fitted.meta
    if best_params:
        meta["best_params"] = best_params
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(fitted.model, FileModel):  # gbdt, linear: their own file, no Keras
        meta["model_file"] = fitted.model.save(out)
        meta["replay"] = False
    else:
        tmp = out / ".tmp-model.keras"
        fitted.model.save(tmp)
        os.replace(tmp, out / MODEL_FILE)
        meta["replay"] = save_replay(fitted.model, meta, out)
    write_json_atomic(out / META_FILE, meta)
    write_json_atomic(out / HISTORY_FILE, fitted.history)
    return TrainResult(
        model_dir=out,
        history=fitted.history,
        epochs_run=meta["epochs_run"],
        best_epoch=fitted.best_epoch,
        rows=meta["rows"],
        seconds=time.perf_counter() - started,
        meta=meta,
        initial_epoch=fitted.initial_epoch,
        stopped_by=fitted.stopped_by,
        warnings=list(fitted.warnings),
    )


def _row_family(task: str, model_params: dict[str, Any] | None) -> bool:
    """A Keras model on rows (mlp, autoencoder), which reads compact or streamed input."""
    from voltpipe.config import DEFAULT_FAMILY

    family = (model_params or {}).get("family") or DEFAULT_FAMILY.get(task)
    return task == "anomaly" or (
        task in ("classification", "regression") and family not in TABLE_FAMILIES
    )


def _feature_path_family(model_params: dict[str, Any] | None) -> bool:
    """A forecasting family fitted by ``forecast_auto`` (gbdt, statistical, auto), not Keras."""
    from voltpipe.config import DEFAULT_FAMILY
    from voltpipe.modelling.problems import FEATURE_PATH_FAMILIES

    family = (model_params or {}).get("family") or DEFAULT_FAMILY["forecasting"]
    return family in FEATURE_PATH_FAMILIES


def save_replay(model: Any, meta: dict[str, Any], out_dir: str | os.PathLike[str]) -> bool:
    """Saves the NumPy replay of a row model beside it (``voltpipe_replay.npz``) when the
    replay supports every layer and agrees with Keras on a probe batch; returns whether it did.

    Evaluation, drift and the deploy smoke test then score the model without TensorFlow.
    """
    from voltpipe.modelling.replay import REPLAY_FILE

    stale = Path(out_dir) / REPLAY_FILE
    stale.unlink(missing_ok=True)  # never leave the replay of a model this one replaced
    replay = verified_replay(model, meta)
    if replay is None:
        return False
    replay.save(out_dir)
    return True


def verified_replay(model: Any, meta: dict[str, Any]) -> Any:
    """The NumPy replay of a row model when it supports every layer and agrees with Keras on
    a probe batch, else None."""
    from voltpipe.modelling.replay import UnsupportedModel, agrees, export_replay, probe_batch

    if meta.get("task") not in ("regression", "classification", "anomaly"):
        return None
    plan = feature_plan(meta)
    numeric, categorical = list(plan.numeric), list(plan.categorical)
    try:
        replay = export_replay(model, numeric, categorical)
    except UnsupportedModel as exc:
        log.info("no NumPy replay saved: %s", exc)
        return None
    import tensorflow as tf

    xn, xc = probe_batch(plan)
    inputs = {name: tf.constant(xn[:, j : j + 1]) for j, name in enumerate(numeric)}
    inputs |= {name: tf.constant(xc[:, j : j + 1], tf.string) for j, name in enumerate(categorical)}
    expected = np.asarray(model(inputs, training=False))
    if not agrees(replay.forward()(xn, xc), expected):
        log.warning("the NumPy replay disagrees with Keras on this model; none saved")
        return None
    return replay


def check_model_file(model_dir: str | os.PathLike[str]) -> None:
    """Checks the folder's model file without loading a framework (see
    ``model_dir.check_model_files``; kept here for old imports)."""
    from voltpipe.model_dir import check_model_files

    check_model_files(model_dir)


def read_train_result(model_dir: str | os.PathLike[str], seconds: float) -> TrainResult:
    """The `TrainResult` of a model folder written by `train_model` elsewhere (e.g. by a
    Vertex AI CustomJob), from its metadata and history files.

    Raises:
        DataError: the folder holds no voltpipe model.
    """
    meta = read_model_meta(model_dir)
    path = Path(model_dir) / HISTORY_FILE
    history = json.loads(path.read_text()) if path.exists() else {}
    return TrainResult(
        model_dir=Path(model_dir),
        history=history,
        epochs_run=int(meta.get("epochs_run", 0)),
        best_epoch=int(meta.get("best_epoch", 0)),
        rows=meta.get("rows", {}),
        seconds=seconds,
        meta=meta,
        initial_epoch=int(meta.get("resumed_after_epoch", 0)),
        stopped_by=str(meta.get("stopped_by", "epoch_cap")),
        warnings=list(meta.get("training_warnings") or []),
    )


def read_model_meta(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The folder's ``voltpipe_model.json`` (``model_dir.read_meta``; kept for old imports)."""
    from voltpipe.model_dir import read_meta

    return read_meta(model_dir)


def feature_plan(meta: dict[str, Any]) -> FeaturePlan:
    return FeaturePlan.from_dict(meta["features"])
