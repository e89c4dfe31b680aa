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
    params = {
        "exclude": ["label"],
        "model_params": {"family": "mlp"},
        "training_params": {"epochs": 2, "steps_per_execution": 1},
    }
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


# ----- the train step with training.backend: vertex -----------------------------------------------


@pytest.fixture
def running_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A test server that runs custom jobs for real, tmp_path/gcs standing in for Cloud Storage."""
    from google.cloud.aiplatform import jobs

    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.2)
    with VertexTestServer(gcs_root=tmp_path / "gcs") as srv:
        yield srv


def _splits_in_gcs(root: Path) -> tuple[str, str]:
    write_split(root / "gcs/my-bucket/root/extract/train", tabular_table(600, 2, 1))
    write_split(root / "gcs/my-bucket/root/extract/valid", tabular_table(200, 2, 2))
    return "gs://my-bucket/root/extract/train", "gs://my-bucket/root/extract/valid"


@pytest.mark.slow
def test_train_step_runs_the_trainer_as_a_custom_job(
    running_server: VertexTestServer, tmp_path: Path
) -> None:
    from voltpipe.modelling.predict import load_model

    train_uri, valid_uri = _splits_in_gcs(tmp_path)
    model_uri = "gs://my-bucket/root/train-42/model"
    model_path = tmp_path / "gcs/my-bucket/root/train-42/model"
    best = {"model": {"hidden_units": [8]}, "training": {"learning_rate": 0.01}, "trial": 3}
    result = vertex_jobs.train_on_vertex(
        vertex={**_vertex(running_server), "labels": {"team": "wind"}},
        image=IMAGE,
        train_uri=train_uri,
        valid_uri=valid_uri,
        model_uri=model_uri,
        model_path=str(model_path),
        label="target",
        task="regression",
        exclude=["label"],
        model_params={"family": "mlp"},
        training_params={
            "epochs": 3,
            "steps_per_execution": 1,
            "backend": "vertex",
            "vertex": {"machine_type": "n1-highmem-8", "replica_count": 1},
        },
        best_params=best,
        display_name="wind-train",
    )
    # the request: the config's machine, the project's image running the shared trainer
    [create] = running_server.find("POST", r"/customJobs$")
    spec = create.json["jobSpec"]
    [pool] = spec["workerPoolSpecs"]
    assert pool["machineSpec"]["machineType"] == "n1-highmem-8"
    assert pool["containerSpec"]["imageUri"] == IMAGE
    assert pool["containerSpec"]["command"] == ["python", "-m", "voltpipe.modelling.trial"]
    args = dict(a.removeprefix("--").split("=", 1) for a in pool["containerSpec"]["args"])
    assert args["train"] == train_uri and args["output-dir"] == model_uri
    assert json.loads(args["params"])["best_params"] == best
    assert spec["baseOutputDirectory"]["outputUriPrefix"] == model_uri + "-job"
    assert spec["serviceAccount"] == "trainer@my-proj.iam.gserviceaccount.com"
    assert create.json["labels"] == {"team": "wind"}
    # the job's chief wrote the model into the step's artifact; the step reads its result back
    assert result.epochs_run >= 1 and len(result.history["val_loss"]) == result.epochs_run
    assert result.meta["best_params"] == best
    assert result.meta["model_params"]["hidden_units"] == [8]
    assert result.meta["training_params"]["learning_rate"] == 0.01
    # the per-epoch backup lived under the job's output dir (Keras drops it once training ends)
    assert (tmp_path / "gcs/my-bucket/root/train-42/model-job").is_dir()
    loaded = load_model(model_path)
    assert loaded.predict_raw(tabular_table(5, 2, 3)).shape == (5,)


@pytest.mark.slow
def test_a_failed_training_job_fails_the_step_with_its_message(
    running_server: VertexTestServer, tmp_path: Path
) -> None:
    from voltpipe.errors import DataError

    train_uri, valid_uri = _splits_in_gcs(tmp_path)
    with pytest.raises(
        DataError,
        match=r"^the Vertex AI training job projects/my-proj/locations/europe-west1/customJobs/\d+ failed: label column 'no_such_column' is missing \(col",
    ):
        vertex_jobs.train_on_vertex(
            vertex=_vertex(running_server),
            image=IMAGE,
            train_uri=train_uri,
            valid_uri=valid_uri,
            model_uri="gs://my-bucket/root/train-43/model",
            model_path=str(tmp_path / "gcs/my-bucket/root/train-43/model"),
            label="no_such_column",
            task="regression",
            training_params={"epochs": 1, "backend": "vertex"},
        )
    [job] = running_server.custom_jobs.values()
    assert job["state"] == "JOB_STATE_FAILED"
    assert not (tmp_path / "gcs/my-bucket/root/train-43/model/model.keras").exists()


def test_training_on_vertex_refuses_local_artifacts(tmp_path: Path) -> None:
    from voltpipe.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train_data artifact is at .*--target vertex"):
        vertex_jobs.train_on_vertex(
            vertex={"project": "p"},
            image=IMAGE,
            train_uri=str(tmp_path / "train"),
            valid_uri=str(tmp_path / "valid"),
            model_uri="gs://b/m",
            model_path=str(tmp_path / "m"),
            label="y",
            task="regression",
        )
    with pytest.raises(ConfigError, match="needs vertex.project"):
        vertex_jobs.train_on_vertex(
            vertex={},
            image=IMAGE,
            train_uri="gs://b/t",
            valid_uri="gs://b/v",
            model_uri="gs://b/m",
            model_path=str(tmp_path / "m"),
            label="y",
            task="regression",
        )


def test_a_failed_tuning_job_fails_the_step_with_its_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from google.cloud.aiplatform import jobs

    from voltpipe.errors import DataError

    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.01)
    failing = VertexTestServer(
        job_states=("JOB_STATE_RUNNING", "JOB_STATE_FAILED"),
        failure_message="voltpipe error: label column 'y' is missing",
    )
    with failing as srv, pytest.raises(DataError) as raised:
        vertex_jobs.submit_tuning_job(
            vertex=_vertex(srv),
            image=IMAGE,
            machine={},
            train_uri="gs://b/t",
            valid_uri="gs://b/v",
            label="y",
            task="regression",
            params={},
            tuning={"space": {"learning_rate": {"min": 1e-4, "max": 1e-2}}},
            display_name="failing",
        )
    assert str(raised.value).startswith("the Vertex AI tuning job projects/my-proj/")
    assert str(raised.value).endswith("failed: label column 'y' is missing")


# ----- issue 12: trials as the tuning guide launches them, CMEK and network, failure messages -----


def test_trial_accepts_hyperparameters_as_two_tokens_or_one() -> None:
    from voltpipe.modelling.trial import parse_args

    common = ["--train=t", "--valid=v", "--label=y", "--task=regression"]
    # The tuning guide launches `python3 -m trainer --learning_rate VALUE` (two tokens).
    args, hparams = parse_args(
        [*common, "--learning_rate", "0.003", "--hidden_units", "[16, 8]", "--batch_size=512"]
    )
    assert args.label == "y"
    assert hparams == {
        "learning_rate": pytest.approx(0.003),
        "hidden_units": [16, 8],
        "batch_size": 512,
    }
    with pytest.raises(SystemExit):
        parse_args([*common, "--no_such_hyperparameter", "1"])


def test_the_metrics_file_has_the_cloudml_hypertune_format(tmp_path: Path) -> None:
    from voltpipe.modelling.trial import report_metric

    path = tmp_path / "hypertune" / "output.metrics"
    report_metric(str(path), "3", "val_loss", 0.5, 4, checkpoint_path="gs://b/ckpt")
    report_metric(str(path), "3", "val_loss", 0.25, 7)
    # The file is rewritten (not appended to), one JSON object a line, values as strings.
    [line] = path.read_text().splitlines()
    body = json.loads(line)
    assert set(body) == {"checkpoint_path", "global_step", "val_loss", "timestamp", "trial"}
    assert body["val_loss"] == "0.25" and body["global_step"] == "7" and body["trial"] == "3"
    assert body["checkpoint_path"] == ""
    assert line == json.dumps(body, sort_keys=True)


@pytest.mark.slow
def test_tuning_trials_run_on_the_test_server_as_the_guide_launches_them(
    running_server: VertexTestServer, tmp_path: Path
) -> None:
    train_uri, valid_uri = _splits_in_gcs(tmp_path)
    job = vertex_jobs.submit_tuning_job(
        vertex=_vertex(running_server),
        image=IMAGE,
        machine={},
        train_uri=train_uri,
        valid_uri=valid_uri,
        label="target",
        task="regression",
        params={
            "exclude": ["label"],
            "training_params": {"epochs": 2, "steps_per_execution": 1},
        },
        tuning={
            "max_trials": 2,
            "parallel_trials": 1,
            "space": {
                "learning_rate": {"min": 1e-3, "max": 1e-1, "log": True},
                "hidden_units": [[4], [8]],
            },
        },
        display_name="real-trials",
    )
    [run] = running_server.tuning_runs.values()
    assert len(run.params) == 2
    for params in run.params:  # each trial got `--NAME VALUE`, two tokens per parameter
        names = [f"--{p['parameterId']}" for p in params]
        assert sorted(names) == ["--hidden_units", "--learning_rate"]
    trials = vertex_jobs.vertex_trials_table(job)
    assert [t["state"] for t in trials] == ["SUCCEEDED", "SUCCEEDED"]
    # the final measurement is what the trial wrote in its cloudml-hypertune file
    for i, trial in enumerate(trials, start=1):
        metrics = tmp_path / "gcs" / ".hypertune" / f"{job.name}-{i}"
        [line] = metrics.read_text().splitlines()
        body = json.loads(line)
        assert "checkpoint_path" in body and body["trial"] == str(i)
        assert trial["value"] == pytest.approx(float(body["val_loss"]), rel=1e-9)
        assert trial["value"] > 0
    best = vertex_jobs.best_trial_params(job)
    assert best["value"] == pytest.approx(min(t["value"] for t in trials))
    assert best["model"]["hidden_units"] in ([4], [8])
    assert 1e-3 <= best["training"]["learning_rate"] <= 1e-1


def test_jobs_carry_cmek_and_network_and_a_cmek_project_refuses_jobs_without(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from google.cloud.aiplatform import jobs

    from voltpipe.errors import DataError

    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.01)
    key = "projects/my-proj/locations/europe-west1/keyRings/r/cryptoKeys/k"
    network = "projects/123/global/networks/vpc"
    with VertexTestServer(cmek_projects={"my-proj"}) as srv:
        vertex = {**_vertex(srv), "encryption_key": key, "network": network}
        common = {
            "image": IMAGE,
            "machine": {},
            "train_uri": "gs://b/t",
            "valid_uri": "gs://b/v",
            "label": "y",
            "task": "regression",
            "params": {},
        }
        vertex_jobs.submit_tuning_job(
            vertex=vertex,
            tuning={"space": {"learning_rate": {"min": 1e-4, "max": 1e-2}}},
            display_name="cmek-tuning",
            **common,
        )
        vertex_jobs.run_custom_training_job(
            vertex=vertex,
            base_output_dir="gs://b/out",
            display_name="cmek-train",
            **common,
        )
        [tuning] = srv.find("POST", r"/hyperparameterTuningJobs$")
        assert tuning.json["encryptionSpec"] == {"kmsKeyName": key}
        assert tuning.json["trialJobSpec"]["network"] == network
        [custom] = srv.find("POST", r"/customJobs$")
        assert custom.json["encryptionSpec"] == {"kmsKeyName": key}
        assert custom.json["jobSpec"]["network"] == network
        # the organisation policy refuses a job without a key, with a message that says so
        with pytest.raises(DataError, match=r"refused the training job: .*restrictNonCmekServices"):
            vertex_jobs.run_custom_training_job(
                vertex=_vertex(srv),
                base_output_dir="gs://b/out",
                display_name="no-key",
                **common,
            )


def test_a_failed_job_reads_as_vertex_writes_it_and_the_step_shows_the_trainer_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud.aiplatform import jobs

    from voltpipe.errors import DataError

    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.05)
    trainer = (
        "import sys\n"
        "print('Traceback (most recent call last):', file=sys.stderr)\n"
        "print(\"voltpipe error: label column 'y' is missing (columns: a, b)\", file=sys.stderr)\n"
        "print('W0000 some library warning after the error', file=sys.stderr)\n"
        "sys.exit(1)\n"
    )
    with VertexTestServer(gcs_root=tmp_path / "gcs") as srv:
        aiplatform = vertex_jobs.init_vertex(_vertex(srv))
        job = aiplatform.CustomJob(
            display_name="failing",
            worker_pool_specs=[
                {
                    "machine_spec": {"machine_type": "n1-standard-4"},
                    "replica_count": 1,
                    "container_spec": {
                        "image_uri": IMAGE,
                        "command": ["python", "-c", trainer],
                    },
                }
            ],
            staging_bucket="gs://my-bucket/staging",
        )
        with pytest.raises(DataError) as raised:
            vertex_jobs._run(job, _vertex(srv), True, "training job")
        [stored] = srv.custom_jobs.values()
    message = stored["error"]["message"]
    assert message.startswith(
        "The replica workerpool0-0 exited with a non-zero status of 1. Termination reason: Error."
    )
    assert "W0000 some library warning" in message  # the log's tail follows
    assert "To find out more about why your job exited please check the logs:" in message
    assert str(raised.value).endswith("failed: label column 'y' is missing (columns: a, b)")
    assert vertex_jobs.trainer_message("no marker here\n") == "no marker here"


_FAKE_TRIAL = """
import argparse, json, os, sys
parser = argparse.ArgumentParser()
parser.add_argument("--learning_rate", type=float)
parser.add_argument("--batch_size", type=int)
args = parser.parse_args()
if args.learning_rate > FAIL_ABOVE:
    print("voltpipe error: learning_rate too high for this trainer", file=sys.stderr)
    sys.exit(1)
with open(os.environ["CLOUD_ML_HP_METRIC_FILE"], "w") as fh:
    line = {"checkpoint_path": "", "global_step": "3", "trial": os.environ["CLOUD_ML_TRIAL_ID"],
            "val_loss": str(args.learning_rate * args.batch_size), "timestamp": 0.0}
    fh.write(json.dumps(line, sort_keys=True) + "\\n")
"""


@pytest.mark.parametrize("fail_above", [1.0, 0.0])
def test_the_server_runs_each_trial_and_reads_its_metrics_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_above: float
) -> None:
    from google.cloud.aiplatform import hyperparameter_tuning as hpt
    from google.cloud.aiplatform import jobs

    from voltpipe.errors import DataError

    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.05)
    script = _FAKE_TRIAL.replace("FAIL_ABOVE", repr(fail_above))
    with VertexTestServer(gcs_root=tmp_path / "gcs", seed=3) as srv:
        aiplatform = vertex_jobs.init_vertex(_vertex(srv))
        trial_job = aiplatform.CustomJob(
            display_name="fake-trial",
            worker_pool_specs=[
                {
                    "machine_spec": {"machine_type": "n1-standard-4"},
                    "replica_count": 1,
                    "container_spec": {"image_uri": IMAGE, "command": ["python", "-c", script]},
                }
            ],
            staging_bucket="gs://my-bucket/staging",
        )
        job = aiplatform.HyperparameterTuningJob(
            display_name="fake-tuning",
            custom_job=trial_job,
            metric_spec={"val_loss": "minimize"},
            parameter_spec={
                "learning_rate": hpt.DoubleParameterSpec(min=1e-3, max=1e-1, scale="log"),
                "batch_size": hpt.DiscreteParameterSpec(values=[32, 64], scale="linear"),
            },
            max_trial_count=3,
            parallel_trial_count=1,
        )
        if fail_above == 0.0:  # every trial fails: the job fails with the trainer's message
            with pytest.raises(
                DataError, match=r"failed: learning_rate too high for this trainer$"
            ):
                vertex_jobs._run(job, _vertex(srv), True, "tuning job")
            [stored] = srv.tuning_jobs.values()
            assert {t["state"] for t in stored["trials"]} == {"INFEASIBLE"}
            assert stored["error"]["message"].startswith("The replica workerpool0-0 exited")
            return
        vertex_jobs._run(job, _vertex(srv), True, "tuning job")
        [run] = srv.tuning_runs.values()
    rows = vertex_jobs.vertex_trials_table(job)
    assert [r["state"] for r in rows] == ["SUCCEEDED"] * 3
    for row, params in zip(rows, run.params, strict=True):
        given = {p["parameterId"]: p["value"] for p in params}
        assert 1e-3 <= given["learning_rate"] <= 1e-1 and given["batch_size"] in (32, 64)
        # the final measurement is the metric the trial computed from the values it was given
        assert row["value"] == pytest.approx(given["learning_rate"] * given["batch_size"])
    best = vertex_jobs.best_trial_params(job)
    assert best["value"] == pytest.approx(min(r["value"] for r in rows))
