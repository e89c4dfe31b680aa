"""The voltpipe CLI: help, compile, components, and one clear message per bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kfp import components

from tests.conftest import write_config


def voltpipe(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "voltpipe", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


def test_help_shows_commands_and_examples() -> None:
    out = voltpipe("--help").stdout
    for word in ("run", "compile", "components", "Examples"):
        assert word in out
    run_help = voltpipe("run", "--help").stdout
    for option in ("--config", "--target", "--set", "--summary-json", "--no-cache", "--debug"):
        assert option in run_help
    assert "voltpipe run training --config" in run_help


def test_compile_writes_yaml_loadable_by_kfp(tmp_path: Path) -> None:
    out = tmp_path / "training.yaml"
    result = voltpipe(
        "compile",
        "training",
        "-o",
        str(out),
        "--set",
        "image=registry.example/voltpipe:1.2",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    component = components.load_component_from_file(str(out))
    assert component.name == "wind-power-training"
    assert "registry.example/voltpipe:1.2" in out.read_text()


def test_compile_unknown_pipeline(tmp_path: Path) -> None:
    result = voltpipe("compile", "nonsense", "-o", str(tmp_path / "x.yaml"), cwd=tmp_path)
    assert result.returncode == 1
    assert "unknown pipeline 'nonsense'" in result.stderr and "Traceback" not in result.stderr


def test_components_list_and_export(tmp_path: Path) -> None:
    listing = voltpipe("components", "list").stdout
    for name in ("extract", "validate", "train", "evaluate", "register"):
        assert name in listing
    result = voltpipe("components", "export", str(tmp_path), "--image", "registry.example/vp:2")
    assert result.returncode == 0, result.stderr
    for name in ("extract", "validate", "train", "evaluate", "register"):
        comp = components.load_component_from_file(str(tmp_path / f"{name}.yaml"))
        assert comp.component_spec.implementation.container.image == "registry.example/vp:2"


BASE = """
name: grid
warehouse: duckdb:///{wh}
query: SELECT load_pu, oil_temp_c, region, outcome FROM assets.transformers
label: outcome
task: classification
workdir: work
"""


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            {"query": "SELECT * FROM assets.transformerz"},
            "table assets.transformerz does not exist",
        ),
        ({"query": "SELECT outcome, FROM WHERE"}, "SQL syntax error"),
        (
            {"query": "SELECT * FROM assets.transformers WHERE age_years > @min_age"},
            "@min_age has no value",
        ),
        ({"label": "failed_flag"}, "label column 'failed_flag' is not returned by the query"),
        ({"task": "segmentation"}, "unknown task 'segmentation'"),
        ({"lable": "outcome"}, "lable: unknown key"),
    ],
)
def test_bad_input_fails_fast_with_one_message(
    tmp_path: Path, equipment_warehouse: Path, edit: dict, message: str
) -> None:
    body = BASE.format(wh=equipment_warehouse)
    for key, value in edit.items():
        lines = (
            [ln for ln in body.splitlines() if not ln.startswith(f"{key}:")]
            if key != "lable"
            else body.splitlines()
        )
        body = "\n".join(lines) + f"\n{key}: {value}\n"
    config = write_config(tmp_path, body)
    summary = tmp_path / "summary.json"
    result = voltpipe("run", "training", "--config", str(config), "--summary-json", str(summary))
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("training.backend=vertex", "training.backend"),
        ("tuning={enabled: true, backend: vertex, space: {dropout: [0.0, 0.1]}}", "tuning.backend"),
    ],
)
def test_vertex_backends_are_refused_on_a_local_run(
    tmp_path: Path, equipment_warehouse: Path, setting: str, key: str
) -> None:
    config = write_config(tmp_path, BASE.format(wh=equipment_warehouse))
    result = voltpipe("run", "training", "--config", str(config), "--set", setting)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{key} 'vertex' runs a Vertex AI job" in result.stderr
    assert "--target vertex" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("query", "label", "message"),
    [
        (
            "SELECT * FROM assets.transformers WHERE age_years > 1000",
            "outcome",
            "the query returned no rows",
        ),
        (
            "SELECT load_pu, region, null_label FROM assets.constant",
            "null_label",
            "label column 'null_label' is all null",
        ),
        ("SELECT load_pu, region, one_class FROM assets.constant", "one_class", "single class"),
    ],
)
def test_bad_data_fails_in_its_step_with_one_message(
    tmp_path: Path, equipment_warehouse: Path, query: str, label: str, message: str
) -> None:
    config = write_config(
        tmp_path,
        BASE.format(wh=equipment_warehouse)
        .replace(
            "query: SELECT load_pu, oil_temp_c, region, outcome FROM assets.transformers",
            f"query: {query}",
        )
        .replace("label: outcome", f"label: {label}"),
    )
    summary = tmp_path / "summary.json"
    result = voltpipe("run", "training", "--config", str(config), "--summary-json", str(summary))
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    failed = json.loads(summary.read_text())
    assert failed["status"] == "failed" and message in failed["error"]
    # --debug shows the traceback for the same failure.
    debug = voltpipe("run", "training", "--config", str(config), "--debug", "--no-cache")
    assert "Traceback" in debug.stderr + debug.stdout


@pytest.mark.slow
def test_demo_run_summary_json_contract(tmp_path: Path, wind_config: Path) -> None:
    summary = tmp_path / "run.json"
    result = voltpipe(
        "run", "training", "--config", str(wind_config), "--summary-json", str(summary)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(summary.read_text())
    for key in ("pipeline", "status", "run_id", "metrics", "model", "champion", "workdir"):
        assert key in data
    assert data["status"] == "succeeded" and set(data["metrics"]["test"]) == {"rmse", "mae", "r2"}
    training = data["training"]
    assert training["stopped_by"] in ("early_stopping", "epoch_cap", "time_budget")
    assert 1 <= training["best_epoch"] <= training["epochs_run"]
    assert isinstance(training["warnings"], list) and "stopped by" in result.stdout
    assert Path(data["model"]["uri"], "model.keras").exists()
    assert "test rmse" in result.stdout and data["model"]["uri"] in result.stdout.replace("\n", "")


def test_failed_run_posts_an_alert_and_a_structured_log_line(
    tmp_path: Path, equipment_warehouse: Path
) -> None:
    import http.server
    import threading

    received: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        body = BASE.format(wh=equipment_warehouse).replace("assets.transformers", "assets.gone")
        body += f"monitoring: {{alerts: {{webhook_url: 'http://127.0.0.1:{server.server_port}/hook'}}}}\n"
        result = voltpipe("run", "training", "--config", str(write_config(tmp_path, body)))
    finally:
        server.shutdown()
    assert result.returncode == 1
    line = next(json.loads(x) for x in result.stdout.splitlines() if '"voltpipe_event"' in x)
    assert line["voltpipe_event"] == "run_failed" and "assets.gone" in line["error"]
    assert received and "assets.gone" in json.dumps(received[0])
