"""The quality benchmarks' loaders, metrics and split code, on tiny data (no peers, no training)."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pandas as pd
import pytest

from benchmarks import Row, bench_forecast, bench_tabular, peers_forecast, peers_tabular
from benchmarks import realdata as rd


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# --- loaders ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rows", "classes"),
    [("breast_cancer", 569, 2), ("wine", 178, 3), ("iris", 150, 3), ("digits", 1797, 10)],
)
def test_sklearn_tables_are_the_bundled_files(name: str, rows: int, classes: int) -> None:
    frame = rd.load_table(name)
    assert len(frame) == rows
    assert frame["y"].dtype == np.int64
    assert frame["y"].nunique() == classes
    assert all(c == rd._snake(c) for c in frame.columns)  # SQL-safe names
    assert not frame.isna().any().any()


def test_diabetes_is_a_float_regression_target() -> None:
    frame = rd.load_table("diabetes")
    assert len(frame) == 442 and frame["y"].dtype == np.float64
    assert frame.shape[1] == 11


@pytest.mark.skipif(not _has("statsmodels"), reason="statsmodels not installed")
def test_statsmodels_tables_drop_the_label_source() -> None:
    fair = rd.load_table("fair")
    assert len(fair) == 6366 and "affairs" not in fair.columns
    assert set(fair["y"].unique()) == {0, 1}
    assert 0.2 < fair["y"].mean() < 0.5  # about a third had an affair
    anes = rd.load_table("anes96")
    assert len(anes) == 944 and "logpopul" not in anes.columns and "vote" not in anes.columns
    assert set(anes["y"].unique()) == {0, 1}


@pytest.mark.skipif(not _has("pvlib"), reason="pvlib not installed (bench venv only)")
def test_solar_table_has_no_irradiance_leak() -> None:
    frame = rd.load_table("solar_ghi")
    assert len(frame) == 8760
    assert not {"ghi", "dni", "dhi"} & set(frame.columns)
    assert not [c for c in frame.columns if "illum" in c or "source" in c or "uncert" in c]
    assert frame["hour"].between(0, 23).all() and frame["day_of_year"].between(1, 365).all()
    night = frame[frame["etr_horizontal"] == 0]
    assert night["y"].max() < 10  # sun below the horizon: at most twilight


@pytest.mark.skipif(not _has("statsmodels"), reason="statsmodels not installed")
def test_co2_series_is_weekly_and_complete() -> None:
    frame = rd.load_series("co2")
    assert len(frame) == 2284 and not frame["y"].isna().any()
    steps = frame["ts"].diff().dropna().unique()
    assert list(steps) == [pd.Timedelta(days=7)]
    assert 310 < frame["y"].iloc[0] < 320 and 360 < frame["y"].iloc[-1] < 375


@pytest.mark.skipif(not _has("pmdarima"), reason="pmdarima not installed (bench venv only)")
def test_demand_series_is_half_hourly_from_a_monday() -> None:
    frame = rd.load_series("demand")
    assert len(frame) == 4032 and frame["ts"].iloc[0].dayofweek == 0
    assert (frame["ts"].diff().dropna() == pd.Timedelta(minutes=30)).all()


def test_unknown_data_set_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid: breast_cancer"):
        rd.load_table("housing")
    with pytest.raises(ValueError, match="valid: demand"):
        rd.load_series("housing")


def test_export_writes_parquet_the_other_venv_can_read(tmp_path) -> None:
    out = rd.export(tmp_path, ["iris", "diabetes"])
    assert out["iris"]["rows"] == 150 and out["iris"]["task"] == "classification"
    back = pd.read_parquet(out["diabetes"]["path"])
    pd.testing.assert_frame_equal(back, rd.load_table("diabetes"))
    json.dumps(out)  # crosses the process boundary as JSON


# --- split recovery --------------------------------------------------------------------------


def _fake_run(workdir, counts: dict[str, int]) -> None:
    """The layout kfp.local leaves: pipeline-root/<run>/extract/<split>/part-*.parquet."""
    extract = workdir / "pipeline-root" / "m-training-2026-01-01" / "extract"
    artifacts = {}
    for split, n in counts.items():
        (extract / split).mkdir(parents=True)
        pd.DataFrame({"x": np.arange(n), "y": np.zeros(n)}).to_parquet(
            extract / split / "part-00000.parquet"
        )
        artifacts[split] = {"artifacts": [{"name": split, "metadata": {"rows": n}}]}
    (extract / "executor_output.json").write_text(json.dumps({"artifacts": artifacts}))


def test_find_split_parquet_and_row_counts(tmp_path) -> None:
    _fake_run(tmp_path, {"train": 8, "valid": 1, "test": 2})
    files = rd.find_split_parquet(tmp_path)
    assert {s: sum(len(pd.read_parquet(f)) for f in fs) for s, fs in files.items()} == {
        "train": 8,
        "valid": 1,
        "test": 2,
    }
    assert rd.extract_row_counts(tmp_path) == {"train": 8, "valid": 1, "test": 2}


def test_find_split_parquet_names_the_missing_split(tmp_path) -> None:
    _fake_run(tmp_path, {"train": 3, "valid": 1})
    with pytest.raises(RuntimeError, match="'test'"):
        rd.find_split_parquet(tmp_path)


# --- metrics and rows ------------------------------------------------------------------------


def test_log_loss_matches_a_hand_computation_and_clips() -> None:
    classes = np.array([0, 1, 2])
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.0, 1.0, 0.0]])
    y = np.array([0, 2, 0])
    expected = -(math.log(0.7) + math.log(0.8) + math.log(1e-15)) / 3
    assert peers_tabular.log_loss(y, proba, classes) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="not among the classes"):
        peers_tabular.log_loss(np.array([3]), proba[:1], classes)


def test_rmse() -> None:
    assert peers_tabular.rmse(np.array([1.0, 2.0, 3.0]), np.array([1.0, 4.0, 3.0])) == (
        pytest.approx(math.sqrt(4 / 3))
    )


def test_full_proba_widens_to_classes_missing_from_train() -> None:
    class Fitted:
        classes_ = np.array([0, 2])

        def predict_proba(self, x):
            return np.tile([0.25, 0.75], (len(x), 1))

    out = peers_tabular._full_proba(Fitted(), np.zeros((2, 1)), np.array([0, 1, 2]))
    np.testing.assert_allclose(out, [[0.25, 0.0, 0.75]] * 2)


def test_best_peer_skips_failed_and_geomean() -> None:
    peers = {"a": {"error": 0.3}, "b": {"error": None, "failed": "x"}, "c": {"error": 0.2}}
    assert bench_tabular.best_peer(peers) == ("c", 0.2)
    with pytest.raises(RuntimeError, match="every peer failed"):
        bench_tabular.best_peer({"b": {"error": None}})
    assert bench_tabular.geometric_mean([2.0, 0.5, 4.0]) == pytest.approx(4 ** (1 / 3))
    rows = [
        Row("tabular", "t", v, "", 1.0, "p", "ratio <= 1.05", extra={"table": n})
        for n, v in (("x", 2.0), ("y", 0.5))
    ]
    gm = bench_tabular.geomean_row(rows)
    assert gm.value == pytest.approx(1.0) and gm.met
    assert not rows[0].met and rows[1].met


# --- forecasting targets and naive peers -----------------------------------------------------


def test_every_test_row_is_a_target_whatever_the_horizon() -> None:
    n_context, n_total = 10, 16  # 6 test rows: indices 10..15
    for horizon in (1, 2, 3, 6):
        starts = peers_forecast.origins(n_context, n_total, horizon)
        assert starts[0] == n_context - 1 and starts[-1] == n_total - 1 - horizon
        covered = set((starts[:, None] + np.arange(1, horizon + 1)).ravel().tolist())
        assert covered == set(range(n_context, n_total))
    with pytest.raises(ValueError, match="shorter than the horizon"):
        peers_forecast.origins(n_context, n_total, 7)


def test_targets_persistence_and_seasonal_naive_by_hand() -> None:
    y = np.arange(20, dtype="float64") ** 2
    starts = np.array([9, 10])
    np.testing.assert_array_equal(
        peers_forecast.targets(y, starts, 3), [[100, 121, 144], [121, 144, 169]]
    )
    np.testing.assert_array_equal(peers_forecast.persistence(y, starts, 2), [[81, 81], [100, 100]])
    # season 2, origin 9: steps 1..3 take y[8], y[9], y[8]
    np.testing.assert_array_equal(
        peers_forecast.seasonal_naive(y, starts, 3, 2), [[64, 81, 64], [81, 100, 81]]
    )
    # seasonal naive with season 1 is persistence
    np.testing.assert_array_equal(
        peers_forecast.seasonal_naive(y, starts, 3, 1), peers_forecast.persistence(y, starts, 3)
    )
    assert peers_forecast.mae(np.array([[1.0, 3.0]]), np.array([[2.0, 2.0]])) == 1.0


def test_mstl_seasons_continue_their_last_cycle() -> None:
    decomposition = pd.DataFrame(
        {
            "trend": np.zeros(8),
            "seasonal2": np.array([0, 0, 0, 0, 0, 0, 1.0, -1.0]),
            "seasonal4": np.array([0, 0, 0, 0, 10, 20, 30, 40.0]),
        }
    )
    out = peers_forecast._continue_seasons(decomposition, [4, 2], 6)
    np.testing.assert_allclose(out, [11, 19, 31, 39, 11, 19])


def test_lag_list_covers_the_season_and_its_multiples() -> None:
    assert peers_forecast._lag_list([4]) == [1, 2, 3, 4, 8]
    lags = peers_forecast._lag_list([48, 336])
    assert lags[:48] == list(range(1, 49)) and lags[48:] == [96, 336, 672]


def test_same_targets_compares_persistence_maes() -> None:
    assert bench_forecast.same_targets({"mae_persistence": 2.0}, 2.0 * (1 + 1e-9))
    assert not bench_forecast.same_targets({"mae_persistence": 2.598}, 2.688)
    assert not bench_forecast.same_targets({}, 2.0)
    peers = {
        "persistence": {"mae": 3.0},
        "seasonal_naive_48": {"mae": 2.0},
        "seasonal_naive_336": {"mae": 1.5},
        "mstl_ets": {"mae": 1.0},
        "ets": {"mae": None, "failed": "boom"},
    }
    assert bench_forecast.best_peer(peers) == ("mstl_ets", 1.0)
    assert bench_forecast.best_seasonal_naive(peers) == ("seasonal_naive_336", 1.5)


def test_strict_goals() -> None:
    row = Row("forecast", "f", 1.0, "", 1.0, "p", "ratio < 1.0")
    assert not row.met
    assert Row("forecast", "f", 0.99, "", 1.0, "p", "ratio < 1.0").met


@pytest.mark.skipif(not _has("lightgbm"), reason="lightgbm not installed")
@pytest.mark.parametrize("relative", [False, True])
def test_lightgbm_lags_recursion_keeps_the_phase(relative: bool) -> None:
    """On a pure period-4 pattern, a misplaced lag or step would shift the forecast's phase."""
    pattern = np.array([0.0, 10.0, 20.0, 5.0])
    y = np.tile(pattern, 100)
    ts = pd.date_range("2020-01-01", periods=len(y), freq="h")
    starts = peers_forecast.origins(360, 400, 6)
    pred, info = peers_forecast.lightgbm_lags(
        y, ts, starts, 6, [4], n_train=320, n_valid=40, freq_minutes=60.0, relative=relative
    )
    truth = peers_forecast.targets(y, starts, 6)
    assert pred.shape == truth.shape == (len(starts), 6)
    assert peers_forecast.mae(pred, truth) < 0.5  # the pattern's steps are 5 to 15 apart
    assert info["lags"] == 5  # lags 1..4 and 8
