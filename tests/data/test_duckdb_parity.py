"""The same BigQuery SQL on DuckDBWarehouse and on BigQueryWarehouse (test server, same data).

hash and time splits are equal row for row: the hash split is MD5-based on both warehouses and the
time split is PERCENT_RANK with NULLs last on both. The random split hashes the whole row, which
the engines serialise differently (TO_JSON_STRING vs DuckDB's row hash), so its rows differ; only
its fractions and its stability are shared.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from voltpipe.data.bigquery_backend import BigQueryWarehouse
from voltpipe.data.duckdb_backend import DuckDBWarehouse
from voltpipe.data.io import read_table
from voltpipe.data.params import normalize_parameters
from voltpipe.data.warehouse import SPLITS, SplitSpec
from voltpipe.testing.bigquery_server import BigQueryTestServer

SQL = (
    "SELECT ts, turbine_id, power_kw FROM scada.turbine "
    "WHERE ts < @cutoff AND turbine_id IN UNNEST(@turbines)"
)
PARAMS = normalize_parameters(
    {"cutoff": {"type": "TIMESTAMP", "value": "2024-11-01"}, "turbines": ["WT01", "WT02"]}
)


def _keys(folder: Path) -> set[tuple]:
    table = read_table(folder, columns=["ts", "turbine_id"])
    return {(r["ts"].replace(tzinfo=None), r["turbine_id"]) for r in table.to_pylist()}


@pytest.fixture(scope="module")
def server(wind_warehouse: Path):
    with BigQueryTestServer(wind_warehouse, project="p") as srv:
        yield srv


def _both(server, wind_warehouse: Path, root: Path, spec: SplitSpec) -> tuple[dict, dict]:
    local = DuckDBWarehouse(wind_warehouse).extract(
        SQL, PARAMS, spec, {s: root / "duckdb" / s for s in SPLITS}
    )
    remote = BigQueryWarehouse(
        project="p",
        api_endpoint=server.endpoint,
        read_api_endpoint=server.read_api_endpoint,
    ).extract(SQL, PARAMS, spec, {s: root / "bigquery" / s for s in SPLITS})
    return local.row_counts, remote.row_counts


@pytest.mark.integration
@pytest.mark.parametrize(
    "spec",
    [
        SplitSpec(method="hash", column="ts", seed=11),
        SplitSpec(method="hash", column="turbine_id", seed=3, fractions=(0.5, 0.0, 0.5)),
        SplitSpec(method="time", column="ts", fractions=(0.7, 0.15, 0.15)),
    ],
    ids=["hash-ts", "hash-turbine", "time"],
)
def test_hash_and_time_splits_are_identical(
    server, wind_warehouse: Path, tmp_path: Path, spec: SplitSpec
) -> None:
    local, remote = _both(server, wind_warehouse, tmp_path, spec)
    assert local == remote
    for split in SPLITS:
        assert _keys(tmp_path / "duckdb" / split) == _keys(tmp_path / "bigquery" / split), split


@pytest.mark.integration
def test_random_split_shares_fractions_not_rows(
    server, wind_warehouse: Path, tmp_path: Path
) -> None:
    local, remote = _both(server, wind_warehouse, tmp_path, SplitSpec(method="random", seed=5))
    total = sum(local.values())
    assert sum(remote.values()) == total
    for split in SPLITS:
        assert abs(local[split] - remote[split]) / total < 0.03
