"""Extraction: run a BigQuery-SQL query on a warehouse and write train/valid/test parquet."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from voltpipe.data.warehouse import ExtractResult, SplitSpec, open_warehouse
from voltpipe.errors import DataError

# A column the model takes must be a plain identifier: Keras names its layers after the
# columns, and a served request names them as JSON keys. voltpipe's own split columns start
# with the reserved prefix.
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESERVED_PREFIX = "__voltpipe"


def check_column_names(names: list[str]) -> None:
    """Refuses duplicate (case-insensitive, as BigQuery compares them), reserved and
    non-identifier column names, naming each and the alias that would fix it.

    Raises:
        DataError: one message listing every bad name.
    """
    problems = []
    seen: dict[str, str] = {}
    for name in names:
        if name.lower().startswith(RESERVED_PREFIX):
            problems.append(f"column {name!r} uses voltpipe's reserved prefix {RESERVED_PREFIX!r}")
        elif not _PLAIN_NAME.fullmatch(name):
            alias = re.sub(r"\W+", "_", name.encode("ascii", "ignore").decode()).strip("_") or "x"
            problems.append(
                f"column {name!r} is not a plain name (letters, digits, _): alias it, e.g. "
                f"`{name.replace('`', '')}` AS {alias if alias[0].isalpha() else 'c_' + alias}"
            )
        if name.lower() in seen:
            problems.append(
                f"column {name!r} appears twice (also as {seen[name.lower()]!r}): alias one of them"
            )
        seen.setdefault(name.lower(), name)
    if problems:
        raise DataError("the query's columns cannot be trained on: " + "; ".join(problems))


def _check_query_names(sql: str) -> None:
    """The explicit output names, before running the query (a reserved name breaks the split)."""
    from voltpipe.data.sql import _parse

    names = [n for n in getattr(_parse(sql), "named_selects", []) if n and n != "*"]
    check_column_names(names)


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
    _check_query_names(sql)
    wh = open_warehouse(warehouse, warehouse_options)
    result = wh.extract(
        sql,
        parameters,
        SplitSpec(method=spec.method, column=spec.column, fractions=spec.fractions, seed=spec.seed),
        {k: Path(v) for k, v in out_dirs.items()},
    )
    check_column_names([c["name"] for c in result.schema])
    return result


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
