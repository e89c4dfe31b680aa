"""Vertex AI tuning and training jobs through the real aiplatform SDK against the test server,
the trial entry point, and the distribution strategy choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.modelling.synthetic import tabular_table, write_split
from voltpipe.modelling import vertex_jobs
from voltpipe.modelling.distribute import is_chief, strategy_name
from voltpipe.modelling.trial import gcs_fuse_path, main
from voltpipe.modelling.tuning import search
from voltpipe.testing.vertex_server import VertexTestServer

IMAGE = "europe-west1-docker.pkg.dev/my-proj/voltpipe/voltpipe:1.2.3"
SPACE = {
    "hidden_units": [[8], [16, 8]],
    "learning_rate": {"min": 1e-4, "max": 1e-2, "log": True},
    "batch_size": [256, 512],
    "window": [24, 48],
}


def _trial(trial_id: str, state: str, value: float | None, hidden: str, lr: float) -> dict:
    t = {
        "id": trial_id,
        "state": state,
        "parameters": [
            {"parameterId": "hidden_units", "value": hidden},
            {"parameterId": "learning_rate", "value": lr},
            {"parameterId": "batch_size", "value": 512},
            {"parameterId": "window", "value": 24},
        ],
    }
    if value is not None:
        t["finalMeasurement"] = {
            "stepCount": "5",
            "metrics": [{"metricId": "val_loss", "value": value}],
        }
    return t


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from google.cloud.aiplatform import jobs

    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.01)
    trials = [
        _trial("1", "SUCCEEDED", 0.41, "[16, 8]", 0.003),
        _trial("2", "SUCCEEDED", 0.23, "[8]", 0.0007),
        _trial("3", "INFEASIBLE", None, "[8]", 0.009),
    ]
    with VertexTestServer(trials=trials) as srv:
        yield srv


def _vertex(srv: VertexTestServer) -> dict:
    return {
        "project": "my-proj",
        "location": "europe-west1",
        "api_endpoint": srv.endpoint,
        "staging_bucket": "gs://my-bucket/staging",
        "service_account": "trainer@my-proj.iam.gserviceaccount.com",
    }


pytestmark = pytest.mark.integration


def test_vertex_tuning_job_and_best_trial(server: VertexTestServer) -> None:
    result = search(
        "unused",
        "unused",
        label="load_mw",
        task="forecasting",
        tuning={"backend": "vertex", "max_trials": 12, "parallel_trials": 3, "space": SPACE},
        training_params={
            "epochs": 7,
            "vertex": {
                "machine_type": "n1-standard-8",
                "accelerator_type": "NVIDIA_TESLA_T4",
                "accelerator_count": 1,
            },
        },
        task_params={"time_column": "ts", "forecasting": {"window": 48, "horizon": 6}},
        train_uri="gs://my-bucket/root/extract/train",
        valid_uri="gs://my-bucket/root/extract/valid",
        vertex=_vertex(server),
        image=IMAGE,
        run_name="load-tuning",
    )
    [create] = server.find("POST", r"/hyperparameterTuningJobs$")
    body = create.json
    assert body["displayName"] == "load-tuning"
    assert body["maxTrialCount"] == 12 and body["parallelTrialCount"] == 3
    study = body["studySpec"]
    assert study["metrics"] == [{"metricId": "val_loss", "goal": 2}]  # 2: MINIMIZE
    params = {p["parameterId"]: p for p in study["parameters"]}
    assert params["learning_rate"]["doubleValueSpec"] == {"minValue": 1e-4, "maxValue": 1e-2}
    assert params["learning_rate"]["scaleType"] == 2  # UNIT_LOG_SCALE
    assert params["hidden_units"]["categoricalValueSpec"]["values"] == ["[8]", "[16, 8]"]
    assert params["batch_size"]["discreteValueSpec"]["values"] == [256, 512]
    assert params["window"]["discreteValueSpec"]["values"] == [24, 48]
    [pool] = body["trialJobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"]["machineType"] == "n1-standard-8"
    assert pool["machineSpec"]["acceleratorCount"] == 1 and pool["machineSpec"]["acceleratorType"]
    container = pool["containerSpec"]
    assert container["imageUri"] == IMAGE
    assert container["command"] == ["python", "-m", "voltpipe.modelling.trial"]
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
    assert args["train"] == "gs://my-bucket/root/extract/train" and args["task"] == "forecasting"
    passed = json.loads(args["params"])
    assert passed["training_params"]["epochs"] == 7
    assert passed["task_params"]["forecasting"]["horizon"] == 6
    assert body["trialJobSpec"]["serviceAccount"] == "trainer@my-proj.iam.gserviceaccount.com"
    # the best trial is fetched back from the job and decoded into voltpipe's best params
    assert server.find("GET", r"/hyperparameterTuningJobs/[^/]+$")
    best = result.best_params
    assert best["trial"] == "2" and best["value"] == pytest.approx(0.23)
    assert best["model"] == {"hidden_units": [8]}
    assert best["training"] == {"learning_rate": pytest.approx(0.0007), "batch_size": 512}
    assert best["forecasting"] == {"window": 24}
    assert [t["state"] for t in result.trials] == ["SUCCEEDED", "SUCCEEDED", "INFEASIBLE"]


def test_best_trial_helper_by_resource_name(server: VertexTestServer) -> None:
    aiplatform = vertex_jobs.init_vertex(_vertex(server))
    job = vertex_jobs.submit_tuning_job(
        vertex=_vertex(server),
        image=IMAGE,
        machine={},
        train_uri="gs://b/t",
        valid_uri="gs://b/v",
        label="y",
        task="regression",
        params={},
        tuning={"space": {"learning_rate": {"min": 1e-4, "max": 1e-2}}, "algorithm": "random"},
        display_name="helper",
    )
    assert server.find("POST", r"/hyperparameterTuningJobs$")[0].json["studySpec"]["algorithm"]
    best = vertex_jobs.best_trial_params(job.resource_name)
    assert best["trial"] == "2" and best["job"] == job.resource_name
    assert (
        aiplatform.HyperparameterTuningJob.get(job.resource_name).state.name
        == "JOB_STATE_SUCCEEDED"
    )


def test_custom_training_job_worker_pools(server: VertexTestServer) -> None:
    job = vertex_jobs.run_custom_training_job(
        vertex=_vertex(server),
        image=IMAGE,
        machine={
            "machine_type": "a2-highgpu-1g",
            "accelerator_type": "NVIDIA_TESLA_A100",
            "accelerator_count": 1,
            "replica_count": 3,
        },
        train_uri="gs://b/train",
        valid_uri="gs://b/valid",
        label="power_kw",
        task="regression",
        params={"training_params": {"epochs": 3}},
        base_output_dir="gs://my-bucket/runs/42",
        display_name="wind-train",
    )
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    [create] = server.find("POST", r"/customJobs$")
    spec = create.json["jobSpec"]
    chief, workers = spec["workerPoolSpecs"]
    assert chief["replicaCount"] == "1" and workers["replicaCount"] == "2"
    assert chief["machineSpec"]["machineType"] == "a2-highgpu-1g"
    assert chief["containerSpec"]["imageUri"] == IMAGE
    assert spec["baseOutputDirectory"]["outputUriPrefix"] == "gs://my-bucket/runs/42"
    assert spec["serviceAccount"] == "trainer@my-proj.iam.gserviceaccount.com"


def test_strategy_choice() -> None:
    cluster = json.dumps(
        {
            "cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]},
            "task": {"type": "worker", "index": 1},
        }
    )
    assert strategy_name(cluster, 0) == "multi_worker" and not is_chief(cluster)
    assert strategy_name(None, 2) == "mirrored" and strategy_name(None, 1) == "default"
    assert is_chief(None)
    assert gcs_fuse_path("gs://b/p/x") == "/gcs/b/p/x" and gcs_fuse_path("/tmp/x") == "/tmp/x"


@pytest.mark.slow
def test_trial_entry_point_reports_the_metric(tmp_path: Path) -> None:
    tr = write_split(tmp_path / "tr", tabular_table(600, 2, 1))
    va = write_split(tmp_path / "va", tabular_table(200, 2, 2))
    metric_file = tmp_path / "hypertune" / "output.metrics"
    params = {"exclude": ["label"], "training_params": {"epochs": 2, "steps_per_execution": 1}}
    code = main(
        [
            f"--train={tr}",
            f"--valid={va}",
            "--label=target",
            "--task=regression",
            f"--params={json.dumps(params)}",
            "--learning_rate=0.01",
            "--hidden_units=[8]",
        ],
        env={
            "CLOUD_ML_HP_METRIC_FILE": str(metric_file),
            "CLOUD_ML_TRIAL_ID": "7",
            "AIP_MODEL_DIR": str(tmp_path / "model"),
        },
    )
    assert code == 0
    line = json.loads(metric_file.read_text().splitlines()[-1])
    assert line["trial"] == "7" and float(line["val_loss"]) > 0 and line["global_step"] == "2"
    meta = json.loads((tmp_path / "model" / "voltpipe_model.json").read_text())
    assert meta["model_params"]["hidden_units"] == [8]
    assert meta["training_params"]["learning_rate"] == 0.01
