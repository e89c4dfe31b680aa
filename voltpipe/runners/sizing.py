"""Sizing a run before it starts: each query's rows and bytes, each step's estimated peak memory.

``voltpipe run <pipeline> --dry-run`` prints this plan and exits; a real run prints a warning
before starting when a step's estimate exceeds the memory it will have (this machine's for the
local runner; ``resources.<step>.memory``, or Vertex's default machine, on Vertex).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

from voltpipe.config import VoltpipeConfig
from voltpipe.data.params import normalize_parameters
from voltpipe.data.warehouse import QueryEstimate, open_warehouse

# Peak memory of each step: (bytes per row it holds, fixed bytes: the interpreter, libraries and
# model), measured by benchmarks/bench_fleet.py on the fleet table (11 numeric + 2 categorical
# columns; 2026-12, 1 M and 5 M rows) as the growth of the step process's ru_maxrss between the
# sizes. Train's figure is issue 14's in-memory measurement (about 600 B per training row plus
# 0.8 GB); drift's is not measured yet (extract's figure stands in).
STEP_MEMORY: dict[str, tuple[float, float]] = {
    "extract": (257.0, 247e6),  # rows: the query's
    "extract_window": (257.0, 247e6),
    "validate": (51.0, 155e6),  # rows: the query's (statistics per split)
    "tune": (600.0, 0.8e9),  # rows: train + valid
    "train": (600.0, 0.8e9),
    "evaluate": (209.0, 269e6),  # rows: the test split's
    "register": (150.0, 206e6),  # rows: the reference sample's (only sampled row groups read)
    "deploy": (0.0, 400e6),
    "keep_champion": (0.0, 200e6),
    "batch_predict": (91.0, 425e6),  # rows: the query's (DuckDB's Arrow reader grows ~60 B/row)
    "drift": (257.0, 400e6),
}
# What a Vertex AI pipeline step gets when the config sets no resources (e2-standard-4).
VERTEX_DEFAULT_MEMORY = 16 * 10**9


@dataclasses.dataclass(frozen=True)
class StepEstimate:
    step: str
    rows: int
    peak_bytes: int
    limit_bytes: int | None
    limit_source: str

    @property
    def too_big(self) -> bool:
        return self.limit_bytes is not None and self.peak_bytes > self.limit_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "too_big": self.too_big}


def machine_memory() -> int | None:
    """This machine's memory (or its cgroup's limit, when lower), in bytes."""
    total: int | None = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (total or 1 << 62):
            total = int(text)
    return total


def pipeline_queries(name: str, cfg: VoltpipeConfig) -> dict[str, tuple[str, dict[str, Any]]]:
    """The queries pipeline `name` runs, by what they read: ``{label: (sql, parameters)}``."""
    if name == "training":
        return {"training": (cfg.sql, cfg.typed_parameters)}
    if name == "prediction":
        return {
            "prediction": (
                cfg.prediction_sql,
                normalize_parameters(cfg.prediction.query_parameters),
            )
        }
    if name == "monitoring":
        return {
            "monitoring": (
                cfg.monitoring_sql,
                normalize_parameters(cfg.monitoring.current_query_parameters),
            )
        }
    raise ValueError(f"unknown pipeline {name!r}")


def step_rows(name: str, cfg: VoltpipeConfig, rows: int) -> dict[str, int]:
    """The rows each step of pipeline `name` holds at its peak, for a query of `rows` rows."""
    train, valid, test = (int(rows * f) for f in cfg.split.fractions)
    if name == "training":
        out = {
            "extract": rows,
            "validate": rows,
            "train": train + valid,
            "evaluate": test,
            "register": min(train, cfg.monitoring.reference_sample_rows),
            "deploy": 0,
        }
        if cfg.tuning.enabled:
            out["tune"] = train + valid
        return out
    if name == "prediction":
        return {"batch_predict": rows}
    return {"extract_window": rows, "drift": rows}


def estimate_steps(
    name: str, cfg: VoltpipeConfig, rows: int, *, target: str = "local"
) -> list[StepEstimate]:
    """Each step's estimated peak memory and the memory it will have on `target`."""
    machine = machine_memory() if target == "local" else None
    out = []
    for step, held in step_rows(name, cfg, rows).items():
        per_row, fixed = STEP_MEMORY[step]
        peak = int(per_row * held + fixed)
        if target == "local":
            limit, source = machine, "this machine"
        else:
            configured = cfg.resources.for_step(step).memory_bytes
            limit = configured or VERTEX_DEFAULT_MEMORY
            source = f"resources.{step}.memory" if configured else "Vertex's default machine"
        out.append(StepEstimate(step, held, peak, limit, source))
    return out


def size_run(name: str, cfg: VoltpipeConfig, *, target: str = "local") -> dict[str, Any]:
    """The dry-run plan: each query's estimate and each step's peak memory (nothing runs).

    Raises:
        DataError: a query cannot run (missing table, bad parameter, over the bytes cap...).
    """
    wh = open_warehouse(cfg.warehouse_uri, cfg.bigquery.model_dump(exclude_none=True))
    queries: dict[str, QueryEstimate] = {
        label: wh.estimate(sql, params)
        for label, (sql, params) in pipeline_queries(name, cfg).items()
    }
    rows = max((q.rows for q in queries.values()), default=0)
    steps = estimate_steps(name, cfg, rows, target=target)
    return {
        "pipeline": name,
        "status": "dry-run",
        "target": target,
        "queries": {label: q.to_dict() for label, q in queries.items()},
        "steps": [s.to_dict() for s in steps],
        "warnings": [memory_warning(s) for s in steps if s.too_big],
    }


def memory_warning(step: StepEstimate) -> str:
    limit = step.limit_bytes or 0
    per_row, fixed = STEP_MEMORY[step.step]
    return (
        f"step {step.step!r} may need about {_gb(step.peak_bytes)} ({step.rows:,} rows x "
        f"{per_row:.0f} B + {_gb(fixed)}), more than {step.limit_source}'s {_gb(limit)}: "
        f"give it more memory (resources.{step.step}.memory on Vertex) or use fewer rows"
    )


def warn_before_run(name: str, cfg: VoltpipeConfig, *, target: str = "local") -> list[str]:
    """Prints a warning for each step whose estimate exceeds its memory; returns them.

    Never fatal: a failed estimate (the query itself is checked elsewhere) says nothing.
    """
    from voltpipe.errors import VoltpipeError

    try:
        plan = size_run(name, cfg, target=target)
    except (VoltpipeError, ValueError, OSError):
        return []
    for message in plan["warnings"]:
        print(f"voltpipe: warning: {message}", flush=True)
    return list(plan["warnings"])


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"
