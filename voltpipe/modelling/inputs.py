"""Fast tf.data input: whole numpy columns in memory, batches gathered by index, no per-row Python.

Arrow columns become numpy arrays once (``features.model_inputs``); an epoch is a shuffled
stream of row indices, batched, then each batch gathers its rows from the column tensors in one
op. That keeps the per-step cost close to ``model.fit`` on numpy arrays, with shuffling that
reshuffles every epoch and windows built the same way for forecasting.
"""

from __future__ import annotations

from typing import Any

import numpy as np


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
