"""Hyperparameter search over the config's ``tuning.space``: locally with Optuna (pruned trials,
optional k-fold / expanding-window cross-validation, nested MLflow runs), and the shared pieces
the Vertex AI backend (``vertex_jobs``) uses: the space's encoding and the best-params format.

Best params are ``{"model": {...}, "training": {...}, "forecasting": {...}, "metric", "value",
...}``; ``apply_best_params`` merges them over the training step's parameters.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from voltpipe.config import DEFAULT_FAMILY, TuningConfig
from voltpipe.errors import DataError, VoltpipeError
from voltpipe.modelling.search_space import (  # noqa: F401 - re-exported for callers
    INT_KEYS,
    SECTIONS,
    apply_best_params,
    decode_choice,
    default_space,
    encode_choice,
    is_int_range,
    nest_params,
)


def search_space(cfg: TuningConfig, task: str, model_params: dict[str, Any] | None) -> dict:
    """``tuning.space``, or the family's default space when it is empty.

    Raises:
        DataError: the space is empty and the family has no default (nothing to search).
    """
    if cfg.space:
        return dict(cfg.space)
    family = (model_params or {}).get("family") or DEFAULT_FAMILY.get(task, "")
    if task == "forecasting" and family == "auto":
        from voltpipe.config import ModelConfig
        from voltpipe.modelling.problems import resolve_family

        family = resolve_family(task, ModelConfig(family=family))  # what auto trains there
    space = default_space(family)
    if not space:
        raise DataError(
            f"tuning.space is empty and family {family!r} has no default space: give the keys "
            "to search in tuning.space"
        )
    return space


# ----- cross-validation folds ---------------------------------------------------------------------


def kfold_indices(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled k-fold (train, valid) row indices."""
    perm = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(perm, k)
    return [
        (np.sort(np.concatenate(parts[:i] + parts[i + 1 :])), np.sort(parts[i])) for i in range(k)
    ]


def expanding_window_indices(times: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window folds on time: fold i trains on blocks 0..i and validates on block i+1
    of k+1 equal-time-count blocks (every series is cut at the same times)."""
    uniq = np.unique(times)
    if len(uniq) < k + 1:
        raise DataError(f"tuning.folds: {k} folds need more than {len(uniq)} distinct times")
    cuts = [uniq[round(len(uniq) * j / (k + 1)) - 1] for j in range(1, k + 2)]
    out = []
    for i in range(k):
        train = np.nonzero(times <= cuts[i])[0]
        valid = np.nonzero((times > cuts[i]) & (times <= cuts[i + 1]))[0]
        out.append((train, valid))
    return out


def cv_folds(
    train: pa.Table, valid: pa.Table, *, k: int, task: str, time_column: str | None, seed: int
) -> list[tuple[pa.Table, pa.Table]]:
    """k folds over train + valid: expanding windows for forecasting, shuffled k-fold otherwise."""
    both = pa.concat_tables([train, valid], promote_options="default") if valid.num_rows else train
    if task == "forecasting":
        if not time_column or time_column not in both.column_names:
            raise DataError("tuning.folds for forecasting needs `time_column` in the data")
        times = (
            pc.cast(both.column(time_column), pa.int64())
            if pa.types.is_timestamp(both.schema.field(time_column).type)
            else both.column(time_column)
        )
        idx = expanding_window_indices(times.to_numpy(zero_copy_only=False), k)
    else:
        idx = kfold_indices(both.num_rows, k, seed)
    return [(both.take(pa.array(t)), both.take(pa.array(v))) for t, v in idx]


# ----- the local Optuna search --------------------------------------------------------------------


@dataclasses.dataclass
class TuningResult:
    best_params: dict[str, Any]  # {"model": .., "training": .., "forecasting": .., "metric", ..}
    best_value: float
    metric: str
    trials: list[dict[str, Any]]
    total_epochs: int
    seconds: float
    parent_run_id: str | None = None

    @property
    def n_pruned(self) -> int:
        return sum(t["state"] == "PRUNED" for t in self.trials)

    @property
    def n_complete(self) -> int:
        return sum(t["state"] == "COMPLETE" for t in self.trials)


def _suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, dom in space.items():
        if isinstance(dom, list):
            choice = trial.suggest_categorical(key, [encode_choice(v) for v in dom])
            flat[key] = decode_choice(key, choice) if isinstance(choice, str) else choice
        elif is_int_range(key, dom):
            flat[key] = trial.suggest_int(
                key, int(dom["min"]), int(dom["max"]), log=bool(dom.get("log"))
            )
        else:
            flat[key] = trial.suggest_float(
                key, float(dom["min"]), float(dom["max"]), log=bool(dom.get("log"))
            )
    return flat


def _sampler_and_pruner(cfg: TuningConfig, epochs: int, prune: bool) -> tuple[Any, Any]:
    """The sampler and the pruner; a pruner's step (resource) is the number of epochs trained.

    TPE is multivariate: it models the keys jointly, which the interactions of a network's
    settings call for (a high learning rate pays off only with the right width and dropout).
    The median pruner leaves the first third of each trial's epochs alone: a trial's loss
    after an epoch or two says more about its learning rate and batch size than about where
    it ends.
    """
    import warnings

    import optuna

    # Random trials before TPE (and the pruner) start: a third of the trials the search can
    # afford, at most 5. With an epoch budget, that is the budget's worth of full trials.
    affordable = cfg.max_trials
    if cfg.max_total_epochs is not None:
        affordable = min(affordable, cfg.max_total_epochs // (epochs * max(1, cfg.folds)))
    startup = max(1, min(5, affordable // 3))
    if cfg.algorithm == "random":
        sampler: Any = optuna.samplers.RandomSampler(seed=cfg.seed)
    else:
        with warnings.catch_warnings():  # multivariate is "experimental" in optuna 4
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=cfg.seed, n_startup_trials=startup, multivariate=True
            )
    if not prune:
        pruner: Any = optuna.pruners.NopPruner()
    elif cfg.algorithm == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs, reduction_factor=3
        )
    else:
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=startup, n_warmup_steps=max(1, epochs // 3)
        )
    return sampler, pruner


def _pruning_callback(
    trial: Any, monitor: str, report: bool, budget_left: Callable[[int], int] | None = None
) -> Any:
    """Reports `monitor` per epoch to the pruner (when `report`) and stops the fit when the
    trial is pruned, or when ``budget_left(epochs run in this fit)`` reaches 0 before the fit's
    last epoch (``budget_stopped``)."""
    import keras

    class Pruning(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.pruned = False
            self.budget_stopped = False
            self.epochs = 0

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.epochs += 1
            value = (logs or {}).get(monitor)
            if report and value is not None:
                trial.report(float(value), self.epochs)  # step = epochs trained
                if trial.should_prune():
                    self.pruned = True
                    self.model.stop_training = True
                    return
            if budget_left is None or budget_left(self.epochs) > 0:
                return
            last = epoch + 1 >= int(self.params.get("epochs") or 0)
            if not (last or self.model.stop_training):  # else the fit ends here anyway
                self.budget_stopped = True
                self.model.stop_training = True

    return Pruning()


def run_tuning(
    train: pa.Table,
    valid: pa.Table,
    *,
    label: str,
    task: str,
    tuning: TuningConfig | dict[str, Any],
    features: list[str] | None = None,
    exclude: list[str] | None = None,
    model_params: dict[str, Any] | None = None,
    training_params: dict[str, Any] | None = None,
    task_params: dict[str, Any] | None = None,
    tracking_uri: str = "",
    experiment: str = "voltpipe-tuning",
    run_name: str = "tuning",
    prune: bool = True,
    verbose: int = 0,
) -> TuningResult:
    """Searches ``tuning.space`` with Optuna, all trials in this process, minimising the best
    validation loss of each trial (the mean over folds with ``tuning.folds``).

    Each trial trains through ``train.fit_tables`` with a callback that reports the validation
    loss per epoch to the pruner (MedianPruner, or HyperbandPruner for ``hyperband``); a pruned
    trial stops at once. With ``tuning.max_total_epochs`` the search trains at most that many
    epochs in all: the trial running when the budget runs out is stopped and counts as pruned,
    and no trial starts after it. With a `tracking_uri`, the study is an MLflow parent run and
    every trial a child run.

    Raises:
        DataError: the space is empty, ``tuning.max_total_epochs`` is less than one trial's
            epochs, or every trial failed (with the first trial's message).
    """
    import optuna

    from voltpipe.config import TrainingConfig
    from voltpipe.modelling.train import fit_tables, resolve_budget

    cfg = tuning if isinstance(tuning, TuningConfig) else TuningConfig(**tuning)
    space = search_space(cfg, task, model_params)
    started = time.perf_counter()
    base_tp = {**(training_params or {})}
    if cfg.max_epochs:
        base_tp["epochs"] = cfg.max_epochs
    # The pruner's horizon: the trial's epochs (derived from the train size when unset).
    epochs = resolve_budget(TrainingConfig(**base_tp), max(1, train.num_rows)).epochs
    budget = cfg.max_total_epochs
    if budget is not None and budget < epochs * max(1, cfg.folds):
        raise DataError(
            f"tuning.max_total_epochs: {budget} is less than one trial's "
            f"{epochs * max(1, cfg.folds)} epochs ({epochs} epochs x {max(1, cfg.folds)} fold(s)); "
            "raise it or lower tuning.max_epochs"
        )
    folds = (
        cv_folds(
            train,
            valid,
            k=cfg.folds,
            task=task,
            time_column=(task_params or {}).get("time_column"),
            seed=cfg.seed,
        )
        if cfg.folds
        else [(train, valid)]
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler, pruner = _sampler_and_pruner(cfg, epochs, prune)
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    from voltpipe.tracking.nested import NestedRuns

    runs = NestedRuns(
        tracking_uri,
        experiment,
        run_name,
        params={
            "algorithm": cfg.algorithm,
            "max_trials": cfg.max_trials,
            "folds": cfg.folds,
            "max_epochs": epochs,
            **({"max_total_epochs": budget} if budget is not None else {}),
            "space": json.dumps(space),
        },
        tags={"voltpipe.kind": "tuning", "voltpipe.task": task},
    )
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    total_epochs = 0

    def objective(trial: Any) -> float:
        nonlocal total_epochs
        flat = _suggest(trial, space)
        mp, tp, taskp = apply_best_params(flat, model_params, base_tp, task_params)
        t0 = time.perf_counter()
        values: list[float] = []
        trial_epochs = 0
        state = "COMPLETE"
        try:
            for i, (tr, va) in enumerate(folds):
                if budget is not None and total_epochs + trial_epochs >= budget:
                    state = "PRUNED"  # the epoch budget ran out before this fold
                    break
                monitor = "val_loss" if va.num_rows else "loss"
                cb = _pruning_callback(
                    trial,
                    monitor,
                    report=(i == 0),
                    budget_left=(
                        None
                        if budget is None
                        else _epochs_left(budget, spent=total_epochs + trial_epochs)
                    ),
                )
                fitted, problem = fit_tables(
                    tr,
                    va,
                    label=label,
                    task=task,
                    features=features,
                    exclude=exclude,
                    model_params=mp,
                    training_params=tp,
                    task_params=taskp,
                    callbacks=[cb],
                    verbose=verbose,
                )
                trial_epochs += cb.epochs
                if cfg.folds and not problem.has_valid:
                    raise DataError(
                        f"tuning.folds: fold {i + 1} has no validation window; use fewer folds"
                    )
                values.append(float(np.min(fitted.history[fitted.monitor])))
                if cb.pruned or cb.budget_stopped:
                    state = "PRUNED"
                    break
        except VoltpipeError as exc:
            errors.append(str(exc))
            state = "FAIL"
        total_epochs += trial_epochs
        value = float(np.mean(values)) if values else math.nan
        std = float(np.std(values)) if len(values) > 1 else 0.0
        row = {
            "trial": trial.number,
            "state": state,
            "value": value,
            "value_std": std,
            "folds": len(values),
            "epochs": trial_epochs,
            "seconds": round(time.perf_counter() - t0, 3),
            **{k: json.dumps(v) if isinstance(v, list) else v for k, v in flat.items()},
        }
        rows.append(row)
        trial.set_user_attr("epochs", trial_epochs)
        runs.child(
            f"trial-{trial.number}",
            params=flat,
            metrics={"value": value, "value_std": std, "epochs": trial_epochs},
            tags={"voltpipe.trial_state": state},
            status={"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(state, "FAILED"),
        )
        if state == "PRUNED":
            raise optuna.TrialPruned()
        if state == "FAIL":
            return math.nan
        return value

    def stop_when_spent(study: Any, _trial: Any) -> None:
        if budget is not None and total_epochs >= budget:
            study.stop()

    study.optimize(
        objective,
        n_trials=cfg.max_trials,
        timeout=cfg.timeout_seconds,
        callbacks=[stop_when_spent],
    )
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    if not complete:
        runs.finish(status="FAILED")
        raise DataError(
            "tuning: no trial completed"
            + (f"; the first trial failed with: {errors[0]}" if errors else "")
        )
    best = min(complete, key=lambda r: r["value"])
    best_flat = _suggest_values(study.trials[best["trial"]].params, space)
    best_params = {
        **nest_params(best_flat),
        "metric": "val_loss",
        "value": best["value"],
        "value_std": best["value_std"],
        "trial": best["trial"],
        "backend": "local",
        "algorithm": cfg.algorithm,
    }
    parent = runs.finish(
        params={f"best.{k}": v for k, v in best_flat.items()},
        metrics={
            "best_value": best["value"],
            "pruned_trials": float(sum(r["state"] == "PRUNED" for r in rows)),
        },
    )
    return TuningResult(
        best_params=best_params,
        best_value=best["value"],
        metric="val_loss",
        trials=rows,
        total_epochs=total_epochs,
        seconds=time.perf_counter() - started,
        parent_run_id=parent,
    )


def _suggest_values(params: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    return {
        k: decode_choice(k, v) if isinstance(v, str) else v for k, v in params.items() if k in space
    }


# ----- outputs ----------------------------------------------------------------------------------


def trials_markdown(trials: list[dict[str, Any]], best_params: dict[str, Any]) -> str:
    """A Markdown report: the best trial and the table of every trial."""
    keys = [k for k in (trials[0] if trials else {}) if k not in ("seconds",)]
    lines = [
        "# Hyperparameter tuning",
        "",
        f"**Best trial:** {best_params.get('trial')} ({best_params.get('metric')} = "
        f"{best_params.get('value'):.6g})"
        if best_params.get("value") is not None
        else "",
        "",
        "| " + " | ".join(keys) + " |",
        "|" + "---|" * len(keys),
    ]
    for t in trials:
        cells = []
        for k in keys:
            v = t.get(k)
            cells.append(f"{v:.6g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_trials(trials: list[dict[str, Any]], folder: str) -> None:
    """``trials.csv`` and ``trials.json`` in `folder`."""
    import csv
    from pathlib import Path

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "trials.json").write_text(json.dumps(trials, indent=2))
    keys: list[str] = []
    for t in trials:
        keys += [k for k in t if k not in keys]
    with open(out / "trials.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(trials)


def search(
    train_path: str,
    valid_path: str,
    *,
    label: str,
    task: str,
    tuning: dict[str, Any],
    features: list[str] | None = None,
    exclude: list[str] | None = None,
    model_params: dict[str, Any] | None = None,
    training_params: dict[str, Any] | None = None,
    task_params: dict[str, Any] | None = None,
    tracking_uri: str = "",
    run_name: str = "tuning",
    train_uri: str = "",
    valid_uri: str = "",
    vertex: dict[str, Any] | None = None,
    image: str = "",
) -> TuningResult:
    """The tune step's core: ``tuning.backend`` local (Optuna in this process) or vertex (a
    HyperparameterTuningJob whose trials read the splits at `train_uri`/`valid_uri`).

    Raises:
        DataError: a bad space or data, or no trial finished.
        ValueError: the vertex backend without ``vertex.project`` or an image.
    """
    from voltpipe.data.io import read_table

    cfg = TuningConfig(**tuning)
    if cfg.backend == "local":
        return run_tuning(
            read_table(train_path),
            read_table(valid_path),
            label=label,
            task=task,
            tuning=cfg,
            features=features,
            exclude=exclude,
            model_params=model_params,
            training_params=training_params,
            task_params=task_params,
            tracking_uri=tracking_uri,
            run_name=run_name,
            verbose=0,
        )
    from voltpipe.modelling import vertex_jobs

    cfg = cfg.model_copy(update={"space": search_space(cfg, task, model_params)})
    vertex = dict(vertex or {})
    if not vertex.get("project") or not image:
        raise ValueError("tuning.backend 'vertex' needs vertex.project and the config's image")
    started = time.perf_counter()
    tp = dict(training_params or {})
    if cfg.max_epochs:
        tp["epochs"] = cfg.max_epochs
    job = vertex_jobs.submit_tuning_job(
        vertex=vertex,
        image=image,
        machine=tp.get("vertex") or {},
        train_uri=train_uri,
        valid_uri=valid_uri,
        label=label,
        task=task,
        params={
            "features": features,
            "exclude": exclude,
            "model_params": model_params or {},
            "training_params": tp,
            "task_params": task_params or {},
        },
        tuning=cfg,
        display_name=run_name,
    )
    best = vertex_jobs.best_trial_params(job)
    return TuningResult(
        best_params=best,
        best_value=float(best["value"]),
        metric=str(best["metric"]),
        trials=vertex_jobs.vertex_trials_table(job),
        total_epochs=0,
        seconds=time.perf_counter() - started,
    )


def _epochs_left(budget: int, *, spent: int) -> Callable[[int], int]:
    """``budget_left`` of one fit: the epochs of the budget left after `run` more of it."""
    return lambda run: budget - spent - run
