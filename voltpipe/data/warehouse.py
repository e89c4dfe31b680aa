"""The warehouse interface and the factory that picks a backend; the value types the backends
share (splits, extraction result, table names) are in `voltpipe.data.warehouse_types` and
re-exported here."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

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
from voltpipe.errors import ConfigError

__all__ = [
    "SPLITS",
    "WRITE_MODES",
    "ChunkedWrite",
    "ExtractResult",
    "QueryEstimate",
    "SplitSpec",
    "Warehouse",
    "open_warehouse",
    "row_width",
    "table_parts",
]


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
