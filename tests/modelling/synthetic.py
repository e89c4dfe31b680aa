"""Small synthetic data for the modelling tests, written as parquet split folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HOUR = np.timedelta64(3600, "s")


def write_split(folder: Path, table: pa.Table) -> Path:
    """A parquet Dataset folder as extract writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "part-00000.parquet")
    return folder


def demand_series(
    days: int = 42, sites: tuple[str, ...] = ("north", "south"), seed: int = 0
) -> pa.Table:
    """Hourly load per site: a daily cycle, a weekend dip (weekly pattern), AR(1) noise and a
    temperature covariate. Rows are shuffled, as a warehouse may return them."""
    rng = np.random.default_rng(seed)
    n = days * 24
    ts = np.datetime64("2024-01-01T00:00:00", "s") + np.arange(n) * HOUR
    hour = np.arange(n) % 24
    dow = ((ts.astype("int64") // 86_400) + 3) % 7
    cols: dict[str, list] = {"ts": [], "site": [], "load_mw": [], "temp_c": []}
    for i, site in enumerate(sites):
        noise = np.zeros(n)
        shocks = rng.normal(0, 1.0, n)
        for t in range(1, n):
            noise[t] = 0.8 * noise[t - 1] + shocks[t]
        temp = 8 + 6 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 1, n)
        load = 60 + 10 * i + 15 * np.sin(2 * np.pi * (hour - 6) / 24) - 12 * (dow >= 5) + noise
        cols["ts"] += list(ts)
        cols["site"] += [site] * n
        cols["load_mw"] += list(load)
        cols["temp_c"] += list(temp)
    table = pa.table(
        {
            "ts": pa.array(np.array(cols["ts"], dtype="datetime64[s]")),
            "site": cols["site"],
            "load_mw": cols["load_mw"],
            "temp_c": cols["temp_c"],
        }
    )
    return table.take(pa.array(rng.permutation(table.num_rows)))


def time_splits(table: pa.Table, cuts: tuple[str, str]) -> tuple[pa.Table, pa.Table, pa.Table]:
    ts = table.column("ts").to_numpy()
    a, b = (np.datetime64(c) for c in cuts)
    return (
        table.filter(pa.array(ts < a)),
        table.filter(pa.array((ts >= a) & (ts < b))),
        table.filter(pa.array(ts >= b)),
    )


def sensor_table(n: int, anomalies: float, seed: int) -> pa.Table:
    """Pump sensors: normal rows follow two coupled signals; anomalies break the coupling."""
    rng = np.random.default_rng(seed)
    flow = rng.uniform(10, 50, n)
    pressure = 2.0 + 0.08 * flow + rng.normal(0, 0.1, n)
    vibration = 0.5 + 0.01 * flow + rng.normal(0, 0.05, n)
    mode = rng.choice(["auto", "manual"], n)
    bad = rng.random(n) < anomalies
    pressure[bad] += rng.choice([-1.5, 1.5], int(bad.sum()))
    vibration[bad] += 0.6
    return pa.table(
        {
            "flow": flow,
            "pressure": pressure,
            "vibration": vibration,
            "mode": mode,
            "fault": bad.astype("int64"),
        }
    )


def tabular_table(n: int, classes: int, seed: int) -> pa.Table:
    """A classification/regression table with numbers, a category and a skewed label."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(0, 1, n)
    x2 = rng.normal(0, 1, n)
    cat = rng.choice(["a", "b", "c"], n)
    score = 1.5 * x1 - x2 + (cat == "b") * 1.0
    if classes == 2:
        label = np.where(score > 1.8, "trip", "ok")  # ~15 % positives: imbalanced
    else:
        label = np.digitize(score, [-1.0, 1.0]).astype(str)
    return pa.table(
        {"x1": x1, "x2": x2, "cat": cat, "label": label, "target": score + rng.normal(0, 0.1, n)}
    )
