"""Local tuning: Optuna with pruning, nested MLflow runs, folds, and the tune -> train wiring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from kfp import dsl

from tests.modelling.synthetic import tabular_table, write_split
from voltpipe.components.train import train
from voltpipe.components.tune import tune
from voltpipe.config import TuningConfig
from voltpipe.errors import ConfigError, DataError
from voltpipe.modelling.tuning import (
    _pruning_callback,
    apply_best_params,
    expanding_window_indices,
    kfold_indices,
    run_tuning,
)

SPACE = {
    "hidden_units": [[8], [16, 8]],
    "learning_rate": {"min": 1e-4, "max": 3e-2, "log": True},
    "batch_size": [128, 256],
}
TRAINING = {"epochs": 5, "early_stopping_patience": 5, "steps_per_execution": 1}


def _art(cls: type, root: Path, name: str) -> dsl.Artifact:
    return cls(name=name, uri=str(root / name), metadata={})


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tune")
    return {
        "train": write_split(root / "train", tabular_table(1200, 2, 1)),
        "valid": write_split(root / "valid", tabular_table(400, 2, 2)),
    }


def test_space_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown key 'layers'"):
        TuningConfig(space={"layers": [1, 2]})
    with pytest.raises(ValueError, match="a log range needs min > 0"):
        TuningConfig(space={"learning_rate": {"min": 0, "max": 1, "log": True}})
    from voltpipe.config import load_config

    with pytest.raises(ConfigError, match="tuning.folds"):
        load_config(None, ["tuning.folds=1"])
    with pytest.raises(ConfigError, match="unknown model family 'xgb'"):
        load_config(None, ["model.family=xgb"])
    cfg = load_config(
        None,
        [
            "task=forecasting",
            "time_column=ts",
            "forecasting={window: 24, horizon: 6, group_column: turbine_id, season: 144}",
            "anomaly.threshold_quantile=0.995",
            "training.vertex={machine_type: n1-standard-8, replica_count: 2}",
            "tuning={enabled: true, space: {window: [24, 48]}, backend: vertex}",
        ],
    )
    assert cfg.forecasting.group_column == "turbine_id" and cfg.forecasting.season == 144
    assert cfg.training.vertex.replica_count == 2 and cfg.tuning.backend == "vertex"


def test_folds() -> None:
    folds = kfold_indices(10, 5, seed=0)
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(10))
    times = np.repeat(np.arange(12), 2)  # two series cut at the same times
    exp = expanding_window_indices(times, 3)
    assert [len(t) for t, _ in exp] == [6, 12, 18] and [len(v) for _, v in exp] == [6, 6, 6]
    assert all(times[t].max() < times[v].min() for t, v in exp)


def test_best_params_merge_over_training_params() -> None:
    best = {
        "model": {"hidden_units": [8]},
        "training": {"learning_rate": 0.01},
        "forecasting": {"window": 24},
        "value": 0.3,
    }
    mp, tp, task = apply_best_params(
        best, {"dropout": 0.2}, {"epochs": 3}, {"forecasting": {"window": 48, "horizon": 6}}
    )
    assert mp == {"dropout": 0.2, "hidden_units": [8]}
    assert tp == {"epochs": 3, "learning_rate": 0.01}
    assert task["forecasting"] == {"window": 24, "horizon": 6}


@pytest.mark.slow
def test_pruned_search_with_nested_mlflow_runs(splits: dict[str, Path], tmp_path: Path) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_tuning(
        pq.read_table(splits["train"]),
        pq.read_table(splits["valid"]),
        label="label",
        task="classification",
        exclude=["target"],
        model_params={"family": "mlp"},  # Keras epochs are what the pruner watches
        training_params=TRAINING,
        tuning={"max_trials": 7, "algorithm": "bayesian", "space": SPACE, "seed": 3},
        tracking_uri=uri,
        run_name="tune-test",
    )
    states = [t["state"] for t in result.trials]
    assert len(states) == 7 and result.n_pruned >= 1 and result.n_complete >= 1, states
    pruned = [t for t in result.trials if t["state"] == "PRUNED"]
    assert any(t["epochs"] < 5 for t in pruned), result.trials
    assert result.total_epochs < 7 * 5
    best = result.best_params
    assert best["value"] == min(t["value"] for t in result.trials if t["state"] == "COMPLETE")
    assert best["model"]["hidden_units"] in ([8], [16, 8]) and best["training"]["batch_size"] in (
        128,
        256,
    )
    client = mlflow.MlflowClient(tracking_uri=uri)
    children = client.search_runs(
        [client.get_run(result.parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'",
    )
    assert len(children) == 7
    assert sum(r.info.status == "KILLED" for r in children) == result.n_pruned
    assert client.get_run(result.parent_run_id).data.metrics["best_value"] == pytest.approx(
        best["value"]
    )


@pytest.mark.slow
def test_tune_component_feeds_train(splits: dict[str, Path], tmp_path: Path) -> None:
    data = {s: dsl.Dataset(name=s, uri=str(p), metadata={}) for s, p in splits.items()}
    outs = {
        n: _art(c, tmp_path, n)
        for n, c in (
            ("best_params", dsl.Artifact),
            ("trials", dsl.Artifact),
            ("report", dsl.Markdown),
            ("metrics", dsl.Metrics),
        )
    }
    tune.python_func(
        train_data=data["train"],
        valid_data=data["valid"],
        label="label",
        task="classification",
        exclude=["target"],
        training_params={**TRAINING, "epochs": 2},
        tuning={
            "max_trials": 2,
            "algorithm": "random",
            "folds": 2,
            "space": {"hidden_units": [[8], [4]]},
        },
        **outs,
    )
    best = json.loads(Path(outs["best_params"].path).read_text())
    assert best["backend"] == "local" and best["model"]["hidden_units"] in ([8], [4])
    trials = json.loads(Path(outs["trials"].path, "trials.json").read_text())
    assert len(trials) == 2 and all(t["folds"] == 2 and t["value_std"] >= 0 for t in trials)
    assert Path(outs["trials"].path, "trials.csv").read_text().startswith("trial,state,value")
    assert "| trial | state | value |" in Path(outs["report"].path).read_text()

    model = _art(dsl.Model, tmp_path, "model")
    train.python_func(
        train_data=data["train"],
        valid_data=data["valid"],
        label="label",
        task="classification",
        model=model,
        metrics=_art(dsl.Metrics, tmp_path, "train_metrics"),
        curves=_art(dsl.HTML, tmp_path, "curves"),
        exclude=["target"],
        model_params={"family": "mlp", "hidden_units": [32]},
        training_params={**TRAINING, "epochs": 1},
        best_params=outs["best_params"],
    )
    meta = json.loads(Path(model.path, "voltpipe_model.json").read_text())
    assert meta["model_params"]["hidden_units"] == best["model"]["hidden_units"]
    assert meta["best_params"]["trial"] == best["trial"]


def test_epoch_budget_is_validated() -> None:
    with pytest.raises(ValueError, match="max_total_epochs: 9 is less than one trial's 10"):
        TuningConfig(max_epochs=5, folds=2, max_total_epochs=9)
    assert TuningConfig(max_epochs=5, folds=2, max_total_epochs=10).max_total_epochs == 10
    # without max_epochs the trial length is training.epochs, known only when the search runs
    table = tabular_table(50, 2, 1)
    with pytest.raises(DataError, match="max_total_epochs: 4 is less than one trial's 5"):
        run_tuning(
            table,
            table,
            label="label",
            task="classification",
            training_params=TRAINING,
            tuning={"space": SPACE, "max_total_epochs": 4},
        )


def test_pruning_callback_reports_epochs_trained_and_stops_on_budget() -> None:
    class FakeTrial:
        def __init__(self) -> None:
            self.reported: list[tuple[float, int]] = []

        def report(self, value: float, step: int) -> None:
            self.reported.append((value, step))

        def should_prune(self) -> bool:
            return False

    class FakeModel:
        stop_training = False

    trial = FakeTrial()
    spent = 5  # epochs the search had trained before this fit, of a budget of 8
    cb = _pruning_callback(trial, "val_loss", report=True, budget_left=lambda run: 8 - spent - run)
    cb.set_params({"epochs": 4})
    cb.set_model(FakeModel())
    for epoch in range(2):
        cb.on_epoch_end(epoch, {"val_loss": 1.0 - epoch / 10})
    assert trial.reported == [(1.0, 1), (0.9, 2)]  # step = epochs trained, the pruners' resource
    assert not cb.model.stop_training and not cb.budget_stopped
    cb.on_epoch_end(2, {"val_loss": 0.8})
    assert cb.model.stop_training and cb.budget_stopped and cb.epochs == 3

    # the budget running out on the fit's last epoch is a normal end, not a budget stop
    last = _pruning_callback(FakeTrial(), "val_loss", report=False, budget_left=lambda run: 2 - run)
    last.set_params({"epochs": 2})
    last.set_model(FakeModel())
    for epoch in range(2):
        last.on_epoch_end(epoch, {"val_loss": 1.0})
    assert not last.budget_stopped and not last.model.stop_training


@pytest.mark.slow
@pytest.mark.parametrize(
    ("folds", "budget", "epochs", "states"),
    [
        # 3 + 3 epochs, then the third trial is stopped after 1: 7 in all, no fourth trial
        (0, 7, [3, 3, 1], ["COMPLETE", "COMPLETE", "PRUNED"]),
        # 2 folds x 2 epochs, then the second trial's first fold is stopped after 1 epoch
        (2, 5, [4, 1], ["COMPLETE", "PRUNED"]),
    ],
)
def test_epoch_budget_caps_the_search(
    splits: dict[str, Path], folds: int, budget: int, epochs: list[int], states: list[str]
) -> None:
    result = run_tuning(
        pq.read_table(splits["train"]),
        pq.read_table(splits["valid"]),
        label="label",
        task="classification",
        exclude=["target"],
        model_params={"family": "mlp"},  # the budget counts Keras epochs
        training_params={**TRAINING, "epochs": 3 if not folds else 2},
        tuning={
            "max_trials": 10,
            "algorithm": "random",
            "space": SPACE,
            "folds": folds,
            "max_total_epochs": budget,
            "seed": 1,
        },
        prune=False,  # no pruner, no early stopping: only the budget ends trials early
    )
    assert [t["epochs"] for t in result.trials] == epochs, result.trials
    assert [t["state"] for t in result.trials] == states
    assert result.total_epochs == budget
    assert result.best_params["trial"] in [
        t["trial"] for t in result.trials if t["state"] == "COMPLETE"
    ]


@pytest.mark.slow
def test_enabled_alone_searches_the_family_default_space(splits: dict[str, Path]) -> None:
    from voltpipe.modelling.search_space import DEFAULT_SPACES

    result = run_tuning(
        pq.read_table(splits["train"]),
        pq.read_table(splits["valid"]),
        label="label",
        task="classification",
        exclude=["target"],
        model_params={"family": "mlp"},
        training_params={"epochs": 2, "steps_per_execution": 1},
        tuning={"max_trials": 2},  # no space: the mlp default
    )
    searched = {**result.best_params["model"], **result.best_params["training"]}
    assert set(searched) == set(DEFAULT_SPACES["mlp"])
    assert searched["hidden_units"] in DEFAULT_SPACES["mlp"]["hidden_units"]


@pytest.mark.slow
def test_epochs_and_patience_are_searched_as_integers(splits: dict[str, Path]) -> None:
    result = run_tuning(
        pq.read_table(splits["train"]),
        pq.read_table(splits["valid"]),
        label="label",
        task="classification",
        exclude=["target"],
        model_params={"family": "mlp", "hidden_units": [8]},
        training_params={"steps_per_execution": 1},
        tuning={
            "max_trials": 2,
            "space": {
                "epochs": {"min": 2, "max": 3},
                "early_stopping_patience": [1, 2],
                "batch_size": [64, 128],
            },
        },
        prune=False,
    )
    best = result.best_params["training"]
    assert set(best) == {"epochs", "early_stopping_patience", "batch_size"}
    assert all(type(v) is int for v in best.values()), best
    assert json.loads(json.dumps(result.best_params))["training"]["batch_size"] in (64, 128)
    assert all(t["epochs"] <= 3 for t in result.trials)
