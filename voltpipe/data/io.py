"""Reading and writing Dataset folders (parquet shards) and small JSON files atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from voltpipe.errors import DataError


def parquet_files(path: str | os.PathLike[str]) -> list[Path]:
    """Returns the parquet shards of a Dataset folder (or the file itself), sorted."""
    p = Path(path)
    if p.is_file():
        return [p]
    files = sorted(p.glob("*.parquet"))
    if not files:
        raise DataError(f"dataset {p} holds no parquet files")
    return files


def read_table(path: str | os.PathLike[str], columns: list[str] | None = None) -> pa.Table:
    """Reads a Dataset folder into one Arrow table."""
    tables = [pq.read_table(f, columns=columns) for f in parquet_files(path)]
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Writes JSON to `path` through a temp file and a rename, so readers never see half."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text())
