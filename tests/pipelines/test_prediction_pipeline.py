"""The prediction pipeline under kfp.local: score the drift period with the champion."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pytest

from voltpipe.config import load_config
from voltpipe.errors import PipelineError
from voltpipe.runners.local import run_local

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SCORING = (
    "prediction.query=SELECT ts, turbine_id, status, wind_speed_ms, air_density_kgm3 "
    "FROM scada.turbine WHERE ts >= @start"
)
START = "prediction.query_parameters={start: {type: TIMESTAMP, value: '2024-11-01T00:00:00'}}"


def test_prediction_pipeline_scores_the_drift_period(
    tmp_path: Path, wind_config: Path, wind_warehouse: Path
) -> None:
    own = tmp_path / "own.duckdb"  # the pipeline writes: keep the session's warehouse untouched
    shutil.copy(wind_warehouse, own)
    overrides = [
        f"warehouse=duckdb:///{own}",
        SCORING,
        START,
        "prediction.destination_table=predictions.wind_power",
        "prediction.write_mode=replace",
    ]
    cfg = load_config(wind_config, overrides)
    with pytest.raises(PipelineError, match="no champion .*run training first"):
        run_local("prediction", cfg, cache=False)

    trained = run_local("training", cfg, cache=False)
    summary = run_local("prediction", cfg)
    p = summary["predictions"]
    assert summary["pipeline"] == "prediction" and summary["status"] == "succeeded"
    assert p["destination"] == "predictions.wind_power"
    assert p["model"] == trained["model"] and p["seconds"] > 0
    con = duckdb.connect(str(own), read_only=True)
    try:
        expected = con.execute(
            "SELECT count(*) FROM scada.turbine WHERE ts >= TIMESTAMP '2024-11-01'"
        ).fetchone()[0]
        cols = [
            d[0] for d in con.execute("SELECT * FROM predictions.wind_power LIMIT 0").description
        ]
        versions = con.execute(
            "SELECT DISTINCT model_name, model_version FROM predictions.wind_power"
        ).fetchall()
        lo = con.execute("SELECT min(ts) FROM predictions.wind_power").fetchone()[0]
    finally:
        con.close()
    assert p["rows"] == expected > 0
    assert cols == [
        "ts",
        "turbine_id",
        "status",
        "prediction",
        "model_name",
        "model_version",
        "predicted_at",
    ]
    assert versions == [("wind-test", "1")] and str(lo) >= "2024-11-01"

    # A scoring query without a feature fails naming it, and leaves the table as it was.
    bad = load_config(wind_config, [*overrides, SCORING.replace("wind_speed_ms, ", "")])
    with pytest.raises(PipelineError, match="lacks the model's feature column.*wind_speed_ms"):
        run_local("prediction", bad)


@pytest.mark.parametrize("destination", ["scada.turbine", "SCADA.TURBINE", "my-proj.scada.turbine"])
def test_replace_on_the_scored_table_is_refused_before_running(
    tmp_path: Path, destination: str
) -> None:
    from voltpipe.errors import ConfigError
    from voltpipe.pipelines import build_pipeline

    cfg = load_config(
        None,
        [
            SCORING,
            START,
            f"prediction.destination_table={destination}",
            "prediction.write_mode=replace",
        ],
        cwd=tmp_path,
    )
    with pytest.raises(ConfigError, match=r"also read by prediction.query: write_mode: replace"):
        build_pipeline("prediction", cfg)
    appending = load_config(
        None,
        [
            SCORING,
            START,
            f"prediction.destination_table={destination}",
            "prediction.write_mode=append",
        ],
        cwd=tmp_path,
    )
    build_pipeline("prediction", appending)  # append is allowed


def test_forecasting_champion_writes_each_series_next_steps(tmp_path: Path) -> None:
    """Train a forecaster with the training pipeline (validate checks the window, evaluate takes
    the test forecasts' past from the valid split), then batch-forecast with the champion."""
    from tests.conftest import write_config
    from tests.modelling.synthetic import demand_series

    own = tmp_path / "load.duckdb"
    con = duckdb.connect(str(own))
    con.register("rows", demand_series(days=21, seed=2))
    con.execute("CREATE SCHEMA energy; CREATE TABLE energy.load AS SELECT * FROM rows")
    con.close()
    path = write_config(
        tmp_path,
        f"""
        name: load-test
        warehouse: duckdb:///{own}
        query: SELECT ts, site, load_mw, temp_c FROM energy.load
        label: load_mw
        task: forecasting
        time_column: ts
        forecasting: {{window: 24, horizon: 6, group_column: site, covariates: [temp_c], season: 24}}
        split: {{method: time, column: ts, fractions: [0.7, 0.15, 0.15]}}
        workdir: work
        prediction:
          query: SELECT ts, site, load_mw, temp_c FROM energy.load WHERE ts >= @start
          # five days: the statistical candidate reads up to four daily cycles of history
          query_parameters: {{start: {{type: TIMESTAMP, value: "2024-01-17T00:00:00"}}}}
          destination_table: forecasts.load
          write_mode: replace
        """,
    )
    # A window longer than the valid split fails at validate, before any training.
    with pytest.raises(PipelineError, match=r"step 'validate' failed.*forecasting.window"):
        run_local("training", load_config(path, ["forecasting.window=80"]), cache=False)

    cfg = load_config(path)
    trained = run_local("training", cfg, cache=False)
    test_rows = trained["metrics"]["test"]
    assert test_rows["mae"] > 0 and "mae_seasonal" in test_rows
    summary = run_local("prediction", cfg)
    p = summary["predictions"]
    assert p["rows"] == 2 * 6 and p["model"] == trained["model"]
    con = duckdb.connect(str(own), read_only=True)
    try:
        out = con.execute(
            "SELECT site, ts, step, prediction, model_version FROM forecasts.load "
            "ORDER BY site, step"
        ).fetchall()
        last = con.execute("SELECT max(ts) FROM energy.load").fetchone()[0]
    finally:
        con.close()
    assert [r[0] for r in out] == ["north"] * 6 + ["south"] * 6
    assert [r[2] for r in out] == list(range(1, 7)) * 2
    assert out[0][1] == last + dt.timedelta(hours=1) and out[5][1] == last + dt.timedelta(hours=6)
    assert all(r[4] == trained["model"]["version"] for r in out)
