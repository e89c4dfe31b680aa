"""Extraction: run a BigQuery-SQL query on a warehouse and write train/valid/test parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voltpipe.data.warehouse import ExtractResult, SplitSpec, open_warehouse


def extract_splits(
    warehouse: str,
    sql: str,
    parameters: dict[str, dict[str, Any]],
    split: dict[str, Any],
    out_dirs: dict[str, str | Path],
    warehouse_options: dict[str, Any] | None = None,
) -> ExtractResult:
    """Runs `sql` with typed `parameters` and writes each split into its folder.

    Args:
        warehouse: ``duckdb:///PATH`` or ``bigquery://PROJECT``.
        sql: BigQuery Standard SQL with ``@named`` parameters.
        parameters: ``{name: {"type": T, "value": v}}`` (see ``voltpipe.data.params``).
        split: ``{method, column, fractions, seed}``.
        out_dirs: a folder per split name (train, valid, test).
        warehouse_options: backend settings (the config's ``bigquery:`` section).

    Raises:
        DataError: missing table, syntax error, missing parameter, empty result, ...
    """
    from voltpipe.config import SplitConfig

    spec = SplitConfig(**split)
    wh = open_warehouse(warehouse, warehouse_options)
    return wh.extract(
        sql,
        parameters,
        SplitSpec(method=spec.method, column=spec.column, fractions=spec.fractions, seed=spec.seed),
        {k: Path(v) for k, v in out_dirs.items()},
    )


def extract_window(
    warehouse: str,
    sql: str,
    parameters: dict[str, dict[str, Any]],
    out_dir: str | Path,
    warehouse_options: dict[str, Any] | None = None,
) -> ExtractResult:
    """Runs `sql` and writes every row, unsplit, as parquet into `out_dir` (a monitoring window).

    The split machinery runs with fractions (1, 0, 0), so each backend's extraction path is
    reused unchanged; the empty valid/test outputs go to a scratch folder that is removed.
    """
    import tempfile

    wh = open_warehouse(warehouse, warehouse_options)
    with tempfile.TemporaryDirectory() as scratch:
        return wh.extract(
            sql,
            parameters,
            SplitSpec(method="random", fractions=(1.0, 0.0, 0.0)),
            {
                "train": Path(out_dir),
                "valid": Path(scratch) / "valid",
                "test": Path(scratch) / "test",
            },
        )
