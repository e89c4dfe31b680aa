"""Real series: voltpipe's default forecasting run vs naive, statistical and LightGBM peers (issue 18).

Each case of ``CASES`` (a series of ``benchmarks.realdata.SERIES``, real data shipped inside
pmdarima, statsmodels and pvlib; no downloads, and a horizon) goes through
``voltpipe run training --no-cache`` with a plain config: name, a DuckDB warehouse holding the
series (``ts`` TIMESTAMP, ``y``), ``SELECT *``, ``label: y``, ``task: forecasting``,
``time_column: ts``, ``forecasting: {horizon: H}``, ``split: {method: time, column: ts}`` and a
temporary ``workdir``; nothing else, so the defaults are what is measured. The extract step's
train/valid/test rows are copied and the peers of ``benchmarks/peers_forecast.py`` (persistence,
seasonal naive per season, AutoETS, MSTL + AutoETS, LightGBM on lag features; their refitting
across origins is described there) are scored in the bench virtualenv on **every test row as a
target**: each origin from the last valid row to the last test row minus H forecasts the next H
rows from everything up to it, MAE over all (origin, step) pairs.

voltpipe's MAE is read from the summary (``metrics.test.mae``). Whether voltpipe scored the same
targets is checked, not assumed: its ``mae_persistence`` must equal the persistence peer's MAE
(``extra.same_targets``; main's evaluation before issue 18 used the test rows after the first
``window`` as targets, so there it is false and the figures are only indicative).

One row per case: voltpipe's MAE against the best peer's, goal ``ratio < 1.0``; ``extra`` holds
every peer's MAE and seconds, the best seasonal naive, voltpipe's train-step seconds next to the
MSTL peer's fit + forecast seconds for the same test period, and the family.

Standalone, against another worktree's voltpipe::

    /work/wt18/.venv/bin/python benchmarks/bench_forecast.py \\
        --voltpipe-python /work/wt18/.venv/bin/python [--only demand_h48] [--set model.family=gbdt]

``--quick`` runs two cases.
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

GOAL = "ratio < 1.0"
PEERS_SCRIPT = Path(__file__).resolve().parent / "peers_forecast.py"
# case -> (series, horizon)
CASES: dict[str, tuple[str, int]] = {
    "demand_h1": ("demand", 1),
    "demand_h48": ("demand", 48),
    "co2_h52": ("co2", 52),
    "solar_h24": ("solar", 24),
    "co2_h1": ("co2", 1),
}
QUICK = ("demand_h1", "co2_h52")
SAME_TARGETS_RTOL = 1e-6


def best_peer(peers: dict[str, dict[str, Any]]) -> tuple[str, float]:
    scored = {k: v["mae"] for k, v in peers.items() if v.get("mae") is not None}
    if not scored:
        raise RuntimeError(f"every peer failed: {peers}")
    name = min(scored, key=scored.__getitem__)
    return name, float(scored[name])


def best_seasonal_naive(peers: dict[str, dict[str, Any]]) -> tuple[str | None, float | None]:
    naive = {
        k: v["mae"]
        for k, v in peers.items()
        if k.startswith("seasonal_naive") and v.get("mae") is not None
    }
    if not naive:
        return None, None
    name = min(naive, key=naive.__getitem__)
    return name, float(naive[name])


def same_targets(voltpipe_metrics: dict[str, Any], persistence_mae: float | None) -> bool:
    """voltpipe's persistence MAE equals ours only if both scored the same (origin, step) pairs."""
    theirs = voltpipe_metrics.get("mae_persistence")
    if theirs is None or persistence_mae is None:
        return False
    return math.isclose(float(theirs), persistence_mae, rel_tol=SAME_TARGETS_RTOL)


def run_case(
    case: str, data: dict[str, Any], root: Path, voltpipe_python: str, overrides: list[str]
) -> Row:
    series, horizon = CASES[case]
    case_dir = root / case
    ours = rd.voltpipe_case(
        name=case,
        parquet=data["path"],
        task="forecasting",
        case_dir=case_dir,
        voltpipe_python=voltpipe_python,
        extra_config={
            "time_column": "ts",
            "forecasting": {"horizon": horizon},
            "split": {"method": "time", "column": "ts"},
        },
        overrides=overrides,
    )
    metrics = ours["summary"]["metrics"]["test"]
    if "mae" not in metrics:
        raise RuntimeError(f"{case}: the summary has no metrics.test.mae: {metrics}")
    if sum(ours["rows"].values()) != data["rows"]:
        raise RuntimeError(f"{case}: the splits hold {ours['rows']}, the series {data['rows']}")
    started = time.perf_counter()
    theirs = rd.peers(
        PEERS_SCRIPT,
        case_dir,
        {"horizon": horizon, "seasons": data["seasons"], "freq": data["freq"]},
    )
    peers_seconds = time.perf_counter() - started
    if theirs["rows"] != ours["rows"]:
        raise RuntimeError(f"{case}: peers saw {theirs['rows']}, voltpipe {ours['rows']}")
    peers = theirs["peers"]
    best, floor = best_peer(peers)
    naive_name, naive_mae = best_seasonal_naive(peers)
    value = float(metrics["mae"])
    mstl = peers.get("mstl_ets", {})
    return Row(
        benchmark="forecast",
        figure=f"{series} ({data['description']}) h={horizon} test mae",
        value=value,
        unit="",
        floor=floor,
        floor_label=f"best peer: {best}",
        goal=GOAL,
        extra={
            "case": case,
            "series": series,
            "horizon": horizon,
            "seasons": data["seasons"],
            "voltpipe": value,
            "voltpipe_metrics": metrics,
            "same_targets": same_targets(metrics, peers.get("persistence", {}).get("mae")),
            "voltpipe_seconds": round(ours["seconds"], 2),
            "voltpipe_cpu_seconds": round(ours["cpu_seconds"], 2),
            "voltpipe_pipeline_seconds": ours["summary"].get("seconds"),
            "voltpipe_train_seconds": ours["model"].get("train_seconds"),
            "voltpipe_model": ours["model"],
            "best_peer": best,
            "seasonal_naive": naive_mae,
            "seasonal_naive_peer": naive_name,
            "never_worse_than_seasonal_naive": naive_mae is None or value <= naive_mae,
            "mstl_seconds": mstl.get("seconds"),
            "mstl_cpu_seconds": mstl.get("cpu_seconds"),
            "faster_than_mstl": (
                ours["model"].get("train_seconds") is not None
                and mstl.get("seconds") is not None
                and ours["model"]["train_seconds"] < mstl["seconds"]
            ),
            "peers": peers,
            "peers_wall_seconds": round(peers_seconds, 2),
            "origins": theirs["origins"],
            "targets": theirs["targets"],
            "refit_every": theirs["refit_every"],
            "rows": ours["rows"],
            "overrides": overrides,
        },
    )


def bench(
    cases: list[str],
    *,
    voltpipe_python: str,
    overrides: list[str] | None = None,
    keep: str | None = None,
    on_row: Any = None,
) -> list[Row]:
    rows: list[Row] = []
    with rd.work_folder(keep) as tmp:
        root = Path(tmp)
        series = sorted({CASES[c][0] for c in cases})
        data = rd.export_with_bench_venv(root / "data", series)
        for case in cases:
            try:
                row = run_case(case, data[CASES[case][0]], root, voltpipe_python, overrides or [])
            except Exception as exc:  # reported in the row
                row = Row(
                    benchmark="forecast",
                    figure=f"{CASES[case][0]} h={CASES[case][1]} test mae",
                    value=float("nan"),
                    unit="",
                    floor=float("nan"),
                    floor_label="failed",
                    goal=GOAL,
                    extra={"case": case, "failed": str(exc)},
                )
            rows.append(row)
            if on_row:
                on_row(row)
    return rows


def run(quick: bool) -> list[Row]:
    """For ``python -m benchmarks``: every case (two with `quick`), voltpipe of this venv."""
    cases = list(QUICK) if quick else [c for c in CASES if c != "co2_h1"]
    return bench(cases, voltpipe_python=sys.executable)


def markdown(rows: list[Row]) -> str:
    lines = [
        "| case | metric | voltpipe | best peer (name) | ratio | seasonal naive | same targets "
        "| family | voltpipe train s | MSTL s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        e = r.extra
        if "failed" in e:
            msg = e["failed"].splitlines()[-1][:120]
            lines.append(f"| {e['case']} | mae | failed: {msg} | | | | | | | |")
            continue
        family = (e.get("voltpipe_model") or {}).get("family") or "-"
        lines.append(
            f"| {e['case']} | mae | {rd.fmt(r.value)} | {rd.fmt(r.floor)} ({e['best_peer']}) "
            f"| {r.ratio:.3f} | {rd.fmt(e['seasonal_naive'])} | {'yes' if e['same_targets'] else 'no'} "
            f"| {family} | {rd.fmt(e['voltpipe_train_seconds'], 3)} | {rd.fmt(e['mstl_seconds'], 3)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = rd.parse_common(argv, __doc__ or "")
    cases = args.only or (list(QUICK) if args.quick else [c for c in CASES if c != "co2_h1"])
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        print(f"unknown case(s) {unknown}; valid: {', '.join(CASES)}", file=sys.stderr)
        return 2

    def progress(row: Row) -> None:
        print(f"  {row.extra['case']}: ratio {row.ratio:.3f}", file=sys.stderr, flush=True)

    rows = bench(
        cases,
        voltpipe_python=args.voltpipe_python,
        overrides=args.overrides,
        keep=args.keep,
        on_row=progress,
    )
    print(markdown(rows))
    for r in rows:
        if "peers" in r.extra:
            peers = ", ".join(
                f"{k} {rd.fmt(v.get('mae'))} ({rd.fmt(v.get('seconds'), 2)} s)"
                for k, v in r.extra["peers"].items()
            )
            m = r.extra["voltpipe_metrics"]
            print(
                f"- {r.extra['case']}: {peers}; voltpipe mae_persistence "
                f"{rd.fmt(m.get('mae_persistence'))}, {r.extra['targets']} targets"
            )
        elif "failed" in r.extra:
            print(f"- {r.extra['case']} FAILED:\n{r.extra['failed']}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [
                    {**dataclasses.asdict(r), "met": r.met if math.isfinite(r.ratio) else None}
                    for r in rows
                ],
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
