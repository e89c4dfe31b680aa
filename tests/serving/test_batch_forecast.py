"""Batch forecasts: `voltpipe run prediction`'s step with a forecasting champion writes each
series' next `horizon` steps to the destination table, equal to ``forecast_last``."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from tests.serving.conftest import ForecastModel
from voltpipe.errors import DataError
from voltpipe.registry.local import LocalRegistry
from voltpipe.serving.batch import predict_batch, resolve_model

pytestmark = pytest.mark.slow  # uses the session's trained forecaster


def _warehouse(path: Path, table: pa.Table) -> str:
    con = duckdb.connect(str(path))
    con.register("rows", table)
    con.execute("CREATE SCHEMA src; CREATE TABLE src.load AS SELECT * FROM rows")
    con.close()
    return f"duckdb:///{path}"


def _read(path: Path, table: str) -> pa.Table:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql(f"SELECT * FROM {table} ORDER BY site, step").to_arrow_table()
    finally:
        con.close()


RECENT = "SELECT * FROM src.load WHERE ts < @end AND ts >= @end - INTERVAL 3 DAY"


def test_batch_forecast_writes_every_series_next_steps(
    tmp_path: Path, forecasting_model: ForecastModel
) -> None:
    from voltpipe.modelling.predict import load_model

    wh = _warehouse(tmp_path / "wh.duckdb", forecasting_model.series)
    registry = LocalRegistry(tmp_path / "registry")
    version = registry.register("load", forecasting_model.model_dir, {})
    registry.set_alias("load", "champion", version.version)
    uri = resolve_model(str(tmp_path / "registry"), "load").uri
    end = {"end": {"type": "TIMESTAMP", "value": "2024-01-12T00:00:00"}}
    summary = predict_batch(wh, RECENT, end, uri, "forecasts.load", mode="replace")
    h = forecasting_model.horizon
    assert summary["rows"] == 2 * h and summary["series"] == 2 and summary["horizon"] == h
    assert summary["history_rows"] == 2 * 72 and summary["model"]["version"] == "1"
    out = _read(tmp_path / "wh.duckdb", "forecasts.load")
    assert out.column_names == [
        "site",
        "ts",
        "step",
        "prediction",
        "model_name",
        "model_version",
        "predicted_at",
    ]
    assert out.schema.field("ts").type == pa.timestamp("s")  # the query's type (TIMESTAMP_S)
    assert out["site"].to_pylist() == ["north"] * h + ["south"] * h
    assert out["step"].to_pylist() == list(range(1, h + 1)) * 2
    # The forecast times follow the last history row, hour by hour.
    first = np.datetime64("2024-01-12T00:00:00", "s")
    expected_times = first + np.arange(h) * np.timedelta64(1, "h")
    np.testing.assert_array_equal(out["ts"].to_numpy()[:h], expected_times)
    # The values are forecast_last's on the same rows.
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    history = con.execute(
        "SELECT * FROM src.load WHERE ts < TIMESTAMP '2024-01-12' AND ts >= TIMESTAMP '2024-01-09'"
    ).to_arrow_table()
    con.close()
    expected = load_model(forecasting_model.model_dir).forecast_last(history)
    np.testing.assert_allclose(
        out["prediction"].to_numpy(), expected.forecast.reshape(-1), rtol=1e-5, atol=1e-4
    )
    assert set(out["model_name"].to_pylist()) == {"load"}
    assert set(out["model_version"].to_pylist()) == {"1"}
    assert len(set(out["predicted_at"].to_pylist())) == 1
    # append adds the next run's forecasts
    later = {"end": {"type": "TIMESTAMP", "value": "2024-01-12T06:00:00"}}
    predict_batch(wh, RECENT, later, uri, "forecasts.load", mode="append")
    assert _read(tmp_path / "wh.duckdb", "forecasts.load").num_rows == 4 * h


def test_batch_forecast_bad_histories_get_one_clear_error(
    tmp_path: Path, forecasting_model: ForecastModel
) -> None:
    wh = _warehouse(tmp_path / "wh.duckdb", forecasting_model.series)
    model = str(forecasting_model.model_dir)
    end = {"end": {"type": "TIMESTAMP", "value": "2024-01-12T00:00:00"}}
    with pytest.raises(DataError, match="returned no rows"):
        predict_batch(
            wh, "SELECT * FROM src.load WHERE ts < @end - INTERVAL 90 DAY", end, model, "p.t"
        )
    with pytest.raises(DataError, match=r"the scoring query's rows: series site='north' has 5 "):
        predict_batch(
            wh,
            "SELECT * FROM src.load WHERE ts < @end AND ts >= @end - INTERVAL 5 HOUR",
            end,
            model,
            "p.t",
        )
    with pytest.raises(DataError, match=r"the scoring query's rows: .*'temp_c'"):
        predict_batch(wh, "SELECT ts, site, load_mw FROM src.load", {}, model, "p.t")
    with pytest.raises(DataError, match=r"column\(s\) prediction clash with the forecast output"):
        predict_batch(wh, "SELECT *, 1.0 AS prediction FROM src.load", {}, model, "p.t")
