"""Value types of the warehouse interface, shared by the backends: split names and spec, the
extraction result, write modes and destination table names, the size estimate of a query and
the chunked write's record."""

from __future__ import annotations

import dataclasses
from typing import Any

from voltpipe.errors import ConfigError

__all__ = [
    "SPLITS",
    "WRITE_MODES",
    "ChunkedWrite",
    "ExtractResult",
    "QueryEstimate",
    "SplitSpec",
    "row_width",
    "table_parts",
]

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
