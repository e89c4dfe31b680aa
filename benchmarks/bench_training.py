"""Training throughput: voltpipe's input path (parquet Dataset -> numpy columns -> tf.data
index batches gathered per step) against ``model.fit`` on the same in-memory numpy arrays.

Same model (the MLP with preprocessing inside), batch 256, the same ``steps_per_execution``,
in the same process; the two are run alternately and each keeps its fastest epoch after the
first (which traces the graph), so load from other processes hits both alike.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks import Row

BATCH = 256
STEPS_PER_EXECUTION = 8


def grid_table(n: int, seed: int) -> pa.Table:
    """Substation-like rows: five numbers, two categories, a numeric label."""
    rng = np.random.default_rng(seed)
    load = rng.uniform(0.1, 1.2, n)
    temp = rng.normal(15, 8, n)
    hour = rng.integers(0, 24, n)
    feeder = rng.choice([f"F{i:02d}" for i in range(20)], n)
    weekend = rng.random(n) < 2 / 7
    return pa.table(
        {
            "load_pu": load,
            "temp_c": temp,
            "hour": hour,
            "humidity": rng.uniform(20, 100, n),
            "voltage_pu": 1.0 - 0.05 * load + rng.normal(0, 0.01, n),
            "feeder": feeder,
            "weekend": weekend,
            "losses_kw": 40 * load**2 + 0.3 * temp + 5 * weekend + rng.normal(0, 2, n),
        }
    )


def _epoch_seconds(model: Any, fit_kwargs: dict[str, Any], epochs: int) -> list[float]:
    import keras

    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            times.append(time.perf_counter() - self.t0)

    model.fit(epochs=epochs, callbacks=[Timer()], verbose=0, **fit_kwargs)
    return times


def run(quick: bool) -> list[Row]:
    import keras

    from voltpipe.config import ModelConfig, TrainingConfig
    from voltpipe.data.io import read_table
    from voltpipe.modelling.problems import TabularProblem

    n = 40_000 if quick else 200_000
    rounds, epochs = (2, 2) if quick else (3, 3)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "train")
        folder.mkdir()
        table = grid_table(n, 1)
        for i, start in enumerate(range(0, n, 50_000)):  # a few shards, as extract writes
            pq.write_table(table.slice(start, 50_000), folder / f"part-{i:05d}.parquet")
        t0 = time.perf_counter()
        loaded = read_table(folder)
        tp = TrainingConfig(batch_size=BATCH, steps_per_execution=STEPS_PER_EXECUTION)
        empty = loaded.slice(0, 0)
        problem = TabularProblem(
            loaded,
            empty,
            label="losses_kw",
            task="regression",
            family="mlp",
            features=None,
            exclude=None,
            tp=tp,
        )
        train_ds, _ = problem.datasets(tp)
        prepare_s = time.perf_counter() - t0
        mp = ModelConfig(hidden_units=[64, 32])
        import tensorflow as tf

        # Keras' array adapter takes numpy numbers; string columns go in as string tensors.
        x = {
            k: (tf.constant(v.astype(str)) if v.dtype == object else v)
            for k, v in problem.x_train.items()
        }
        y = problem._target(problem.y_train)

        def compiled() -> Any:
            keras.utils.set_random_seed(0)
            m = problem.build(mp)
            m.compile(
                optimizer=keras.optimizers.Adam(1e-3),
                loss="mse",
                steps_per_execution=STEPS_PER_EXECUTION,
            )
            return m

        ours: list[float] = []
        numpy: list[float] = []
        for _ in range(rounds):
            ours += _epoch_seconds(compiled(), {"x": train_ds, "shuffle": False}, epochs)[1:]
            numpy += _epoch_seconds(
                compiled(), {"x": x, "y": y, "batch_size": BATCH, "shuffle": True}, epochs
            )[1:]
    ours_rps, numpy_rps = n / min(ours), n / min(numpy)
    return [
        Row(
            "training",
            f"MLP rows/s, parquet -> tf.data, {n:,} rows, batch {BATCH}",
            ours_rps,
            "/s",
            numpy_rps,
            f"model.fit on numpy arrays, steps_per_execution {STEPS_PER_EXECUTION}",
            "ratio >= 0.8",
            extra={
                "rows": n,
                "voltpipe_epoch_s": [round(t, 3) for t in ours],
                "numpy_epoch_s": [round(t, 3) for t in numpy],
                "read_and_prepare_s": round(prepare_s, 3),
            },
        )
    ]
