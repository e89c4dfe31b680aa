"""Real tables: voltpipe's default training run vs simple peers fitted on the same rows (issue 17).

Each table of ``benchmarks.realdata.TABLES`` (real data shipped inside scikit-learn, statsmodels
and pvlib; no downloads) goes through ``voltpipe run training --no-cache`` with a plain config:
name, a DuckDB warehouse holding the table, ``SELECT *``, ``label: y``, the task, ``split:
{method: random, seed: 42}`` and a temporary ``workdir``; nothing else, so the defaults are
what is measured. The extract step's own train/valid/test parquet (under the run's
``pipeline-root/<run>/extract/``) is copied and the peers of ``benchmarks/peers_tabular.py``
(logistic/ridge regression, HistGradientBoosting, LightGBM, a scikit-learn MLP) are fitted on those
exact rows in the bench virtualenv (``.venv-bench``, ``VOLTPIPE_BENCH_PYTHON``); the row counts of
voltpipe's splits and the peers' are checked to match.

One row per table: voltpipe's test log loss (classification) or RMSE (regression) against the
best peer's, goal ``ratio <= 1.05``; then the geometric mean of the ratios, goal ``<= 1.0``.
``extra`` holds every peer's error and time, voltpipe's family and candidates when the summary or
the model metadata has them, and the wall times.

Standalone, against another worktree's voltpipe::

    /work/wt17/.venv/bin/python benchmarks/bench_tabular.py \\
        --voltpipe-python /work/wt17/.venv/bin/python [--only wine] [--set training.epochs=50]

prints a markdown table (``--json FILE`` also writes the rows, ``--keep DIR`` keeps the runs).
``--quick`` runs three small tables.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import Row
from benchmarks import realdata as rd

QUICK = ("breast_cancer", "wine", "diabetes")
GOAL = "ratio <= 1.05"
GEOMEAN_GOAL = "ratio <= 1.0"
PEERS_SCRIPT = Path(__file__).resolve().parent / "peers_tabular.py"


def metric_of(task: str) -> str:
    return "log_loss" if task == "classification" else "rmse"


def best_peer(peers: dict[str, dict[str, Any]]) -> tuple[str, float]:
    """The peer with the lowest error (failed peers skipped)."""
    scored = {k: v["error"] for k, v in peers.items() if v.get("error") is not None}
    if not scored:
        raise RuntimeError(f"every peer failed: {peers}")
    name = min(scored, key=scored.__getitem__)
    return name, float(scored[name])


def geometric_mean(values: list[float]) -> float:
    finite = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in finite) / len(finite)) if finite else float("nan")


def run_case(
    name: str,
    data: dict[str, Any],
    root: Path,
    voltpipe_python: str,
    overrides: list[str],
) -> Row:
    """One table: voltpipe's run, the peers on the same rows, one Row."""
    task = data["task"]
    metric = metric_of(task)
    case_dir = root / name
    ours = rd.voltpipe_case(
        name=name,
        parquet=data["path"],
        task=task,
        case_dir=case_dir,
        voltpipe_python=voltpipe_python,
        overrides=overrides,
    )
    test_metrics = ours["summary"]["metrics"]["test"]
    if metric not in test_metrics:
        raise RuntimeError(f"{name}: the summary has no metrics.test.{metric}: {test_metrics}")
    value = float(test_metrics[metric])
    if sum(ours["rows"].values()) != data["rows"]:
        raise RuntimeError(f"{name}: the splits hold {ours['rows']}, the table {data['rows']} rows")
    started = time.perf_counter()
    theirs = rd.peers(PEERS_SCRIPT, case_dir, {"task": task})
    peers_seconds = time.perf_counter() - started
    if theirs["rows"] != ours["rows"]:
        raise RuntimeError(f"{name}: peers saw {theirs['rows']}, voltpipe {ours['rows']}")
    best, floor = best_peer(theirs["peers"])
    return Row(
        benchmark="tabular",
        figure=f"{name} ({data['description']}) test {metric}",
        value=value,
        unit="",
        floor=floor,
        floor_label=f"best peer: {best}",
        goal=GOAL,
        extra={
            "table": name,
            "task": task,
            "metric": metric,
            "voltpipe": value,
            "voltpipe_metrics": test_metrics,
            "voltpipe_seconds": round(ours["seconds"], 2),
            "voltpipe_cpu_seconds": round(ours["cpu_seconds"], 2),
            "voltpipe_pipeline_seconds": ours["summary"].get("seconds"),
            "voltpipe_model": ours["model"],
            "best_peer": best,
            "best_peer_seconds": round(theirs["peers"][best].get("seconds", float("nan")), 3),
            "peers": theirs["peers"],
            "peers_wall_seconds": round(peers_seconds, 2),
            "rows": ours["rows"],
            "features": theirs["features"],
            "overrides": overrides,
        },
    )


def geomean_row(rows: list[Row]) -> Row:
    ratios = [r.ratio for r in rows]
    gm = geometric_mean(ratios)
    return Row(
        benchmark="tabular",
        figure=f"geometric mean of {len(rows)} table ratios",
        value=gm,
        unit="",
        floor=1.0,
        floor_label="parity with the best peer",
        goal=GEOMEAN_GOAL,
        extra={"ratios": {r.extra["table"]: r.ratio for r in rows}},
    )


def bench(
    names: list[str],
    *,
    voltpipe_python: str,
    overrides: list[str] | None = None,
    keep: str | None = None,
    on_row: Any = None,
) -> list[Row]:
    """Runs the named tables; a table that fails gives an error row (nan), never stops the rest."""
    rows: list[Row] = []
    with rd.work_folder(keep) as tmp:
        root = Path(tmp)
        data = rd.export_with_bench_venv(root / "data", names)
        for name in names:
            try:
                row = run_case(name, data[name], root, voltpipe_python, overrides or [])
            except Exception as exc:  # reported in the row
                row = Row(
                    benchmark="tabular",
                    figure=f"{name} ({data[name]['description']}) test {metric_of(data[name]['task'])}",
                    value=float("nan"),
                    unit="",
                    floor=float("nan"),
                    floor_label="failed",
                    goal=GOAL,
                    extra={"table": name, "failed": str(exc)},
                )
            rows.append(row)
            if on_row:
                on_row(row)
    scored = [r for r in rows if math.isfinite(r.ratio)]
    if len(names) > 1 and scored:
        rows.append(geomean_row(scored))
    return rows


def run(quick: bool) -> list[Row]:
    """For ``python -m benchmarks``: every table (three with `quick`), voltpipe of this venv."""
    names = list(QUICK) if quick else list(rd.TABLES)
    return bench(names, voltpipe_python=sys.executable)


def markdown(rows: list[Row]) -> str:
    lines = [
        "| case | metric | voltpipe | best peer (name) | ratio | family | voltpipe s (train) "
        "| peer s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        e = r.extra
        if "table" not in e or "failed" in e:
            if "failed" in e:
                msg = e["failed"].splitlines()[-1][:120]
                lines.append(f"| {e['table']} | - | failed: {msg} | | | | | |")
            else:
                lines.append(f"| **{r.figure}** | | | | **{r.value:.3f}** | | | |")
            continue
        model = e.get("voltpipe_model") or {}
        train = model.get("train_seconds")
        lines.append(
            f"| {e['table']} | {e['metric']} | {rd.fmt(r.value)} | {rd.fmt(r.floor)} "
            f"({e['best_peer']}) | {r.ratio:.3f} | {model.get('family') or '-'} | "
            f"{e['voltpipe_seconds']:.0f} ({rd.fmt(train, 3)}) | {e['best_peer_seconds']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = rd.parse_common(argv, __doc__ or "")
    names = args.only or (list(QUICK) if args.quick else list(rd.TABLES))
    unknown = [n for n in names if n not in rd.TABLES]
    if unknown:
        print(f"unknown table(s) {unknown}; valid: {', '.join(rd.TABLES)}", file=sys.stderr)
        return 2

    def progress(row: Row) -> None:
        print(f"  {row.extra['table']}: ratio {row.ratio:.3f}", file=sys.stderr, flush=True)

    rows = bench(
        names,
        voltpipe_python=args.voltpipe_python,
        overrides=args.overrides,
        keep=args.keep,
        on_row=progress,
    )
    print(markdown(rows))
    for r in rows:
        if "peers" in r.extra:
            peers = ", ".join(f"{k} {rd.fmt(v.get('error'))}" for k, v in r.extra["peers"].items())
            print(f"- {r.extra['table']}: {peers}")
        elif "failed" in r.extra:
            print(f"- {r.extra['table']} FAILED:\n{r.extra['failed']}")
    if args.json:
        Path(args.json).write_text(
            json.dumps([{**dataclasses.asdict(r), "met": _met(r)} for r in rows], indent=2)
        )
    return 0


def _met(row: Row) -> bool | None:
    return row.met if math.isfinite(row.ratio) else None


if __name__ == "__main__":
    raise SystemExit(main())
