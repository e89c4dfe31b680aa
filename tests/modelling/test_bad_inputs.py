"""Bad input fails with a DataError naming the column or setting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.modelling.synthetic import demand_series, tabular_table, write_split
from voltpipe.errors import DataError
from voltpipe.modelling.train import train_model

FORECAST = {
    "time_column": "ts",
    "forecasting": {"window": 24, "horizon": 2, "group_column": "site"},
}


def _train(tmp: Path, table: pa.Table, **kw):  # type: ignore[no-untyped-def]
    tr = write_split(tmp / "tr", table)
    va = write_split(tmp / "va", table.slice(0, 0))
    return train_model(tr, va, tmp / "m", **kw)


def _with(table: pa.Table, name: str, values) -> pa.Table:  # type: ignore[no-untyped-def]
    return table.set_column(table.column_names.index(name), name, pa.array(values))


@pytest.mark.parametrize(
    ("mutate", "kwargs", "message"),
    [
        (
            lambda t: _with(t, "x1", np.r_[np.nan, t["x1"].to_numpy()[1:]]),
            {"label": "target", "task": "regression", "exclude": ["label"]},
            "'x1'",
        ),
        (
            lambda t: _with(t, "target", np.r_[np.inf, t["target"].to_numpy()[1:]]),
            {"label": "target", "task": "regression", "exclude": ["label"]},
            "label column 'target'",
        ),
        (
            lambda t: _with(t, "label", ["ok"] * t.num_rows),
            {"label": "label", "task": "classification", "exclude": ["target"]},
            "single class",
        ),
        (
            lambda t: _with(t, "target", [str(v) for v in t["target"].to_pylist()]),
            {"label": "target", "task": "regression", "exclude": ["label"]},
            "needs a numeric label",
        ),
        (
            lambda t: t,
            {"label": "target", "task": "regression", "model_params": {"family": "xgboost"}},
            "model.family",
        ),
        (
            lambda t: t,
            {"label": "target", "task": "regression", "model_params": {"family": "lstm"}},
            "does not fit task 'regression'",
        ),
    ],
)
def test_tabular_bad_input(tmp_path: Path, mutate, kwargs, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match=message):
        _train(tmp_path, mutate(tabular_table(200, 2, 0)), **kwargs)


def test_text_in_a_numeric_covariate(tmp_path: Path) -> None:
    t = demand_series(days=3)
    t = _with(t, "temp_c", [str(v) for v in t["temp_c"].to_pylist()])
    task = {
        "time_column": "ts",
        "forecasting": {
            "window": 24,
            "horizon": 2,
            "group_column": "site",
            "covariates": ["temp_c"],
        },
    }
    with pytest.raises(DataError, match="covariate column 'temp_c' should be numeric"):
        _train(tmp_path, t, label="load_mw", task="forecasting", task_params=task)


def test_nan_in_the_forecast_label(tmp_path: Path) -> None:
    t = demand_series(days=3)
    t = _with(t, "load_mw", np.r_[np.nan, t["load_mw"].to_numpy()[1:]])
    with pytest.raises(DataError, match="label column 'load_mw' holds 1 null, NaN"):
        _train(tmp_path, t, label="load_mw", task="forecasting", task_params=FORECAST)


def test_fewer_rows_than_the_window(tmp_path: Path) -> None:
    t = demand_series(days=1).slice(0, 20)
    with pytest.raises(DataError, match="20 rows, fewer than forecasting.window"):
        _train(tmp_path, t, label="load_mw", task="forecasting", task_params=FORECAST)


def test_window_longer_than_every_series(tmp_path: Path) -> None:
    t = demand_series(days=1, sites=("a", "b", "c"))  # 72 rows, 24 per site
    task = {
        "time_column": "ts",
        "forecasting": {"window": 30, "horizon": 2, "group_column": "site"},
    }
    with pytest.raises(DataError, match="longer than every series .* by site, has 24 rows"):
        _train(tmp_path, t, label="load_mw", task="forecasting", task_params=task)


def test_forecasting_needs_a_time_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="needs `time_column`"):
        _train(tmp_path, demand_series(days=3), label="load_mw", task="forecasting")


def test_anomaly_label_must_be_binary(tmp_path: Path) -> None:
    t = tabular_table(100, 2, 0)
    with pytest.raises(DataError, match="needs 0/1 labels"):
        _train(tmp_path, t.drop(["label"]), label="target", task="anomaly")
