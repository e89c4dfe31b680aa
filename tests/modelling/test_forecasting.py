"""Forecasting: windows, season detection, every family, and skill against naive baselines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.modelling.synthetic import demand_series
from voltpipe.evaluation.forecast_metrics import forecast_metrics, score_forecaster
from voltpipe.modelling import forecasting as fc
from voltpipe.modelling.predict import load_model
from voltpipe.modelling.train import META_FILE, train_model

TASK = {
    "time_column": "ts",
    "forecasting": {"window": 48, "horizon": 6, "group_column": "site", "covariates": ["temp_c"]},
}


def test_windows_never_cross_a_series_and_follow_time() -> None:
    st = fc.series_table(
        demand_series(days=3),
        label="load_mw",
        time_column="ts",
        group_column="site",
        covariates=["temp_c"],
        calendar=True,
    )
    assert st.values.shape == (144, 6)  # label, temp, 4 calendar channels
    starts = fc.window_starts(st.series_id, window=24, horizon=6)
    # each 72-row series has 72 - 30 + 1 = 43 windows; none spans the two sites
    assert len(starts) == 86
    assert np.all(st.series_id[starts] == st.series_id[starts + 29])
    assert np.all(np.diff(st.times.astype("int64")[:72]) > 0)
    assert set(np.diff(fc.window_starts(st.series_id, window=24, horizon=6, stride=4))) >= {4}


def test_season_detection_finds_the_cycle() -> None:
    t = np.arange(24 * 28)
    y = np.sin(2 * np.pi * t / 24) + 0.1 * np.random.default_rng(0).normal(size=len(t))
    assert fc.detect_season(y, max_lag=100) == 24
    assert fc.detect_season(np.random.default_rng(1).normal(size=500), max_lag=100) is None
    assert fc.detect_season(np.full(200, 3.0), max_lag=50) is None
    assert fc.detect_season(np.arange(200.0), max_lag=50) is None  # a trend is not a season


def test_season_detection_sees_through_a_trend() -> None:
    # Weekly CO2-like: a curving trend that dwarfs a yearly cycle of 52.18 weeks. The ACF of the
    # raw series peaks early (the trend's slow decay drags the peak); detrended, it is 52.
    w = np.arange(52 * 30)
    rng = np.random.default_rng(3)
    y = (
        315
        + 0.02 * w
        + 1e-5 * w**2
        + 3 * np.sin(2 * np.pi * w / 52.18)
        + 0.3 * rng.normal(size=len(w))
    )
    assert fc.detect_season(y, max_lag=500) == 52
    # Half-hourly with daily and weekly cycles on a rising trend: the daily one (shortest).
    t = np.arange(48 * 7 * 8)
    y = 1000 + 0.05 * t + 200 * np.sin(2 * np.pi * t / 48) + 80 * np.sin(2 * np.pi * t / 336)
    assert fc.detect_season(y + rng.normal(0, 30, len(t)), max_lag=2000) == 48
    # A random walk (stochastic trend) with a daily cycle: found on the differences.
    walk = np.cumsum(rng.normal(size=3000)) + 4 * np.sin(2 * np.pi * np.arange(3000) / 24)
    assert fc.detect_season(walk, max_lag=200) in (23, 24, 25)


def test_season_detection_on_statsmodels_co2() -> None:
    co2 = pytest.importorskip("statsmodels.datasets.co2")
    y = co2.load_pandas().data["co2"].interpolate().bfill().to_numpy()
    assert fc.detect_season(y, max_lag=1000) == 52  # the raw-ACF peak was 46-49


def test_forecast_metrics_and_skill() -> None:
    y = np.array([[1.0, 2.0], [3.0, 4.0]])
    m = forecast_metrics(y, y + 0.5, persistence=y + 1.0, seasonal=y + 2.0, season=24)
    assert m["mae"] == pytest.approx(0.5) and m["rmse"] == pytest.approx(0.5)
    assert m["skill_persistence"] == pytest.approx(0.5)
    assert m["skill_seasonal"] == pytest.approx(0.75)
    assert m["mae_h1"] == pytest.approx(0.5) and m["mape"] > 0


@pytest.mark.slow
def test_cnn_forecaster_beats_persistence(demand_splits: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = train_model(
        demand_splits["train"],
        demand_splits["valid"],
        out,
        label="load_mw",
        task="forecasting",
        model_params={"family": "cnn", "hidden_units": [32]},
        training_params={
            "epochs": 3,
            "batch_size": 64,
            "learning_rate": 0.003,
            "steps_per_execution": 4,
        },
        task_params=TASK,
    )
    meta = json.loads((out / META_FILE).read_text())
    assert meta["task"] == "forecasting" and meta["label"] == "load_mw"
    assert meta["forecasting"]["channels"][:2] == ["load_mw", "temp_c"]
    assert meta["forecasting"]["season_source"] == "detected"
    assert meta["forecasting"]["season"] in (24, 168)
    assert "(n_windows, horizon)" in meta["output"]
    # A window needs the model's context (the window and its seasonal lags) + the horizon.
    span = meta["forecasting"]["context"] + 6
    assert result.rows["train_windows"] == 2 * (28 * 24 - span + 1)

    loaded = load_model(out)
    test = pq.read_table(demand_splits["test"])
    valid = pq.read_table(demand_splits["valid"])
    history = pa.concat_tables([valid, test.select(valid.column_names)])
    pred = loaded.predict_raw(history)  # raw rows in, raw units out
    assert pred.shape == (2 * (history.num_rows // 2 - span + 1), 6)
    metrics = score_forecaster(loaded, test, valid).metrics
    assert metrics["skill_persistence"] > 0.2, metrics
    assert "skill_seasonal" in metrics and metrics["mae"] < metrics["mae_persistence"]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["lstm", "gru", "transformer", "mlp"])
def test_other_families_train_and_predict(
    family: str, demand_splits: dict[str, Path], tmp_path: Path
) -> None:
    task = {
        "time_column": "ts",
        "forecasting": {
            "window": 12,
            "horizon": 2,
            "group_column": "site",
            "stride": 8,
            "season": 24,
        },
    }
    train_model(
        demand_splits["train"],
        demand_splits["valid"],
        tmp_path / family,
        label="load_mw",
        task="forecasting",
        model_params={"family": family, "hidden_units": [16], "rnn_units": 8, "key_dim": 8},
        training_params={"epochs": 1, "batch_size": 64, "steps_per_execution": 1},
        task_params=task,
    )
    loaded = load_model(tmp_path / family)
    assert loaded.meta["family"] == family
    assert loaded.meta["forecasting"]["season_source"] == "configured"
    pred = loaded.predict_raw(pq.read_table(demand_splits["test"]))
    context = loaded.meta["forecasting"]["context"]  # window 12, one day + 24 steps of season
    assert pred.shape == (2 * (7 * 24 - context - 2 + 1), 2) and np.all(np.isfinite(pred))
