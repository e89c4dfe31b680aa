"""Batch prediction streams its writes: one batch held at a time, the rows still all or nothing."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.serving.conftest import scada_table
from voltpipe.data.bigquery_backend import BigQueryWarehouse
from voltpipe.data.duckdb_backend import DuckDBWarehouse
from voltpipe.errors import DataError
from voltpipe.serving.batch import predict_batch
from voltpipe.testing.bigquery_engine import BigQueryError
from voltpipe.testing.bigquery_server import BigQueryTestServer


@pytest.fixture(scope="module")
def gbdt_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small LightGBM regressor (no TensorFlow in this process)."""
    from voltpipe.modelling.train import train_model

    root = tmp_path_factory.mktemp("gbdt")
    for split, n, seed in (("train", 800, 1), ("valid", 200, 2)):
        (root / split).mkdir()
        table = scada_table(n, seed).drop_columns(["state"])
        pq.write_table(table, root / split / "part-0.parquet")
    train_model(
        root / "train",
        root / "valid",
        root / "model",
        label="power_kw",
        task="regression",
        model_params={"family": "gbdt", "gbdt": {"max_trees": 20}},
    )
    return root / "model"


def _rows(n: int, start: int = 0) -> pa.Table:
    rows = scada_table(n, 7).drop_columns(["power_kw", "state"])
    return rows.append_column("row_id", pa.array(np.arange(start, start + n)))


def _warehouse(path: Path, table: pa.Table) -> str:
    con = duckdb.connect(str(path))
    con.register("rows", table)
    con.execute("CREATE SCHEMA src; CREATE TABLE src.rows AS SELECT * FROM rows")
    con.close()
    return f"duckdb:///{path}"


def _read(path: Path, sql: str) -> pa.Table:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


def test_duckdb_scoring_is_written_batch_by_batch_in_one_transaction(
    tmp_path: Path, gbdt_model: Path
) -> None:
    from voltpipe.modelling.predict import load_model

    rows = _rows(5000)
    wh = _warehouse(tmp_path / "wh.duckdb", rows)
    summary = predict_batch(
        wh, "SELECT * FROM src.rows", {}, gbdt_model, "predictions.wind", batch_size=700
    )
    # The reads and the writes share the database file; no batch above the batch size is held.
    assert summary["rows"] == 5000
    assert summary["chunks"] == math.ceil(5000 / 700)
    assert summary["largest_chunk_rows"] == 700
    out = _read(tmp_path / "wh.duckdb", "SELECT * FROM predictions.wind ORDER BY row_id")
    assert out.num_rows == 5000
    expected = np.asarray(load_model(gbdt_model).predict_raw(rows)).reshape(-1)
    assert np.allclose(out.column("prediction").to_numpy(), expected, rtol=1e-6, atol=1e-6)
    assert set(out.column("model_name").to_pylist()) == {summary["model"]["name"]}
    assert len(set(out.column("predicted_at").to_pylist())) == 1


def test_duckdb_failure_midway_writes_nothing(tmp_path: Path, gbdt_model: Path) -> None:
    wh = _warehouse(tmp_path / "wh.duckdb", _rows(5000))
    predict_batch(wh, "SELECT * FROM src.rows LIMIT 10", {}, gbdt_model, "predictions.wind")
    # Rows past 3,000 fail inside the query, after the first batches were scored and inserted.
    failing = (
        "SELECT * REPLACE (IF(row_id < 3000, wind_speed, "
        "CAST(ERROR('sensor feed broken') AS FLOAT64)) AS wind_speed) FROM src.rows"
    )
    with pytest.raises(DataError, match="sensor feed broken"):
        predict_batch(wh, failing, {}, gbdt_model, "predictions.wind", batch_size=500)
    count = _read(tmp_path / "wh.duckdb", "SELECT count(*) AS n FROM predictions.wind")
    assert count.column("n")[0].as_py() == 10


def test_duckdb_writer_holds_one_chunk_and_rolls_back(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    with wh.open_writer("out.scores", mode="replace") as sink:
        for start in range(0, 1000, 250):
            sink.write(_rows(250, start))
    assert (sink.rows, sink.chunks, sink.largest_chunk) == (1000, 4, 250)
    with pytest.raises(RuntimeError, match="stop"), wh.open_writer("out.scores") as sink:
        sink.write(_rows(100, 1000))
        raise RuntimeError("stop")
    assert (
        _read(tmp_path / "wh.duckdb", "SELECT count(*) AS n FROM out.scores")["n"][0].as_py()
        == 1000
    )
    with wh.open_writer("out.empty") as sink:  # no rows: no table either
        sink.write(_rows(0))
    names = _read(tmp_path / "wh.duckdb", "SELECT table_name FROM information_schema.tables")
    assert names.column("table_name").to_pylist() == ["scores"]  # no staging table is left


def test_an_empty_result_writes_nothing(tmp_path: Path, gbdt_model: Path) -> None:
    wh = _warehouse(tmp_path / "wh.duckdb", _rows(100))
    with pytest.raises(DataError, match="returned no rows"):
        predict_batch(wh, "SELECT * FROM src.rows WHERE row_id < 0", {}, gbdt_model, "p.w")
    names = _read(tmp_path / "wh.duckdb", "SELECT table_name FROM information_schema.tables")
    assert "w" not in names.column("table_name").to_pylist()


def _copy_jobs(srv: BigQueryTestServer) -> list[dict]:
    return [
        j["configuration"]["copy"]
        for j in srv.job_requests()
        if "copy" in (j.get("configuration") or {})
    ]


@pytest.mark.integration
def test_bigquery_chunks_are_staged_then_copied_in_one_job(tmp_path: Path) -> None:
    db = tmp_path / "bq.duckdb"
    duckdb.connect(str(db)).close()
    with BigQueryTestServer(db, project="proj", storage_api=False) as srv:
        wh = BigQueryWarehouse("proj", location="EU", api_endpoint=srv.endpoint)
        wh.write_table(_rows(3, 10_000), "preds.scores", mode="append")
        with wh.open_writer("preds.scores", mode="append") as sink:
            for start in range(0, 900, 300):
                sink.write(_rows(300, start))
            # Nothing has reached the destination before the block ends.
            assert srv.engine.read_table("proj", "preds", "scores").num_rows == 3
        assert (sink.rows, sink.chunks, sink.largest_chunk) == (900, 3, 300)
        assert srv.engine.read_table("proj", "preds", "scores").num_rows == 903
        loads = srv.load_jobs()[1:]
        staging = {j["configuration"]["load"]["destinationTable"]["tableId"] for j in loads}
        assert len(loads) == 3 and len(staging) == 1
        (staged,) = staging
        assert staged.startswith("_voltpipe_staging_")
        copies = _copy_jobs(srv)
        assert len(copies) == 1
        assert copies[0]["destinationTable"]["tableId"] == "scores"
        assert copies[0]["writeDisposition"] == "WRITE_APPEND"
        # The staging table is gone.
        assert srv.find("DELETE", rf"/tables/{staged}$")
        with pytest.raises(BigQueryError, match="Not found"):
            srv.engine.resolve("proj", "preds", staged)


@pytest.mark.integration
def test_bigquery_failed_copy_leaves_the_destination_and_no_staging(tmp_path: Path) -> None:
    db = tmp_path / "bq.duckdb"
    duckdb.connect(str(db)).close()
    with BigQueryTestServer(db, project="proj", storage_api=False) as srv:
        wh = BigQueryWarehouse("proj", api_endpoint=srv.endpoint)
        wh.write_table(pa.table({"other": ["x"]}), "preds.scores", mode="append")
        with (
            pytest.raises(DataError, match="cannot write to preds.scores"),
            wh.open_writer("preds.scores", mode="append") as sink,
        ):
            sink.write(_rows(10))
            sink.write(_rows(10, 10))
        assert srv.engine.read_table("proj", "preds", "scores").num_rows == 1
        staged = srv.load_jobs()[-1]["configuration"]["load"]["destinationTable"]["tableId"]
        with pytest.raises(BigQueryError, match="Not found"):
            srv.engine.resolve("proj", "preds", staged)
        # A single chunk is one load job straight into the table (no staging, no copy).
        before = len(_copy_jobs(srv))
        with wh.open_writer("preds.fresh", mode="replace") as sink:
            sink.write(_rows(5))
        assert srv.engine.read_table("proj", "preds", "fresh").num_rows == 5
        assert srv.load_jobs()[-1]["configuration"]["load"]["destinationTable"]["tableId"] == (
            "fresh"
        )
        assert len(_copy_jobs(srv)) == before
