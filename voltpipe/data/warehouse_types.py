"""Value types of the warehouse interface, shared by the backends: split names and spec, the
extraction result, write modes and destination table names."""

from __future__ import annotations

import dataclasses
from typing import Any

from voltpipe.errors import ConfigError

__all__ = ["SPLITS", "WRITE_MODES", "ExtractResult", "SplitSpec", "table_parts"]

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
