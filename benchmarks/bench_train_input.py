"""Train-step memory and throughput on a synthetic fleet table, in memory and streamed.

``python -m benchmarks.bench_train_input --rows 1000000 5000000 --modes memory stream``

The table has 11 numeric and 2 categorical feature columns and a numeric label, written as
parquet shards of 122,880-row row groups (DuckDB's COPY default, as extract writes them).
Every (rows, mode) trains an MLP for a few epochs in its own process, which reports its
peak RSS (``ru_maxrss``) minus its own peak after the imports, and the epoch throughput
(train rows / the median time of the epochs after the first). With ``--src`` another source
tree (e.g. ``git archive main``) is measured the same way ("before" figures).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

GROUP_ROWS = 122_880
ROWS_PER_FILE = 10 * GROUP_ROWS


def fleet_table(n: int, seed: int) -> pa.Table:
    """`n` rows: wind speed, 10 sensors, turbine (1,000 ids) and status, power (the label)."""
    rng = np.random.default_rng(seed)
    wind = rng.gamma(4.0, 2.0, n)
    cols: dict[str, object] = {"wind_speed_ms": wind}
    for i in range(10):
        cols[f"sensor_{i}"] = rng.normal(0, 1, n) + 0.1 * i * wind
    turbine = rng.integers(0, 1_000, n).astype("int32")
    ids = pa.array([f"T{t:04d}" for t in range(1_000)])
    cols["turbine_id"] = pa.DictionaryArray.from_arrays(turbine, ids).cast(pa.string())
    status = rng.choice(3, n, p=[0.8, 0.15, 0.05]).astype("int32")
    states = pa.array(["ok", "derated", "icing"])
    cols["status"] = pa.DictionaryArray.from_arrays(status, states).cast(pa.string())
    cols["power_kw"] = np.clip(wind, 0, 12) ** 2 * 10 - 80 * (status == 1) + rng.normal(0, 20, n)
    return pa.table(cols)


def write_split(folder: Path, n: int, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, n, ROWS_PER_FILE)):
        rows = min(ROWS_PER_FILE, n - start)
        pq.write_table(
            fleet_table(rows, seed * 1000 + i),
            folder / f"part-{i:05d}.parquet",
            row_group_size=GROUP_ROWS,
            compression="zstd",
        )
    return folder


CHILD = r"""
import json, resource, sys, time
import numpy as np, tensorflow as tf, keras
from voltpipe.modelling.train import train_model
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
train, valid, out, mode, epochs = sys.argv[1:6]

class Timer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__(); self.times = []
    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.t)

timer = Timer()
training = {"epochs": int(epochs), "batch_size": 512, "max_seconds": None,
            "early_stopping_patience": 100, "reduce_lr_patience": 0}
if mode != "default":
    training["input"] = mode
t0 = time.perf_counter()
result = train_model(train, valid, out, label="power_kw", task="regression",
    model_params={"family": "mlp", "hidden_units": [64, 32]}, training_params=training,
    callbacks=[timer], backup_dir=out + ".backup")
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = result.rows["train"]
# epoch 1 carries the tracing (and, in memory mode, nothing else: rows are loaded before)
steady = float(np.median(timer.times[1:])) if len(timer.times) > 1 else timer.times[0]
print("RESULT " + json.dumps({"rows": n, "valid_rows": result.rows["valid"], "wall_s": wall,
    "peak_mb": peak / 1024, "base_mb": base / 1024, "delta_mb": (peak - base) / 1024,
    "bytes_per_row": (peak - base) * 1024 / n, "epoch_s": timer.times,
    "rows_per_s": n / steady, "val_loss": min(result.history["val_loss"])}))
"""


def run_one(src: Path, train: Path, valid: Path, mode: str, epochs: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-train-input-") as tmp:
        # cwd too: `python -c` puts the working directory first on sys.path
        env = {**os.environ, "PYTHONPATH": str(src), "CUDA_VISIBLE_DEVICES": "-1",
               "TF_CPP_MIN_LOG_LEVEL": "2"}  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(train), str(valid), f"{tmp}/model", mode,
             str(epochs)],
            env=env, capture_output=True, text=True, check=False, cwd=src,
        )  # fmt: skip
    if proc.returncode:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-4000:])
    return json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_train_input")
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--modes", nargs="+", default=["memory", "stream"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--src", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--data", default="", help="folder to keep the tables in (reused)")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    data = Path(args.data or tempfile.mkdtemp(prefix="bench-fleet-"))
    results = []
    for n in args.rows:
        train, valid = data / f"{n}" / "train", data / f"{n}" / "valid"
        if not train.exists():
            write_split(train, n, seed=1)
            write_split(valid, max(1, n // 10), seed=2)
        for mode in args.modes:
            r = run_one(Path(args.src), train, valid, mode, args.epochs)
            r.update(mode=mode, src=args.src)
            results.append(r)
            print(json.dumps(r), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
