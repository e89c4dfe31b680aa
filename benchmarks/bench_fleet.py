"""Fleet scale: every step's wall time, CPU time and peak memory on a synthetic fleet table.

The table (DuckDB) has 11 numeric columns (10 sensor readings and the power label) and 2
categorical ones (turbine, site), at 1 M and 5 M rows (``--full``: also 20 M; ``quick``: 0.2 M
and 1 M). Each step runs in its own process, started by this one; its peak memory is the
kernel's high-water mark of that child (``ru_maxrss`` from ``os.wait4``), its CPU time the
child's user + system time. Floors are measured in the same run: a plain DuckDB ``COPY`` to
parquet for extract, reading the train split with ``pyarrow.parquet.read_table`` for the
steps that read it. The growth law of each step is its bytes per row: the difference of peak
memory between the two largest sizes over the difference of rows.

Run one size by hand: ``python -m benchmarks.bench_fleet --rows 1000000 [--full]``. Engineer
14A's train step plugs in as one more entry of ``STEPS`` (a function of the step's paths).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import Row

QUERY = "SELECT * FROM fleet.scada"
NUMERIC = (
    "wind_speed",
    "wind_dir",
    "rotor_rpm",
    "pitch",
    "nacelle_temp",
    "ambient_temp",
    "gearbox_temp",
    "generator_temp",
    "yaw_error",
    "grid_freq",
)
LABEL = "power_kw"
REFERENCE_ROWS = 100_000  # monitoring.reference_sample_rows' default
BATCH_ROWS = 262_144  # prediction.batch_size's default


def make_fleet(db: Path, rows: int) -> None:
    """The fleet table: 1,000 turbines on 20 sites, 10-minute readings, power from the wind."""
    import duckdb

    con = duckdb.connect(str(db))
    con.execute("SET enable_progress_bar = false")
    con.execute("CREATE SCHEMA IF NOT EXISTS fleet")
    u = "((hash(i, {k}) % 1000000) / 1000000.0)"  # a seeded uniform per column
    columns = {
        "wind_speed": f"25 * {u.format(k=1)}",
        "wind_dir": f"360 * {u.format(k=2)}",
        "rotor_rpm": f"18 * {u.format(k=3)}",
        "pitch": f"30 * {u.format(k=4)} - 5",
        "nacelle_temp": f"20 + 30 * {u.format(k=5)}",
        "ambient_temp": f"-10 + 40 * {u.format(k=6)}",
        "gearbox_temp": f"40 + 40 * {u.format(k=7)}",
        "generator_temp": f"40 + 50 * {u.format(k=8)}",
        "yaw_error": f"20 * {u.format(k=9)} - 10",
        "grid_freq": f"49.9 + 0.2 * {u.format(k=10)}",
    }
    select = ", ".join(f"{expr} AS {name}" for name, expr in columns.items())
    con.execute(
        f"""
        CREATE OR REPLACE TABLE fleet.scada AS
        WITH base AS (
            SELECT i, 'WTG' || lpad(CAST(i % 1000 AS VARCHAR), 4, '0') AS turbine_id,
                   'S' || CAST(i % 1000 // 50 AS VARCHAR) AS site, {select}
            FROM range({rows}) t(i)
        )
        SELECT turbine_id, site, {", ".join(NUMERIC)},
               least(3000, power(wind_speed, 3) / 4) * (1 - abs(yaw_error) / 40)
                   + 50 * {u.format(k=11)} AS {LABEL}
        FROM base
        """
    )
    con.close()


# -- the steps, each run in a child process ---------------------------------------------------


def _make(work: Path) -> dict[str, Any]:
    make_fleet(work / "warehouse.duckdb", int((work / "rows.txt").read_text()))
    return {}


def _baseline(work: Path) -> dict[str, Any]:
    """A step that does nothing: the interpreter and voltpipe's imports (the fixed floor)."""
    import voltpipe.data.io  # noqa: F401

    return {}


def _copy(work: Path) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect(str(work / "warehouse.duckdb"), read_only=True)
    con.execute("SET enable_progress_bar = false")
    target = str(work / "copy.parquet").replace("'", "''")
    con.execute(f"COPY ({QUERY}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)")
    con.close()
    return {}


def _extract(work: Path) -> dict[str, Any]:
    from voltpipe.data.duckdb_backend import DuckDBWarehouse
    from voltpipe.data.warehouse import SPLITS, SplitSpec

    result = DuckDBWarehouse(work / "warehouse.duckdb").extract(
        QUERY, {}, SplitSpec(method="random", seed=7), {s: work / "data" / s for s in SPLITS}
    )
    return {"rows": result.row_counts}


def _read(work: Path) -> dict[str, Any]:
    from voltpipe.data.io import read_table

    return {"rows": read_table(work / "data" / "train").num_rows}


def _validate(work: Path) -> dict[str, Any]:
    from voltpipe.data.validation import compute_statistics

    stats = compute_statistics(work / "data" / "train")
    return {"columns": len(stats.get("columns", stats))}


def _register(work: Path) -> dict[str, Any]:
    """Register's drift reference: only the sampled row groups are read."""
    from voltpipe.data.io import sample_rows

    return {"rows": sample_rows(work / "data" / "train", REFERENCE_ROWS, seed=0).num_rows}


def _register_whole(work: Path) -> dict[str, Any]:
    """The reference as register took it before: the whole train split, then a sample."""
    from voltpipe.data.io import read_table
    from voltpipe.monitoring.drift import reference_sample

    table = read_table(work / "data" / "train")
    return {"rows": reference_sample(table, REFERENCE_ROWS, seed=0).num_rows}


def _model(work: Path) -> dict[str, Any]:
    """A small GBDT on 20,000 train rows (setup, not measured as a step)."""
    import pyarrow.parquet as pq

    from voltpipe.data.io import sample_rows
    from voltpipe.modelling.train import train_model

    small = work / "model-data"
    for split, seed in (("train", 1), ("valid", 2)):
        (small / split).mkdir(parents=True, exist_ok=True)
        rows = sample_rows(work / "data" / split, 20_000 if split == "train" else 5_000, seed)
        pq.write_table(rows, small / split / "part-0.parquet")
    train_model(
        small / "train",
        small / "valid",
        work / "model",
        label=LABEL,
        task="regression",
        model_params={"family": "gbdt", "gbdt": {"max_trees": 50}},
    )
    return {}


def _batch_predict(work: Path) -> dict[str, Any]:
    from voltpipe.serving.batch import predict_batch

    out = predict_batch(
        f"duckdb:///{work / 'warehouse.duckdb'}",
        QUERY,
        {},
        work / "model",
        "predictions.fleet",
        mode="replace",
        batch_size=BATCH_ROWS,
    )
    return {"rows": out["rows"], "chunks": out["chunks"]}


def _evaluate(work: Path) -> dict[str, Any]:
    from voltpipe.evaluation.evaluate import score_model

    score = score_model(work / "model", work / "data" / "test")
    return {"rows": score.rows, "rmse": score.metrics.get("rmse")}


STEPS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "make": _make,  # setup, not measured
    "baseline": _baseline,
    "copy": _copy,
    "extract": _extract,
    "read": _read,
    "validate": _validate,
    "register": _register,
    "register_whole": _register_whole,
    "model": _model,
    "batch_predict": _batch_predict,
    "evaluate": _evaluate,
}
MEASURED = ("baseline", "copy", "extract", "read", "validate", "register", "register_whole")
MEASURED += ("batch_predict", "evaluate")
FLOOR = {"extract": "copy"}  # the others: "read"


def run_step(step: str, work: Path) -> dict[str, Any]:
    """Runs `step` in a child process: its wall and CPU seconds and peak RSS (bytes).

    The child's ``ru_maxrss`` includes this process's resident size at the fork (the kernel
    keeps the high-water mark across exec): ``baseline`` measures that floor in the same run.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_fleet", "--step", step, "--work", str(work)],
        stdout=subprocess.PIPE,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"bench step {step} failed with exit code {proc.returncode}")
    lines = [line for line in output.decode().splitlines() if line.startswith("{")]
    return {
        "wall_seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_bytes": usage.ru_maxrss * 1024,  # Linux: kilobytes
        "result": json.loads(lines[-1]) if lines else {},
    }


def measure(rows: int, root: Path) -> dict[str, dict[str, Any]]:
    """Every step at one size, in order (each step's inputs are the previous steps' outputs)."""
    work = root / f"rows-{rows}"
    work.mkdir(parents=True, exist_ok=True)
    # The table is made in a child too: a step's ru_maxrss starts at this process's resident
    # size when it forks (the high-water mark survives exec), so this one must stay small.
    (work / "rows.txt").write_text(str(rows))
    figures: dict[str, dict[str, Any]] = {}
    for step in STEPS:
        figure = run_step(step, work)
        if step in MEASURED:
            figures[step] = figure
            print(
                f"  fleet {rows:>10,} rows  {step:<15} {figure['wall_seconds']:7.2f} s wall "
                f"{figure['cpu_seconds']:7.2f} s cpu {figure['peak_bytes'] / 1e6:8.0f} MB peak",
                flush=True,
            )
    shutil.rmtree(work, ignore_errors=True)
    return figures


def growth(figures: dict[int, dict[str, dict[str, Any]]], step: str) -> tuple[float, float]:
    """``(bytes per row, fixed bytes)`` of a step's peak memory between the two largest sizes."""
    small, large = sorted(figures)[-2:]
    slope = (figures[large][step]["peak_bytes"] - figures[small][step]["peak_bytes"]) / (
        large - small
    )
    return slope, figures[large][step]["peak_bytes"] - slope * large


def run(quick: bool, full: bool = False) -> list[Row]:
    sizes = [200_000, 1_000_000] if quick else [1_000_000, 5_000_000]
    if full:
        sizes.append(20_000_000)
    root = Path(tempfile.mkdtemp(prefix="voltpipe-bench-fleet-"))
    try:
        figures = {n: measure(n, root) for n in sizes}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    largest = max(sizes)
    at = figures[largest]
    rows: list[Row] = []
    goals = {"extract": "ratio <= 1.5", "validate": "ratio <= 1.5"}
    for step in ("extract", "validate", "register", "batch_predict", "evaluate"):
        floor = FLOOR.get(step, "read")
        rows.append(
            Row(
                "fleet",
                f"{step} wall at {largest / 1e6:g}M rows",
                at[step]["wall_seconds"],
                "s",
                at[floor]["wall_seconds"],
                f"{floor} wall",
                goals.get(step, "ratio <= 5"),
                extra={
                    "cpu_seconds": {n: f[step]["cpu_seconds"] for n, f in figures.items()},
                    "wall_seconds": {n: f[step]["wall_seconds"] for n, f in figures.items()},
                    "peak_bytes": {n: f[step]["peak_bytes"] for n, f in figures.items()},
                },
            )
        )
    read_slope, _ = growth(figures, "read")
    # Bounded steps: their memory grows by a small fraction of what reading the split costs.
    bounded = {"register": "ratio <= 0.1", "batch_predict": "ratio <= 0.25"}
    for step in ("extract", "validate", "register", "register_whole", "batch_predict", "evaluate"):
        slope, fixed = growth(figures, step)
        rows.append(
            Row(
                "fleet",
                f"{step} peak memory growth (B/row)",
                max(slope, 0.0),
                "B",
                read_slope,
                "read train split B/row",
                bounded.get(step, "ratio <= 3"),
                extra={"fixed_bytes": fixed, "bytes_per_row": slope},
            )
        )
    return rows


def _child(step: str, work: Path) -> None:
    print(json.dumps(STEPS[step](work), default=str), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_fleet", description=__doc__)
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="0.2 M and 1 M rows")
    parser.add_argument("--full", action="store_true", help="also 20 M rows")
    args = parser.parse_args(argv)
    if args.step:
        _child(args.step, args.work)
        return 0
    for row in run(quick=args.quick, full=args.full):
        print(
            f"{row.figure:<44} {row.value:>12.4g} {row.unit:<2} floor {row.floor:>10.4g} "
            f"ratio {row.ratio:6.3f} {row.goal} [{'ok' if row.met else 'MISSED'}]"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
