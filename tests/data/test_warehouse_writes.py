"""Warehouse writes: DuckDB transactions and BigQuery load jobs through the real client."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from voltpipe.data.bigquery_backend import BigQueryWarehouse
from voltpipe.data.duckdb_backend import DuckDBWarehouse
from voltpipe.errors import ConfigError, DataError
from voltpipe.testing.bigquery_server import BigQueryTestServer


def _rows(n: int, start: int = 0) -> pa.Table:
    return pa.table({"id": pa.array(range(start, start + n), pa.int64()), "value": [0.5] * n})


def _count(path: Path, table: str) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def test_duckdb_append_replace_and_create(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    assert wh.write_table(_rows(3), "out.scores", mode="append") == 3  # schema + table created
    assert wh.write_table(_rows(2, 3), "out.scores", mode="append") == 2
    assert _count(tmp_path / "wh.duckdb", "out.scores") == 5
    # Append matches columns by name, whatever their order.
    wh.write_table(_rows(1, 9).select(["value", "id"]), "out.scores", mode="append")
    assert _count(tmp_path / "wh.duckdb", "out.scores") == 6
    assert wh.write_table(_rows(4), "out.scores", mode="replace") == 4
    assert _count(tmp_path / "wh.duckdb", "out.scores") == 4


def test_duckdb_failed_write_changes_nothing(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    wh.write_table(_rows(3), "out.scores", mode="append")
    bad = pa.table({"id": pa.array([1], pa.int64()), "value": ["not a number"]})
    with pytest.raises(DataError, match="cannot write to out.scores"):
        wh.write_table(bad, "out.scores", mode="append")
    assert _count(tmp_path / "wh.duckdb", "out.scores") == 3


def test_duckdb_bad_destinations(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    with pytest.raises(ConfigError, match="SCHEMA.TABLE"):
        wh.write_table(_rows(1), "p.out.scores", mode="append")
    with pytest.raises(ConfigError, match="expected DATASET.TABLE"):
        wh.write_table(_rows(1), "scores", mode="append")
    with pytest.raises(ConfigError, match="write mode 'upsert'"):
        wh.write_table(_rows(1), "out.scores", mode="upsert")
    with pytest.raises(DataError, match="not writable: folder .* does not exist"):
        DuckDBWarehouse(tmp_path / "no" / "wh.duckdb").write_table(_rows(1), "out.s", mode="append")
    wh.write_table(_rows(1), "out.scores", mode="append")
    reader = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)  # holds the file
    try:
        with pytest.raises(DataError, match="out.scores is not writable"):
            wh.write_table(_rows(1), "out.scores", mode="append")
    finally:
        reader.close()


@pytest.mark.integration
def test_bigquery_load_jobs_through_the_real_client(tmp_path: Path) -> None:
    db = tmp_path / "bq.duckdb"
    duckdb.connect(str(db)).close()
    with BigQueryTestServer(db, project="proj", storage_api=False) as srv:
        wh = BigQueryWarehouse(
            "proj", location="EU", api_endpoint=srv.endpoint, labels={"team": "grid"}
        )
        assert wh.write_table(_rows(5), "preds.scores", mode="append") == 5
        assert wh.write_table(_rows(5, 5), "preds.scores", mode="append") == 5
        assert srv.engine.read_table("proj", "preds", "scores").num_rows == 10
        assert wh.write_table(_rows(2), "other.preds.scores", mode="replace") == 2
        jobs = srv.load_jobs()
        assert len(jobs) == 3
        load = jobs[0]["configuration"]["load"]
        assert load["destinationTable"] == {
            "projectId": "proj",
            "datasetId": "preds",
            "tableId": "scores",
        }
        assert load["writeDisposition"] == "WRITE_APPEND" and load["sourceFormat"] == "PARQUET"
        assert load["createDisposition"] == "CREATE_IF_NEEDED"
        assert jobs[0]["configuration"]["labels"] == {"team": "grid"}
        assert jobs[0]["jobReference"]["location"] == "EU"
        replace = jobs[2]["configuration"]["load"]
        assert replace["writeDisposition"] == "WRITE_TRUNCATE"
        assert replace["destinationTable"]["projectId"] == "other"
        # The data went up as a media upload (no rows in a JSON body).
        uploads = [r for r in srv.requests if r["path"].startswith("/upload/")]
        assert all(r["query"]["uploadType"] == ["multipart"] for r in uploads)
        with pytest.raises(DataError, match="cannot write to preds.scores"):
            wh.write_table(pa.table({"other": ["x"]}), "preds.scores", mode="append")
