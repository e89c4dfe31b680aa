"""Forecasting families gbdt and statistical: the shared feature path, the naive base, seasons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from voltpipe.errors import DataError
from voltpipe.modelling import forecast_features as ff
from voltpipe.modelling import forecasting as fc
from voltpipe.modelling.predict import load_model
from voltpipe.modelling.train import META_FILE, train_model

TASK = {
    "time_column": "ts",
    "forecasting": {"window": 24, "horizon": 6, "group_column": "site", "covariates": ["temp_c"]},
}


def _naive_maes(loaded, table: pa.Table) -> dict[str, float]:
    """Persistence and seasonal-naive MAE (daily, weekly) on the windows the model scores."""
    w = loaded.forecast_windows(table)
    origins = w.starts + w.window
    truth = w.y_true
    out = {"persistence": float(np.abs(w.series.target[origins - 1][:, None] - truth).mean())}
    for m in (24, 168):
        lagged = w.series.target[ff.seasonal_lag(origins, w.horizon, m)]
        out[f"seasonal_{m}"] = float(np.abs(lagged - truth).mean())
    return out


def _valid_and_test(splits: dict[str, Path]) -> pa.Table:
    return pa.concat_tables([pq.read_table(splits["valid"]), pq.read_table(splits["test"])])


def test_detect_seasons_finds_daily_and_weekly_but_not_their_echoes() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(24 * 7 * 8)
    weekend = ((t // 24) % 7 >= 5).astype(float)
    y = 10 * np.sin(2 * np.pi * t / 24) - 8 * weekend + 0.05 * t + rng.normal(0, 1, len(t))
    assert ff.detect_seasons(y, max_lag=1000) == [24, 168]
    daily_only = 10 * np.sin(2 * np.pi * t / 24) + 0.05 * t + rng.normal(0, 1, len(t))
    assert ff.detect_seasons(daily_only, max_lag=1000) == [24]  # 48, 72, ... are echoes
    assert ff.detect_seasons(rng.normal(size=2000), max_lag=500) == []
    assert ff.detect_seasons(rng.normal(size=2000).cumsum(), max_lag=500) == []


def test_detect_seasons_on_statsmodels_co2_finds_the_year() -> None:
    from statsmodels.datasets import co2

    y = co2.load_pandas().data["co2"].interpolate().bfill().to_numpy()
    seasons = ff.detect_seasons(y, max_lag=800)
    assert len(seasons) == 1 and seasons[0] in (52, 53)  # weekly data, 52.18-week years


def test_feature_path_uses_only_the_history() -> None:
    """Changing the targets of a forecast never changes its features (no look-ahead)."""
    times = np.datetime64("2024-01-01T00:00", "s") + np.arange(400) * np.timedelta64(3600, "s")
    y = np.sin(np.arange(400) * 2 * np.pi / 24) + np.arange(400) * 0.01
    spec = ff.FeatureSpec(window=12, horizon=6, seasons=(24, 168), base="season:24")
    tables = []
    for future in (0.0, 100.0):
        yy = y.copy()
        yy[300:] += future
        tables.append(
            fc.series_table(
                pa.table({"ts": times, "y": yy}),
                label="y",
                time_column="ts",
                group_column=None,
                covariates=[],
                calendar=False,
            )
        )
    origins = np.array([300])
    a, b = (ff.design(st, origins, spec) for st in tables)
    assert np.array_equal(a.gbdt_matrix(), b.gbdt_matrix())
    assert np.allclose(a.base, y[300 + np.arange(6) - 24])  # seasonal naive one day back
    assert spec.context == 168 + 24
    cal = a.target_calendar
    assert cal is not None and cal.shape == (1, 6, 6)
    hours = np.arctan2(cal[0, :, 0], cal[0, :, 1]) * 24 / (2 * np.pi) % 24
    assert np.allclose(hours, (300 + np.arange(6)) % 24)  # the target times' hours


def _train(splits: dict[str, Path], out: Path, family: str, **forecasting) -> dict:
    task = {**TASK, "forecasting": {**TASK["forecasting"], **forecasting}}
    train_model(
        splits["train"],
        splits["valid"],
        out,
        label="load_mw",
        task="forecasting",
        model_params={"family": family},
        task_params=task,
    )
    return json.loads((out / META_FILE).read_text())


def test_gbdt_forecaster_beats_every_naive_baseline(
    demand_splits: dict[str, Path], tmp_path: Path
) -> None:
    meta = _train(demand_splits, tmp_path / "gbdt", "gbdt")
    f = meta["forecasting"]
    assert meta["family"] == "gbdt" and f["members"] == ["gbdt"]
    assert f["seasons"][0] == 24 and f["season_source"] == "detected"
    assert f["context"] >= max(f["window"], *f["seasons"])
    assert (tmp_path / "gbdt" / "forecast_gbdt.txt").read_text().startswith("tree")
    assert not (tmp_path / "gbdt" / "model.keras").exists()

    loaded = load_model(tmp_path / "gbdt")
    table = _valid_and_test(demand_splits)
    pred = loaded.predict_raw(table)
    w = loaded.forecast_windows(table)
    assert pred.shape == w.y_true.shape == (len(w.starts), 6)
    mae = float(np.abs(pred - w.y_true).mean())
    naive = _naive_maes(loaded, table)
    assert mae < 0.9 * min(naive.values()), (mae, naive)


def test_statistical_forecaster_fits_once_and_stores_json(
    demand_splits: dict[str, Path], tmp_path: Path
) -> None:
    meta = _train(demand_splits, tmp_path / "stat", "statistical", seasons=[24, 168])
    assert meta["forecasting"]["season_source"] == "configured"
    params = json.loads((tmp_path / "stat" / "forecast_statistical.json").read_text())
    assert set(params["profiles"]) == {"24", "168"} and len(params["profiles"]["168"]) == 168
    assert 0 < params["alpha"] <= 1 and 0 < params["phi"] <= 1
    assert not list((tmp_path / "stat").glob("*.pkl"))

    loaded = load_model(tmp_path / "stat")
    table = _valid_and_test(demand_splits)
    w = loaded.forecast_windows(table)
    mae = float(np.abs(loaded.predict_raw(table) - w.y_true).mean())
    naive = _naive_maes(loaded, table)
    assert mae < min(naive.values()), (mae, naive)


@pytest.mark.parametrize("family", ["gbdt", "statistical"])
def test_forecast_last_equals_predict_raw_on_the_same_rows(
    family: str, demand_splits: dict[str, Path], tmp_path: Path
) -> None:
    _train(demand_splits, tmp_path / family, family, seasons=[24])
    loaded = load_model(tmp_path / family)
    table = _valid_and_test(demand_splits).sort_by([("site", "ascending"), ("ts", "ascending")])
    north = table.filter(pa.compute.equal(table.column("site"), "north"))
    history, future = north.slice(0, 100), north.slice(100, 6)
    raw = loaded.predict_raw(pa.concat_tables([history, future]))[-1]
    last = loaded.forecast_last(history)
    assert last.groups.tolist() == ["north"]
    np.testing.assert_allclose(last.forecast[0], raw, rtol=1e-5)
    expected_times = future.column("ts").to_numpy()
    assert np.array_equal(last.times[0], expected_times)


def test_season_shorthand_and_a_context_longer_than_the_data(
    demand_splits: dict[str, Path], tmp_path: Path
) -> None:
    meta = _train(demand_splits, tmp_path / "one", "gbdt", season=24)
    assert meta["forecasting"]["seasons"] == [24]
    with pytest.raises(DataError, match="forecasting.seasons"):
        _train(demand_splits, tmp_path / "long", "gbdt", seasons=[24 * 40])
