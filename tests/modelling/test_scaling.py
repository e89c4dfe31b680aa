"""Robust feature scaling: constant train columns scale by 1 (scikit-learn's rule) and the
standardised inputs are clipped, the same way in Keras and in the NumPy replay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.modelling.synthetic import tabular_table, write_split
from voltpipe.modelling.features import plan_features, scale_variance
from voltpipe.modelling.mlp import CLIP
from voltpipe.modelling.replay import Replay
from voltpipe.modelling.train import train_model


def test_scale_variance_is_one_for_constant_columns() -> None:
    assert scale_variance(np.zeros(50)) == 1.0
    assert scale_variance(np.full(1000, 0.1)) == 1.0  # rounding leaves a tiny non-zero var
    assert scale_variance(np.array([0.0, 0.0, 0.0, 1.0])) == pytest.approx(0.1875)
    cols = np.c_[np.zeros(5), np.arange(5.0), np.full(5, 3.3)]
    np.testing.assert_allclose(scale_variance(cols, axis=0), [1.0, 2.0, 1.0])


def test_plan_gives_a_constant_column_unit_variance() -> None:
    table = pa.table({"flag": np.zeros(20), "x": np.arange(20.0), "y": np.arange(20.0)})
    plan = plan_features(table, label="y")
    assert plan.numeric["flag"] == {"mean": 0.0, "variance": 1.0}
    assert plan.numeric["x"]["variance"] == pytest.approx(np.arange(20.0).var())


def _with_flag(n: int, seed: int, flag: float) -> pa.Table:
    table = tabular_table(n, 2, seed)
    return table.append_column("alarm", pa.array(np.full(n, flag)))


@pytest.mark.slow
def test_unseen_value_in_a_constant_column_gives_a_sane_prediction(tmp_path: Path) -> None:
    """The issue's case: a column always 0 in train is 1 at test. With the old 1e-12 variance
    floor that input was scaled by 10^6 and flipped rows to the wrong class with probability
    1.000; now it moves the input by 1 and Keras and the replay agree."""
    import keras
    import tensorflow as tf

    tr = write_split(tmp_path / "tr", _with_flag(1200, 1, 0.0))
    va = write_split(tmp_path / "va", _with_flag(300, 2, 0.0))
    result = train_model(
        tr,
        va,
        tmp_path / "m",
        label="label",
        task="classification",
        exclude=["target"],
        model_params={"family": "mlp", "hidden_units": [16]},
        training_params={"epochs": 5, "learning_rate": 0.01},
    )
    assert result.meta["features"]["numeric"]["alarm"]["variance"] == 1.0
    test = tabular_table(400, 2, 3)
    numeric = ["x1", "x2", "alarm"]
    xc = np.asarray(test.column("cat").to_pylist(), object).reshape(-1, 1)
    base = np.c_[test.column("x1").to_numpy(), test.column("x2").to_numpy(), np.zeros(400)]
    flagged = base.copy()
    flagged[:, 2] = 1.0
    huge = base.copy()
    huge[:, 2] = 1e9  # far outside anything: clipped to CLIP standard deviations

    replay = Replay.load(tmp_path / "m")
    assert replay is not None
    forward = replay.forward(numeric, ["cat"])
    model = keras.saving.load_model(tmp_path / "m" / "model.keras", safe_mode=True)

    def keras_predict(xn: np.ndarray) -> np.ndarray:
        inputs = {n: tf.constant(xn[:, j : j + 1], tf.float32) for j, n in enumerate(numeric)}
        inputs["cat"] = tf.constant(xc.astype(str))
        return np.asarray(model(inputs, training=False), dtype="float64")

    p_base, p_flag, p_huge = (forward(x.astype("float32"), xc) for x in (base, flagged, huge))
    for x, p in ((base, p_base), (flagged, p_flag), (huge, p_huge)):
        assert np.all(np.isfinite(p))
        np.testing.assert_allclose(p, keras_predict(x), rtol=1e-4, atol=1e-5)
    # The flag moves predictions a little, never to a confident wrong class.
    assert np.mean(np.abs(p_flag - p_base)) < 0.1
    assert np.mean(p_flag.argmax(1) == p_base.argmax(1)) > 0.95
    # A value of 1e9 acts as CLIP standard deviations: bounded, not saturating every row.
    clipped = base.copy()
    clipped[:, 2] = CLIP  # mean 0, variance 1: the clipped standardised value
    np.testing.assert_allclose(p_huge, forward(clipped.astype("float32"), xc), atol=1e-9)
    assert np.max(p_huge) < 1.0
