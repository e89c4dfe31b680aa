"""The BigQuery test server, spoken to by the real google-cloud-bigquery and storage clients."""

from __future__ import annotations

import socket
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from voltpipe.testing.bigquery_server import BigQueryTestServer

pytestmark = pytest.mark.integration


@pytest.fixture()
def database(tmp_path: Path) -> Path:
    path = tmp_path / "bq.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA energy")
    con.execute(
        "CREATE TABLE energy.meters AS SELECT i AS id, 'm' || (i % 3) AS meter, "
        "TIMESTAMP '2024-01-01' + to_hours(i) AS ts, i / 4 AS kwh, [i, i + 1] AS pair, "
        "{'a': i, 'b': 'x'} AS rec FROM range(25) t(i)"
    )
    con.close()
    return path


def _client(srv: BigQueryTestServer):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(
        project="p",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": srv.endpoint},
    )


def test_query_with_typed_parameters_and_recorded_requests(database: Path) -> None:
    from google.cloud import bigquery

    with BigQueryTestServer(database, project="p") as srv:
        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter("since", "TIMESTAMP", "2024-01-01 05:00:00+00:00"),
                bigquery.ArrayQueryParameter("meters", "STRING", ["m0", "m1"]),
                bigquery.StructQueryParameter(
                    "lim", bigquery.ScalarQueryParameter("hi", "INT64", 20)
                ),
            ],
            labels={"k": "v"},
            maximum_bytes_billed=2 * 10**7,  # above the 10 MB BigQuery bills at least
        )
        job = _client(srv).query(
            "SELECT id, meter, ts, kwh, pair, rec FROM p.energy.meters "
            "WHERE ts >= @since AND meter IN UNNEST(@meters) AND id < @lim.hi ORDER BY id",
            job_config=config,
            location="US",
        )
        rows = list(job.result())
        assert [r.id for r in rows] == [i for i in range(5, 20) if i % 3 != 2]
        assert rows[0].ts.isoformat() == "2024-01-01T06:00:00+00:00"
        assert rows[0].pair == [6, 7] and rows[0].rec == {"a": 6, "b": "x"}
        insert = srv.job_requests()[0]
        assert insert["jobReference"]["location"] == "US"
        assert insert["configuration"]["labels"] == {"k": "v"}
        assert insert["configuration"]["query"]["maximumBytesBilled"] == "20000000"
        assert [r["method"] for r in srv.requests][:1] == ["POST"]
        assert any(r["path"].startswith("/projects/p/queries/") for r in srv.requests)


def test_dry_run_schema_bytes_and_paging(database: Path) -> None:
    from google.cloud import bigquery

    with BigQueryTestServer(database, project="p") as srv:
        client = _client(srv)
        dry = client.query(
            "SELECT id, kwh FROM energy.meters", job_config=bigquery.QueryJobConfig(dry_run=True)
        )
        assert [f.field_type for f in dry.schema] == ["INTEGER", "FLOAT"]
        assert dry.total_bytes_processed == 25 * 6 * 8
        table = client.get_table("p.energy.meters")
        assert table.num_rows == 25 and table.schema[4].mode == "REPEATED"
        assert table.schema[5].field_type == "RECORD"
        rows = list(client.list_rows(table, page_size=10))
        assert [r.id for r in rows] == list(range(25))
        pages = [r for r in srv.requests if r["path"].endswith("/data")]
        assert len(pages) == 3 and pages[1]["query"]["pageToken"] == ["10"]
        assert client.get_dataset("p.energy").dataset_id == "energy"


def test_errors_are_bigquerys_bodies(database: Path) -> None:
    from google.api_core import exceptions
    from google.cloud import bigquery

    with BigQueryTestServer(database, project="p") as srv:
        client = _client(srv)
        dry = bigquery.QueryJobConfig(dry_run=True)
        with pytest.raises(exceptions.NotFound) as missing:
            client.query("SELECT * FROM p.energy.nope", job_config=dry)
        assert (
            "Not found: Table p:energy.nope was not found in location US" in missing.value.message
        )
        assert missing.value.errors[0]["reason"] == "notFound"
        with pytest.raises(exceptions.BadRequest, match=r"Syntax error: .* at \[1:\d+\]") as syntax:
            client.query("SELECT id FRM p.energy.meters", job_config=dry)
        assert syntax.value.errors[0]["reason"] == "invalidQuery"
        bad = bigquery.QueryJobConfig(
            dry_run=True,
            query_parameters=[bigquery.ScalarQueryParameter("since", "STRING", "2024-01-01")],
        )
        with pytest.raises(
            exceptions.BadRequest, match=r"No matching signature .*TIMESTAMP, STRING at \[1:\d+\]"
        ):
            client.query("SELECT id FROM p.energy.meters WHERE ts > @since", job_config=bad)
        with pytest.raises(exceptions.NotFound, match="Dataset p:nowhere"):
            client.get_dataset("p.nowhere")
        capped = bigquery.QueryJobConfig(maximum_bytes_billed=10)
        # The job fails with reason bytesBilledLimitExceeded (the client maps it to a 500).
        with pytest.raises(
            exceptions.GoogleAPICallError, match="Query exceeded limit for bytes billed: 10"
        ):
            client.query("SELECT * FROM p.energy.meters", job_config=capped).result()


def test_storage_read_api_streams_arrow(database: Path) -> None:
    import grpc
    from google.cloud.bigquery_storage_v1 import BigQueryReadClient, types
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
        BigQueryReadGrpcTransport,
    )

    with BigQueryTestServer(database, project="p") as srv:
        channel = grpc.insecure_channel(srv.read_api_endpoint)
        client = BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))
        session = client.create_read_session(
            parent="projects/p",
            read_session=types.ReadSession(
                table="projects/p/datasets/energy/tables/meters",
                data_format=types.DataFormat.ARROW,
                read_options=types.ReadSession.TableReadOptions(
                    selected_fields=["id", "ts"], row_restriction="id >= 5 AND meter = 'm0'"
                ),
            ),
            max_stream_count=3,
        )
        schema = pa.ipc.read_schema(pa.py_buffer(session.arrow_schema.serialized_schema))
        assert schema.names == ["id", "ts"] and schema.field("ts").type == pa.timestamp(
            "us", tz="UTC"
        )
        assert len(session.streams) == 3
        ids = []
        for stream in session.streams:
            for response in client.read_rows(stream.name):
                batch = pa.ipc.read_record_batch(
                    pa.py_buffer(response.arrow_record_batch.serialized_record_batch), schema
                )
                ids += batch.column(0).to_pylist()
        assert sorted(ids) == [i for i in range(5, 25) if i % 3 == 0]
        assert len(srv.grpc_requests("ReadRows")) == 3
        channel.close()


def test_binds_loopback_and_stops_cleanly(database: Path) -> None:
    srv = BigQueryTestServer(database, project="p", storage_api=False).start()
    port = int(srv.endpoint.rsplit(":", 1)[1])
    assert srv.endpoint.startswith("http://127.0.0.1:") and srv.read_api_endpoint is None
    srv.stop()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_accepts_an_open_connection() -> None:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA s; CREATE TABLE s.t AS SELECT 1 AS x")
    with BigQueryTestServer(con, project="p") as srv:
        assert [r.x for r in _client(srv).query("SELECT x FROM s.t").result()] == [1]
    con.close()


def test_runs_on_the_shared_server_with_bigquery_error_bodies(database: Path) -> None:
    import json
    import urllib.error
    import urllib.request

    with BigQueryTestServer(database, project="p", storage_api=False) as srv:
        client = _client(srv)
        rows = list(client.query("SELECT COUNT(*) AS n FROM p.energy.meters").result())
        assert rows[0]["n"] == 25
        # Requests are found like the Vertex and KFP servers' (the /bigquery/v2 prefix stripped).
        [insert] = srv.find("POST", r"^/projects/p/jobs$")
        assert insert.json["configuration"]["query"]["query"].startswith("SELECT COUNT(*)")
        assert insert["body"] is insert.json
        with pytest.raises(urllib.error.HTTPError) as unknown:
            urllib.request.urlopen(f"{srv.endpoint}/bigquery/v2/projects/p/models", timeout=10)
        assert unknown.value.code == 404
        error = json.loads(unknown.value.read())["error"]
        assert error["message"] == "Not found: GET /projects/p/models"
        assert error["errors"][0]["reason"] == "notFound"
