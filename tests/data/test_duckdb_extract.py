"""Extraction from the embedded DuckDB warehouse: splits, metadata and bad input."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from voltpipe.data.extract import extract_splits
from voltpipe.data.io import read_table
from voltpipe.data.params import normalize_parameters
from voltpipe.errors import DataError

SQL = "SELECT ts, turbine_id, wind_speed_ms, power_kw FROM scada.turbine WHERE ts < @cutoff"
PARAMS = normalize_parameters({"cutoff": {"type": "TIMESTAMP", "value": "2024-11-01"}})


def _dirs(root: Path) -> dict[str, Path]:
    return {s: root / s for s in ("train", "valid", "test")}


def _rows(path: Path) -> list[tuple]:
    return sorted(tuple(r.values()) for r in read_table(path).to_pylist())


def _extract(wh: Path, out: Path, split: dict, sql: str = SQL, params: dict = PARAMS):
    return extract_splits(f"duckdb:///{wh}", sql, params, split, _dirs(out))


def test_random_split_fractions_schema_and_metadata(wind_warehouse: Path, tmp_path: Path) -> None:
    result = _extract(wind_warehouse, tmp_path, {"method": "random", "seed": 3})
    total = sum(result.row_counts.values())
    assert total == 2 * 12 * 144  # 2 turbines x 12 days before the cutoff
    assert 0.75 < result.row_counts["train"] / total < 0.85
    assert [c["name"] for c in result.schema] == ["ts", "turbine_id", "wind_speed_ms", "power_kw"]
    for split, n in result.row_counts.items():
        table = read_table(tmp_path / split)
        assert table.num_rows == n
        assert "__voltpipe_split" not in table.column_names
    meta = result.metadata("train")
    assert meta["parameters"]["cutoff"]["type"] == "TIMESTAMP" and meta["sql"] == SQL
    assert meta["bytes"] > 0


def test_random_split_is_stable_across_runs(wind_warehouse: Path, tmp_path: Path) -> None:
    a = _extract(wind_warehouse, tmp_path / "a", {"method": "random", "seed": 3})
    b = _extract(wind_warehouse, tmp_path / "b", {"method": "random", "seed": 3})
    _extract(wind_warehouse, tmp_path / "c", {"method": "random", "seed": 4})
    assert a.row_counts == b.row_counts
    assert _rows(tmp_path / "a" / "test") == _rows(tmp_path / "b" / "test")
    assert _rows(tmp_path / "a" / "test") != _rows(tmp_path / "c" / "test")


def test_hash_split_keeps_a_key_in_one_split(wind_warehouse: Path, tmp_path: Path) -> None:
    _extract(wind_warehouse, tmp_path, {"method": "hash", "column": "ts", "seed": 1})
    keys = {
        s: set(read_table(tmp_path / s).column("ts").to_pylist())
        for s in ("train", "valid", "test")
    }
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["valid"]
    # Both turbines of a timestamp travel together.
    test = read_table(tmp_path / "test")
    assert test.num_rows == 2 * len(keys["test"])


def test_hash_split_is_stable_when_rows_are_added(wind_warehouse: Path, tmp_path: Path) -> None:
    small = "SELECT ts, power_kw FROM scada.turbine WHERE ts < TIMESTAMP '2024-10-25'"
    big = "SELECT ts, power_kw FROM scada.turbine WHERE ts < TIMESTAMP '2024-10-30'"
    _extract(wind_warehouse, tmp_path / "s", {"method": "hash", "column": "ts"}, small, {})
    _extract(wind_warehouse, tmp_path / "b", {"method": "hash", "column": "ts"}, big, {})
    small_test = set(read_table(tmp_path / "s" / "test").column("ts").to_pylist())
    big_test = set(read_table(tmp_path / "b" / "test").column("ts").to_pylist())
    assert small_test and small_test <= big_test


def test_time_split_cuts_on_the_column(wind_warehouse: Path, tmp_path: Path) -> None:
    _extract(wind_warehouse, tmp_path, {"method": "time", "column": "ts"})
    train_max = max(read_table(tmp_path / "train").column("ts").to_pylist())
    test_min = min(read_table(tmp_path / "test").column("ts").to_pylist())
    assert train_max < test_min


@pytest.mark.parametrize(
    ("sql", "params", "message"),
    [
        ("SELECT * FROM scada.turbines", {}, "table scada.turbines does not exist"),
        ("SELECT * FROM scada.turbine WHERE", {}, "SQL syntax error"),
        ("SELECT * FROM scada.turbine WHERE ts < @cutoff", {}, "@cutoff has no value"),
        (
            "SELECT * FROM scada.turbine WHERE ts < @cutoff",
            normalize_parameters({"cutoff": "2030-01-01"})
            | {"cutoff": {"type": "BOOL", "value": True}},
            "cutoff",
        ),
        (
            "SELECT * FROM scada.turbine WHERE ts > TIMESTAMP '2099-01-01'",
            {},
            "the query returned no rows",
        ),
        ("SELECT no_such_column FROM scada.turbine", {}, "no_such_column"),
    ],
)
def test_bad_input_names_the_culprit_and_leaves_no_parquet(
    wind_warehouse: Path, tmp_path: Path, sql: str, params: dict, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        _extract(wind_warehouse, tmp_path, {"method": "random"}, sql, params)
    assert not list(tmp_path.rglob("*.parquet"))


def test_missing_warehouse_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        _extract(tmp_path / "nope.duckdb", tmp_path, {"method": "random"})


def test_split_column_must_exist(wind_warehouse: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="split.column 'day'"):
        _extract(wind_warehouse, tmp_path, {"method": "hash", "column": "day"})


def test_shards_are_zstd_parquet(wind_warehouse: Path, tmp_path: Path) -> None:
    _extract(wind_warehouse, tmp_path, {"method": "random"})
    meta = pq.ParquetFile(tmp_path / "train" / "part-00000.parquet").metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "SELECT wind_speed_ms AS `wind speed`, power_kw FROM scada.turbine",
            r"column 'wind speed' is not a plain name.*`wind speed` AS wind_speed",
        ),
        (
            "SELECT wind_speed_ms AS `vitesse_é`, power_kw FROM scada.turbine",
            r"column 'vitesse_é' is not a plain name",
        ),
        (
            "SELECT wind_speed_ms AS x1, power_kw AS X1 FROM scada.turbine",
            r"column 'X1' appears twice \(also as 'x1'\)",
        ),
        (  # DuckDB would keep both ids, or rename the second `id_1` once it is a subquery
            "SELECT t.*, u.* FROM scada.turbine AS t JOIN scada.turbine AS u USING (ts)",
            r"Duplicate column names in the result are not supported\. Found duplicate\(s\): "
            r"ts, turbine_id, wind_speed_ms",
        ),
        (
            "SELECT wind_speed_ms AS __voltpipe_split, power_kw FROM scada.turbine",
            r"column '__voltpipe_split' uses voltpipe's reserved prefix",
        ),
    ],
)
def test_column_names_a_model_cannot_use_are_refused_naming_them(
    wind_warehouse: Path, tmp_path: Path, sql: str, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        _extract(wind_warehouse, tmp_path, {"method": "random", "seed": 0}, sql=sql, params={})
