"""The training budget in optimizer steps: derived batch size, epoch cap and patience, explicit
keys winning, and how a fit reports why it stopped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.modelling.synthetic import tabular_table, write_split
from voltpipe.config import TrainingConfig, load_config
from voltpipe.modelling.train import read_train_result, resolve_budget, train_model


def test_tiny_table_gets_thousands_of_steps() -> None:
    b = resolve_budget(TrainingConfig(), 142)  # the 178-row table's train split
    assert b.batch_size == 32
    assert b.steps_per_epoch == 50  # a pass is 5 steps: an epoch repeats it to 50
    assert b.epochs == 40 and b.epochs * b.steps_per_epoch >= TrainingConfig().min_steps
    assert b.early_stopping_patience == 8  # 400 steps
    assert 0 < b.reduce_lr_patience < b.early_stopping_patience
    assert set(b.derived) == {
        "batch_size",
        "epochs",
        "early_stopping_patience",
        "reduce_lr_patience",
    }


def test_big_table_keeps_a_minimum_of_epochs() -> None:
    b = resolve_budget(TrainingConfig(), 200_000)
    assert b.batch_size == 512 and b.steps_per_epoch == 391
    assert b.epochs == 10  # 2000 steps would be 6 epochs; early stopping needs a few more
    assert b.early_stopping_patience == 5


def test_epoch_cap_is_bounded_for_the_smallest_tables() -> None:
    b = resolve_budget(TrainingConfig(min_steps=10_000_000), 40)
    assert b.batch_size == 32 and b.epochs == 1000


def test_explicit_keys_win() -> None:
    tp = TrainingConfig(
        batch_size=64, epochs=7, early_stopping_patience=2, reduce_lr_patience=0, min_steps=10
    )
    b = resolve_budget(tp, 10_000)
    assert (b.batch_size, b.epochs, b.early_stopping_patience, b.reduce_lr_patience) == (
        64,
        7,
        2,
        0,
    )
    assert b.derived == ()


def test_auto_keys_are_unset_in_the_parameter_dump(tmp_path: Path) -> None:
    """The KFP parameter dump drops None: an unset key stays "auto" down to the train step."""
    dump = TrainingConfig().model_dump(exclude_none=True)
    assert "epochs" not in dump and "batch_size" not in dump and dump["min_steps"] == 2000
    cfg = load_config(None, ["training.epochs=5", "training.batch_size=null"], cwd=tmp_path)
    assert cfg.training.epochs == 5 and cfg.training.batch_size is None


def _noise(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "y": rng.normal(size=n)})


@pytest.mark.slow
def test_a_fit_reports_how_it_stopped(tmp_path: Path) -> None:
    def fit(name: str, make, **tp):  # type: ignore[no-untyped-def]
        root = tmp_path / name
        tr = write_split(root / "tr", make(600, 1))
        va = write_split(root / "va", make(200, 2))
        return train_model(
            tr,
            va,
            root / "m",
            label="y" if make is _noise else "target",
            task="regression",
            exclude=[] if make is _noise else ["label"],
            model_params={"family": "mlp", "hidden_units": [8]},
            training_params={"steps_per_execution": 1, **tp},
        )

    # Pure noise: the valid loss stops improving at once, early stopping ends the fit and
    # the best epoch's weights are kept.
    noisy = fit("noise", _noise, learning_rate=0.05, epochs=200, early_stopping_patience=3)
    assert noisy.stopped_by == "early_stopping"
    assert noisy.epochs_run < 200 and noisy.best_epoch == noisy.epochs_run - 3
    assert noisy.warnings == []
    # A learnable target with three epochs: still improving when the cap is reached.
    capped = fit("cap", lambda n, s: tabular_table(n, 2, s), epochs=3)
    assert capped.stopped_by == "epoch_cap" and capped.epochs_run == 3
    assert capped.best_epoch == 3 and "best epoch is the last one" in capped.warnings[0]
    assert "training.epochs" in capped.warnings[0]
    # A time budget far below one epoch stops after the first step's epoch.
    timed = fit("time", lambda n, s: tabular_table(n, 2, s), max_seconds=1e-3, epochs=50)
    assert timed.stopped_by == "time_budget" and timed.epochs_run == 1
    # The metadata carries it all, and a folder read back gives the same result.
    again = read_train_result(tmp_path / "noise" / "m", seconds=0.0)
    assert (again.stopped_by, again.epochs_run, again.best_epoch) == (
        "early_stopping",
        noisy.epochs_run,
        noisy.best_epoch,
    )
    assert noisy.meta["budget"]["early_stopping_patience"] == 3
    assert noisy.meta["budget"]["batch_size"] == 37  # 600 // 16, derived
