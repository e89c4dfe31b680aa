"""The CLI's cloud commands end to end through the real clients and the local wire servers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from voltpipe.cli import app
from voltpipe.testing.kfp_server import KfpTestServer, RegistryTestServer
from voltpipe.testing.vertex_server import VertexTestServer

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture
def vertex(monkeypatch: pytest.MonkeyPatch) -> Iterator[VertexTestServer]:
    with VertexTestServer() as srv:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", srv.endpoint)  # PipelineJob checks the bucket
        yield srv


@pytest.fixture
def terraform_output(tmp_path: Path) -> Path:
    """What `terraform output -json` prints for terraform/envs/dev (the values voltpipe reads)."""
    outputs = {
        "vertex_project": "my-proj",
        "vertex_location": "europe-west1",
        "pipeline_root": "gs://my-proj-pipeline-root/runs",
        "service_account": "voltpipe-runner@my-proj.iam.gserviceaccount.com",
        "bigquery_project": "my-proj",
        "bigquery_location": "EU",
        "image_repository": "europe-west1-docker.pkg.dev/my-proj/voltpipe",
        "template_repository": "https://europe-west1-kfp.pkg.dev/my-proj/voltpipe-templates",
    }
    path = tmp_path / "tf.json"
    path.write_text(
        json.dumps(
            {k: {"sensitive": False, "type": "string", "value": v} for k, v in outputs.items()}
        )
    )
    return path


def _invoke(*args: str) -> object:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result


def test_run_on_vertex_creates_the_pipeline_job(
    vertex: VertexTestServer, terraform_output: Path, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.json"
    result = _invoke(
        "run",
        "training",
        "--target",
        "vertex",
        "--terraform-output",
        str(terraform_output),
        "--set",
        f"vertex.api_endpoint={vertex.endpoint}",
        "--set",
        f"workdir={tmp_path / 'wd'}",
        "--summary-json",
        str(summary),
        "--no-cache",
    )
    assert result.exit_code == 0, result.output
    [create] = vertex.find("POST", r"/pipelineJobs$")
    body = create.json
    assert "/projects/my-proj/locations/europe-west1/" in create.path
    assert body["serviceAccount"] == "voltpipe-runner@my-proj.iam.gserviceaccount.com"
    assert body["runtimeConfig"]["gcsOutputDirectory"] == "gs://my-proj-pipeline-root/runs"
    params = body["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    assert params["warehouse"]["defaultValue"] == "bigquery://my-proj"
    # Nothing points at the laptop: Vertex's registry, and no local MLflow file.
    assert params["registry_uri"]["defaultValue"].startswith("vertex://my-proj/europe-west1")
    assert params["deploy_target"]["defaultValue"] == "vertex"
    assert params["tracking_uri"].get("defaultValue", "") == ""
    images = {
        e["container"]["image"]
        for e in body["pipelineSpec"]["deploymentSpec"]["executors"].values()
    }
    assert images == {"europe-west1-docker.pkg.dev/my-proj/voltpipe/voltpipe:0.1.0"}
    data = json.loads(summary.read_text())
    assert data["target"] == "vertex" and data["status"] == "submitted"


def test_cloud_target_refuses_the_local_warehouse(vertex: VertexTestServer, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "run",
            "training",
            "--target",
            "vertex",
            "--set",
            "vertex.project=p",
            "--set",
            "vertex.pipeline_root=gs://b/r",
            "--set",
            f"workdir={tmp_path}",
        ],
    )
    assert result.exit_code == 1
    assert "cannot read your laptop's file duckdb:///" in result.output
    assert not vertex.requests


def test_run_on_kubeflow_creates_experiment_and_run(tmp_path: Path) -> None:
    with KfpTestServer() as kfp:
        result = _invoke(
            "run",
            "training",
            "--target",
            "kfp",
            "--set",
            "warehouse=bigquery://my-proj",
            "--set",
            f"kfp.host={kfp.endpoint}",
            "--set",
            "kfp.experiment=wind",
            "--set",
            f"workdir={tmp_path}",
        )
        assert result.exit_code == 0, result.output
        [exp] = kfp.find("POST", r"/apis/v2beta1/experiments$")
        assert exp.json["display_name"] == "wind"
        [run] = kfp.find("POST", r"/apis/v2beta1/runs$")
        assert run.json["pipeline_spec"]["pipelineInfo"]["name"] == "wind-power-training"


def test_schedule_lifecycle_on_vertex(
    vertex: VertexTestServer, terraform_output: Path, tmp_path: Path
) -> None:
    common = [
        "--terraform-output",
        str(terraform_output),
        "--set",
        f"vertex.api_endpoint={vertex.endpoint}",
        "--set",
        f"workdir={tmp_path}",
    ]
    created = _invoke(
        "schedule", "training", "--cron", "0 3 * * 1", "--name", "weekly-retrain", *common
    )
    assert created.exit_code == 0, created.output
    [create] = vertex.find("POST", r"/schedules$")
    assert create.json["cron"] == "0 3 * * 1"
    assert create.json["createPipelineJobRequest"]["pipelineJob"]["pipelineSpec"]["pipelineInfo"][
        "name"
    ] == ("wind-power-training")
    listed = _invoke("schedule", "list", "--json", *common)
    schedule_id = json.loads(listed.output)[0]["id"]
    for action, state in (("pause", "paused"), ("resume", "active")):
        out = _invoke("schedule", action, schedule_id, *common)
        assert out.exit_code == 0 and state in out.output
    assert _invoke("schedule", "delete", schedule_id, *common).exit_code == 0
    assert vertex.find("DELETE", r"/schedules/")


def test_publish_then_run_by_tag_resolves_the_digest(
    vertex: VertexTestServer, terraform_output: Path, tmp_path: Path
) -> None:
    with RegistryTestServer() as registry:
        host = registry.host("my-proj", "voltpipe-templates")
        common = [
            "--terraform-output",
            str(terraform_output),
            "--set",
            f"vertex.template_repository={host}",
            "--set",
            f"vertex.api_endpoint={vertex.endpoint}",
            "--set",
            f"workdir={tmp_path}",
        ]
        published = _invoke("publish", "training", "--tag", "v1", *common)
        assert published.exit_code == 0, published.output
        assert "sha256:" in published.output
        ran = _invoke("run", "training", "--target", "vertex", "--template-tag", "v1", *common)
        assert ran.exit_code == 0, ran.output
        assert registry.find("GET", r"/tags/v1")
        [create] = vertex.find("POST", r"/pipelineJobs$")
        assert create.json["pipelineSpec"]["pipelineInfo"]["name"] == "wind-power-training"


def test_bad_terraform_output_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "tf.json"
    bad.write_text("not json")
    result = runner.invoke(
        app, ["compile", "training", "-o", str(tmp_path / "x.yaml"), "--terraform-output", str(bad)]
    )
    assert result.exit_code == 1 and "--terraform-output" in result.output
