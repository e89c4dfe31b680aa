"""The gate against training noise: re-runs of the demo that change nothing but the seed.

In a fresh work dir the first run makes the champion; then `runs` re-runs with other seeds
(`training.seed=N`, no cache) must promote at most once in total (goal of issue 13), while a
genuinely better model (trained longer: 40 epochs instead of 12) is still promoted. Figures: promotions among the re-runs (goal <= 1) and whether the better model was
promoted (goal >= 1), with each run's verdict, RMSE and interval in the row's `extra`.

    python -m benchmarks --only gate            # 10 re-runs
    VOLTPIPE_BENCH_GATE_RUNS=3 python -m benchmarks --only gate
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import Row

# A genuinely better model: trained longer (the demo's 12 epochs stop short of convergence).
BETTER = ["training.epochs=40", "training.early_stopping_patience=6"]


def _run(workdir: Path, overrides: list[str]) -> dict[str, Any]:
    from voltpipe.config import load_config
    from voltpipe.runners.local import run_local

    cfg = load_config(None, [f"workdir={workdir}", *overrides])
    summary = run_local("training", cfg, cache=False)
    gate = summary["champion"].get("gate") or {}
    return {
        "overrides": overrides,
        "promoted": bool(summary["champion"]["promoted"]),
        "verdict": gate.get("verdict"),
        "rmse": summary["metrics"]["test"].get("rmse"),
        "champion_rmse": gate.get("champion"),
        "interval": gate.get("interval"),
        "seconds": summary["seconds"],
    }


def run(quick: bool = False) -> list[Row]:
    runs = int(os.environ.get("VOLTPIPE_BENCH_GATE_RUNS", "2" if quick else "10"))
    extra = ["training.epochs=3"] if quick else []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        first = _run(work, [*extra, "training.seed=1000"])
        reruns = [_run(work, [*extra, f"training.seed={1001 + k}"]) for k in range(runs)]
        better_overrides = os.environ.get("VOLTPIPE_BENCH_GATE_BETTER")
        better = _run(work, [*extra, *(better_overrides.split() if better_overrides else BETTER)])
    promoted = sum(r["promoted"] for r in reruns)
    for r in [first, *reruns, better]:
        print(
            f"  gate: {' '.join(r['overrides'])[:60]:<60} rmse={r['rmse']:.3f} "
            f"champion={r['champion_rmse']} {r['verdict']} {r['interval']}",
            flush=True,
        )
    return [
        Row(
            "gate",
            f"demo re-runs promoted (of {runs}, seeds only)",
            float(promoted),
            "",
            1.0,
            "at most one",
            "ratio <= 1",
            extra={"first": first, "reruns": reruns},
        ),
        Row(
            "gate",
            "better model (40 epochs) promoted",
            float(better["promoted"]),
            "",
            1.0,
            "promoted",
            "ratio >= 1",
            extra={"better": better},
        ),
    ]
