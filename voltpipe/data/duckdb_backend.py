"""The embedded warehouse: DuckDB running BigQuery SQL transpiled by sqlglot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb

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
        # Stable by key: the same key lands in the same split on every run.
        position = f"(hash(CAST({_quote(split.column or '')} AS VARCHAR), $__voltpipe_seed) % 1000000) / 1000000.0"
    else:
        # Seeded and independent of row order: a hash of the whole row and the seed.
        position = f"(hash({_ROW}, $__voltpipe_seed) % 1000000) / 1000000.0"
    return (
        f"CASE WHEN {position} < {train} THEN 0 "
        f"WHEN {position} < {train + valid} THEN 1 ELSE 2 END"
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
        return DataError(f"query cannot be bound (check column names and parameter types {sorted(parameters)}): {text}")
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
        return duckdb.connect(str(self.path), read_only=True)

    def _prepare(self, sql: str, parameters: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        sqlmod.check_parameters(sql, parameters)
        used = sqlmod.query_parameters_used(sql)
        translated = sqlmod.to_duckdb(sql)
        values = {name: python_value(p) for name, p in parameters.items() if name in used}
        return translated, values

    def result_schema(self, sql: str, parameters: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
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
            con.execute(
                f"CREATE TEMP TABLE __voltpipe_extract AS "
                f"SELECT {_ROW}.*, {_split_expression(split)} AS {_SPLIT_COL} "
                f"FROM ({translated}) AS {_ROW}",
                {**values, "__voltpipe_seed": split.seed} if split.method != "time" else values,
            )
            counts = dict.fromkeys(SPLITS, 0)
            for code, n in con.execute(
                f"SELECT {_SPLIT_COL}, count(*) FROM __voltpipe_extract GROUP BY 1"
            ).fetchall():
                counts[SPLITS[code]] = n
            if sum(counts.values()) == 0:
                shown = ", ".join(f"@{k}={v['value']!r}" for k, v in parameters.items()) or "none"
                raise DataError(f"the query returned no rows (parameters: {shown})")
            sizes = {}
            for code, name in enumerate(SPLITS):
                out = Path(out_dirs[name])
                out.mkdir(parents=True, exist_ok=True)
                target = out / "part-00000.parquet"
                con.execute(
                    f"COPY (SELECT * EXCLUDE ({_SPLIT_COL}) FROM __voltpipe_extract "
                    f"WHERE {_SPLIT_COL} = {code}) TO '{_escape(target)}' "
                    "(FORMAT parquet, COMPRESSION zstd)"
                )
                sizes[name] = target.stat().st_size
            schema = [
                {"name": d[0], "type": str(d[1])}
                for d in con.execute(
                    f"SELECT * EXCLUDE ({_SPLIT_COL}) FROM __voltpipe_extract LIMIT 0"
                ).description
            ]
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
    def _columns(con: duckdb.DuckDBPyConnection, translated: str, values: dict[str, Any]) -> list[str]:
        rel = con.execute(f"SELECT * FROM ({translated}) LIMIT 0", values)
        return [d[0] for d in rel.description]


def _escape(path: Path) -> str:
    return str(path).replace("'", "''")
