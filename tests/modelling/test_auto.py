"""Family auto: the candidates' scores, the choice, and the family/task checks at config load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import write_config
from voltpipe.config import DEFAULT_FAMILY, load_config
from voltpipe.errors import ConfigError
from voltpipe.model_dir import read_meta
from voltpipe.modelling.auto import CANDIDATES, CV_FOLDS, SMALL_TABLE
from voltpipe.modelling.train import fit_tables

QUICK_MLP = {"epochs": 4, "batch_size": 256}  # keeps the mlp candidate cheap


def _table(kind: str, n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(0, 1, n), rng.normal(0, 1, n)
    if kind == "linear":  # a plane: the linear model is exact
        y = 3 * x1 - 2 * x2 + rng.normal(0, 0.05, n)
    else:  # steps: trees are exact, a plane is not
        y = 4.0 * (x1 > 0.3) - 3.0 * (x2 > -0.5) * (x1 < 1.0) + rng.normal(0, 0.05, n)
    return pa.table({"x1": x1, "x2": x2, "y": y})


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "winner"), [("linear", "linear"), ("steps", "gbdt")])
def test_auto_keeps_the_family_that_clearly_wins(kind: str, winner: str) -> None:
    fitted, problem = fit_tables(
        _table(kind, 2500, 1),
        _table(kind, 600, 2),
        label="y",
        task="regression",
        training_params=QUICK_MLP,
        verbose=0,
    )
    meta = fitted.meta
    assert meta["family"] == winner and problem.family == winner
    assert meta["auto"]["chosen_by"] == "valid split"
    cands = {c["family"]: c for c in meta["candidates"]}
    assert set(cands) == set(CANDIDATES)
    assert all(c["metric"] == "rmse" and c["fit_seconds"] > 0 for c in cands.values())
    assert [c["family"] for c in meta["candidates"] if c["chosen"]] == [winner]
    best = cands[winner]["score"]
    assert all(best < 0.5 * c["score"] for f, c in cands.items() if f != winner)
    assert best < 0.2  # close to the noise (0.05)


@pytest.mark.slow
def test_a_small_table_is_judged_by_cross_validation_and_saved_as_the_winner(
    tmp_path: Path,
) -> None:
    from tests.modelling.synthetic import write_split
    from voltpipe.modelling.predict import load_model
    from voltpipe.modelling.train import train_model

    write_split(tmp_path / "train", _table("linear", 300, 1))
    write_split(tmp_path / "valid", _table("linear", 40, 2))
    result = train_model(
        tmp_path / "train",
        tmp_path / "valid",
        tmp_path / "model",
        label="y",
        task="regression",
        training_params=QUICK_MLP,
    )
    meta = read_meta(tmp_path / "model")
    assert SMALL_TABLE > 300 and f"{CV_FOLDS}-fold CV" in meta["auto"]["chosen_by"]
    assert all(c["folds"] == CV_FOLDS for c in meta["candidates"])
    assert meta["family"] == result.meta["family"] == "linear"
    assert meta["format"] == "voltpipe-linear-v1"
    assert meta["model_params"]["family"] == "linear"
    pred = load_model(tmp_path / "model").predict_raw(_table("linear", 100, 3))
    assert np.all(np.isfinite(pred))


def test_auto_is_the_default_for_tables() -> None:
    assert DEFAULT_FAMILY["regression"] == DEFAULT_FAMILY["classification"] == "auto"


@pytest.mark.parametrize(
    ("task", "family", "message"),
    [
        (
            "anomaly",
            "gbdt",
            "model.family: 'gbdt' does not serve task 'anomaly'; valid for anomaly: autoencoder",
        ),
        ("regression", "cnn", "valid for regression: auto, linear, mlp, gbdt"),
        (
            "classification",
            "xgboost",
            "unknown model family 'xgboost'; valid: auto, linear, mlp, gbdt",
        ),
    ],
)
def test_a_family_the_task_does_not_have_fails_at_config_load(
    tmp_path: Path, task: str, family: str, message: str
) -> None:
    path = write_config(
        tmp_path, f"query: SELECT 1\nlabel: y\ntask: {task}\nmodel: {{family: {family}}}\n"
    )
    with pytest.raises(ConfigError, match="model.family") as err:
        load_config(path)
    assert message in str(err.value)


def test_gbdt_keys_load_and_tuned_flat_keys_fold_into_the_section(tmp_path: Path) -> None:
    from voltpipe.config import ModelConfig

    path = write_config(
        tmp_path,
        "query: SELECT 1\nlabel: y\ntask: regression\n"
        "model: {family: gbdt, gbdt: {num_leaves: 15, learning_rate: 0.1}}\n",
    )
    cfg = load_config(path)
    assert (cfg.model.gbdt.num_leaves, cfg.model.gbdt.learning_rate) == (15, 0.1)
    mp = ModelConfig(**{"family": "gbdt", "gbdt.num_leaves": 7, "gbdt": {"max_trees": 9}})
    assert (mp.gbdt.num_leaves, mp.gbdt.max_trees) == (7, 9)
    with pytest.raises(ConfigError, match="num_leavs"):
        load_config(path, ["model.gbdt.num_leavs=3"])
