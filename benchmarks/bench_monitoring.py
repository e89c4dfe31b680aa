"""Monitoring before labels (issue 13): multivariate drift, CBPE, and drift in the warehouse.

Figures:
- a joint shift of wind speed and direction with unchanged marginals: the univariate tests
  that fire (goal: none) and the multivariate tests' statistics against their thresholds
  (goal: both above);
- CBPE's estimated accuracy of a scikit-learn classifier on a covariate-shifted window vs the
  realised accuracy's 95% bootstrap interval (|estimate - realised| / half-width <= 1);
- drift of a 10-million-row DuckDB window computed in the warehouse vs pulled into memory:
  wall time and peak memory (each path in its own process, ``ru_maxrss``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks import Row

FEATURES = ["wind_speed_ms", "wind_direction_deg", "air_temperature_c", "turbine_id"]
QUERY = "SELECT * FROM scada.big WHERE ts >= @start"


def _wind(n: int, corr: float, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = corr * a + np.sqrt(1 - corr**2) * rng.normal(size=n)
    return pa.table(
        {
            "wind_speed_ms": 8 + 3 * a,
            "wind_direction_deg": 200 + 40 * b,
            "air_temperature_c": rng.normal(10, 5, n),
            "turbine_id": rng.choice([f"WT{k:02d}" for k in range(1, 7)], n),
        }
    )


def _joint_shift() -> list[Row]:
    from voltpipe.monitoring.drift import compute_drift
    from voltpipe.monitoring.multivariate import multivariate_drift

    reference, current = _wind(20_000, 0.8, 0), _wind(5_000, -0.8, 1)
    univariate = compute_drift(reference, current, features=FEATURES)
    m = multivariate_drift(reference, current, FEATURES)
    recon, domain = m.tests["reconstruction_error"], m.tests["domain_classifier"]
    return [
        Row(
            "monitoring",
            "joint shift: univariate tests fired (of 4)",
            float(len(univariate.drifted_features)),
            "",
            1.0,
            "one",
            "ratio <= 0",
            extra={f: univariate.features[f].fired for f in FEATURES},
        ),
        Row(
            "monitoring",
            "joint shift: PCA reconstruction error",
            recon.statistic,
            "",
            recon.threshold,
            "its threshold",
            "ratio >= 1",
            extra=recon.to_dict(),
        ),
        Row(
            "monitoring",
            "joint shift: domain classifier AUC",
            domain.statistic,
            "",
            domain.threshold,
            "its threshold",
            "ratio >= 1",
            extra=domain.to_dict(),
        ),
    ]


def _equipment(n: int, load_shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    load = rng.uniform(0.2, 1.2, n) + load_shift
    oil = 40 + 45 * load + rng.normal(0, 5, n)
    age = rng.integers(1, 40, n)
    risk = 0.08 * (oil - 70) + 0.06 * (age - 20)
    y = (risk + rng.normal(0, 0.8, n) > 0.5).astype(int)
    return np.column_stack([load, oil, age]), y


def _cbpe() -> list[Row]:
    from sklearn.linear_model import LogisticRegression

    from voltpipe.monitoring.estimation import CBPE, realised_metric

    x_train, y_train = _equipment(5_000, 0.0, 0)
    x_ref, y_ref = _equipment(5_000, 0.0, 1)
    x_cur, y_cur = _equipment(5_000, -0.2, 2)  # lighter loading: a covariate shift
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    cbpe = CBPE.fit(y_ref, model.predict_proba(x_ref))
    p_cur = model.predict_proba(x_cur)
    est = cbpe.estimate(p_cur)
    realised = realised_metric("accuracy", y_cur, p_cur)
    half = (realised["high"] - realised["low"]) / 2
    return [
        Row(
            "monitoring",
            "CBPE accuracy error on a shifted window",
            abs(est.estimate - realised["value"]),
            "",
            half,
            "realised 95% half-width",
            "ratio <= 1",
            extra={
                "estimate": est.estimate,
                "interval": [est.low, est.high],
                "realised": realised,
                "reference_accuracy": cbpe.reference_accuracy,
            },
        )
    ]


_CHILD = """
import json, resource, sys, time
import pyarrow as pa
from voltpipe.data.warehouse import open_warehouse
from voltpipe.monitoring.drift import compute_drift
from voltpipe.monitoring.pushdown import compute_drift_in_warehouse
path, mode = sys.argv[1], sys.argv[2]
features = {features!r}
wh = open_warehouse("duckdb:///" + path)
reference = wh.query_table("SELECT * FROM scada.reference", {{}})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
params = {{"start": {{"type": "INT64", "value": 0}}}}
started = time.perf_counter()
if mode == "pushdown":
    result = compute_drift_in_warehouse(reference, wh, {query!r}, params, features=features)
else:
    batches = list(wh.iter_batches({query!r}, params, 262144))
    current = pa.Table.from_batches(batches[1:], schema=batches[0].schema)
    result = compute_drift(reference, current, features=features)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": seconds, "peak_mb": peak / 1024, "base_mb": base / 1024,
                  "psi": {{f: result.features[f].psi for f in features}},
                  "rows": result.current_rows}}))
"""


def _warehouse_scale(rows: int) -> list[Row]:
    import duckdb

    features = [*FEATURES[:3], "air_density_kgm3", "turbine_id"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.duckdb"
        con = duckdb.connect(str(path))
        con.execute("CREATE SCHEMA scada")
        con.execute(
            "CREATE TABLE scada.big AS SELECT i AS ts, 8 + 3 * sqrt(-2 * ln(random())) * "
            "cos(2 * pi() * random()) AS wind_speed_ms, random() * 360 AS wind_direction_deg, "
            "12 + 5 * random() AS air_temperature_c, 1.2 + 0.05 * random() AS air_density_kgm3, "
            "'WT' || lpad(CAST(i % 12 AS VARCHAR), 2, '0') AS turbine_id "
            f"FROM range({rows}) t(i)"
        )
        con.execute(
            "CREATE TABLE scada.reference AS SELECT i AS ts, 8 + 3 * sqrt(-2 * ln(random())) * "
            "cos(2 * pi() * random()) AS wind_speed_ms, random() * 360 AS wind_direction_deg, "
            "10 + 5 * random() AS air_temperature_c, 1.2 + 0.05 * random() AS air_density_kgm3, "
            "'WT' || lpad(CAST(i % 12 AS VARCHAR), 2, '0') AS turbine_id FROM range(100000) t(i)"
        )
        con.close()
        code = _CHILD.format(features=features, query=QUERY)
        out = {}
        for mode in ("pushdown", "pull"):
            done = subprocess.run(
                [sys.executable, "-c", code, str(path), mode],
                capture_output=True,
                text=True,
                check=True,
            )
            out[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    push, pull = out["pushdown"], out["pull"]
    psi_gap = max(
        abs(push["psi"][f] - pull["psi"][f]) for f in push["psi"] if push["psi"][f] is not None
    )
    label = f"{rows / 1e6:g}M-row window"
    return [
        Row(
            "monitoring",
            f"{label} drift: in DuckDB vs pulled (time)",
            push["seconds"],
            "s",
            pull["seconds"],
            "pulled into memory",
            "ratio <= 1",
            extra={"pushdown": push, "pull": pull, "max_psi_difference": psi_gap},
        ),
        # Memory the drift computation needed above the process's own earlier peak (imports,
        # the reference sample): ru_maxrss is a high-water mark.
        Row(
            "monitoring",
            f"{label} drift: in DuckDB vs pulled (MB above base)",
            push["peak_mb"] - push["base_mb"],
            "MB",
            pull["peak_mb"] - pull["base_mb"],
            "pulled into memory",
            "ratio <= 0.5",
            extra={"pushdown_peak_mb": push["peak_mb"], "pull_peak_mb": pull["peak_mb"]},
        ),
    ]


def run(quick: bool = False) -> list[Row]:
    return [*_joint_shift(), *_cbpe(), *_warehouse_scale(1_000_000 if quick else 10_000_000)]
