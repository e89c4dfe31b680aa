"""Real data sets that ship inside Python packages, and the harness shared by the quality benchmarks.

Nothing here downloads: every table and series is a file inside an installed package
(scikit-learn's bundled ``load_*`` sets, never its ``fetch_*`` ones; statsmodels' datasets;
pvlib's TMY3 file; pmdarima's copy of R's ``taylor``). The loaders run in the bench virtualenv
(``.venv-bench``, which has every package) and export parquet, so voltpipe's venv and the peers'
read the same rows.

Tables (``TABLES``; label ``y``, columns renamed to ``snake_case``):

=================  ======  ==============  ===============================================================
name               rows    task            source and target
=================  ======  ==============  ===============================================================
breast_cancer      569     binary          ``sklearn.datasets.load_breast_cancer``: 30 numeric features
wine               178     3 classes       ``sklearn.datasets.load_wine``: 13 chemical measurements
iris               150     3 classes       ``sklearn.datasets.load_iris``
digits             1,797   10 classes      ``sklearn.datasets.load_digits``: 64 pixel counts, several
                                           always 0 (constant columns, as in SCADA flags)
diabetes           442     regression      ``sklearn.datasets.load_diabetes``: disease progression
anes96             944     binary          ``statsmodels.datasets.anes96``: 1996 vote (Dole vs Clinton) from
                                           self-placement, party id, age, education, income, TV news
                                           (``logpopul`` dropped: it is ``log(popul + 0.1)``)
fair               6,366   binary          ``statsmodels.datasets.fair``: ``affairs > 0`` from marriage
                                           rating, age, years married, children, religiousness,
                                           education, occupations (``affairs`` itself dropped)
solar_ghi          8,760   regression      pvlib's TMY3 file ``723170TYA.CSV`` (Greensboro NC): hourly global
                                           horizontal irradiance (W/m2) from hour of day, day of year,
                                           extraterrestrial horizontal radiation (astronomy, known ahead),
                                           total and opaque sky cover, dry-bulb and dew-point temperature,
                                           relative humidity, pressure, wind speed and direction,
                                           visibility, ceiling height, precipitable water, aerosol optical
                                           depth and albedo. Left out as leaks: DNI and DHI (GHI is
                                           ``DNI cos(zenith) + DHI``), the illuminance columns (derived from
                                           the irradiance), and every source/uncertainty flag.
=================  ======  ==============  ===============================================================

Series (``SERIES``; columns ``ts`` TIMESTAMP and ``y``):

==========  ======  ===========  ======================================================================
name        rows    step         source
==========  ======  ===========  ======================================================================
demand      4,032   30 min       half-hourly electricity demand of England and Wales (MW), 12 weeks from
                                 Monday 5 June 2000 (R's ``forecast::taylor``, shipped by pmdarima as
                                 ``pmdarima.datasets.load_taylor``); seasons 48 (day) and 336 (week)
co2         2,284   week         ``statsmodels.datasets.co2`` (Mauna Loa, ppm, 1958-2001); its 59 missing
                                 weeks linearly interpolated; season 52
solar       8,760   hour         the TMY3 GHI above as a series (a typical year, stamped as 1990,
                                 hour-beginning); season 24
==========  ======  ===========  ======================================================================

The harness half (``voltpipe_case``) runs in whatever interpreter runs a benchmark and talks to
voltpipe only through a subprocess of ``--voltpipe-python``, so a model engineer can point it at
another worktree's venv.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_PYTHON_ENV = "VOLTPIPE_BENCH_PYTHON"
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One real data set: what it is and how voltpipe should be told about it."""

    name: str
    kind: str  # "table" | "series"
    task: str  # classification | regression | forecasting
    description: str
    seasons: tuple[int, ...] = ()  # series only: known seasons, in steps, shortest first
    freq: str = ""  # series only: pandas frequency of ``ts``


TABLES: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset("breast_cancer", "table", "classification", "569 rows, binary, 30 features"),
        Dataset("wine", "table", "classification", "178 rows, 3 classes, 13 features"),
        Dataset("iris", "table", "classification", "150 rows, 3 classes, 4 features"),
        Dataset("digits", "table", "classification", "1,797 rows, 10 classes, 64 pixels"),
        Dataset("diabetes", "table", "regression", "442 rows, 10 features"),
        Dataset("anes96", "table", "classification", "944 rows, binary vote, 9 features"),
        Dataset("fair", "table", "classification", "6,366 rows, binary, 8 features"),
        Dataset("solar_ghi", "table", "regression", "8,760 hourly rows, GHI W/m2, 17 features"),
    )
}

SERIES: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset("demand", "series", "forecasting", "4,032 half-hours, MW", (48, 336), "30min"),
        Dataset("co2", "series", "forecasting", "2,284 weeks, ppm", (52,), "W-SAT"),
        Dataset("solar", "series", "forecasting", "8,760 hours, GHI W/m2", (24,), "h"),
    )
}


def _snake(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def _sklearn_table(loader: str) -> Any:
    import pandas as pd
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader)()
    frame = pd.DataFrame(bunch.data, columns=[_snake(c) for c in bunch.feature_names])
    frame["y"] = bunch.target.astype("int64" if loader != "load_diabetes" else "float64")
    return frame


def _tmy3() -> Any:
    """pvlib's bundled TMY3 file (8,760 hours), with pvlib's own column names."""
    import pvlib

    path = Path(pvlib.__file__).parent / "data" / "723170TYA.CSV"
    data, _meta = pvlib.iotools.read_tmy3(str(path), map_variables=True)
    return data


# TMY3 columns that are not irradiance (nor derived from it) -> feature names.
_SOLAR_FEATURES = {
    "ghi_extra": "etr_horizontal",
    "TotCld (tenths)": "total_sky_cover",
    "OpqCld (tenths)": "opaque_sky_cover",
    "temp_air": "temp_air",
    "temp_dew": "temp_dew",
    "relative_humidity": "relative_humidity",
    "pressure": "pressure",
    "wind_speed": "wind_speed",
    "wind_direction": "wind_direction",
    "Hvis (m)": "visibility",
    "CeilHgt (m)": "ceiling_height",
    "precipitable_water": "precipitable_water",
    "AOD (unitless)": "aod",
    "albedo": "albedo",
}


def _solar_table() -> Any:
    import numpy as np

    data = _tmy3()
    frame = data[list(_SOLAR_FEATURES)].rename(columns=_SOLAR_FEATURES).reset_index(drop=True)
    hours = np.arange(len(frame))
    frame.insert(0, "hour", (hours % 24).astype("int64"))
    frame.insert(1, "day_of_year", (hours // 24 + 1).astype("int64"))
    frame = frame.astype({c: "float64" for c in _SOLAR_FEATURES.values()})
    frame["y"] = data["ghi"].to_numpy(dtype="float64")
    return frame


def load_table(name: str) -> Any:
    """The table `name` of ``TABLES`` as a pandas DataFrame with the label in ``y``."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; valid: {', '.join(TABLES)}")
    if name in ("breast_cancer", "wine", "iris", "digits", "diabetes"):
        return _sklearn_table(f"load_{name}")
    if name == "anes96":
        import statsmodels.api as sm

        frame = sm.datasets.anes96.load_pandas().data.drop(columns=["logpopul"])
        frame.columns = [_snake(c) for c in frame.columns]
        return frame.rename(columns={"vote": "y"}).astype({"y": "int64"})
    if name == "fair":
        import statsmodels.api as sm

        frame = sm.datasets.fair.load_pandas().data
        frame["y"] = (frame.pop("affairs") > 0).astype("int64")
        return frame
    return _solar_table()


def load_series(name: str) -> Any:
    """The series `name` of ``SERIES``: a DataFrame with ``ts`` (naive timestamps) and ``y``."""
    import numpy as np
    import pandas as pd

    if name not in SERIES:
        raise ValueError(f"unknown series {name!r}; valid: {', '.join(SERIES)}")
    if name == "demand":
        from pmdarima.datasets import load_taylor

        y = np.asarray(load_taylor(as_series=False), dtype="float64")
        ts = pd.date_range("2000-06-05", periods=len(y), freq="30min")
    elif name == "co2":
        import statsmodels.api as sm

        series = sm.datasets.co2.load_pandas().data["co2"]
        y = series.interpolate(method="linear").to_numpy(dtype="float64")
        ts = pd.DatetimeIndex(series.index)
    else:
        y = _tmy3()["ghi"].to_numpy(dtype="float64")
        ts = pd.date_range("1990-01-01", periods=len(y), freq="h")
    frame = pd.DataFrame({"ts": ts.astype("datetime64[us]"), "y": y})
    if frame["y"].isna().any():
        raise ValueError(f"series {name!r} has missing values after loading")
    return frame


def export(folder: str | Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """Writes ``<name>.parquet`` for each data set and returns their descriptions."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names:
        spec = TABLES.get(name) or SERIES.get(name)
        if spec is None:
            raise ValueError(f"unknown data set {name!r}; valid: {', '.join({**TABLES, **SERIES})}")
        frame = load_table(name) if spec.kind == "table" else load_series(name)
        path = folder / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        out[name] = {**dataclasses.asdict(spec), "rows": len(frame), "path": str(path)}
    return out


# --- the harness: bench venv, voltpipe runs, split recovery -----------------------------------


def bench_python() -> Path | None:
    """The bench virtualenv's interpreter (``VOLTPIPE_BENCH_PYTHON`` or ``.venv-bench``)."""
    configured = os.environ.get(BENCH_PYTHON_ENV)
    path = Path(configured) if configured else REPO / ".venv-bench" / "bin" / "python"
    return path if path.exists() else None


NO_BENCH_VENV = (
    "no bench virtualenv: python3.11 -m venv .venv-bench && "
    ".venv-bench/bin/pip install -r requirements/bench.txt (or set VOLTPIPE_BENCH_PYTHON)"
)


def run_json(argv: list[str], *, timeout: float = 3600, env: dict[str, str] | None = None) -> Any:
    """Runs a child that prints one JSON line last; returns it, or raises with its stderr tail."""
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(argv[:3])} ... failed ({proc.returncode}):\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def export_with_bench_venv(folder: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """Exports the data sets by running this module in the bench virtualenv."""
    python = bench_python()
    if python is None:
        raise RuntimeError(NO_BENCH_VENV)
    return run_json([str(python), __file__, "export", str(folder), *names], timeout=600)


def find_split_parquet(workdir: Path) -> dict[str, list[str]]:
    """The extract step's train/valid/test parquet files under a run's pipeline root.

    kfp.local writes each output artifact under ``<workdir>/pipeline-root/<run>/extract/<name>``
    (a folder of parquet shards, or one file).
    """
    found: dict[str, list[str]] = {}
    for split in SPLITS:
        base = sorted(glob.glob(str(workdir / "pipeline-root" / "*" / "extract" / split)))
        if not base:
            raise RuntimeError(f"no extract output {split!r} under {workdir / 'pipeline-root'}")
        target = Path(base[-1])
        files = sorted(glob.glob(str(target / "**" / "*.parquet"), recursive=True))
        found[split] = files if target.is_dir() else [str(target)]
    return found


def extract_row_counts(workdir: Path) -> dict[str, int]:
    """Rows per split as the extract step recorded them in its artifacts' metadata."""
    outputs = sorted(
        glob.glob(str(workdir / "pipeline-root" / "*" / "extract" / "executor_output.json"))
    )
    if not outputs:
        return {}
    artifacts = json.loads(Path(outputs[-1]).read_text()).get("artifacts", {})
    counts = {}
    for split in SPLITS:
        items = artifacts.get(split, {}).get("artifacts", [])
        if items and "rows" in items[0].get("metadata", {}):
            counts[split] = int(items[0]["metadata"]["rows"])
    return counts


_CHILD = r"""
import json, sys
import duckdb
spec = json.loads(sys.argv[1])
con = duckdb.connect(spec["db"])
con.execute("CREATE SCHEMA IF NOT EXISTS bench")
con.execute(f"CREATE OR REPLACE TABLE bench.{spec['table']} AS SELECT * FROM read_parquet(?)",
            [spec["parquet"]])
con.close()
print(json.dumps({"ok": True}))
"""

_COPY_SPLITS = r"""
import json, sys
import pyarrow as pa, pyarrow.parquet as pq
spec = json.loads(sys.argv[1])
rows = {}
for split, files in spec["splits"].items():
    table = pa.concat_tables([pq.read_table(f) for f in files]) if files else None
    if table is None:
        raise SystemExit(f"no parquet for split {split}")
    pq.write_table(table, f"{spec['out']}/{split}.parquet")
    rows[split] = table.num_rows
print(json.dumps(rows))
"""


def voltpipe_case(
    *,
    name: str,
    parquet: str,
    task: str,
    case_dir: Path,
    voltpipe_python: str,
    extra_config: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    timeout: float = 3600,
) -> dict[str, Any]:
    """Runs ``voltpipe run training`` on one data set with a plain default config.

    Writes the table to a DuckDB file, a config (name, warehouse, query, label, task, split,
    workdir, plus `extra_config`), runs the CLI with ``--no-cache --summary-json``, and copies the
    extract step's train/valid/test rows to ``case_dir/{train,valid,test}.parquet`` for the peers.

    Returns:
        ``{"summary", "seconds" (wall), "cpu_seconds" (the CLI and its steps), "rows" ({split:
        n}), "config", "model" (family, candidates, train_seconds, ...)}``.
    """
    case_dir.mkdir(parents=True, exist_ok=True)
    db = case_dir / "warehouse.duckdb"
    table = _snake(name)
    run_json(
        [
            voltpipe_python,
            "-c",
            _CHILD,
            json.dumps({"db": str(db), "table": table, "parquet": parquet}),
        ]
    )
    config: dict[str, Any] = {
        "name": f"bench-{table.replace('_', '-')}",
        "warehouse": f"duckdb:///{db}",
        "query": f"SELECT * FROM bench.{table}",
        "label": "y",
        "task": task,
        "split": {"method": "random", "seed": 42},
        "workdir": str(case_dir / "work"),
        **(extra_config or {}),
    }
    config_path = case_dir / "config.yaml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    summary_path = case_dir / "summary.json"
    argv = [voltpipe_python, "-m", "voltpipe", "run", "training", "--no-cache"]
    argv += ["--config", str(config_path), "--summary-json", str(summary_path)]
    for item in overrides or []:
        argv += ["--set", item]
    started, cpu = time.perf_counter(), _children_cpu()
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=case_dir,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    seconds, cpu_seconds = time.perf_counter() - started, _children_cpu() - cpu
    (case_dir / "voltpipe.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0 or not summary_path.exists():
        tail = "\n".join((proc.stderr + proc.stdout).strip().splitlines()[-8:])
        raise RuntimeError(f"voltpipe run training failed on {name}:\n{tail}")
    summary = json.loads(summary_path.read_text())
    splits = find_split_parquet(Path(config["workdir"]))
    rows = run_json(
        [voltpipe_python, "-c", _COPY_SPLITS, json.dumps({"splits": splits, "out": str(case_dir)})]
    )
    expected = extract_row_counts(Path(config["workdir"]))
    if expected and expected != rows:
        raise RuntimeError(
            f"{name}: the extract step reports {expected} rows, its files hold {rows}"
        )
    return {
        "summary": summary,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "rows": rows,
        "config": config,
        "model": {**_model_meta(summary), **train_step_facts(Path(config["workdir"]))},
    }


def _children_cpu() -> float:
    """CPU seconds of every finished child process (and theirs): a run's CPU on a shared machine."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train_step_facts(workdir: Path) -> dict[str, Any]:
    """The train step's own metadata: family, epochs, ``train_seconds`` (kfp executor output)."""
    outputs = sorted(
        glob.glob(str(workdir / "pipeline-root" / "*" / "train" / "executor_output.json"))
    )
    if not outputs:
        return {}
    artifacts = json.loads(Path(outputs[-1]).read_text()).get("artifacts", {})
    facts: dict[str, Any] = {}
    for name in ("model", "metrics"):
        items = artifacts.get(name, {}).get("artifacts", [])
        if items:
            facts.update(items[0].get("metadata", {}))
    keep = ("family", "framework", "best_epoch", "epochs_run", "stopped_by", "train_seconds")
    out = {k: facts[k] for k in keep if k in facts}
    out.update({k: v for k, v in facts.items() if k.startswith("candidate")})
    return out


def _model_meta(summary: dict[str, Any]) -> dict[str, Any]:
    """Family, candidates and training facts from the summary and the model's metadata file."""
    out: dict[str, Any] = {}
    uri = (summary.get("model") or {}).get("uri")
    meta: dict[str, Any] = {}
    if uri:
        files = glob.glob(str(Path(uri) / "**" / "voltpipe_model.json"), recursive=True)
        if files:
            meta = json.loads(Path(files[0]).read_text())
    family = (
        (summary.get("model") or {}).get("family")
        or summary.get("family")
        or meta.get("family")
        or (meta.get("model") or {}).get("family")
    )
    out["family"] = family
    for key in ("candidates", "training"):
        value = summary.get(key) or meta.get(key)
        if value is not None:
            out[key] = value
    for key in ("epochs_run", "best_epoch", "stopped_by"):
        value = summary.get(key, meta.get(key))
        if value is not None:
            out[key] = value
    return out


def peers(script: Path, case_dir: Path, spec: dict[str, Any], timeout: float = 3600) -> Any:
    """Runs a peers script in the bench virtualenv on the rows saved in `case_dir`."""
    python = bench_python()
    if python is None:
        raise RuntimeError(NO_BENCH_VENV)
    result = run_json(
        [str(python), str(script), str(case_dir), json.dumps(spec)],
        timeout=timeout,
        env={"NIXTLA_NUMBA_CACHE": "1", "OMP_NUM_THREADS": "1"},  # one thread: shared CPU
    )
    (case_dir / "peers.json").write_text(json.dumps(result, indent=2))
    return result


def parse_common(argv: list[str] | None, doc: str) -> Any:
    """The standalone command line of bench_tabular / bench_forecast."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument(
        "--voltpipe-python",
        default=sys.executable,
        help="interpreter whose voltpipe is benchmarked (default: this one)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to `voltpipe run training --set` (repeatable)",
    )
    parser.add_argument(
        "--only", action="append", default=[], help="run only this case (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer cases")
    parser.add_argument("--keep", help="keep each case's work dir under this folder")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    return parser.parse_args(argv)


def work_folder(keep: str | None) -> Any:
    """A temporary folder, or `keep` (created) when the caller wants to look at the runs."""
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        return _Kept(Path(keep))
    return tempfile.TemporaryDirectory(prefix="voltpipe-bench-")


class _Kept:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> str:
        return str(self.path)

    def __exit__(self, *exc: object) -> None:
        return None


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


if __name__ == "__main__" and len(sys.argv) >= 3 and sys.argv[1] == "export":
    print(json.dumps(export(sys.argv[2], sys.argv[3:])))
