"""Extraction asks BigQuery's Storage Read API for streams (and writes shards) by table size."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from voltpipe.data import bigquery_backend
from voltpipe.data.bigquery_backend import BigQueryWarehouse
from voltpipe.data.warehouse import SPLITS, SplitSpec
from voltpipe.testing.bigquery_server import BigQueryTestServer

pytestmark = pytest.mark.integration


def _stream_counts(srv: BigQueryTestServer) -> list[int]:
    return [int(r["body"]["maxStreamCount"]) for r in srv.grpc_requests("CreateReadSession")]


def test_a_bigger_table_is_read_in_more_streams_and_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(db))
    con.execute(
        "CREATE SCHEMA fleet; CREATE TABLE fleet.scada AS SELECT i AS id, i * 0.5 AS x "
        "FROM range(40000) t(i)"
    )
    con.close()
    # 64 KB a stream instead of 64 MB: the same rule on a table a test can hold.
    monkeypatch.setattr(bigquery_backend, "STREAM_BYTES", 64 * 1024)
    with BigQueryTestServer(db, project="p") as srv:
        wh = BigQueryWarehouse(
            "p", api_endpoint=srv.endpoint, read_api_endpoint=srv.read_api_endpoint
        )
        out = {s: tmp_path / "big" / s for s in SPLITS}
        wh.extract("SELECT * FROM fleet.scada", {}, SplitSpec(seed=1), out)
        train, valid, test = _stream_counts(srv)
        # The result table is about 640 KB (2 columns x 8 B x 40,000 rows): train's 80 % asks
        # for 8 streams, valid and test the least (4).
        assert train > 4 and valid == test == 4
        assert len(list(out["train"].glob("part-*.parquet"))) == train
        small = {s: tmp_path / "small" / s for s in SPLITS}
        wh.extract("SELECT * FROM fleet.scada WHERE id < 4000", {}, SplitSpec(seed=1), small)
        assert _stream_counts(srv)[3:] == [4, 4, 4]
