"""The warehouse interface, its extraction result, and the factory that picks a backend."""

from __future__ import annotations

import dataclasses
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
