"""The embedded warehouse: DuckDB running BigQuery SQL transpiled by sqlglot."""

from __future__ import annotations

import contextlib
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from voltpipe.data import sql as sqlmod
from voltpipe.data.params import python_value
from voltpipe.data.warehouse_types import (
    SPLITS,
    WRITE_MODES,
    ChunkedWrite,
    ExtractResult,
    QueryEstimate,
    SplitSpec,
    row_width,
    table_parts,
)
from voltpipe.errors import ConfigError, DataError

_SPLIT_COL = "__voltpipe_split"
_ROW = "__voltpipe_row"
_CUTS = "__voltpipe_cuts"


def _split_select(translated: str, split: SplitSpec) -> str:
    """The query with each row's split code in ``__voltpipe_split`` (see `_split_expression`)."""
    if split.method != "time":
        return (
            f"SELECT {_ROW}.*, {_split_expression(split)} AS {_SPLIT_COL} "
            f"FROM ({translated}) AS {_ROW}"
        )
    from voltpipe.data.bigquery_backend import QUANTILE_STEPS, quantile_offsets

    low, high = (k / QUANTILE_STEPS for k in quantile_offsets(split))
    column = _quote(split.column or "")
    return (
        f"WITH {_ROW} AS ({translated}), "
        f"{_CUTS} AS (SELECT quantile_disc({column}, [{low!r}, {high!r}]) AS q FROM {_ROW}) "
        f"SELECT {_ROW}.*, {_split_expression(split)} AS {_SPLIT_COL} "
        f"FROM {_ROW} CROSS JOIN {_CUTS}"
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _split_expression(split: SplitSpec) -> str:
    """SQL giving each row a split code 0/1/2, deterministic for the same data and seed."""
    train, valid, _ = split.fractions
    if split.method == "time":
        # Cut points first, then a plain comparison, as the BigQuery backend does (its
        # APPROX_QUANTILES(column, 1000)[OFFSET(k)] is quantile_disc(column, k / 1000) here):
        # the same rows land in the same split on both warehouses.
        value = f"{_ROW}.{_quote(split.column or '')}"
        return (
            f"CASE WHEN {value} < {_CUTS}.q[1] THEN 0 WHEN {value} < {_CUTS}.q[2] THEN 1 ELSE 2 END"
        )
    if split.method == "hash":
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
        # While a writer is open, reads go through cursors of its read-write connection (one
        # process cannot hold a read-only and a read-write connection to the same file).
        self._writing: duckdb.DuckDBPyConnection | None = None

    def _connect(self) -> duckdb.DuckDBPyConnection:
        if self._writing is not None:
            return self._writing.cursor()
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

    def query_table(self, sql: str, parameters: dict[str, dict[str, Any]]) -> pa.Table:
        """Runs a query with a small result (a summary) and returns it as an Arrow table."""
        translated, values = self._prepare(sql, parameters)
        con = self._connect()
        try:
            return con.sql(translated, params=values).to_arrow_table()
        except duckdb.Error as exc:
            raise _translate_error(exc, sql, parameters) from None
        finally:
            con.close()

    def result_schema(
        self, sql: str, parameters: dict[str, dict[str, Any]]
    ) -> list[dict[str, str]]:
        translated, values = self._prepare(sql, parameters)
        con = self._connect()
        try:
            _refuse_duplicate_names(con, translated, values)
            rel = con.execute(f"SELECT * FROM ({translated}) LIMIT 0", values)
            return [{"name": d[0], "type": str(d[1])} for d in rel.description]
        except duckdb.Error as exc:
            raise _translate_error(exc, sql, parameters) from None
        finally:
            con.close()

    def estimate(self, sql: str, parameters: dict[str, dict[str, Any]]) -> QueryEstimate:
        """The query's row count (DuckDB counts without materialising the rows) times the
        estimated width of a result row.

        Raises:
            DataError: the query cannot run.
        """
        schema = self.result_schema(sql, parameters)
        translated, values = self._prepare(sql, parameters)
        con = self._connect()
        try:
            found = con.execute(f"SELECT count(*) FROM ({translated})", values).fetchone()
        except duckdb.Error as exc:
            raise _translate_error(exc, sql, parameters) from None
        finally:
            con.close()
        rows = int(found[0]) if found else 0
        width = row_width(schema)
        return QueryEstimate(rows, rows * width, width, "duckdb: COUNT x row width")

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
            _refuse_duplicate_names(con, translated, values)
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
                    f"COPY ({_split_select(translated, split)}) TO '{_escape(staging)}' "
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

    def iter_batches(
        self, sql: str, parameters: dict[str, dict[str, Any]], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        """Streams the query's rows as Arrow record batches of up to `batch_rows` rows.

        The first batch (possibly empty) carries the schema; the connection closes when the
        iterator is exhausted or closed.

        Raises:
            DataError: the query cannot run (missing table or column, bad parameter, ...).
        """
        translated, values = self._prepare(sql, parameters)
        con = self._connect()
        try:
            try:
                reader = con.sql(f"SELECT * FROM ({translated})", params=values).to_arrow_reader(
                    batch_rows
                )
            except duckdb.Error as exc:
                raise _translate_error(exc, sql, parameters) from None
            yield pa.RecordBatch.from_pylist([], schema=reader.schema)
            try:
                yield from reader
            except duckdb.Error as exc:
                raise _translate_error(exc, sql, parameters) from None
            except (OSError, pa.ArrowException) as exc:
                # An error met while streaming (a failing cast, ERROR(...)) reaches us through
                # the Arrow reader, not as a duckdb.Error.
                text = str(exc).split("\n")[0]
                raise DataError(f"query failed while reading its rows: {text}") from None
        finally:
            con.close()

    def write_table(self, table: pa.Table, destination: str, *, mode: str = "append") -> int:
        """Writes `table` to ``schema.table`` in one transaction; returns the rows written.

        The database is opened read-write for this call only. The schema and table are created
        when missing; `mode` ``replace`` swaps the table's contents, ``append`` adds rows (by
        column name). A failure leaves the table as it was.

        Raises:
            ConfigError: a bad destination name or mode.
            DataError: the warehouse cannot be written (locked, read-only, missing folder) or
                the rows do not fit the existing table.
        """
        con, parts = self._open_for_write(destination, mode)
        schema, name = (_quote(p) for p in parts)
        target = f"{schema}.{name}"
        try:
            con.execute("SET enable_progress_bar = false")
            con.register("__voltpipe_rows", table)
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                exists = _one_row(
                    con.execute(
                        "SELECT count(*) FROM information_schema.tables "
                        "WHERE table_schema = ? AND table_name = ?",
                        parts,
                    )
                )[0]
                if exists and mode == "append":
                    con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM __voltpipe_rows")
                else:
                    con.execute(
                        f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM __voltpipe_rows"
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except duckdb.Error as exc:
            text = str(exc).splitlines()[0]
            raise DataError(f"cannot write to {destination}: {text}") from None
        finally:
            con.close()
        return table.num_rows

    @contextlib.contextmanager
    def open_writer(self, destination: str, *, mode: str = "append") -> Iterator[ChunkedWrite]:
        """Writes chunks to ``schema.table`` all or nothing (see ``Warehouse.open_writer``).

        Each chunk is written to a staging table as it comes, so only one is held in memory; one
        transaction at the end moves the rows in (see ``_DuckDBChunkWriter``). The database is
        opened read-write for the block; ``iter_batches`` inside it reads through the same
        database. The schema and table are created with the first rows; ``replace`` swaps the
        table's contents, ``append`` adds rows by column name.

        Raises:
            ConfigError: a bad destination name or mode.
            DataError: the warehouse cannot be written or the rows do not fit the table.
        """
        con, parts = self._open_for_write(destination, mode)
        writer = _DuckDBChunkWriter(con.cursor(), destination, mode, parts)
        self._writing = con
        try:
            con.execute("SET enable_progress_bar = false")
            yield writer
            writer.commit()
        except BaseException:
            writer.rollback()
            raise
        finally:
            self._writing = None
            con.close()

    def _open_for_write(
        self, destination: str, mode: str
    ) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
        """Checks `destination` (``SCHEMA.TABLE``) and `mode`, then opens the database
        read-write: the connection and the destination's two name parts.

        Raises:
            ConfigError: a bad destination name or mode.
            DataError: the folder is missing or the file cannot be opened for writing.
        """
        if mode not in WRITE_MODES:
            raise ConfigError(f"write mode {mode!r}: expected one of {', '.join(WRITE_MODES)}")
        parts = table_parts(destination)
        if len(parts) != 2:
            raise ConfigError(f"destination {destination!r}: a DuckDB destination is SCHEMA.TABLE")
        if not self.path.parent.is_dir():
            raise DataError(
                f"destination {destination} is not writable: folder {self.path.parent} does not exist"
            )
        try:
            return duckdb.connect(str(self.path)), list(parts)
        except duckdb.Error as exc:
            raise DataError(
                f"destination {destination} is not writable: cannot open {self.path} for "
                f"writing ({str(exc).splitlines()[0]})"
            ) from None

    @staticmethod
    def _columns(
        con: duckdb.DuckDBPyConnection, translated: str, values: dict[str, Any]
    ) -> list[str]:
        rel = con.execute(f"SELECT * FROM ({translated}) LIMIT 0", values)
        return [d[0] for d in rel.description]


def _refuse_duplicate_names(
    con: duckdb.DuckDBPyConnection, translated: str, values: dict[str, Any]
) -> None:
    """Refuses a result with two columns of one name, as BigQuery does. DuckDB keeps both of
    ``SELECT t.*, a.*``'s ``id`` columns and renames the second ``id_1`` once the query is a
    subquery: the model would then train on, and serving require, a column no table has."""
    duplicates = sqlmod.duplicate_names(con.sql(translated, params=values).columns)
    if duplicates:
        raise DataError(
            sqlmod.duplicate_names_message(duplicates)
            + ": select the columns by name or alias one of each pair"
        )


class _DuckDBChunkWriter(ChunkedWrite):
    """Chunks go into a staging table beside the destination, each committed as it comes (so
    DuckDB flushes it to the file: holding a whole write in one open transaction costs about
    200 B per row in memory, measured by benchmarks/bench_fleet.py); one last transaction then
    swaps the staging table in (``replace``, or a new table: a rename) or inserts it (``append``)
    and drops it. Readers see the destination before or after, never half of it."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, destination: str, mode: str, parts: list[str]
    ) -> None:
        super().__init__(destination=destination, mode=mode)
        self._con = con
        self._parts = parts
        schema, name = (_quote(p) for p in parts)
        self._schema, self._target = schema, f"{schema}.{name}"
        self._staging_name = f"__voltpipe_staging_{uuid.uuid4().hex[:12]}"
        self._staging = f"{schema}.{_quote(self._staging_name)}"
        self._open = False

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        try:
            self._con.register("__voltpipe_rows", table)
            if not self._open:
                self._con.execute(f"CREATE SCHEMA IF NOT EXISTS {self._schema}")
                self._con.execute(f"CREATE TABLE {self._staging} AS SELECT * FROM __voltpipe_rows")
                self._open = True
            else:
                self._con.execute(
                    f"INSERT INTO {self._staging} BY NAME SELECT * FROM __voltpipe_rows"
                )
            self._con.unregister("__voltpipe_rows")
        except duckdb.Error as exc:
            raise DataError(
                f"cannot write to {self.destination}: {str(exc).splitlines()[0]}"
            ) from None
        self.counted(table.num_rows)

    def commit(self) -> None:
        if not self._open:
            return
        con = self._con
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                found = con.execute(
                    "SELECT count(*) FROM information_schema.tables "
                    "WHERE table_schema = ? AND table_name = ?",
                    self._parts,
                ).fetchone()
                if found and found[0] and self.mode == "append":
                    con.execute(f"INSERT INTO {self._target} BY NAME SELECT * FROM {self._staging}")
                    con.execute(f"DROP TABLE {self._staging}")
                else:
                    con.execute(f"DROP TABLE IF EXISTS {self._target}")
                    con.execute(f"ALTER TABLE {self._staging} RENAME TO {_quote(self._parts[1])}")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except duckdb.Error as exc:
            raise DataError(
                f"cannot write to {self.destination}: {str(exc).splitlines()[0]}"
            ) from None
        self._open = False

    def rollback(self) -> None:
        if self._open:
            self._open = False
            with contextlib.suppress(duckdb.Error):
                self._con.execute(f"DROP TABLE IF EXISTS {self._staging}")


def _escape(path: Path) -> str:
    return str(path).replace("'", "''")


def _one_row(cursor: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    """The first row of a query that always returns one (an aggregate, a ``current_database()``)."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("DuckDB returned no row for a query that always returns one")
    return row
