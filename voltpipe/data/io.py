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


def sample_rows(
    path: str | os.PathLike[str],
    rows: int,
    seed: int = 0,
    *,
    columns: list[str] | None = None,
    oversample: int = 4,
) -> pa.Table:
    """A seeded random sample of a Dataset's rows that reads only the row groups it samples.

    Row groups are drawn at random (without replacement) until they hold ``oversample`` times
    `rows` rows (so the sample spans many parts of a time-ordered table), then `rows` rows
    are drawn uniformly from them. Each group read keeps only its sampled rows, so memory is
    the sample plus one row group, whatever the Dataset's size. Rows keep their Dataset order;
    a Dataset of at most `rows` rows is returned whole. The same files, rows and seed give the
    same sample.

    Raises:
        ValueError: ``rows`` is not positive.
        DataError: the Dataset holds no parquet files.
    """
    if rows < 1:
        raise ValueError(f"rows must be positive, got {rows}")
    groups = row_groups_to_sample(path, rows, seed, oversample=oversample)
    if groups is None:
        return read_table(path, columns)
    import numpy as np

    rng = np.random.default_rng(seed)
    sizes = np.array([n for _, _, n in groups])
    chosen = np.sort(rng.choice(int(sizes.sum()), size=rows, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    parts: list[pa.Table] = []
    handles: dict[Path, pq.ParquetFile] = {}
    for k, (file, group, _) in enumerate(groups):
        lo, hi = np.searchsorted(chosen, [starts[k], starts[k + 1]])
        if hi == lo:
            continue
        handle = handles.get(file) or handles.setdefault(file, pq.ParquetFile(file))
        part = handle.read_row_group(group, columns=columns)
        parts.append(part.take(pa.array(chosen[lo:hi] - starts[k])))
    for handle in handles.values():
        handle.close()
    return pa.concat_tables(parts)


def row_groups_to_sample(
    path: str | os.PathLike[str], rows: int, seed: int = 0, *, oversample: int = 4
) -> list[tuple[Path, int, int]] | None:
    """The ``(file, row group, rows)`` that ``sample_rows`` reads, in Dataset order; None when
    the Dataset holds at most `rows` rows (it is read whole)."""
    import numpy as np

    groups: list[tuple[Path, int, int]] = []
    for file in parquet_files(path):
        meta = pq.read_metadata(file)
        groups += [(file, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
    total = sum(n for _, _, n in groups)
    if total <= rows:
        return None
    order = np.random.default_rng(seed).permutation(len(groups))
    wanted = min(total, rows * max(1, oversample))
    picked: list[int] = []
    held = 0
    for g in order:
        if held >= wanted:
            break
        picked.append(int(g))
        held += groups[g][2]
    return [groups[g] for g in sorted(picked)]
