"""The warehouse interface, its extraction result, and the factory that picks a backend."""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from voltpipe.errors import ConfigError

SPLITS = ("train", "valid", "test")
WRITE_MODES = ("append", "replace")


@dataclasses.dataclass(frozen=True)
class SplitSpec:
    """How rows are assigned to train/valid/test (see ``SplitConfig``)."""

    method: str = "random"
    column: str | None = None
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 42


@dataclasses.dataclass
class ExtractResult:
    """What one extraction wrote: per-split parquet folders and their metadata."""

    schema: list[dict[str, str]]
    row_counts: dict[str, int]
    bytes_written: dict[str, int]
    sql: str
    executed_sql: str
    parameters: dict[str, dict[str, Any]]
    source: str
    job_id: str | None = None

    def metadata(self, split: str) -> dict[str, Any]:
        """Artifact metadata for one split's Dataset (JSON-safe)."""
        return {
            "split": split,
            "rows": self.row_counts[split],
            "bytes": self.bytes_written[split],
            "schema": self.schema,
            "sql": self.sql,
            "parameters": self.parameters,
            "source": self.source,
            "job_id": self.job_id or "",
            "format": "parquet",
        }


# Bytes one value takes in memory (Arrow), by warehouse type; a string counts its offset and an
# average payload. A row's width is the sum over its columns (``row_width``).
_VALUE_BYTES = {
    "BOOL": 1, "BOOLEAN": 1, "DATE": 4, "INTEGER": 4, "INT32": 4, "FLOAT": 4, "REAL": 4,
    "NUMERIC": 16, "DECIMAL": 16, "BIGNUMERIC": 32, "STRING": 20, "VARCHAR": 20, "BYTES": 20,
    "BLOB": 20,
}  # fmt: skip
_DEFAULT_VALUE_BYTES = 8  # INT64, FLOAT64, DOUBLE, BIGINT, TIMESTAMP, DATETIME, TIME


def row_width(schema: list[dict[str, str]]) -> int:
    """Estimated in-memory bytes of one result row (``[{"name", "type"}]`` as the backends'
    ``result_schema`` gives it)."""
    total = 0
    for column in schema:
        base = column["type"].upper().split("(")[0].split("<")[0].strip()
        total += _VALUE_BYTES.get(base, _DEFAULT_VALUE_BYTES)
    return max(total, 1)


@dataclasses.dataclass(frozen=True)
class QueryEstimate:
    """What a query will read, found without running it in full (``Warehouse.estimate``).

    ``bytes``: BigQuery's dry-run bytes processed; DuckDB: rows x row width. ``rows``: DuckDB's
    exact count; BigQuery: bytes / row width. ``method`` says which.
    """

    rows: int
    bytes: int
    row_bytes: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ChunkedWrite:
    """A table write in chunks, all or nothing (``Warehouse.open_writer``): what it held.

    ``largest_chunk`` is the most rows held at once, so memory is bounded by the chunk size,
    not the table.
    """

    destination: str
    mode: str
    rows: int = 0
    chunks: int = 0
    largest_chunk: int = 0

    def counted(self, rows: int) -> None:
        self.rows += rows
        self.chunks += 1
        self.largest_chunk = max(self.largest_chunk, rows)

    def write(self, table: Any) -> None:  # pragma: no cover - each backend writes its own way
        raise NotImplementedError


class Warehouse(Protocol):
    """A SQL warehouse the extraction step reads from."""

    def extract(
        self,
        sql: str,
        parameters: dict[str, dict[str, Any]],
        split: SplitSpec,
        out_dirs: dict[str, Path],
    ) -> ExtractResult:
        """Runs the BigQuery-SQL query and writes each split as parquet into its folder."""
        ...

    def result_schema(
        self, sql: str, parameters: dict[str, dict[str, Any]]
    ) -> list[dict[str, str]]:
        """Returns the columns the query would return, without running it in full."""
        ...

    def write_table(self, table: Any, destination: str, *, mode: str = "append") -> int:
        """Writes an Arrow table to ``DATASET.TABLE`` (``append`` or ``replace``) atomically,
        creating it when missing; returns the rows written."""
        ...

    def estimate(self, sql: str, parameters: dict[str, dict[str, Any]]) -> QueryEstimate:
        """The rows and bytes the query reads (BigQuery: a dry run; DuckDB: COUNT x width)."""
        ...

    def open_writer(
        self, destination: str, *, mode: str = "append"
    ) -> AbstractContextManager[ChunkedWrite]:
        """A writer to ``DATASET.TABLE`` taking Arrow tables one chunk at a time: the rows land
        when the block exits cleanly, none of them if it raises (or if no rows were written).
        Reads of this warehouse inside the block (DuckDB: ``iter_batches``) still work."""
        ...

    def query_table(self, sql: str, parameters: dict[str, dict[str, Any]]) -> Any:
        """Runs a BigQuery-SQL query whose result is small (a summary) and returns it as an
        Arrow table (e.g. drift histograms computed in the warehouse)."""
        ...


def table_parts(destination: str) -> list[str]:
    """``[dataset, table]`` or ``[project, dataset, table]`` of a destination name.

    Raises:
        ConfigError: the name is not DATASET.TABLE or PROJECT.DATASET.TABLE.
    """
    parts = destination.split(".")
    if len(parts) not in (2, 3) or not all(parts):
        raise ConfigError(
            f"destination table {destination!r}: expected DATASET.TABLE or PROJECT.DATASET.TABLE"
        )
    return parts


def open_warehouse(uri: str, options: dict[str, Any] | None = None) -> Warehouse:
    """Returns the backend for a warehouse URI (``duckdb:///path`` or ``bigquery://PROJECT``)."""
    if uri.startswith("duckdb:///"):
        from voltpipe.data.duckdb_backend import DuckDBWarehouse

        return DuckDBWarehouse(Path(uri[len("duckdb:///") :]))
    if uri.startswith("bigquery://"):
        from voltpipe.data.bigquery_backend import BigQueryWarehouse

        settings = dict(options or {})
        # The config's bigquery.project, when set, names the billing project the URI also names.
        project = settings.pop("project", None) or uri[len("bigquery://") :]
        return BigQueryWarehouse(project=project, **settings)
    raise ConfigError(f"warehouse {uri!r}: use duckdb:///PATH or bigquery://PROJECT")
