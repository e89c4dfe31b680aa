"""The monitoring pipeline under kfp.local: drift found -> retrain; no drift -> champion stays."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import FAST_TRAINING, write_config
from voltpipe.config import load_config
from voltpipe.data.io import read_table
from voltpipe.errors import PipelineError
from voltpipe.registry import open_registry
from voltpipe.runners.local import run_local

pytestmark = [pytest.mark.slow, pytest.mark.integration]

FEATURES = "ts, turbine_id, wind_speed_ms, wind_direction_deg, air_density_kgm3, power_kw"


@pytest.fixture
def monitored(tmp_path: Path, wind_warehouse: Path) -> Path:
    """A config whose current window is the small warehouse's drift period (from 2024-11-01)."""
    return write_config(
        tmp_path,
        f"""
        name: wind-watch
        warehouse: duckdb:///{wind_warehouse}
        query: SELECT {FEATURES} FROM scada.turbine WHERE ts < @cutoff AND status = 'ok'
        query_parameters: {{cutoff: {{type: TIMESTAMP, value: "2024-11-01T00:00:00"}}}}
        label: power_kw
        task: regression
        exclude: [ts]
        workdir: work
        split: {{method: hash, column: ts, seed: 1}}
        monitoring:
          current_query: SELECT {FEATURES} FROM scada.turbine WHERE ts >= @start AND status = 'ok'
          current_query_parameters: {{start: {{type: TIMESTAMP, value: "2024-11-01T00:00:00"}}}}
          retrain_query_parameters: {{cutoff: {{type: TIMESTAMP, value: "2024-11-10T00:00:00"}}}}
        """,
        FAST_TRAINING,
    )


def test_drift_is_found_and_the_model_retrained(monitored: Path) -> None:
    cfg = load_config(monitored)
    first = run_local("training", cfg, cache=True)
    champion = open_registry(cfg.registry_uri).get("wind-watch")
    reference = Path(champion.uri, "reference_sample.parquet")
    assert (
        reference.exists()
        and read_table(reference).num_rows
        == json.loads(Path(first["model"]["uri"], "metadata.json").read_text())["data_statistics"][
            "train"
        ]["rows"]
    )

    summary = run_local("monitoring", cfg, cache=True)
    assert summary["drift_detected"] is True
    assert "wind_direction_deg" in summary["drifted_features"]  # the veered wind regime
    assert summary["retrained"] is True
    assert summary["model"]["version"] == "2"
    new = open_registry(cfg.registry_uri).get("wind-watch", "2")
    # The retrain used the retrain parameters (data up to 2024-11-10) and was gated against v1.
    assert new.metadata["query_parameters"]["cutoff"]["value"] == "2024-11-10T00:00:00"
    assert new.metadata["decision"]["champion"] is not None
    report = next(Path(cfg.workdir, "pipeline-root", summary["run_id"]).glob("drift/report"))
    html = report.read_text()
    assert "wind_speed_ms" in html and "<svg" in html


def test_no_drift_on_the_training_period_keeps_the_champion(monitored: Path) -> None:
    cfg = load_config(
        monitored,
        [
            "monitoring.current_query_parameters={start: {type: TIMESTAMP, value: '2024-10-20T00:00:00'}}",
            "monitoring.current_query=SELECT " + FEATURES + " FROM scada.turbine "
            "WHERE ts >= @start AND ts < TIMESTAMP '2024-11-01' AND status = 'ok'",
        ],
    )
    run_local("training", cfg, cache=True)
    summary = run_local("monitoring", cfg, cache=True)
    assert summary["drift_detected"] is False and summary["drifted_features"] == []
    assert summary["retrained"] is False
    assert [v.version for v in open_registry(cfg.registry_uri).versions("wind-watch")] == ["1"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            f"SELECT {FEATURES} FROM scada.turbine WHERE ts >= @start AND ts > TIMESTAMP '2030-01-01'",
            "no rows",
        ),
        ("SELECT ts, turbine_id, power_kw FROM scada.turbine WHERE ts >= @start", "wind_speed_ms"),
    ],
)
def test_bad_current_window_fails_without_touching_the_champion(
    monitored: Path, query: str, message: str
) -> None:
    cfg = load_config(monitored)
    run_local("training", cfg, cache=True)
    bad = load_config(monitored, [f"monitoring.current_query={query}"])
    with pytest.raises(PipelineError, match=message):
        run_local("monitoring", bad, cache=False)
    registry = open_registry(cfg.registry_uri)
    assert registry.get("wind-watch").version == "1" and len(registry.versions("wind-watch")) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_voltpipe_serve_returns_the_in_process_predictions(monitored: Path) -> None:
    cfg = load_config(monitored)
    summary = run_local("training", cfg, cache=True)
    port = _free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voltpipe",
            "serve",
            "--config",
            str(monitored),
            "--model",
            "wind-watch@champion",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        test = read_table(next(Path(cfg.workdir, "pipeline-root").glob("*/extract/test"))).slice(
            0, 20
        )
        rows = test.drop_columns(["power_kw"]).to_pylist()
        for row in rows:
            row["ts"] = str(row["ts"])  # extra fields are ignored
        served = httpx.post(f"{url}/predict", json={"instances": rows}, timeout=30).json()[
            "predictions"
        ]
        from voltpipe.modelling.predict import load_model

        local = load_model(summary["model"]["uri"]).predict_raw(test)
        assert served == pytest.approx(local.tolist(), rel=1e-4, abs=1e-3)
        bad = httpx.post(f"{url}/predict", json={"instances": [{"turbine_id": "WT01"}]}, timeout=10)
        assert bad.status_code == 400 and "is missing feature" in bad.json()["error"]
    finally:
        server.terminate()
        server.wait(timeout=30)
