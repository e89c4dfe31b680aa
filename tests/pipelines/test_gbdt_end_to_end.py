"""A GBDT model everywhere a Keras model goes: train -> gate -> register -> deploy -> serve over
HTTP -> batch predict -> drift, and a damaged GBDT version refused while the champion serves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.serving.test_serving_server import serving_container
from voltpipe.config import load_config
from voltpipe.errors import DataError
from voltpipe.model_dir import GBDT_FILE, read_meta
from voltpipe.registry import open_registry
from voltpipe.runners.local import run_local

pytestmark = [pytest.mark.slow, pytest.mark.integration]

FEATURES = "turbine_id, wind_speed_ms, air_density_kgm3"


def _rows(warehouse: Path, where: str) -> object:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.sql(
            f"SELECT ts, {FEATURES}, power_kw FROM scada.turbine WHERE status = 'ok' AND {where} "
            "ORDER BY ts, turbine_id"
        ).to_arrow_table()
    finally:
        con.close()


def test_gbdt_from_training_to_serving_batch_and_drift(
    tmp_path: Path, wind_config: Path, wind_warehouse: Path
) -> None:
    from voltpipe.modelling.predict import load_model

    cfg = load_config(wind_config, ["model.family=gbdt", "model.gbdt.max_trees=300"])
    summary = run_local("training", cfg, cache=False)
    # train: a LightGBM folder, no Keras archive
    train_dir = cfg.workdir / "pipeline-root" / summary["run_id"] / "train" / "model"
    assert (train_dir / GBDT_FILE).exists() and not (train_dir / "model.keras").exists()
    assert read_meta(train_dir)["family"] == "gbdt"
    # evaluate + gate: scored like any model; the first one becomes champion and is deployed
    assert summary["metrics"]["test"]["r2"] > 0.8
    assert summary["champion"]["promoted"] is True
    champion = open_registry(cfg.registry_uri).get("wind-test")
    assert champion is not None and champion.version == summary["model"]["version"]
    card = (Path(champion.uri) / "model_card.md").read_text()
    assert "**Model family:** gbdt" in card
    import mlflow

    run = mlflow.MlflowClient(tracking_uri=cfg.tracking_uri).get_run(summary["mlflow_run_id"])
    assert run.data.params["model.family"] == "gbdt"
    assert run.data.params["model.gbdt.max_trees"] == "300"

    # serve over HTTP: the container entrypoint, predictions equal the model's own
    test = _rows(wind_warehouse, "ts >= TIMESTAMP '2024-11-01'").slice(0, 20)
    expected = load_model(champion.uri).predict_raw(test)
    instances = test.select(["turbine_id", "wind_speed_ms", "air_density_kgm3"]).to_pylist()
    with serving_container(Path(champion.uri), "wind") as url:
        response = httpx.post(url + "/v1/models/wind:predict", json={"instances": instances})
        info = httpx.get(url + "/").json()
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["predictions"], expected, rtol=1e-5, atol=1e-3)
    assert info["task"] == "regression"

    # batch prediction through the registry alias
    from voltpipe.serving.batch import predict_batch

    out_wh = tmp_path / "scored.duckdb"
    shutil.copy(wind_warehouse, out_wh)
    written = predict_batch(
        f"duckdb:///{out_wh}",
        f"SELECT ts, {FEATURES} FROM scada.turbine WHERE status = 'ok' AND ts >= @start",
        {"start": {"type": "TIMESTAMP", "value": "2024-11-01T00:00:00"}},
        champion.uri,
        "predictions.wind",
        mode="replace",
    )
    con = duckdb.connect(str(out_wh), read_only=True)
    scored = con.sql("SELECT * FROM predictions.wind ORDER BY ts, turbine_id").to_arrow_table()
    con.close()
    assert written["rows"] == scored.num_rows > 0
    direct = load_model(champion.uri).predict_raw(_rows(wind_warehouse, "ts >= '2024-11-01'"))
    np.testing.assert_allclose(scored.column("prediction").to_numpy(), direct, rtol=1e-5)

    # drift: features and the champion's predictions, reference vs the drifted November
    from voltpipe.monitoring.monitor import detect_drift

    current = tmp_path / "current.parquet"
    pq.write_table(_rows(wind_warehouse, "ts >= TIMESTAMP '2024-11-01'"), current)
    result = detect_drift(current, champion.uri)
    assert result.drift.prediction is not None and np.isfinite(result.drift.prediction.psi)
    assert "wind_speed_ms" in result.drift.features
    assert result.decay is not None  # the window carries the label: the champion's error too
    assert result.drift_detected  # the demo's November climate change


def test_a_damaged_gbdt_version_is_refused_and_the_champion_keeps_serving(
    tmp_path: Path, wind_config: Path
) -> None:
    from voltpipe.deploy.local import deploy_local, registry_source
    from voltpipe.serving.predictor import Predictor
    from voltpipe.serving.server import ModelReloader, create_app

    cfg = load_config(wind_config, ["model.family=gbdt", "model.gbdt.max_trees=100"])
    summary = run_local("training", cfg, cache=False)
    registry = open_registry(cfg.registry_uri)
    name, good = "wind-test", summary["model"]["version"]
    broken_src = tmp_path / "broken"
    shutil.copytree(registry.get(name, good).uri, broken_src)
    data = (broken_src / GBDT_FILE).read_bytes()
    (broken_src / GBDT_FILE).write_bytes(data[: len(data) // 3])  # truncated on copy
    meta = json.loads((broken_src / "voltpipe_model.json").read_text())
    broken = registry.register(name, broken_src, {"task": meta["task"]}).version

    with pytest.raises(DataError, match=rf"version {broken} failed its smoke test.*keeps serving"):
        deploy_local(str(cfg.registry_uri), name, broken)
    assert registry.get(name).version == good

    first = Predictor.from_dir(registry.get(name, good).uri, warmup_batch_sizes=(1,))
    assert first.engine == "lightgbm"
    app = create_app(first)
    reloader = ModelReloader(
        app, registry_source(str(cfg.registry_uri), name), registry.get(name).uri
    )
    registry.set_alias(name, "champion", broken)
    assert reloader.check() is False and GBDT_FILE in str(reloader.last_error)
    assert app.predictor is first
