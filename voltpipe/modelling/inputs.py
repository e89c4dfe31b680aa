"""Fast tf.data input: whole numpy columns in memory, batches gathered by index, no per-row Python.

Arrow columns become numpy arrays once (``features.model_inputs``); an epoch is a shuffled
stream of row indices, batched, then each batch gathers its rows from the column tensors in one
op. That keeps the per-step cost close to ``model.fit`` on numpy arrays, with shuffling that
reshuffles every epoch and windows built the same way for forecasting.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from voltpipe.modelling.features import FeaturePlan


def _index_batches(n: int, batch: int, shuffle: bool, seed: int, buffer: int) -> Any:
    import tensorflow as tf

    idx = tf.data.Dataset.range(n)
    if shuffle:
        idx = idx.shuffle(min(n, buffer), seed=seed, reshuffle_each_iteration=True)
    return idx.batch(batch)


def row_dataset(
    x: dict[str, np.ndarray] | np.ndarray,
    y: np.ndarray | None,
    *,
    batch: int,
    shuffle: bool,
    seed: int = 0,
    weights: np.ndarray | None = None,
    buffer: int = 100_000,
) -> Any:
    """A dataset of ``(x, y[, weight])`` batches gathered from in-memory columns.

    Args:
        x: feature columns (each shaped (n, ...)) or one array.
        y: targets shaped (n, ...), or None for inputs only.
        batch: rows per batch (the last batch may be smaller).
        shuffle: reshuffle the rows every epoch (within `buffer` rows).
        weights: per-row sample weights (class weights), shape (n,).
    """
    import tensorflow as tf

    n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    parts: list[Any] = [x]
    if y is not None:
        parts.append(y)
    if weights is not None:
        parts.append(weights.astype("float32"))
    tensors = tf.nest.map_structure(tf.constant, tuple(parts))

    def gather(i: Any) -> Any:
        out = tf.nest.map_structure(lambda t: tf.gather(t, i), tensors)
        return out if len(out) > 1 else out[0]

    return (
        _index_batches(n, batch, shuffle, seed, buffer)
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def window_dataset(
    values: np.ndarray,
    target: np.ndarray | None,
    starts: np.ndarray,
    *,
    window: int,
    horizon: int,
    batch: int,
    shuffle: bool,
    seed: int = 0,
    buffer: int = 100_000,
) -> Any:
    """Sliding windows gathered per batch: ``values[s:s+window]`` -> ``target[s+window:+horizon]``.

    `values` is (n, channels) sorted by series then time; `starts` holds the first row of every
    window (none crosses a series boundary, see ``forecasting.window_starts``). Nothing is
    materialised beyond one batch.
    """
    import tensorflow as tf

    vals = tf.constant(values.astype("float32"))
    tgt = tf.constant(target.astype("float32")) if target is not None else None
    st = tf.constant(starts.astype("int64"))
    in_off = tf.range(window, dtype=tf.int64)
    out_off = tf.range(window, window + horizon, dtype=tf.int64)

    def gather(i: Any) -> Any:
        s = tf.gather(st, i)[:, None]
        x = tf.gather(vals, s + in_off)
        if tgt is None:
            return x
        return x, tf.gather(tgt, s + out_off)

    return (
        _index_batches(len(starts), batch, shuffle, seed, buffer)
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


# ----- compact and streaming training input ---------------------------------------------------

INPUT_MODES = ("auto", "memory", "stream")
# training.input auto streams when the compact in-memory rows would take more than this
# fraction of the machine's memory (the rest is the model, TensorFlow and the valid split).
STREAM_MEMORY_FRACTION = 0.25
OOV_TOKEN = "\x00voltpipe-oov"  # decodes code -1: any string not in the vocabulary


@dataclasses.dataclass(frozen=True)
class Shard:
    """This input pipeline's share of the row groups: group ``g`` of ``k`` is read by pipeline
    ``g % count == index`` (``tf.distribute.InputContext``'s id and count)."""

    index: int = 0
    count: int = 1

    def groups(self, n_groups: int) -> list[int]:
        return list(range(self.index, n_groups, self.count))


class ParquetSplit:
    """A split's parquet shards, read a column or a row group at a time.

    Stands in for a ``pa.Table`` where training reads columns (``column_names``, ``num_rows``,
    ``column(name)``), so the whole table is never in memory; ``groups`` lists every row group
    of every shard, the unit of streaming and of sharding across replicas.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from voltpipe.data.io import parquet_files

        self.path = Path(path)
        self.files = parquet_files(path)
        self._files = [pq.ParquetFile(f) for f in self.files]
        self.schema = self._files[0].schema_arrow
        self.column_names: list[str] = list(self.schema.names)
        self.groups: list[tuple[int, int, int]] = [
            (i, g, pf.metadata.row_group(g).num_rows)
            for i, pf in enumerate(self._files)
            for g in range(pf.num_row_groups)
        ]
        self.num_rows = sum(n for _, _, n in self.groups)

    def column(self, name: str) -> pa.ChunkedArray:
        """One column of every shard (the others are not read)."""
        if name not in self.column_names:
            raise KeyError(name)
        chunks: list[pa.Array] = []
        for pf in self._files:
            chunks.extend(pf.read(columns=[name]).column(0).chunks)
        return pa.chunked_array(chunks, type=self.schema.field(name).type)

    def read_group(self, k: int, columns: list[str]) -> pa.Table:
        """Row group `k` of ``groups`` (only `columns`)."""
        i, g, _ = self.groups[k]
        present = [c for c in columns if c in self.column_names]
        return self._files[i].read_row_group(g, columns=present)

    def group_rows(self, groups: list[int]) -> int:
        return sum(self.groups[k][2] for k in groups)

    def empty(self, columns: list[str]) -> pa.Table:
        present = [c for c in columns if c in self.column_names]
        return self.schema.empty_table().select(present)


class TableSplit:
    """An in-memory ``pa.Table`` behind the ``ParquetSplit`` interface (the tuner's folds):
    row groups are slices of `group_rows` rows."""

    def __init__(self, table: pa.Table, group_rows: int = 131_072) -> None:
        self.table = table
        self.column_names: list[str] = list(table.column_names)
        self.num_rows = table.num_rows
        self.groups = [
            (0, start, min(group_rows, table.num_rows - start))
            for start in range(0, table.num_rows, group_rows)
        ]

    def column(self, name: str) -> pa.ChunkedArray:
        return self.table.column(name)

    def read_group(self, k: int, columns: list[str]) -> pa.Table:
        _, start, n = self.groups[k]
        present = [c for c in columns if c in self.column_names]
        return self.table.slice(start, n).select(present)

    def group_rows(self, groups: list[int]) -> int:
        return sum(self.groups[k][2] for k in groups)

    def empty(self, columns: list[str]) -> pa.Table:
        return self.table.slice(0, 0).select([c for c in columns if c in self.column_names])


Split = ParquetSplit | TableSplit


def as_split(data: Any) -> Split:
    """`data` (a ``pa.Table`` or a split) as a split."""
    return TableSplit(data) if isinstance(data, pa.Table) else data


def load_rows(
    split: Split, groups: list[int], convert: Callable[[pa.Table], Batch], columns: list[str]
) -> Batch:
    """The converted rows of `groups`, read one row group at a time into preallocated arrays
    (the peak is the result plus one row group). `convert` may drop rows (anomaly labels)."""
    out: list[np.ndarray] | None = None
    filled = 0
    capacity = split.group_rows(groups)
    for k in groups:
        part = convert(split.read_group(k, columns))
        if out is None:
            out = [np.empty((capacity, *c.shape[1:]), c.dtype) for c in part]
        n = len(part[0])
        for dst, src in zip(out, part, strict=True):
            dst[filled : filled + n] = src
        filled += n
    if out is None:  # no row group in this share: empty arrays of the right shapes
        return convert(split.empty(columns))
    return tuple(c[:filled] if filled < capacity else c for c in out)


def machine_memory() -> int:
    """Physical memory of this machine in bytes (0 when unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def resolve_input_mode(mode: str, rows: int, bytes_per_row: int, memory: int) -> str:
    """``memory`` or ``stream`` for ``training.input`` `mode`: auto streams when the compact
    rows (`rows` x `bytes_per_row`) exceed ``STREAM_MEMORY_FRACTION`` of `memory`."""
    if mode != "auto":
        return mode
    if memory and rows * bytes_per_row > STREAM_MEMORY_FRACTION * memory:
        return "stream"
    return "memory"


Batch = tuple[np.ndarray, ...]  # (numeric, codes[, target][, weight])


def memory_batches(
    rows: Batch, *, batch: int, shuffle: bool, seed: int, drop_remainder: bool = False
) -> Callable[[], Iterator[Batch]]:
    """A generator factory over in-memory rows (``load_rows``): every call (one pass) yields the
    batches of a fresh permutation of all rows (seeded by `seed` and the pass), or the rows in
    order. A full permutation, not a buffer: a time-ordered split is mixed end to end.
    `drop_remainder`: a pass ends without its last, partial batch."""
    passes = itertools.count()

    def gen() -> Iterator[Batch]:
        n = len(rows[0])
        order = np.random.default_rng([seed, next(passes)]).permutation(n) if shuffle else None
        for start in range(0, n // batch * batch if drop_remainder else n, batch):
            if order is None:
                yield tuple(c[start : start + batch] for c in rows)
            else:
                take = np.sort(order[start : start + batch])  # sorted: a cache-friendly gather
                yield tuple(c[take] for c in rows)

    return gen


def stream_batches(
    split: ParquetSplit,
    groups: list[int],
    convert: Callable[[pa.Table], Batch],
    columns: list[str],
    *,
    batch: int,
    shuffle: bool,
    seed: int,
    buffer: int,
    drop_remainder: bool = False,
) -> Callable[[], Iterator[Batch]]:
    """A generator factory streaming row groups of `split`: each pass reads `groups` (in a
    permuted order when shuffling), converts each with `convert` and, when shuffling, mixes
    rows in a pool of about `buffer` rows (a row group is added, the pool permuted, the rows
    beyond half the buffer emitted). Memory is the pool plus one row group, not the table.
    Every batch holds `batch` rows but the last of a pass (dropped with `drop_remainder`)."""
    passes = itertools.count()

    def gen() -> Iterator[Batch]:
        p = next(passes)
        rng = np.random.default_rng([seed, p])
        order = list(rng.permutation(groups)) if shuffle else list(groups)
        pool: list[Batch] = []
        pooled = 0
        for k in order:
            part = convert(split.read_group(int(k), columns))
            pool.append(part)
            pooled += len(part[0])
            if shuffle and pooled < buffer:
                continue
            rows = tuple(np.concatenate(c) for c in zip(*pool, strict=True))
            if shuffle:
                perm = rng.permutation(len(rows[0]))
                rows = tuple(c[perm] for c in rows)
            keep = min(len(rows[0]), buffer // 2) if shuffle else 0
            emit = (len(rows[0]) - keep) // batch * batch
            for start in range(0, emit, batch):
                yield tuple(c[start : start + batch] for c in rows)
            pool = [tuple(c[emit:] for c in rows)]
            pooled = len(rows[0]) - emit
        if pooled:
            rows = tuple(np.concatenate(c) for c in zip(*pool, strict=True))
            if shuffle:
                perm = rng.permutation(len(rows[0]))
                rows = tuple(c[perm] for c in rows)
            n = len(rows[0])
            for start in range(0, n // batch * batch if drop_remainder else n, batch):
                yield tuple(c[start : start + batch] for c in rows)

    return gen


def compact_dataset(
    gen: Callable[[], Iterator[Batch]],
    plan: FeaturePlan,
    *,
    batches: int,
    target: tuple[str, tuple[int, ...]] | None,
    weights: bool = False,
    zero_target: bool = False,
    strings: bool = False,
) -> Any:
    """The tf.data pipeline of a batch generator: compact batches are read in a background
    thread (prefetch) and turned into the training model's inputs, a dict of (b, 1) columns by
    feature name: numbers float32, categories int32 lookup indices (code + 1: 0 is the
    out-of-vocabulary index, as the StringLookup inside the saved model gives). Integers, not
    strings: Keras reduces a first batch across the replicas of a tf.distribute strategy
    (``MEAN``), which fails on strings; with `strings`, the categories are decoded to their
    values instead (what the saved model takes).

    Args:
        batches: the batches of a pass (the dataset's cardinality, which Keras reads).
        target: the target's dtype and per-row shape (None: inputs only).
        weights: batches carry a per-row float32 weight after the target.
        zero_target: batches carry no target; a (b, 1) zero target is added (the
            autoencoder's error is fitted to 0).
    """
    import tensorflow as tf

    numeric, categorical = list(plan.numeric), list(plan.categorical)
    sig: list[Any] = [
        tf.TensorSpec((None, len(numeric)), tf.float32),
        tf.TensorSpec((None, len(categorical)), tf.int32),
    ]
    if target is not None:
        sig.append(tf.TensorSpec((None, *target[1]), tf.as_dtype(target[0])))
    if weights:
        sig.append(tf.TensorSpec((None,), tf.float32))
    tables = []
    for vocab in plan.categorical.values():
        oov = OOV_TOKEN
        while oov in vocab:
            oov += "\x00"
        tables.append(tf.constant([oov, *vocab], tf.string))

    def features(xn: Any, xc: Any, *rest: Any) -> Any:
        x = {name: xn[:, j : j + 1] for j, name in enumerate(numeric)}
        for j, name in enumerate(categorical):
            index = xc[:, j : j + 1] + 1
            x[name] = tf.gather(tables[j], index) if strings else index
        if zero_target:
            return x, tf.zeros((tf.shape(xn)[0], 1), tf.float32)
        return (x, *rest) if rest else x

    ds = tf.data.Dataset.from_generator(gen, output_signature=tuple(sig))
    ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    return ds.map(features, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
        tf.data.AUTOTUNE
    )
