"""Drift statistics: PSI + KS of 20 numeric features, alone and side by side with Evidently.

Rows:

* ``psi+ks``: voltpipe's :func:`compute_drift` on 20 numeric features, 1M reference rows vs 1M
  current rows (100k with ``--quick``), best of 3, against a budget of 2 s on a 2-core machine.
* ``vs evidently``: voltpipe vs Evidently's data drift report (``Report([DataDriftPreset()])``,
  default settings) on the same data, measured in the same run. Evidently takes 25-35 s per
  100k rows of these 20 columns on a 2-core machine (so minutes per million), so this
  comparison uses 100k rows (10k with ``--quick``) for both. Evidently is a benchmark-only dependency and clashes with the library's
  pandas 3 (it imports pandas internals that pandas 3 removed), so it lives in its own
  virtualenv and runs as a subprocess of this module::

      python3 -m venv .venv-bench && .venv-bench/bin/pip install -r requirements/bench.txt

  ``VOLTPIPE_BENCH_PYTHON`` may point at another interpreter that has it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

N_FEATURES = 20
BUDGET_SECONDS = 2.0
REPO = Path(__file__).resolve().parents[1]
BENCH_PYTHON_ENV = "VOLTPIPE_BENCH_PYTHON"


def _tables(n: int, seed: int = 0) -> tuple[Any, Any]:
    """Reference and current tables of 20 numeric features; a quarter of them shifted."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    ref: dict[str, Any] = {}
    cur: dict[str, Any] = {}
    for i in range(N_FEATURES):
        shift = 0.3 if i % 4 == 3 else 0.0
        kind = i % 4
        if kind == 0:
            ref[f"f{i:02d}"], cur[f"f{i:02d}"] = rng.normal(size=n), rng.normal(size=n)
        elif kind == 1:
            ref[f"f{i:02d}"], cur[f"f{i:02d}"] = rng.lognormal(0, 0.7, n), rng.lognormal(0, 0.7, n)
        elif kind == 2:  # SCADA-like resolution: many ties
            ref[f"f{i:02d}"], cur[f"f{i:02d}"] = (
                np.round(rng.weibull(2, n) * 8, 2),
                np.round(rng.weibull(2, n) * 8, 2),
            )
        else:
            ref[f"f{i:02d}"], cur[f"f{i:02d}"] = rng.normal(size=n), rng.normal(shift, 1.0, n)
    return pa.table(ref), pa.table(cur)


def _time_voltpipe(reference: Any, current: Any, repeats: int = 3) -> tuple[float, list[str]]:
    from voltpipe.monitoring import compute_drift

    compute_drift(reference.slice(0, 10_000), current.slice(0, 10_000))  # warm-up
    best, drifted = float("inf"), []
    for _ in range(repeats):
        started = time.perf_counter()
        result = compute_drift(reference, current)
        best = min(best, time.perf_counter() - started)
        drifted = result.drifted_features
    return best, drifted


def _bench_python() -> Path | None:
    configured = os.environ.get(BENCH_PYTHON_ENV)
    path = Path(configured) if configured else REPO / ".venv-bench" / "bin" / "python"
    return path if path.exists() else None


def _time_evidently(reference: Any, current: Any) -> dict[str, Any]:
    """Runs Evidently in the benchmark virtualenv on the same data; returns its timing or an error."""
    import pyarrow.parquet as pq

    python = _bench_python()
    if python is None:
        return {
            "error": "no .venv-bench: python3 -m venv .venv-bench && "
            ".venv-bench/bin/pip install -r requirements/bench.txt"
        }
    with tempfile.TemporaryDirectory(prefix="voltpipe-bench-drift-") as tmp:
        pq.write_table(reference, f"{tmp}/reference.parquet")
        pq.write_table(current, f"{tmp}/current.parquet")
        env = {**os.environ, "DO_NOT_TRACK": "1", "PYTHONPATH": ""}  # no Evidently telemetry
        proc = subprocess.run(
            [str(python), __file__, "--evidently", tmp],
            capture_output=True,
            text=True,
            env=env,
            timeout=3600,
            check=False,
        )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _evidently_child(folder: str) -> None:
    """In the benchmark virtualenv: times Evidently's data drift report and prints one JSON line."""
    import warnings

    import pandas as pd

    warnings.filterwarnings("ignore")
    from evidently import Report
    from evidently import __version__ as evidently_version
    from evidently.presets import DataDriftPreset

    reference = pd.read_parquet(f"{folder}/reference.parquet")
    current = pd.read_parquet(f"{folder}/current.parquet")
    Report([DataDriftPreset()]).run(
        current_data=current.head(1000), reference_data=reference.head(1000)
    )  # warm-up
    started = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    values = snapshot.dict()
    seconds = time.perf_counter() - started
    drifted = values["metrics"][0]["value"]["count"]
    print(json.dumps({"seconds": seconds, "drifted_count": drifted, "version": evidently_version}))


def run(quick: bool) -> list[Any]:
    from benchmarks import Row

    n = 100_000 if quick else 1_000_000
    n_evidently = 10_000 if quick else 100_000
    reference, current = _tables(n)
    seconds, drifted = _time_voltpipe(reference, current)
    rows = [
        Row(
            benchmark="drift",
            figure=f"psi+ks {N_FEATURES} features, {n:,} vs {n:,} rows",
            value=seconds,
            unit="s",
            floor=BUDGET_SECONDS,
            floor_label=f"budget {BUDGET_SECONDS:g} s on 2 cores",
            goal="ratio <= 1.0",
            extra={"rows": n, "features": N_FEATURES, "drifted": drifted, "cpus": os.cpu_count()},
        )
    ]

    ref_small, cur_small = reference.slice(0, n_evidently), current.slice(0, n_evidently)
    ours, drifted_small = _time_voltpipe(ref_small, cur_small)
    theirs = _time_evidently(ref_small, cur_small)
    rows.append(
        Row(
            benchmark="drift",
            figure=f"vs evidently DataDriftPreset, {n_evidently:,} rows",
            value=ours,
            unit="s",
            floor=theirs.get("seconds", float("nan")),
            floor_label="evidently Report([DataDriftPreset()]).run",
            goal="ratio <= 0.02",
            extra={
                "rows": n_evidently,
                "voltpipe_seconds": ours,
                "evidently": theirs,
                "voltpipe_drifted": drifted_small,
                "note": "Evidently defaults: Wasserstein distance for numeric columns over 1000 rows",
            },
        )
    )
    return rows


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--evidently":
    _evidently_child(sys.argv[2])
