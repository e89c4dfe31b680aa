"""Tuning: the pruned search (TPE sampling, median pruning, a third of the trials) against a
plain random search on a fixed problem: the best validation loss it reaches, and the epochs it
trains to get there.

Both searches use the same space, data, epochs per trial and seed. The random search trains
every trial to the end (no pruning, no early stopping), as a fixed-budget baseline does.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from benchmarks import Row

ALGORITHM = "bayesian"  # TPE sampling, median pruning
SPACE = {
    "hidden_units": [[16], [32, 16], [64, 32]],
    "dropout": [0.0, 0.2],
    "learning_rate": {"min": 1e-4, "max": 3e-2, "log": True},
    "batch_size": [64, 256],
}


def problem_table(n: int, seed: int) -> pa.Table:
    """A non-linear regression: blade-pitch power loss from wind, pitch and icing."""
    rng = np.random.default_rng(seed)
    wind = rng.uniform(3, 25, n)
    pitch = rng.uniform(0, 20, n)
    temp = rng.normal(5, 8, n)
    icing = (temp < 0) & (rng.random(n) < 0.5)
    loss = (
        0.02 * wind**2 * np.sin(np.radians(pitch)) * 10
        + 3 * icing * np.tanh(wind / 8)
        + rng.normal(0, 1.0, n)
    )
    return pa.table({"wind": wind, "pitch": pitch, "temp": temp, "icing": icing, "loss": loss})


def run(quick: bool) -> list[Row]:
    from voltpipe.modelling.tuning import run_tuning

    n, trials, epochs = (2_000, 10, 4) if quick else (6_000, 30, 9)
    train, valid = problem_table(n, 1), problem_table(n // 4, 2)
    training = {"epochs": epochs, "early_stopping_patience": epochs, "steps_per_execution": 1}
    common = dict(label="loss", task="regression", training_params=training, verbose=0)
    baseline = run_tuning(
        train,
        valid,
        tuning={"max_trials": trials, "algorithm": "random", "space": SPACE, "seed": 0},
        prune=False,
        **common,
    )
    # The pruned search also early-stops each trial (patience 2), as a normal training run does.
    pruned = run_tuning(
        train,
        valid,
        label="loss",
        task="regression",
        training_params={**training, "early_stopping_patience": 2},
        verbose=0,
        tuning={"max_trials": trials // 3, "algorithm": ALGORITHM, "space": SPACE, "seed": 0},
    )
    extra = {
        "trials": trials,
        "epochs_per_trial": epochs,
        "pruned_trials": pruned.n_pruned,
        "random_best": baseline.best_params,
        "pruned_best": pruned.best_params,
        "random_seconds": round(baseline.seconds, 1),
        "pruned_seconds": round(pruned.seconds, 1),
    }
    return [
        Row(
            "tuning",
            f"best val loss, {trials // 3}-trial pruned TPE vs {trials}-trial random",
            pruned.best_value,
            "mse",
            baseline.best_value,
            f"{trials}-trial random search, no pruning",
            "ratio <= 1.02",
            extra=extra,
        ),
        Row(
            "tuning",
            "epochs trained, pruned TPE vs random",
            float(pruned.total_epochs),
            "epochs",
            float(baseline.total_epochs),
            f"{trials}-trial random search, no pruning",
            "ratio <= 0.334",
            extra=extra,
        ),
    ]
