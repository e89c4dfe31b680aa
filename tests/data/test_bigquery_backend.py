"""BigQueryWarehouse through the real google-cloud-bigquery clients against the local test server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from voltpipe.data.bigquery_backend import BigQueryWarehouse, query_parameter, split_query
from voltpipe.data.io import read_table
from voltpipe.data.params import normalize_parameters
from voltpipe.data.warehouse import SPLITS, SplitSpec, open_warehouse
from voltpipe.errors import DataError
from voltpipe.testing.bigquery_server import BigQueryTestServer

SQL = (
    "SELECT ts, turbine_id, wind_speed_ms, power_kw FROM `p.scada.turbine`\n"
    "WHERE ts < @cutoff AND turbine_id IN UNNEST(@turbines) AND power_kw >= @band.low"
)
PARAMS = normalize_parameters(
    {
        "cutoff": {"type": "TIMESTAMP", "value": "2024-11-01"},
        "turbines": ["WT01", "WT02"],
        "band": {"low": -1000.0, "name": "all"},
        "unused": 3,
    }
)
ROWS_BEFORE_CUTOFF = 2 * 12 * 144  # 2 turbines x 12 days x 144 ten-minute rows


def _dirs(root: Path) -> dict[str, Path]:
    return {s: root / s for s in SPLITS}


def _rows(folder: Path) -> set[tuple]:
    return {(r["ts"], r["turbine_id"]) for r in read_table(folder).to_pylist()}


@pytest.fixture(scope="module")
def server(wind_warehouse: Path):
    with BigQueryTestServer(wind_warehouse, project="p", location="EU") as srv:
        yield srv


def _warehouse(srv: BigQueryTestServer, storage: bool = True, **options) -> BigQueryWarehouse:
    return BigQueryWarehouse(
        project="p",
        api_endpoint=srv.endpoint,
        read_api_endpoint=srv.read_api_endpoint if storage else None,
        **options,
    )


# -- unit: parameters and SQL ---------------------------------------------------------------------


def test_typed_parameters_become_client_parameter_objects() -> None:
    from google.cloud import bigquery

    ts = query_parameter("cutoff", "TIMESTAMP", "2024-11-01T00:00:00")
    assert isinstance(ts, bigquery.ScalarQueryParameter) and ts.type_ == "TIMESTAMP"
    assert ts.value.tzinfo is not None
    arr = query_parameter("ids", "ARRAY<INT64>", ["1", 2])
    assert isinstance(arr, bigquery.ArrayQueryParameter) and arr.values == [1, 2]
    st = query_parameter("band", "STRUCT<LOW FLOAT64, NAME STRING>", {"low": 1, "name": "x"})
    assert isinstance(st, bigquery.StructQueryParameter)
    assert st.to_api_repr()["parameterType"]["structTypes"] == [
        {"name": "low", "type": {"type": "FLOAT64"}},
        {"name": "name", "type": {"type": "STRING"}},
    ]
    with pytest.raises(DataError, match="@cutoff.*not a valid TIMESTAMP"):
        query_parameter("cutoff", "TIMESTAMP", "yesterday-ish")


def test_split_query_keeps_a_trailing_comment_out_of_the_wrapper() -> None:
    wrapped = split_query("SELECT 1 AS a -- note;", SplitSpec())
    assert wrapped.splitlines()[2] == "SELECT 1 AS a -- note"
    assert wrapped.endswith("\n) AS __voltpipe_row")


def test_google_cloud_is_imported_lazily() -> None:
    code = (
        "import sys, voltpipe.data.bigquery_backend, voltpipe.data.duckdb_backend;"
        "print(any(m.startswith(('google.cloud.bigquery', 'google.api_core')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_factory_accepts_the_bigquery_config_section() -> None:
    from voltpipe.config import BigQueryConfig

    cfg = BigQueryConfig(project="other", location="EU", maximum_bytes_billed=10, labels={"a": "b"})
    wh = open_warehouse("bigquery://p", cfg.model_dump(exclude_none=True))
    assert isinstance(wh, BigQueryWarehouse)
    assert (wh.project, wh.location, wh.maximum_bytes_billed, wh.labels) == (
        "other",
        "EU",
        10,
        {"a": "b"},
    )


# -- end to end -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_extract_end_to_end_through_the_storage_read_api(server, tmp_path: Path, capsys) -> None:
    wh = _warehouse(server, location="EU", labels={"team": "wind"}, maximum_bytes_billed=10**9)
    before = len(server.requests)
    result = wh.extract(SQL, PARAMS, SplitSpec(method="random", seed=3), _dirs(tmp_path))

    assert sum(result.row_counts.values()) == ROWS_BEFORE_CUTOFF
    assert 0.75 < result.row_counts["train"] / ROWS_BEFORE_CUTOFF < 0.85
    assert result.schema == [
        {"name": "ts", "type": "TIMESTAMP"},
        {"name": "turbine_id", "type": "STRING"},
        {"name": "wind_speed_ms", "type": "FLOAT64"},
        {"name": "power_kw", "type": "FLOAT64"},
    ]
    assert result.source == "bigquery://p" and result.job_id.startswith("voltpipe_extract_")
    assert result.sql == SQL and "__voltpipe_split" in result.executed_sql
    for split in SPLITS:
        shards = sorted(p.name for p in (tmp_path / split).iterdir())
        assert shards == [f"part-{i:05d}.parquet" for i in range(4)]  # one per read stream
        table = read_table(tmp_path / split)
        assert table.num_rows == result.row_counts[split]
        assert table.column_names == ["ts", "turbine_id", "wind_speed_ms", "power_kw"]
        assert result.bytes_written[split] == sum(
            p.stat().st_size for p in (tmp_path / split).iterdir()
        )
    assert "voltpipe: query will process" in capsys.readouterr().out

    requests = server.requests[before:]
    jobs = [r["body"] for r in requests if r["method"] == "POST"]
    assert [j["configuration"].get("dryRun", False) for j in jobs] == [True, False]
    for job in jobs:
        query = job["configuration"]["query"]
        assert job["jobReference"]["location"] == "EU"
        assert job["configuration"]["labels"] == {"team": "wind"}
        assert query["maximumBytesBilled"] == str(10**9) and query["useLegacySql"] is False
        params = {p["name"]: p for p in query["queryParameters"]}
        assert set(params) == {"cutoff", "turbines", "band"}  # @unused is not sent
        assert params["cutoff"]["parameterType"] == {"type": "TIMESTAMP"}
        assert params["cutoff"]["parameterValue"]["value"].startswith("2024-11-01 00:00:00")
        assert params["turbines"]["parameterType"] == {
            "type": "ARRAY",
            "arrayType": {"type": "STRING"},
        }
        assert [v["value"] for v in params["turbines"]["parameterValue"]["arrayValues"]] == [
            "WT01",
            "WT02",
        ]
        assert params["band"]["parameterType"]["type"] == "STRUCT"
        assert {f["name"] for f in params["band"]["parameterType"]["structTypes"]} == {
            "low",
            "name",
        }
        assert "@cutoff" in query["query"] and "2024-11-01" not in query["query"]
    sessions = [r["body"] for r in requests if r["path"].endswith("/CreateReadSession")]
    assert [s["readSession"]["readOptions"]["rowRestriction"] for s in sessions] == [
        "__voltpipe_split = 0",
        "__voltpipe_split = 1",
        "__voltpipe_split = 2",
    ]
    assert all(
        s["maxStreamCount"] == 4 and s["readSession"]["dataFormat"] in (2, "ARROW")
        for s in sessions
    )
    assert sessions[0]["readSession"]["readOptions"]["selectedFields"] == [
        "ts",
        "turbine_id",
        "wind_speed_ms",
        "power_kw",
    ]
    assert len([r for r in requests if r["path"].endswith("/ReadRows")]) == 12
    assert not any(r["path"].endswith("/data") for r in requests)  # no REST row download


@pytest.mark.integration
def test_rest_fallback_when_no_storage_server_says_so(server, tmp_path: Path, capsys) -> None:
    before = len(server.requests)
    a = _warehouse(server).extract(
        SQL, PARAMS, SplitSpec(method="hash", column="ts"), _dirs(tmp_path / "a")
    )
    b = _warehouse(server, storage=False).extract(
        SQL, PARAMS, SplitSpec(method="hash", column="ts"), _dirs(tmp_path / "b")
    )
    out = capsys.readouterr().out
    assert "voltpipe: BigQuery Storage Read API unavailable (" in out
    assert "falling back to the REST API" in out
    assert a.row_counts == b.row_counts
    for split in SPLITS:
        assert _rows(tmp_path / "a" / split) == _rows(tmp_path / "b" / split)
        assert (
            pq.read_schema(tmp_path / "b" / split / "part-00000.parquet").field("ts").type.tz
            == "UTC"
        )
    pages = [r for r in server.requests[before:] if r["path"].endswith("/data")]
    assert pages and all("formatOptions.useInt64Timestamp" in r["query"] for r in pages)


@pytest.mark.integration
def test_destination_table_keeps_the_result(server, tmp_path: Path) -> None:
    wh = _warehouse(server, destination_table="scratch.extract")
    for run in ("a", "b"):  # WRITE_TRUNCATE: the second run replaces the first
        result = wh.extract(SQL, PARAMS, SplitSpec(), _dirs(tmp_path / run))
    job = server.job_requests()[-1]["configuration"]["query"]
    assert job["destinationTable"] == {
        "projectId": "p",
        "datasetId": "scratch",
        "tableId": "extract",
    }
    assert job["writeDisposition"] == "WRITE_TRUNCATE"
    table = server.table("p", "scratch", "extract")
    assert int(table["numRows"]) == sum(result.row_counts.values())


@pytest.mark.integration
def test_result_schema_is_a_dry_run(server) -> None:
    before = len(server.requests)
    schema = _warehouse(server).result_schema(SQL, PARAMS)
    assert [c["name"] for c in schema] == ["ts", "turbine_id", "wind_speed_ms", "power_kw"]
    jobs = server.job_requests()[-1:]
    assert len(server.requests) - before == 1 and jobs[0]["configuration"]["dryRun"] is True


@pytest.mark.integration
def test_splits_are_stable_across_runs(server, tmp_path: Path) -> None:
    wh = _warehouse(server)
    for method, column in (("random", None), ("hash", "ts"), ("time", "ts")):
        spec = SplitSpec(method=method, column=column, seed=5)
        wh.extract(SQL, PARAMS, spec, _dirs(tmp_path / method / "1"))
        wh.extract(SQL, PARAMS, spec, _dirs(tmp_path / method / "2"))
        for split in SPLITS:
            assert _rows(tmp_path / method / "1" / split) == _rows(
                tmp_path / method / "2" / split
            ), method


@pytest.mark.integration
def test_hash_split_is_stable_when_rows_are_added(server, tmp_path: Path) -> None:
    wh = _warehouse(server)
    spec = SplitSpec(method="hash", column="ts")
    small = normalize_parameters(
        {
            "cutoff": {"type": "TIMESTAMP", "value": "2024-10-25"},
            "turbines": ["WT01", "WT02"],
            "band": {"low": -1e9, "name": "x"},
        }
    )
    wh.extract(SQL, small, spec, _dirs(tmp_path / "small"))
    wh.extract(SQL, PARAMS, spec, _dirs(tmp_path / "big"))
    for split in SPLITS:
        assert _rows(tmp_path / "small" / split) <= _rows(tmp_path / "big" / split)


# -- bad input: one DataError naming the culprit, no parquet left looking complete -------------------


BAD = {
    "missing table": ("SELECT * FROM p.scada.nope", {}, r"table p\.scada\.nope does not exist"),
    "missing dataset": (
        "SELECT * FROM p.nowhere.turbine",
        {},
        r"dataset p\.nowhere does not exist",
    ),
    "syntax error": ("SELECT ts FRM p.scada.turbine", {}, r"SQL syntax error: .*at \[1:\d+\]"),
    "missing parameter": (
        "SELECT * FROM p.scada.turbine WHERE ts < @cutoff",
        {},
        r"@cutoff has no value",
    ),
    "wrong-typed parameter": (
        "SELECT * FROM p.scada.turbine\nWHERE ts < @cutoff",
        normalize_parameters({"cutoff": "2024-11-01"}),  # a STRING, not a TIMESTAMP
        r"query parameter @cutoff \(declared STRING\).*TIMESTAMP, STRING at \[2:\d+\]",
    ),
    "bad parameter value": (
        "SELECT * FROM p.scada.turbine WHERE ts < @cutoff",
        {"cutoff": {"type": "TIMESTAMP", "value": "not a time"}},
        r"@cutoff.*not a valid TIMESTAMP",
    ),
    "empty result": (
        "SELECT * FROM p.scada.turbine WHERE ts < @cutoff",
        normalize_parameters({"cutoff": {"type": "TIMESTAMP", "value": "1999-01-01"}}),
        r"the query returned no rows \(parameters: @cutoff='1999-01-01T00:00:00'\)",
    ),
    "unknown column": ("SELECT nope FROM p.scada.turbine", {}, r"column nope does not exist"),
    "duplicate names from two stars": (
        "SELECT t.*, u.* FROM p.scada.turbine AS t JOIN p.scada.turbine AS u USING (ts)",
        {},
        r"Duplicate column names in the result are not supported\. Found duplicate\(s\): "
        r"ts, turbine_id",
    ),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_clear_data_error(server, tmp_path: Path, case: str) -> None:
    sql, params, message = BAD[case]
    with pytest.raises(DataError, match=message):
        _warehouse(server).extract(sql, params, SplitSpec(), _dirs(tmp_path))
    assert not list(tmp_path.rglob("*.parquet")) and not list(tmp_path.rglob("*.tmp"))


@pytest.mark.integration
def test_bytes_cap_fails_before_running(server, tmp_path: Path) -> None:
    before = len(server.requests)
    with pytest.raises(
        DataError,
        match=r"would process \d+ bytes and be billed \d+ .*more than bigquery.maximum_bytes_billed = 1000",
    ):
        _warehouse(server, maximum_bytes_billed=1000).extract(
            SQL, PARAMS, SplitSpec(), _dirs(tmp_path)
        )
    jobs = [r["body"] for r in server.requests[before:] if r["method"] == "POST"]
    assert len(jobs) == 1 and jobs[0]["configuration"]["dryRun"] is True
    assert not list(tmp_path.rglob("*.parquet"))


@pytest.mark.integration
def test_bytes_cap_enforced_by_the_job_is_a_data_error(server, tmp_path: Path, monkeypatch) -> None:
    # A dry run's estimate can be below what the job bills; then BigQuery fails the job itself.
    real_run = server.engine.run

    def underestimating_dry_run(sql, params, dataset, *, limit0):
        table, _ = real_run(sql, params, dataset, limit0=limit0)
        return table, 0 if limit0 else 50 * 2**20

    monkeypatch.setattr(server.engine, "run", underestimating_dry_run)
    with pytest.raises(
        DataError, match=r"maximum_bytes_billed: Query exceeded limit for bytes billed: 20971520\."
    ):
        _warehouse(server, maximum_bytes_billed=20 * 2**20).extract(
            SQL, PARAMS, SplitSpec(), _dirs(tmp_path)
        )
    assert not list(tmp_path.rglob("*.parquet"))


@pytest.mark.integration
def test_split_column_missing_is_named(server, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope"):
        _warehouse(server).extract(
            SQL, PARAMS, SplitSpec(method="hash", column="nope"), _dirs(tmp_path)
        )


# -- issue 12: time split at warehouse scale, the 10 MB minimum, loads by name, DATETIME --------


@pytest.mark.integration
@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.7, 0.0, 0.3)])
def test_time_split_cuts_at_quantiles_and_matches_duckdb(
    wind_warehouse: Path, tmp_path: Path, fractions
) -> None:
    from voltpipe.data.duckdb_backend import DuckDBWarehouse

    split = SplitSpec(method="time", column="ts", fractions=fractions)
    sql = SQL.replace("`p.scada.turbine`", "scada.turbine")  # both warehouses read it so
    # The server refuses an analytic function ordered over a result this large, as BigQuery
    # does at warehouse scale ("Resources exceeded"): the split must not need one.
    with BigQueryTestServer(wind_warehouse, project="p", max_global_sort_rows=100) as srv:
        result = _warehouse(srv).extract(sql, PARAMS, split, _dirs(tmp_path / "bq"))
    assert (
        "OVER" not in result.executed_sql and "APPROX_QUANTILES(`ts`, 1000)" in result.executed_sql
    )
    local = DuckDBWarehouse(wind_warehouse).extract(sql, PARAMS, split, _dirs(tmp_path / "duck"))
    assert result.row_counts == local.row_counts
    assert sum(result.row_counts.values()) == ROWS_BEFORE_CUTOFF

    def naive(rows: set[tuple]) -> set[tuple]:  # BigQuery's TIMESTAMP is UTC, DuckDB's naive
        return {(ts.replace(tzinfo=None), turbine) for ts, turbine in rows}

    for name in SPLITS:  # the very same rows in each split on both warehouses
        assert naive(_rows(tmp_path / "bq" / name)) == naive(_rows(tmp_path / "duck" / name))
    train = read_table(tmp_path / "bq" / "train").column("ts").to_pylist()
    test = read_table(tmp_path / "bq" / "test").column("ts").to_pylist()
    assert max(train) < min(test)  # a time split: everything in train precedes test
    assert result.row_counts["train"] / ROWS_BEFORE_CUTOFF == pytest.approx(fractions[0], abs=0.01)
    if fractions[1] == 0:
        assert result.row_counts["valid"] == 0


@pytest.mark.integration
def test_resources_exceeded_is_not_reported_as_a_bad_query(wind_warehouse: Path, tmp_path) -> None:
    sql = "SELECT ts, power_kw, ROW_NUMBER() OVER (ORDER BY ts) AS n FROM `p.scada.turbine`"
    with (
        BigQueryTestServer(wind_warehouse, project="p", max_global_sort_rows=100) as srv,
        pytest.raises(DataError, match=r"^BigQuery ran out of resources .*Resources exceeded"),
    ):
        _warehouse(srv).extract(sql, {}, SplitSpec(), _dirs(tmp_path))


@pytest.mark.integration
def test_the_cap_check_counts_the_10_mb_minimum(server, tmp_path: Path) -> None:
    from voltpipe.data.bigquery_backend import billed_bytes

    assert billed_bytes(0) == billed_bytes(10 * 2**20) == 10 * 2**20
    assert billed_bytes(10 * 2**20 + 1) == 11 * 2**20
    before = len(server.requests)
    # The query processes ~0.5 MB, under the 5 MB cap, but BigQuery bills at least 10 MB.
    with pytest.raises(DataError, match=r"billed 10485760 .*raise the cap to at least 10485760"):
        _warehouse(server, maximum_bytes_billed=5 * 2**20).extract(
            SQL, PARAMS, SplitSpec(), _dirs(tmp_path)
        )
    jobs = [r["body"] for r in server.requests[before:] if r["method"] == "POST"]
    assert len(jobs) == 1 and jobs[0]["configuration"]["dryRun"] is True  # nothing ran
    # and the server fails such a job as BigQuery does
    from google.api_core import exceptions
    from google.cloud import bigquery

    client = _warehouse(server)._client()
    config = bigquery.QueryJobConfig(maximum_bytes_billed=5 * 2**20)
    with pytest.raises(exceptions.GoogleAPICallError, match="10485760 or higher required"):
        client.query("SELECT 1 AS x", job_config=config).result()


@pytest.mark.integration
def test_loads_match_parquet_columns_by_name(tmp_path: Path) -> None:
    import duckdb
    import pyarrow as pa

    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA out")
    con.close()
    with BigQueryTestServer(path, project="p") as srv:
        wh = _warehouse(srv, storage=False)
        wh.write_table(pa.table({"site": ["a"], "kw": [1.5]}), "out.scores", mode="replace")
        # the same columns in another order: BigQuery matches them by name, not by position
        wh.write_table(pa.table({"kw": [2.5], "site": ["b"]}), "out.scores", mode="append")
        rows = srv.engine.read_table("p", "out", "scores").to_pylist()
    assert rows == [{"site": "a", "kw": 1.5}, {"site": "b", "kw": 2.5}]


@pytest.mark.integration
def test_invalid_job_labels_are_refused_as_bigquery_does(server, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r'Label key "Team" has invalid characters'):
        _warehouse(server, labels={"Team": "wind"}).extract(
            SQL, PARAMS, SplitSpec(), _dirs(tmp_path)
        )


@pytest.mark.integration
def test_datetime_is_served_without_a_time_zone(server, tmp_path: Path) -> None:
    import datetime as dt

    import pyarrow as pa

    sql = (
        "SELECT ts, CAST(ts AS DATETIME) AS local_ts, turbine_id FROM `p.scada.turbine`\n"
        "WHERE ts < @cutoff"
    )
    params = normalize_parameters({"cutoff": {"type": "TIMESTAMP", "value": "2024-10-21"}})
    result = _warehouse(server).extract(sql, params, SplitSpec(), _dirs(tmp_path))
    types = {c["name"]: c["type"] for c in result.schema}
    assert types["ts"] == "TIMESTAMP" and types["local_ts"] == "DATETIME"
    table = read_table(tmp_path / "train")
    assert table.schema.field("local_ts").type == pa.timestamp("us")  # no time zone
    assert table.schema.field("ts").type.tz == "UTC"
    # the REST rows too: DATETIME as civil time, TIMESTAMP as an instant
    client = _warehouse(server)._client()
    [row] = client.query(
        "SELECT CAST(TIMESTAMP '2024-10-20 06:30:00' AS DATETIME) AS d, "
        "TIMESTAMP '2024-10-20 06:30:00' AS t"
    ).result()
    assert row.d == dt.datetime(2024, 10, 20, 6, 30) and row.d.tzinfo is None
    assert row.t == dt.datetime(2024, 10, 20, 6, 30, tzinfo=dt.UTC)
