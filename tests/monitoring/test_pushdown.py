"""Drift computed in the warehouse (DuckDB and the BigQuery test server) vs in memory."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from voltpipe.data.warehouse import open_warehouse
from voltpipe.errors import DataError
from voltpipe.monitoring.drift import compute_drift
from voltpipe.monitoring.pushdown import compute_drift_in_warehouse, window_rows

FEATURES = ["wind_speed_ms", "air_temperature_c", "turbine_id"]
QUERY = "SELECT * FROM scada.window_rows WHERE ts >= @start"
PARAMS = {"start": {"type": "INT64", "value": 100}}


def _table(n: int, seed: int, shift: float) -> pa.Table:
    rng = np.random.default_rng(seed)
    speed = rng.weibull(2.0, n) * (8 + 3 * shift)
    temp = rng.normal(10 + 3 * shift, 5, n)
    temp[rng.random(n) < 0.02] = np.nan  # NaN is left out like a null
    turbine = rng.choice(["WT01", "WT02", "WT03"], n, p=[0.5, 0.3 - 0.1 * shift, 0.2 + 0.1 * shift])
    return pa.table(
        {
            "ts": np.arange(n),
            "wind_speed_ms": pa.array(speed, mask=rng.random(n) < 0.01),
            "air_temperature_c": temp,
            "turbine_id": turbine,
        }
    )


@pytest.fixture(scope="module")
def window_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    path = tmp_path_factory.mktemp("wh") / "window.duckdb"
    window = _table(20_000, 1, 1.0)
    con = duckdb.connect(str(path))
    con.register("w", window)
    con.execute("CREATE SCHEMA scada")
    con.execute("CREATE TABLE scada.window_rows AS SELECT * FROM w")
    con.close()
    return path, window.filter(pa.compute.greater_equal(window.column("ts"), 100))


def _assert_same(in_memory, pushed) -> None:
    assert pushed.current_rows == in_memory.current_rows == 19_900
    for name, a in in_memory.features.items():
        b = pushed.features[name]
        assert b.current_count == a.current_count
        assert b.null_rate_current == pytest.approx(a.null_rate_current)
        assert b.drifted == a.drifted and b.fired == a.fired
        if a.kind == "numeric":
            assert b.psi == pytest.approx(a.psi, rel=1e-9)  # same bins: exact
            assert b.current_bin_fractions == pytest.approx(a.current_bin_fractions)
            assert a.ks_statistic - 0.005 <= b.ks_statistic <= a.ks_statistic + 1e-12  # binning
        else:
            assert b.js_distance == pytest.approx(a.js_distance)
            assert b.chi2_statistic == pytest.approx(a.chi2_statistic)


def test_duckdb_pushdown_matches_the_in_memory_drift(window_db) -> None:
    path, window = window_db
    reference = _table(5000, 0, 0.0)
    in_memory = compute_drift(reference, window, features=FEATURES)
    assert set(in_memory.drifted_features) == set(FEATURES)  # a real shift, so verdicts matter
    wh = open_warehouse(f"duckdb:///{path}")
    assert window_rows(wh, QUERY, PARAMS) == 19_900
    _assert_same(
        in_memory, compute_drift_in_warehouse(reference, wh, QUERY, PARAMS, features=FEATURES)
    )
    same = compute_drift_in_warehouse(_table(5000, 7, 1.0), wh, QUERY, PARAMS, features=FEATURES)
    assert same.drifted_features == []


def test_bigquery_test_server_pushdown_matches_too(window_db) -> None:
    from voltpipe.data.bigquery_backend import BigQueryWarehouse
    from voltpipe.testing.bigquery_server import BigQueryTestServer

    path, window = window_db
    reference = _table(5000, 0, 0.0)
    in_memory = compute_drift(reference, window, features=FEATURES)
    with BigQueryTestServer(path, project="p", location="EU") as srv:
        wh = BigQueryWarehouse(project="p", api_endpoint=srv.endpoint)
        pushed = compute_drift_in_warehouse(reference, wh, QUERY, PARAMS, features=FEATURES)
    _assert_same(in_memory, pushed)


def test_empty_window_is_refused(window_db) -> None:
    path, _ = window_db
    wh = open_warehouse(f"duckdb:///{path}")
    with pytest.raises(DataError, match="no rows"):
        compute_drift_in_warehouse(
            _table(500, 0, 0.0),
            wh,
            QUERY,
            {"start": {"type": "INT64", "value": 10**9}},
            features=FEATURES,
        )


def test_window_rows_from_footers_and_a_bounded_sample(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from voltpipe.monitoring.monitor import sample_window, window_rows

    (tmp_path / "w").mkdir()
    for k in range(3):
        pq.write_table(_table(10_000, k, 0.0), tmp_path / "w" / f"part-{k}.parquet")
    assert window_rows(tmp_path / "w") == 30_000
    sample = sample_window(tmp_path / "w", 3_000, 30_000)
    assert 2_700 < sample.num_rows < 3_300 and sample.column_names == _table(1, 0, 0.0).column_names
    again = sample_window(tmp_path / "w", 3_000, 30_000)
    assert again.column("ts").equals(sample.column("ts"))  # seeded
