"""The embedded warehouse: DuckDB running BigQuery SQL transpiled by sqlglot."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from voltpipe.data import sql as sqlmod
from voltpipe.data.params import python_value
from voltpipe.data.warehouse import SPLITS, ExtractResult, SplitSpec
from voltpipe.errors import DataError

_SPLIT_COL = "__voltpipe_split"
_ROW = "__voltpipe_row"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _split_expression(split: SplitSpec) -> str:
    """SQL giving each row a split code 0/1/2, deterministic for the same data and seed."""
    train, valid, _ = split.fractions
    if split.method == "time":
        position = f"PERCENT_RANK() OVER (ORDER BY {_quote(split.column or '')})"
    elif split.method == "hash":
        # Stable by key: the same key lands in the same split on every run. The first 60 bits of
        # MD5(key || ':' || seed) are what the BigQuery backend computes too, so a key gets the
        # same split on both warehouses (bigquery_backend.split_expression).
        key = f"COALESCE(CAST({_quote(split.column or '')} AS VARCHAR), '')"
        position = (
            f"(CAST('0x' || substr(md5({key} || ':' || CAST($__voltpipe_seed AS VARCHAR)), 1, 15) "
            "AS BIGINT) % 1000000) / 1000000.0"
        )
    else:
        # Seeded and independent of row order: a hash of the whole row and the seed.
        position = f"(hash({_ROW}, $__voltpipe_seed) % 1000000) / 1000000.0"
    return (
        f"CASE WHEN {position} < {train} THEN 0 WHEN {position} < {train + valid} THEN 1 ELSE 2 END"
    )


def _translate_error(exc: duckdb.Error, sql: str, parameters: dict[str, Any]) -> DataError:
    text = str(exc).split("\n")[0]
    if isinstance(exc, duckdb.CatalogException):
        m = re.search(r"Table with name (\S+) does not exist", text)
        if m:
            wanted = [t for t in sqlmod.tables_referenced(sql) if t.split(".")[-1] == m.group(1)]
            table = wanted[0] if wanted else m.group(1)
            return DataError(f"table {table} does not exist in the warehouse")
        return DataError(f"query refers to something that does not exist: {text}")
    if isinstance(exc, duckdb.ParserException):
        return DataError(f"SQL syntax error: {text}")
    if isinstance(exc, duckdb.BinderException):
        m = re.search(r'column "?([^"\s]+)"? not found', text, re.IGNORECASE)
        if m:
            return DataError(f"column {m.group(1)} does not exist: {text}")
        return DataError(
            f"query cannot be bound (check column names and parameter types {sorted(parameters)}): {text}"
        )
    if isinstance(exc, duckdb.ConversionException):
        return DataError(f"a query parameter or value has the wrong type: {text}")
    return DataError(f"query failed: {text}")


class DuckDBWarehouse:
    """A DuckDB database file, opened read-only for extraction."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        if not self.path.exists():
            raise DataError(f"DuckDB warehouse {self.path} does not exist")
        con = duckdb.connect(str(self.path), read_only=True)
        con.execute("SET enable_progress_bar = false")  # keep task logs free of progress bars
        return con

    def _prepare(
        self, sql: str, parameters: dict[str, dict[str, Any]]
    ) -> tuple[str, dict[str, Any]]:
        sqlmod.check_parameters(sql, parameters)
        used = sqlmod.query_parameters_used(sql)
        translated = sqlmod.to_duckdb(sql)
        values = {name: python_value(p) for name, p in parameters.items() if name in used}
        return translated, values

    def result_schema(
        self, sql: str, parameters: dict[str, dict[str, Any]]
    ) -> list[dict[str, str]]:
        translated, values = self._prepare(sql, parameters)
        con = self._connect()
        try:
            rel = con.execute(f"SELECT * FROM ({translated}) LIMIT 0", values)
            return [{"name": d[0], "type": str(d[1])} for d in rel.description]
        except duckdb.Error as exc:
            raise _translate_error(exc, sql, parameters) from None
        finally:
            con.close()

    def extract(
        self,
        sql: str,
        parameters: dict[str, dict[str, Any]],
        split: SplitSpec,
        out_dirs: dict[str, Path],
    ) -> ExtractResult:
        translated, values = self._prepare(sql, parameters)
        con = self._connect()
        try:
            columns = self._columns(con, translated, values)
            if split.column and split.column not in columns:
                raise DataError(
                    f"split.column {split.column!r} is not a column of the query result "
                    f"(columns: {', '.join(columns)})"
                )
            schema = [
                {"name": d[0], "type": str(d[1])}
                for d in con.execute(f"SELECT * FROM ({translated}) LIMIT 0", values).description
            ]
            # One pass: the query runs once and DuckDB writes each split's rows into its own
            # partition folder (no temporary table, no second scan per split).
            staging = Path(out_dirs["train"]).parent / f".voltpipe-extract-{uuid.uuid4().hex[:8]}"
            staging.parent.mkdir(parents=True, exist_ok=True)
            try:
                con.execute(
                    f"COPY (SELECT {_ROW}.*, {_split_expression(split)} AS {_SPLIT_COL} "
                    f"FROM ({translated}) AS {_ROW}) TO '{_escape(staging)}' "
                    f"(FORMAT parquet, COMPRESSION zstd, PARTITION_BY ({_SPLIT_COL}))",
                    {**values, "__voltpipe_seed": split.seed} if split.method != "time" else values,
                )
                files = {
                    name: sorted((staging / f"{_SPLIT_COL}={code}").glob("*.parquet"))
                    for code, name in enumerate(SPLITS)
                }
                counts = {
                    name: sum(pq.ParquetFile(f).metadata.num_rows for f in parts)
                    for name, parts in files.items()
                }
                if sum(counts.values()) == 0:
                    shown = (
                        ", ".join(f"@{k}={v['value']!r}" for k, v in parameters.items()) or "none"
                    )
                    raise DataError(f"the query returned no rows (parameters: {shown})")
                for name, parts in files.items():
                    if not parts:  # a split without rows still gets a readable file with the schema
                        empty = staging / f"empty-{name}.parquet"
                        con.execute(
                            f"COPY (SELECT * FROM ({translated}) LIMIT 0) TO '{_escape(empty)}' "
                            "(FORMAT parquet, COMPRESSION zstd)",
                            values,
                        )
                        files[name] = [empty]
                sizes = {}
                for name, parts in files.items():
                    out = Path(out_dirs[name])
                    out.mkdir(parents=True, exist_ok=True)
                    for old in out.glob("part-*.parquet"):
                        old.unlink()
                    sizes[name] = 0
                    for i, part in enumerate(parts):
                        target = out / f"part-{i:05d}.parquet"
                        shutil.move(part, target)
                        sizes[name] += target.stat().st_size
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        except duckdb.Error as exc:
            raise _translate_error(exc, sql, parameters) from None
        finally:
            con.close()
        return ExtractResult(
            schema=schema,
            row_counts=counts,
            bytes_written=sizes,
            sql=sql,
            executed_sql=translated,
            parameters=parameters,
            source=f"duckdb:///{self.path}",
        )

    @staticmethod
    def _columns(
        con: duckdb.DuckDBPyConnection, translated: str, values: dict[str, Any]
    ) -> list[str]:
        rel = con.execute(f"SELECT * FROM ({translated}) LIMIT 0", values)
        return [d[0] for d in rel.description]


def _escape(path: Path) -> str:
    return str(path).replace("'", "''")
