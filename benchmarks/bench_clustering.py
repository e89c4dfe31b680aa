"""Clustering and embedding: voltpipe's default runs vs scikit-learn on the same rows (issue 16).

Three kinds of case, each a ``voltpipe run training --no-cache`` with a plain config (the
harness of ``benchmarks.realdata``: a DuckDB warehouse holding the table, ``SELECT *``, ``label:
y``, ``split: {method: random, seed: 42}``, a temporary ``workdir``), then peers fitted in the
bench virtualenv (``.venv-bench``, ``VOLTPIPE_BENCH_PYTHON``) on the extract step's own
train/test rows:

``clustering`` on iris, wine, breast_cancer and digits (real tables with known classes, shipped
    inside scikit-learn): ``task: clustering`` with the label given (so ``metrics.test.ari`` is
    scored) and ``k`` not given, against scikit-learn ``KMeans`` told the true number of classes
    (``n_init=10``, seed 0), fitted on the train rows standardised with their mean and standard
    deviation (voltpipe's scale) and scored on the test rows. Row: the test ARI, goal ``ratio >=
    1.0`` (at least KMeans's with the true k). ``extra``: silhouettes (standardised scale), the
    k voltpipe chose, wall times; and KMeans on the raw, unstandardised features.
``embedding`` on wine, breast_cancer and digits: ``task: embedding`` (PCA, components by the
    default variance target) against ``StandardScaler`` + ``PCA(svd_solver="full")`` with as many
    components, both fitted on the train rows. voltpipe's model (components, scaling) is read
    back through ``voltpipe.model_dir`` by a child of voltpipe's interpreter. Rows: the largest
    absolute difference of the components up to each one's sign (goal ``<= 1e-6``) and the test
    reconstruction error (mean squared error per standardised value, computed by the peer for
    both models alike; goal ``ratio <= 1.000001``). ``extra``: explained variance ratios.
``meters``: the shipped example ``configs/load_profiles.yaml`` (daily shape profiles of the
    generated smart-meter table) scored against the generator's ``customer_type``; row: the
    test ARI against the goal 0.9 (``ratio >= 1.0``). ``extra``: KMeans with the true k (4) on
    the same test profiles, fitted on the train profiles.

Standalone, against another worktree's voltpipe::

    .venv/bin/python benchmarks/bench_clustering.py --voltpipe-python /work/wt16a/.venv/bin/python \\
        [--only iris] [--only meters] [--set clustering.k=[2,6]] [--keep DIR] [--json FILE]

``--quick``: iris and wine (clustering), wine (embedding) and the meters.

Run as ``python bench_clustering.py CASE_DIR SPEC_JSON`` (by the harness, in the bench venv) it is
the peers' side and prints one JSON line.
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

CLUSTER_TABLES = ("iris", "wine", "breast_cancer", "digits")
EMBED_TABLES = ("wine", "breast_cancer", "digits")
CASES = (
    *(f"cluster:{t}" for t in CLUSTER_TABLES),
    *(f"embed:{t}" for t in EMBED_TABLES),
    "meters",
)
QUICK = ("cluster:iris", "cluster:wine", "embed:wine", "meters")
ARI_GOAL = "ratio >= 1.0"
COMPONENT_TOLERANCE = 1e-6
COMPONENT_GOAL = "ratio <= 1.0"
RECONSTRUCTION_GOAL = "ratio <= 1.000001"
METERS_ARI_TARGET = 0.9
METERS_CONFIG = rd.REPO / "configs" / "load_profiles.yaml"
THIS_FILE = Path(__file__).resolve()


# --- pure helpers (unit-tested) ----------------------------------------------------------------


def case_names(only: list[str], quick: bool) -> list[str]:
    """The cases to run: `only` (a case name, or a bare table name for every case on it)."""
    if not only:
        return list(QUICK if quick else CASES)
    out: list[str] = []
    for item in only:
        matches = [c for c in CASES if c == item or c.split(":")[-1] == item]
        if not matches:
            raise ValueError(f"unknown case {item!r}; valid: {', '.join(CASES)}")
        out += [m for m in matches if m not in out]
    return out


def max_abs_diff_up_to_sign(ours: Any, theirs: Any) -> float:
    """The largest |difference| of two (m, d) component matrices, each row's sign aligned
    first (a principal axis is defined up to its sign)."""
    import numpy as np

    a = np.asarray(ours, dtype="float64")
    b = np.asarray(theirs, dtype="float64")
    if a.shape != b.shape:
        raise ValueError(f"component shapes differ: {a.shape} vs {b.shape}")
    signs = np.where(np.sum(a * b, axis=1) < 0, -1.0, 1.0)
    return float(np.max(np.abs(a * signs[:, None] - b))) if a.size else 0.0


def reconstruction_error(z: Any, components: Any, mean: Any) -> float:
    """Mean squared error per value of rebuilding standardised rows `z` from PCA components."""
    import numpy as np

    z = np.asarray(z, dtype="float64")
    c = np.asarray(components, dtype="float64")
    centred = z - np.asarray(mean, dtype="float64")
    rebuilt = centred @ c.T @ c
    return float(np.mean((centred - rebuilt) ** 2))


def standardise(train: Any, *others: Any) -> list[Any]:
    """Train mean / standard deviation scaling (a constant column by 1: StandardScaler's rule)."""
    import numpy as np

    x = np.asarray(train, dtype="float64")
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)
    return [(np.asarray(o, dtype="float64") - mean) / std for o in (x, *others)]


def failed_row(case: str, figure: str, goal: str, exc: BaseException) -> Row:
    return Row(
        benchmark="clustering",
        figure=figure,
        value=float("nan"),
        unit="",
        floor=float("nan"),
        floor_label="failed",
        goal=goal,
        extra={"case": case, "failed": str(exc)},
    )


# --- the peers' side (bench venv) --------------------------------------------------------------


def _read_split(case_dir: Path, split: str) -> Any:
    import pandas as pd

    return pd.read_parquet(case_dir / f"{split}.parquet")


def peers_kmeans(case_dir: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """KMeans with the true k on standardised (and raw) features: train fit, test score."""
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    train, test = _read_split(case_dir, "train"), _read_split(case_dir, "test")
    label = spec.get("label", "y")
    features = [c for c in train.columns if c != label]
    k = int(train[label].nunique())
    z_train, z_test = standardise(train[features].to_numpy(), test[features].to_numpy())
    out: dict[str, Any] = {"k": k, "rows": {"train": len(train), "test": len(test)}}
    for name, (fit_on, score_on) in {
        "kmeans_standardised": (z_train, z_test),
        "kmeans_raw": (train[features].to_numpy(float), test[features].to_numpy(float)),
    }.items():
        started = time.perf_counter()
        model = KMeans(n_clusters=k, n_init=10, random_state=0).fit(fit_on)
        seconds = time.perf_counter() - started
        ids = model.predict(score_on)
        sil = silhouette_score(z_test, ids) if len(np.unique(ids)) > 1 else float("nan")
        out[name] = {
            "ari": float(adjusted_rand_score(test[label].to_numpy(), ids)),
            "silhouette_standardised": float(sil),
            "seconds": round(seconds, 4),
        }
    return out


def peers_pca(case_dir: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """StandardScaler + PCA (full SVD) on train; compared with voltpipe's model on test."""
    import numpy as np
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    train, test = _read_split(case_dir, "train"), _read_split(case_dir, "test")
    ours = spec["voltpipe"]
    features = list(ours["features"])
    started = time.perf_counter()
    scaler = StandardScaler().fit(train[features].to_numpy(float))
    z_train = scaler.transform(train[features].to_numpy(float))
    pca = PCA(n_components=len(ours["components"]), svd_solver="full").fit(z_train)
    seconds = time.perf_counter() - started
    z_test = scaler.transform(test[features].to_numpy(float))
    # voltpipe's own standardisation of the same test rows
    raw_test = test[features].to_numpy(float)
    z_ours = (raw_test - np.asarray(ours["input_mean"])) / np.asarray(ours["input_scale"])
    return {
        "n_components": int(pca.n_components_),
        "max_component_diff": max_abs_diff_up_to_sign(ours["components"], pca.components_),
        "reconstruction_error": {
            "voltpipe": reconstruction_error(z_ours, ours["components"], ours["mean"]),
            "sklearn": reconstruction_error(z_test, pca.components_, pca.mean_),
        },
        "explained_variance_ratio": {
            "voltpipe": [float(v) for v in ours["explained_variance_ratio"]],
            "sklearn": pca.explained_variance_ratio_.tolist(),
        },
        "max_ratio_diff": float(
            np.max(
                np.abs(np.asarray(ours["explained_variance_ratio"]) - pca.explained_variance_ratio_)
            )
        ),
        "seconds": round(seconds, 4),
        "rows": {"train": len(train), "test": len(test)},
    }


def peers_profiles(case_dir: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """KMeans with the true k on the same shape profiles (voltpipe.modelling.profiles, which
    needs only NumPy and pyarrow)."""
    import numpy as np
    import pyarrow.parquet as pq
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from voltpipe.modelling.profiles import build_profiles

    profile = spec["profile"]
    label = spec["label"]

    def profiles_of(split: str) -> tuple[Any, Any]:
        table = pq.read_table(case_dir / f"{split}.parquet")
        p = build_profiles(
            table,
            time_column=profile["time_column"],
            value=profile["value"],
            period=profile.get("period", "day"),
            group_column=profile.get("group_column"),
            normalise=profile.get("normalise", "none"),
            max_missing=int(profile.get("max_missing", 0)),
        )
        group = profile["group_column"]
        first = {}
        for g, t in zip(
            table.column(group).to_pylist(), table.column(label).to_pylist(), strict=True
        ):
            first.setdefault(g, t)
        truth = np.array([first[g] for g in p.keys.column(group).to_pylist()])
        return p.matrix, truth

    x_train, y_train = profiles_of("train")
    x_test, y_test = profiles_of("test")
    k = len(np.unique(y_train))
    started = time.perf_counter()
    model = KMeans(n_clusters=k, n_init=10, random_state=0).fit(x_train)
    seconds = time.perf_counter() - started
    ids = model.predict(x_test)
    return {
        "k": k,
        "kmeans_true_k_ari": float(adjusted_rand_score(y_test, ids)),
        "seconds": round(seconds, 4),
        "profiles": {"train": len(x_train), "test": len(x_test)},
    }


def peers_main(case_dir: str, spec_json: str) -> int:
    spec = json.loads(spec_json)
    kind = spec["kind"]
    fn = {"kmeans": peers_kmeans, "pca": peers_pca, "profiles": peers_profiles}[kind]
    print(json.dumps(fn(Path(case_dir), spec)))
    return 0


# --- voltpipe's side ---------------------------------------------------------------------------

_DUMP_EMBEDDING = r"""
import glob, json, sys
from pathlib import Path
from voltpipe.model_dir import read_meta, read_unsupervised_file
uri = sys.argv[1]
files = glob.glob(str(Path(uri) / "**" / "voltpipe_model.json"), recursive=True)
folder = Path(files[0]).parent if files else Path(uri)
meta = read_meta(folder)
payload = read_unsupervised_file(folder, meta)
inputs, model = payload["inputs"], payload["model"]
print(json.dumps({
    "family": meta.get("family"),
    "features": inputs["features"],
    "input_mean": inputs["mean"],
    "input_scale": inputs["scale"],
    "components": model["components"],
    "mean": model["mean"],
    "explained_variance_ratio": model["explained_variance_ratio"],
}))
"""

_EXPORT_METERS = r"""
import json, sys
import pyarrow.parquet as pq
from voltpipe.demo import generate_meters
table = generate_meters()
pq.write_table(table.replace_schema_metadata(None), sys.argv[1])
print(json.dumps({"rows": table.num_rows}))
"""


def _test_metrics(ours: dict[str, Any], name: str) -> dict[str, Any]:
    metrics = (ours["summary"].get("metrics") or {}).get("test") or {}
    if not metrics:
        raise RuntimeError(f"{name}: the summary has no metrics.test: {ours['summary']}")
    return dict(metrics)


def run_cluster_case(
    table: str, data: dict[str, Any], root: Path, voltpipe_python: str, overrides: list[str]
) -> list[Row]:
    case_dir = root / f"cluster-{table}"
    ours = rd.voltpipe_case(
        name=table,
        parquet=data["path"],
        task="clustering",
        case_dir=case_dir,
        voltpipe_python=voltpipe_python,
        overrides=overrides,
    )
    metrics = _test_metrics(ours, table)
    if "ari" not in metrics:
        raise RuntimeError(f"{table}: no metrics.test.ari (label given): {metrics}")
    theirs = rd.peers(THIS_FILE, case_dir, {"kind": "kmeans", "label": "y"})
    if theirs["rows"]["test"] != ours["rows"]["test"]:
        raise RuntimeError(f"{table}: peers saw {theirs['rows']}, voltpipe {ours['rows']}")
    peer = theirs["kmeans_standardised"]
    return [
        Row(
            benchmark="clustering",
            figure=f"{table} test ARI, k not given",
            value=float(metrics["ari"]),
            unit="",
            floor=float(peer["ari"]),
            floor_label=f"KMeans, true k={theirs['k']}",
            goal=ARI_GOAL,
            extra={
                "case": f"cluster:{table}",
                "voltpipe_metrics": metrics,
                "voltpipe_k": metrics.get("k"),
                "voltpipe_seconds": round(ours["seconds"], 2),
                "voltpipe_model": ours["model"],
                "peers": {k: v for k, v in theirs.items() if k.startswith("kmeans")},
                "rows": ours["rows"],
                "overrides": overrides,
            },
        )
    ]


def run_embed_case(
    table: str, data: dict[str, Any], root: Path, voltpipe_python: str, overrides: list[str]
) -> list[Row]:
    case_dir = root / f"embed-{table}"
    ours = rd.voltpipe_case(
        name=table,
        parquet=data["path"],
        task="embedding",
        case_dir=case_dir,
        voltpipe_python=voltpipe_python,
        overrides=overrides,
    )
    metrics = _test_metrics(ours, table)
    uri = (ours["summary"].get("model") or {}).get("uri")
    if not uri:
        raise RuntimeError(f"{table}: the summary names no model uri")
    model = rd.run_json([voltpipe_python, "-c", _DUMP_EMBEDDING, str(uri)])
    theirs = rd.peers(THIS_FILE, case_dir, {"kind": "pca", "voltpipe": model})
    common = {
        "case": f"embed:{table}",
        "voltpipe_metrics": metrics,
        "n_components": theirs["n_components"],
        "explained_variance_ratio": theirs["explained_variance_ratio"],
        "max_ratio_diff": theirs["max_ratio_diff"],
        "voltpipe_seconds": round(ours["seconds"], 2),
        "sklearn_seconds": theirs["seconds"],
        "rows": ours["rows"],
    }
    recon = theirs["reconstruction_error"]
    return [
        Row(
            benchmark="clustering",
            figure=f"{table} PCA max |component diff| (up to sign)",
            value=float(theirs["max_component_diff"]),
            unit="",
            floor=COMPONENT_TOLERANCE,
            floor_label="tolerance 1e-6",
            goal=COMPONENT_GOAL,
            extra=common,
        ),
        Row(
            benchmark="clustering",
            figure=f"{table} PCA test reconstruction error ({theirs['n_components']} comp.)",
            value=float(recon["voltpipe"]),
            unit="",
            floor=float(recon["sklearn"]),
            floor_label="sklearn PCA",
            goal=RECONSTRUCTION_GOAL,
            extra={**common, "reported_reconstruction_error": metrics.get("reconstruction_error")},
        ),
    ]


def meters_config() -> dict[str, Any]:
    """The keys of ``configs/load_profiles.yaml`` that define the example (not its paths)."""
    import yaml

    config = yaml.safe_load(METERS_CONFIG.read_text())
    return {k: v for k, v in config.items() if k not in ("workdir", "warehouse", "name")}


def run_meters_case(root: Path, voltpipe_python: str, overrides: list[str]) -> list[Row]:
    case_dir = root / "meters"
    case_dir.mkdir(parents=True, exist_ok=True)
    parquet = case_dir / "meters.parquet"
    rd.run_json([voltpipe_python, "-c", _EXPORT_METERS, str(parquet)])
    example = meters_config()
    extra_config = {**example, "query": "SELECT * FROM bench.meters"}
    ours = rd.voltpipe_case(
        name="meters",
        parquet=str(parquet),
        task="clustering",
        case_dir=case_dir,
        voltpipe_python=voltpipe_python,
        extra_config=extra_config,
        overrides=overrides,
    )
    metrics = _test_metrics(ours, "meters")
    if "ari" not in metrics:
        raise RuntimeError(f"meters: no metrics.test.ari: {metrics}")
    theirs = rd.peers(
        THIS_FILE,
        case_dir,
        {
            "kind": "profiles",
            "profile": example["clustering"]["profile"],
            "label": example["label"],
        },
    )
    return [
        Row(
            benchmark="clustering",
            figure="meters: test profiles' ARI vs customer_type",
            value=float(metrics["ari"]),
            unit="",
            floor=METERS_ARI_TARGET,
            floor_label="goal ARI 0.9",
            goal=ARI_GOAL,
            extra={
                "case": "meters",
                "config": str(METERS_CONFIG.relative_to(rd.REPO)),
                "voltpipe_metrics": metrics,
                "voltpipe_k": metrics.get("k"),
                "voltpipe_seconds": round(ours["seconds"], 2),
                "voltpipe_model": ours["model"],
                "kmeans_true_k": theirs,
                "rows": ours["rows"],
                "overrides": overrides,
            },
        )
    ]


def bench(
    names: list[str],
    *,
    voltpipe_python: str,
    overrides: list[str] | None = None,
    keep: str | None = None,
    on_row: Any = None,
) -> list[Row]:
    """Runs the named cases; a case that fails gives an error row (nan), never stops the rest."""
    rows: list[Row] = []
    tables = sorted({n.split(":")[1] for n in names if ":" in n})
    with rd.work_folder(keep) as tmp:
        root = Path(tmp)
        data = rd.export_with_bench_venv(root / "data", tables) if tables else {}
        for name in names:
            table = name.split(":")[-1]
            try:
                if name.startswith("cluster:"):
                    got = run_cluster_case(
                        table, data[table], root, voltpipe_python, overrides or []
                    )
                elif name.startswith("embed:"):
                    got = run_embed_case(table, data[table], root, voltpipe_python, overrides or [])
                else:
                    got = run_meters_case(root, voltpipe_python, overrides or [])
            except Exception as exc:  # reported in the row
                goal = COMPONENT_GOAL if name.startswith("embed:") else ARI_GOAL
                got = [failed_row(name, f"{name} failed", goal, exc)]
            for row in got:
                rows.append(row)
                if on_row:
                    on_row(row)
    return rows


def run(quick: bool) -> list[Row]:
    """For ``python -m benchmarks``: every case (the quick ones with `quick`), this venv's voltpipe."""
    return bench(case_names([], quick), voltpipe_python=sys.executable)


def markdown(rows: list[Row]) -> str:
    lines = [
        "| figure | voltpipe | floor | ratio | goal | voltpipe s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        e = r.extra
        if "failed" in e:
            msg = e["failed"].strip().splitlines()[-1][:160] if e["failed"].strip() else "?"
            lines.append(f"| {r.figure} | failed: {msg} | | | | |")
            continue
        lines.append(
            f"| {r.figure} | {rd.fmt(r.value)} | {rd.fmt(r.floor)} ({r.floor_label}) | "
            f"{r.ratio:.4g} | {r.goal} {'ok' if _met(r) else 'MISSED'} | "
            f"{e.get('voltpipe_seconds', '-')} |"
        )
    return "\n".join(lines)


def _met(row: Row) -> bool | None:
    return row.met if math.isfinite(row.ratio) else None


def main(argv: list[str] | None = None) -> int:
    args = rd.parse_common(argv, __doc__ or "")
    try:
        names = case_names(args.only, args.quick)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2

    def progress(row: Row) -> None:
        print(f"  {row.figure}: {rd.fmt(row.value)} (ratio {row.ratio:.4g})", file=sys.stderr)

    rows = bench(
        names,
        voltpipe_python=args.voltpipe_python,
        overrides=args.overrides,
        keep=args.keep,
        on_row=progress,
    )
    print(markdown(rows))
    for r in rows:
        if "failed" in r.extra:
            print(f"- {r.extra['case']} FAILED:\n{r.extra['failed']}")
    if args.json:
        Path(args.json).write_text(
            json.dumps([{**dataclasses.asdict(r), "met": _met(r)} for r in rows], indent=2)
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and Path(sys.argv[1]).is_dir() and sys.argv[2].startswith("{"):
        raise SystemExit(peers_main(sys.argv[1], sys.argv[2]))
    raise SystemExit(main())
