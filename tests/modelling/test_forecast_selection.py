"""Model selection on the valid backtest: combination weights by block of steps, the
statistical family's damping, level smoothing and per-season adaptation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from voltpipe.modelling import forecast_features as ff
from voltpipe.modelling import forecast_stat as fs
from voltpipe.modelling.forecast_auto import (
    WEIGHT_BLOCKS,
    MeanForecaster,
    NaiveForecaster,
    combination_weights,
)
from voltpipe.modelling.forecasting import SeriesTable
from voltpipe.modelling.train import META_FILE, train_model


def test_combination_weights_follow_the_better_member_in_each_block_of_steps() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(300, 8))
    noise = rng.normal(size=(300, 8))
    # `first` is exact at the first half of the horizon and noisy after; `second` the reverse.
    first = truth + np.where(np.arange(8) < 4, 0.0, 1.0) * noise
    second = truth + np.where(np.arange(8) < 4, 1.0, 0.0) * rng.normal(size=(300, 8))
    w = combination_weights(first, second, truth)
    assert w.shape == (8,) and WEIGHT_BLOCKS == 4
    np.testing.assert_allclose(w, [1, 1, 1, 1, 0, 0, 0, 0])

    # Equal members' noise: a weight in between beats both, never worse than the better one.
    a, b = truth + noise, truth + rng.normal(size=truth.shape)
    w = combination_weights(a, b, truth)
    assert np.all((w > 0.2) & (w < 0.8)), w
    mixed = float(np.abs(a * w + b * (1 - w) - truth).mean())
    assert mixed < min(np.abs(a - truth).mean(), np.abs(b - truth).mean())


def _series(y: np.ndarray, step_minutes: int = 60) -> SeriesTable:
    times = np.datetime64("2024-01-01T00:00") + np.arange(len(y)) * np.timedelta64(
        step_minutes, "m"
    )
    return SeriesTable(
        values=y[:, None].astype("float32"),
        target=y.astype("float64"),
        series_id=np.zeros(len(y), "int64"),
        groups=np.full(len(y), "", dtype=object),
        times=times,
    )


def test_mean_forecaster_weighs_each_step_of_its_members() -> None:
    y = np.sin(np.arange(200) * 2 * np.pi / 24) * 10 + np.arange(200) * 0.1
    st = _series(y)
    spec = ff.FeatureSpec(window=24, horizon=3, seasons=(24,))
    last = NaiveForecaster(spec)
    seasonal = NaiveForecaster(ff.FeatureSpec(24, 3, (24,), base="season:24"))
    origins = np.arange(60, 150)
    weights = {"last": [1.0, 0.5, 0.0], "seasonal": [0.0, 0.5, 1.0]}
    got = MeanForecaster({"last": last, "seasonal": seasonal}, weights).forecast(st, origins)
    a, b = last.forecast(st, origins), seasonal.forecast(st, origins)
    np.testing.assert_allclose(got, a * [1.0, 0.5, 0.0] + b * [0.0, 0.5, 1.0], rtol=1e-6)
    # without weights: the plain mean
    plain = MeanForecaster({"last": last, "seasonal": seasonal}).forecast(st, origins)
    np.testing.assert_allclose(plain, (a + b) / 2, rtol=1e-6)


def _fit(y: np.ndarray, horizon: int, seasons: tuple[int, ...], valid: int) -> tuple:
    st = _series(y)
    spec = ff.FeatureSpec(window=24, horizon=horizon, seasons=seasons, history=4 * max(seasons))
    is_valid = np.arange(len(y)) >= len(y) - valid
    train_o, valid_o = ff.split_origins(st, is_valid, context=spec.context, horizon=horizon)
    model, _ = fs.fit_statistical(st, train_o, valid_o, spec)
    return st, spec, model, valid_o


def test_statistical_backtest_keeps_a_steady_trend_undamped() -> None:
    rng = np.random.default_rng(1)
    n = 24 * 60
    t = np.arange(n)
    y = 0.05 * t + 3 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.3, n)
    st, _, model, valid_o = _fit(y, 48, (24,), 24 * 14)
    assert model.params["phi"] == 1.0
    truth = st.target[valid_o[:, None] + np.arange(48)]
    undamped = float(np.abs(model.forecast(st, valid_o) - truth).mean())
    model.params["phi"] = 0.98
    damped = float(np.abs(model.forecast(st, valid_o) - truth).mean())
    assert undamped < 0.8 * damped, (undamped, damped)


def test_statistical_profiles_adapt_when_the_daily_shape_changes() -> None:
    rng = np.random.default_rng(2)
    n = 24 * 70
    t = np.arange(n)
    shift = np.where(t >= n - 24 * 10, 6, 0)  # ten days before the end the peak moves 6 hours
    y = 100 + 5 * np.sin(2 * np.pi * (t + shift) / 24) + rng.normal(0, 0.3, n)
    st, spec, model, valid_o = _fit(y, 24, (24,), 24 * 14)
    assert model.gammas()[24] > 0, model.params
    truth = st.target[valid_o[:, None] + np.arange(24)]
    adapted = float(np.abs(model.forecast(st, valid_o) - truth).mean())
    model.params["gammas"] = {"24": 0.0}
    fixed = float(np.abs(model.forecast(st, valid_o) - truth).mean())
    assert adapted < fixed, (adapted, fixed)
    # models saved before per-season rates: `gamma` adapts the longest season only
    old = fs.StatForecaster(
        {k: v for k, v in model.params.items() if k != "gammas"} | {"gamma": 0.3}, spec
    )
    assert old.gammas() == {24: 0.3}


def test_auto_saves_the_combination_weights_it_forecasts_with(
    demand_splits: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "auto"
    train_model(
        demand_splits["train"],
        demand_splits["valid"],
        out,
        label="load_mw",
        task="forecasting",
        task_params={
            "time_column": "ts",
            "forecasting": {"window": 24, "horizon": 6, "group_column": "site"},
        },
    )
    meta = json.loads((out / META_FILE).read_text())
    f = meta["forecasting"]
    combination = next(c for c in meta["candidates"] if c["family"] == "combination")
    weights = combination["weights"]
    assert set(weights) == set(combination["members"])
    total = np.sum([weights[m] for m in weights], axis=0)
    np.testing.assert_allclose(total, np.ones(6), atol=1e-3)
    if len(f["members"]) == 2:  # the combination won: its weights are the model's
        assert set(f["weights"]) == set(f["members"])
    else:
        assert "weights" not in f
    # the history the statistical family reads is part of the context every caller cuts
    assert f["context"] >= f["features"]["history"]
