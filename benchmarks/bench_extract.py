"""Local extraction throughput: DuckDBWarehouse.extract vs DuckDB's own COPY ... TO parquet."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import duckdb

from benchmarks import Row
from voltpipe.data.duckdb_backend import DuckDBWarehouse
from voltpipe.data.warehouse import SPLITS, SplitSpec

QUERY = "SELECT * FROM bench.readings WHERE ts >= @since"
PARAMETERS = {"since": {"type": "TIMESTAMP", "value": "2000-01-01T00:00:00"}}


def _make_warehouse(path: Path, rows: int) -> None:
    """5M x 10 columns of wind-farm-like data: ids, a timestamp, a category and seven floats."""
    con = duckdb.connect(str(path))
    con.execute("SET enable_progress_bar = false")
    con.execute("CREATE SCHEMA bench")
    con.execute(
        f"""
        CREATE TABLE bench.readings AS
        SELECT i AS id,
               TIMESTAMP '2024-01-01' + to_seconds(i * 60) AS ts,
               'turbine-' || (i % 50) AS turbine,
               sin(i / 100.0) * 12 + 12 AS wind_speed,
               (i % 360)::DOUBLE AS wind_dir,
               15 + cos(i / 1440.0) * 10 AS temperature,
               1013 + sin(i / 7.0) AS pressure,
               (i * 7919 % 1000) / 10.0 AS humidity,
               (i % 97) / 97.0 AS pitch,
               greatest(0, sin(i / 100.0) * 3000) AS power
        FROM range({rows}) t(i)
        """
    )
    con.close()


def _best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def run(quick: bool) -> list[Row]:
    rows = 500_000 if quick else 5_000_000
    work = Path(tempfile.mkdtemp(prefix="voltpipe-bench-extract-"))
    try:
        db = work / "warehouse.duckdb"
        _make_warehouse(db, rows)
        warehouse = DuckDBWarehouse(db)
        out = {name: work / "out" / name for name in SPLITS}

        def voltpipe_extract() -> None:
            warehouse.extract(QUERY, PARAMETERS, SplitSpec(method="random", seed=7), out)

        def duckdb_copy() -> None:
            con = duckdb.connect(str(db), read_only=True)
            con.execute("SET enable_progress_bar = false")
            try:
                con.execute(
                    "COPY (SELECT * FROM bench.readings WHERE ts >= TIMESTAMP '2000-01-01') "
                    f"TO '{work / 'copy.parquet'}' (FORMAT parquet, COMPRESSION zstd)"
                )
            finally:
                con.close()

        repeats = 3 if quick else 2
        copy_seconds = _best_of(repeats, duckdb_copy)
        extract_seconds = _best_of(repeats, voltpipe_extract)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [
        Row(
            benchmark="extract",
            figure=f"DuckDBWarehouse.extract {rows // 1000}k rows x 10 cols",
            value=rows / extract_seconds,
            unit="/s",
            floor=rows / copy_seconds,
            floor_label="DuckDB COPY (query) TO parquet, same run",
            goal="ratio >= 0.8",
            extra={"rows": rows, "extract_seconds": extract_seconds, "copy_seconds": copy_seconds},
        )
    ]


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
