"""Sizing a run before it starts: query estimates, step memory, --dry-run, a killed step's signal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from voltpipe.config import load_config
from voltpipe.data.bigquery_backend import BigQueryWarehouse, read_stream_count
from voltpipe.data.duckdb_backend import DuckDBWarehouse
from voltpipe.data.warehouse import row_width
from voltpipe.runners.local import _recording_exit_codes, signal_name
from voltpipe.runners.sizing import STEP_MEMORY, estimate_steps, size_run
from voltpipe.testing.bigquery_server import BigQueryTestServer

ROWS = 12_345


@pytest.fixture
def fleet_db(tmp_path: Path) -> Path:
    db = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(db))
    con.execute(
        "CREATE SCHEMA fleet; CREATE TABLE fleet.scada AS SELECT i AS id, "
        "'WTG' || (i % 50) AS turbine_id, i * 0.5::DOUBLE AS wind_speed, i % 7 = 0 AS icing "
        f"FROM range({ROWS}) t(i)"
    )
    con.close()
    return db


def test_duckdb_estimate_counts_the_rows_times_their_width(fleet_db: Path) -> None:
    wh = DuckDBWarehouse(fleet_db)
    est = wh.estimate(
        "SELECT * FROM fleet.scada WHERE id >= @low", {"low": {"type": "INT64", "value": 345}}
    )
    assert est.rows == ROWS - 345
    # BIGINT 8 + VARCHAR 20 + DOUBLE 8 + BOOLEAN 1
    assert est.row_bytes == 37 == row_width(wh.result_schema("SELECT * FROM fleet.scada", {}))
    assert est.bytes == est.rows * 37
    assert est.method.startswith("duckdb")


@pytest.mark.integration
def test_bigquery_estimate_is_a_dry_run(fleet_db: Path) -> None:
    with BigQueryTestServer(fleet_db, project="p") as srv:
        wh = BigQueryWarehouse("p", api_endpoint=srv.endpoint)
        est = wh.estimate("SELECT id, wind_speed FROM fleet.scada", {})
        jobs = srv.job_requests()
        assert len(jobs) == 1 and jobs[0]["configuration"]["dryRun"] is True
        assert est.bytes > 0 and est.method == "bigquery: dry run"
        assert est.rows == est.bytes // est.row_bytes


def test_read_streams_and_shards_scale_with_the_table() -> None:
    mb = 2**20
    assert read_stream_count(0, 0.8) == 4  # the fewest asked (BigQuery may give fewer)
    assert read_stream_count(10 * mb, 0.8) == 4
    assert read_stream_count(1000 * mb, 0.8) == 13  # 800 MB of train at 64 MB a stream
    assert read_stream_count(1000 * mb, 0.1) == 4
    assert read_stream_count(3000 * mb, 0.1) == 5
    assert read_stream_count(10**13, 0.8) == 64  # capped


def _config(tmp_path: Path, db: Path, *extra: str):
    return load_config(
        None,
        [
            f"warehouse=duckdb:///{db}",
            "query_file=null",
            "query=SELECT * FROM fleet.scada",
            "query_parameters={}",
            "split.method=random",
            "label=wind_speed",
            f"workdir={tmp_path / 'wd'}",
            *extra,
        ],
        cwd=tmp_path,
    )


def test_step_memory_follows_the_rows_each_step_holds(tmp_path: Path, fleet_db: Path) -> None:
    cfg = _config(tmp_path, fleet_db)
    steps = {s.step: s for s in estimate_steps("training", cfg, 10_000_000, target="local")}
    per_row, fixed = STEP_MEMORY["train"]
    assert steps["train"].rows == 9_000_000  # train + valid of the default 0.8/0.1/0.1 split
    assert steps["train"].peak_bytes == int(per_row * 9_000_000 + fixed)
    assert steps["evaluate"].rows == 1_000_000
    assert steps["register"].rows == cfg.monitoring.reference_sample_rows  # not the split
    (predict,) = estimate_steps("prediction", cfg, 10_000_000)
    assert predict.peak_bytes == int(STEP_MEMORY["batch_predict"][0] * 10_000_000 + 425e6)


def test_a_step_over_its_vertex_memory_is_named(tmp_path: Path, fleet_db: Path) -> None:
    cfg = _config(tmp_path, fleet_db, "resources.train.memory=2G")
    steps = {s.step: s for s in estimate_steps("training", cfg, 10_000_000, target="vertex")}
    assert steps["train"].too_big and steps["train"].limit_bytes == 2 * 10**9
    assert steps["train"].limit_source == "resources.train.memory"
    assert steps["evaluate"].limit_source == "Vertex's default machine"
    assert not steps["evaluate"].too_big


def test_size_run_estimates_without_running(tmp_path: Path, fleet_db: Path) -> None:
    cfg = _config(tmp_path, fleet_db, "resources.train.memory=1M")
    plan = size_run("training", cfg, target="vertex")
    assert plan["status"] == "dry-run"
    assert plan["queries"]["training"]["rows"] == ROWS
    assert any(
        "step 'train' may need" in w and "resources.train.memory" in w for w in plan["warnings"]
    )
    assert not (tmp_path / "wd" / "pipeline-root").exists()


def test_cli_dry_run_prints_the_plan_and_exits_0(tmp_path: Path, fleet_db: Path) -> None:
    summary = tmp_path / "plan.json"
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(
        [
            sys.executable, "-m", "voltpipe", "run", "training", "--dry-run",
            "--set", f"warehouse=duckdb:///{fleet_db}",
            "--set", "query_file=null",
            "--set", "query=SELECT * FROM fleet.scada",
            "--set", "query_parameters={}",
            "--set", "split.method=random",
            "--set", "label=wind_speed",
            "--set", f"workdir={tmp_path / 'wd'}",
            "--summary-json", str(summary),
        ],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{ROWS:,}" in result.stdout
    assert "nothing was run" in result.stdout and "train" in result.stdout
    plan = json.loads(summary.read_text())
    assert plan["queries"]["training"]["rows"] == ROWS
    assert {s["step"] for s in plan["steps"]} >= {"extract", "train", "register"}
    assert not (tmp_path / "wd" / "pipeline-root").exists()


def test_signal_names_from_exit_codes() -> None:
    assert signal_name(-9) == "SIGKILL"
    assert signal_name(137) == "SIGKILL"  # a shell reporting its child's SIGKILL
    assert signal_name(-15) == "SIGTERM"
    assert signal_name(1) is None and signal_name(0) is None


@pytest.mark.slow
def test_a_step_killed_by_a_signal_is_seen_by_its_exit_code(tmp_path: Path) -> None:
    from kfp import dsl, local

    # No return annotations: under `from __future__ import annotations` KFP reads "None".
    @dsl.component(base_image="python:3.11")
    def killed():  # type: ignore[no-untyped-def]
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)

    @dsl.pipeline(name="killed")
    def pipeline():  # type: ignore[no-untyped-def]
        killed()

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        raise_on_error=True,
    )
    with _recording_exit_codes() as codes, pytest.raises(RuntimeError):
        pipeline()
    assert codes and signal_name(codes[-1]) == "SIGKILL"


def test_a_killed_step_is_named_with_its_signal_and_the_data_size(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from voltpipe.runners.local import _killed_step_message

    root = tmp_path / "pipeline-root"
    (root / "run-1" / "extract" / "train").mkdir(parents=True)
    pq.write_table(pa.table({"x": list(range(1234))}), root / "run-1/extract/train/p.parquet")
    message = _killed_step_message("train", root, set(), "SIGKILL")
    assert message.startswith("step 'train' was killed by SIGKILL (out of memory?)")
    assert "1,234 rows" in message and "resources.train.memory" in message
    plain = _killed_step_message("train", root, set(), None)
    assert "killed from outside" in plain and "1,234 rows" in plain
