"""Deterministic training: the same config, data and seed give the same model and metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.modelling.synthetic import tabular_table, write_split
from voltpipe.evaluation.evaluate import score_model
from voltpipe.modelling.predict import load_model
from voltpipe.modelling.train import train_model

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_two_runs_give_the_same_model(task: str, tmp_path: Path) -> None:
    tr = write_split(tmp_path / "tr", tabular_table(800, 3, 1))
    va = write_split(tmp_path / "va", tabular_table(200, 3, 2))
    te = write_split(tmp_path / "te", tabular_table(300, 3, 3))
    label, exclude = ("label", ["target"]) if task == "classification" else ("target", ["label"])

    def run(name: str, seed: int = 7):  # type: ignore[no-untyped-def]
        result = train_model(
            tr,
            va,
            tmp_path / name,
            label=label,
            task=task,
            exclude=exclude,
            # dropout and the shuffled batches both draw from the seed
            model_params={"family": "mlp", "hidden_units": [16, 8], "dropout": 0.2},
            training_params={"epochs": 4, "seed": seed},
        )
        out = load_model(tmp_path / name).predict_raw(pq.read_table(te))
        return result, out, score_model(tmp_path / name, te).metrics

    (r1, p1, m1), (r2, p2, m2) = run("a"), run("b")
    np.testing.assert_allclose(p1, p2, rtol=0, atol=1e-9)
    assert m1.keys() == m2.keys()
    for key in m1:
        assert m1[key] == pytest.approx(m2[key], abs=1e-9), key
    assert r1.history.keys() == r2.history.keys()
    for key, values in r1.history.items():
        assert values == pytest.approx(r2.history[key], abs=1e-9), key
    # Another seed gives another model: the test can tell models apart.
    _, p3, _ = run("c", seed=8)
    assert np.max(np.abs(p3 - p1)) > 1e-4
