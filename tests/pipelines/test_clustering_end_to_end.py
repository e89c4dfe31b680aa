"""Clustering and embedding everywhere a supervised model goes: train -> gate -> register ->
deploy -> serve over HTTP -> batch predict -> drift, on generated operating regimes; a retrain
keeps the champion's cluster ids."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import write_config
from voltpipe.config import load_config
from voltpipe.model_dir import CLUSTER_FILE, EMBEDDING_FILE, read_meta
from voltpipe.registry import open_registry
from voltpipe.runners.local import run_local

pytestmark = [pytest.mark.slow, pytest.mark.integration]

FEATURES = ["wind_speed_ms", "rotor_rpm", "pitch_deg", "power_kw"]
# Three operating regimes of a turbine: idling, partial load, rated power (means per feature).
REGIMES = {
    "idle": (3.0, 2.0, 80.0, 10.0),
    "partial": (8.0, 11.0, 2.0, 900.0),
    "rated": (14.0, 16.0, 15.0, 2000.0),
}
SPREAD = (0.8, 1.0, 3.0, 120.0)


def regimes_table(n: int, shares: tuple[float, ...], seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    names = list(REGIMES)
    kind = rng.choice(len(names), n, p=shares)
    means = np.array([REGIMES[k] for k in names])[kind]
    x = means + rng.normal(size=(n, 4)) * np.array(SPREAD)
    return pa.table(
        {
            "row_id": np.arange(n),
            **{f: x[:, j] for j, f in enumerate(FEATURES)},
            "regime": np.array(names)[kind],
        }
    )


@pytest.fixture
def regimes_warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "regimes.duckdb"
    con = duckdb.connect(str(path))
    con.register("base", regimes_table(1500, (0.3, 0.4, 0.3), seed=1))
    con.register("shifted", regimes_table(600, (0.7, 0.2, 0.1), seed=2))
    con.register("same", regimes_table(600, (0.3, 0.4, 0.3), seed=3))
    con.execute("CREATE SCHEMA scada")
    for name in ("base", "shifted", "same"):
        con.execute(f"CREATE TABLE scada.{name} AS SELECT * FROM {name}")
    con.close()
    return path


def _config(tmp_path: Path, warehouse: Path, task: str, extra: str = "") -> Path:
    return write_config(
        tmp_path,
        f"""
        name: regimes
        warehouse: duckdb:///{warehouse}
        query: SELECT * FROM scada.base
        label: regime
        task: {task}
        exclude: [row_id]
        workdir: work
        tracking: {{enabled: false}}
        """,
        extra,
    )


def _table(warehouse: Path, name: str) -> pa.Table:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.sql(f"SELECT * FROM scada.{name} ORDER BY row_id").to_arrow_table()
    finally:
        con.close()


def test_clustering_from_training_to_serving_batch_drift_and_a_retrain(
    tmp_path: Path, regimes_warehouse: Path
) -> None:
    from tests.serving.test_serving_server import serving_container
    from voltpipe.modelling.predict import load_model
    from voltpipe.monitoring.monitor import detect_drift
    from voltpipe.serving.batch import predict_batch

    cfg = load_config(
        _config(tmp_path, regimes_warehouse, "clustering", "clustering: {k: [2, 5]}\n")
    )
    summary = run_local("training", cfg, cache=False)
    train_dir = cfg.workdir / "pipeline-root" / summary["run_id"] / "train" / "model"
    assert (train_dir / CLUSTER_FILE).exists() and not (train_dir / "model.keras").exists()
    meta = read_meta(train_dir)
    assert meta["clustering"]["k"] == 3 and "regime" not in meta["features"]["numeric"]
    test = summary["metrics"]["test"]
    assert test["silhouette"] > 0.5 and test["ari"] > 0.95 and test["nmi"] > 0.9
    assert test["stability_ari"] > 0.9
    assert summary["champion"]["promoted"] is True
    registry = open_registry(cfg.registry_uri)
    champion = registry.get("regimes")
    assert champion is not None and champion.version == summary["model"]["version"]
    card = (Path(champion.uri) / "model_card.md").read_text()
    assert "## Clusters" in card and "**Model family:** kmeans" in card

    # serve over HTTP: the cluster of each row is its nearest centre, as in process
    rows = _table(regimes_warehouse, "same").slice(0, 25)
    loaded = load_model(champion.uri)
    expected = loaded.predict_raw(rows).argmin(axis=1)
    instances = rows.select(FEATURES).to_pylist()
    with serving_container(Path(champion.uri), "regimes") as url:
        response = httpx.post(url + "/v1/models/regimes:predict", json={"instances": instances})
        info = httpx.get(url + "/").json()
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["cluster"] for p in predictions] == expected.tolist()
    assert len(predictions[0]["distances"]) == 3 and info["task"] == "clustering"

    # batch prediction: cluster id and a distance per centre, the pass-through key kept
    out_wh = tmp_path / "scored.duckdb"
    shutil.copy(regimes_warehouse, out_wh)
    written = predict_batch(
        f"duckdb:///{out_wh}",
        "SELECT * FROM scada.same",
        {},
        champion.uri,
        "predictions.regimes",
        mode="replace",
    )
    con = duckdb.connect(str(out_wh), read_only=True)
    scored = con.sql("SELECT * FROM predictions.regimes ORDER BY row_id").to_arrow_table()
    con.close()
    assert written["rows"] == scored.num_rows == 600
    assert {"row_id", "regime", "cluster", "distance", "distance_2"} <= set(scored.column_names)
    direct = loaded.predict_raw(_table(regimes_warehouse, "same"))
    np.testing.assert_array_equal(scored.column("cluster").to_numpy(), direct.argmin(axis=1))
    np.testing.assert_allclose(scored.column("distance_1").to_numpy(), direct[:, 1], rtol=1e-9)

    # drift: the regime shares moved (70 % idling) -> proportions drift; the same mix -> none
    for name, drifted in (("shifted", True), ("same", False)):
        current = tmp_path / f"{name}.parquet"
        pq.write_table(_table(regimes_warehouse, name), current)
        result = detect_drift(current, champion.uri)
        assert result.clusters is not None
        assert ("proportions" in result.clusters.fired) is drifted, result.clusters
        assert ("clusters" in result.triggers) is drifted
        assert result.clusters.current_shares is not None
    assert result.to_dict()["clusters"]["rows"] == 600

    # a retrain with another seed: its ids are matched to the champion's before it is saved
    cfg2 = load_config(
        _config(tmp_path, regimes_warehouse, "clustering", "clustering: {k: 3}\n"),
        ["training.seed=7", "split.seed=5"],
    )
    second = run_local("training", cfg2, cache=False)
    version = registry.get("regimes", second["model"]["version"])
    assert version is not None
    new = load_model(version.uri)
    both = _table(regimes_warehouse, "same")
    agree = new.predict_raw(both).argmin(axis=1) == expected_all(loaded, both)
    assert agree.mean() > 0.98


def expected_all(loaded: object, table: pa.Table) -> np.ndarray:
    return loaded.predict_raw(table).argmin(axis=1)  # type: ignore[attr-defined]


def test_embedding_pca_trains_serves_and_writes_components(
    tmp_path: Path, regimes_warehouse: Path
) -> None:
    from voltpipe.modelling.predict import load_model
    from voltpipe.serving.batch import predict_batch
    from voltpipe.serving.predictor import load_predictor

    cfg = load_config(
        _config(tmp_path, regimes_warehouse, "embedding", "embedding: {n_components: 2}\n"),
        ["tracking.enabled=true"],
    )
    summary = run_local("training", cfg, cache=False)
    test = summary["metrics"]["test"]
    assert 0.8 < test["explained_variance"] <= 1.0 and test["reconstruction_error"] < 0.2
    import mlflow  # MLflow gets what it gets for every task: params and test metrics

    run = mlflow.MlflowClient(tracking_uri=cfg.tracking_uri).get_run(summary["mlflow_run_id"])
    assert run.data.params["task"] == "embedding" and run.data.params["model.family"] == "pca"
    assert run.data.metrics["test_explained_variance"] == pytest.approx(test["explained_variance"])
    champion = open_registry(cfg.registry_uri).get("regimes")
    assert champion is not None and (Path(champion.uri) / EMBEDDING_FILE).exists()
    assert "## Components" in (Path(champion.uri) / "model_card.md").read_text()
    predictor = load_predictor(champion.uri)
    rows = _table(regimes_warehouse, "same").slice(0, 3)
    served = predictor.predict(rows.select(FEATURES).to_pylist())
    np.testing.assert_allclose(
        [p["components"] for p in served], load_model(champion.uri).predict_raw(rows), rtol=1e-9
    )
    out_wh = tmp_path / "scored.duckdb"
    shutil.copy(regimes_warehouse, out_wh)
    predict_batch(
        f"duckdb:///{out_wh}",
        "SELECT * FROM scada.same",
        {},
        champion.uri,
        "emb.rows",
        mode="replace",
    )
    con = duckdb.connect(str(out_wh), read_only=True)
    cols = con.sql("SELECT * FROM emb.rows").to_arrow_table().column_names
    con.close()
    assert {"pc1", "pc2", "row_id"} <= set(cols) and "pc3" not in cols


@pytest.fixture
def meters_warehouse(tmp_path: Path) -> Path:
    from voltpipe.demo.meters import MeterSpec, generate_meters

    path = tmp_path / "smart.duckdb"
    con = duckdb.connect(str(path))
    con.register("readings", generate_meters(MeterSpec(meters=60, days=14, seed=3)))
    con.execute("CREATE SCHEMA meters")
    con.execute("CREATE TABLE meters.readings AS SELECT * FROM readings")
    con.close()
    return path


def test_load_profiles_train_serve_batch_and_drift(tmp_path: Path, meters_warehouse: Path) -> None:
    from voltpipe.modelling.predict import load_model
    from voltpipe.monitoring.monitor import detect_drift
    from voltpipe.serving.batch import predict_batch
    from voltpipe.serving.predictor import load_predictor

    path = write_config(
        tmp_path,
        f"""
        name: profiles
        warehouse: duckdb:///{meters_warehouse}
        query: SELECT meter_id, ts, kwh, customer_type FROM meters.readings
        label: customer_type
        task: clustering
        workdir: work
        tracking: {{enabled: false}}
        split: {{method: hash, column: meter_id, seed: 3}}
        clustering:
          profile: {{time_column: ts, value: kwh, period: week, group_column: meter_id,
                     normalise: shape, max_missing: 4}}
          stability_resamples: 3
        """,
    )
    cfg = load_config(path)
    summary = run_local("training", cfg, cache=False)
    test = summary["metrics"]["test"]
    assert test["k"] == 4 and test["ari"] > 0.9  # the four customer types, from shapes alone
    champion = open_registry(cfg.registry_uri).get("profiles")
    assert champion is not None
    meta = read_meta(champion.uri)
    assert meta["rows"]["train_profiles"] > 0 and meta["clustering"]["profile"]["period"] == "week"

    # serve one week's readings of a meter (raw kWh: normalised by the model) and its history
    con = duckdb.connect(str(meters_warehouse), read_only=True)
    week = con.sql(
        "SELECT meter_id, ts, kwh FROM meters.readings WHERE meter_id = 'M0001' "
        "AND ts >= TIMESTAMP '2024-03-11' AND ts < TIMESTAMP '2024-03-18' ORDER BY ts"
    ).to_arrow_table()
    con.close()
    predictor = load_predictor(champion.uri)
    assert predictor.engine == "numpy"
    history = [
        {"meter_id": r["meter_id"], "ts": str(r["ts"]), "kwh": r["kwh"]} for r in week.to_pylist()
    ]
    by_history = predictor.predict([{"history": history}])[0]
    in_process = load_model(champion.uri).predict_raw(week)
    assert by_history["cluster"] == int(in_process.argmin(axis=1)[0])
    if week.num_rows == 336:  # a complete week also goes as a plain profile
        by_profile = predictor.predict([{"profile": week.column("kwh").to_pylist()}])[0]
        assert by_profile["cluster"] == by_history["cluster"]

    # batch: one row per meter and week, keyed, with its cluster
    out_wh = tmp_path / "scored.duckdb"
    shutil.copy(meters_warehouse, out_wh)
    written = predict_batch(
        f"duckdb:///{out_wh}",
        "SELECT meter_id, ts, kwh FROM meters.readings",
        {},
        champion.uri,
        "segments.weekly",
        mode="replace",
    )
    con = duckdb.connect(str(out_wh), read_only=True)
    scored = con.sql("SELECT * FROM segments.weekly").to_arrow_table()
    con.close()
    assert {"meter_id", "period_start", "cluster", "distance"} <= set(scored.column_names)
    assert written["rows"] == scored.num_rows <= 60 * 2

    # drift of the segment shares: a window of storage heaters only has drifted
    con = duckdb.connect(str(meters_warehouse), read_only=True)
    heaters = con.sql(
        "SELECT meter_id, ts, kwh, customer_type FROM meters.readings "
        "WHERE customer_type = 'storage_heating'"
    ).to_arrow_table()
    con.close()
    current = tmp_path / "heaters.parquet"
    pq.write_table(heaters, current)
    result = detect_drift(current, champion.uri)
    assert result.clusters is not None and "proportions" in result.clusters.fired
