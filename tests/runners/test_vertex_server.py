"""The Vertex AI test server's model, endpoint and job APIs, through the real aiplatform SDK."""

from __future__ import annotations

import pytest

from voltpipe.testing.vertex_server import VertexTestServer

pytestmark = pytest.mark.integration
IMAGE = "europe-west1-docker.pkg.dev/my-proj/voltpipe/serve:1"
POOL = [
    {
        "machine_spec": {"machine_type": "n1-standard-4"},
        "replica_count": 1,
        "container_spec": {"image_uri": IMAGE},
    }
]


@pytest.fixture
def sdk(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    trial = {
        "id": "1",
        "state": "SUCCEEDED",
        "parameters": [{"parameterId": "lr", "value": 0.01}],
        "finalMeasurement": {"metrics": [{"metricId": "rmse", "value": 1.5}]},
    }
    with VertexTestServer(trials=[trial], predict=lambda xs: [len(xs)] * len(xs)) as srv:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", srv.endpoint)
        aiplatform.init(
            project="my-proj",
            location="europe-west1",
            credentials=AnonymousCredentials(),
            api_endpoint=srv.endpoint,
            api_transport="rest",
        )
        yield aiplatform, srv


def test_model_versions_and_aliases(sdk):
    aiplatform, srv = sdk
    first = aiplatform.Model.upload(
        display_name="wind",
        artifact_uri="gs://b/m1",
        serving_container_image_uri=IMAGE,
        labels={"team": "energy"},
    )
    second = aiplatform.Model.upload(
        display_name="wind",
        parent_model=first.resource_name,
        artifact_uri="gs://b/m2",
        serving_container_image_uri=IMAGE,
        is_default_version=False,
        version_aliases=["challenger"],
    )
    assert (first.version_id, second.version_id) == ("1", "2")
    assert second.resource_name == first.resource_name
    [upload, _] = srv.find("POST", r"/models:upload$")
    assert upload.json["model"]["artifactUri"] == "gs://b/m1"
    assert upload.json["model"]["containerSpec"]["imageUri"] == IMAGE

    registry = aiplatform.models.ModelRegistry(first.resource_name)
    registry.add_version_aliases(["champion"], version="2")
    versions = {v.version_id: v.version_aliases for v in registry.list_versions()}
    assert versions == {"1": ["default"], "2": ["challenger", "champion"]}
    assert aiplatform.Model(f"{first.resource_name}@champion").version_id == "2"
    assert [m.resource_name for m in aiplatform.Model.list(filter='display_name="wind"')] == [
        first.resource_name
    ]


def test_endpoint_deploy_predict_undeploy(sdk):
    aiplatform, srv = sdk
    model = aiplatform.Model.upload(
        display_name="wind", artifact_uri="gs://b/m1", serving_container_image_uri=IMAGE
    )
    endpoint = aiplatform.Endpoint.create(display_name="wind-endpoint")
    endpoint.deploy(
        model, machine_type="n1-standard-2", traffic_percentage=100, min_replica_count=1
    )
    [deploy] = srv.find("POST", r":deployModel$")
    assert (
        deploy.json["deployedModel"]["dedicatedResources"]["machineSpec"]["machineType"]
        == "n1-standard-2"
    )
    [deployed] = endpoint.list_models()
    assert endpoint.traffic_split == {deployed.id: 100}
    prediction = endpoint.predict(instances=[{"wind_speed_ms": 7.0}, {"wind_speed_ms": 9.0}])
    assert prediction.predictions == [2, 2]
    assert prediction.model_version_id == "1"
    endpoint.undeploy_all()
    assert endpoint.list_models() == []


def test_custom_and_tuning_jobs_follow_their_states(sdk, monkeypatch):
    aiplatform, srv = sdk
    from google.cloud.aiplatform import hyperparameter_tuning as hpt
    from google.cloud.aiplatform import jobs

    # run(sync=True) polls every _JOB_WAIT_TIME (5 s) seconds; the server needs no such patience.
    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.01)

    job = aiplatform.CustomJob(
        display_name="train", worker_pool_specs=POOL, staging_bucket="gs://b/staging"
    )
    job.submit()
    states = [job.state.name for _ in range(3)]
    assert states == ["JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED", "JOB_STATE_SUCCEEDED"]

    trial_job = aiplatform.CustomJob(
        display_name="trial", worker_pool_specs=POOL, staging_bucket="gs://b/staging"
    )
    tuning = aiplatform.HyperparameterTuningJob(
        display_name="tune",
        custom_job=trial_job,
        metric_spec={"rmse": "minimize"},
        parameter_spec={"lr": hpt.DoubleParameterSpec(min=1e-4, max=1e-1, scale="log")},
        max_trial_count=2,
        parallel_trial_count=1,
    )
    tuning.run(sync=True)
    assert tuning.state.name == "JOB_STATE_SUCCEEDED"
    assert tuning.trials[0].final_measurement.metrics[0].value == 1.5
    [create] = srv.find("POST", r"/hyperparameterTuningJobs$")
    # The REST transport sends enums as integers ($alt=json;enum-encoding=int): 2 is MINIMIZE.
    assert create.json["studySpec"]["metrics"] == [{"metricId": "rmse", "goal": 2}]


def test_predicts_are_routed_at_random_by_traffic_share(sdk):
    aiplatform, _ = sdk
    model = aiplatform.Model.upload(
        display_name="m", artifact_uri="gs://b/m", serving_container_image_uri=IMAGE
    )
    endpoint = aiplatform.Endpoint.create(display_name="e")
    endpoint.deploy(model, traffic_percentage=100, machine_type="n1-standard-2")
    endpoint.deploy(model, traffic_percentage=10, machine_type="n1-standard-2")
    split = {k: int(v) for k, v in endpoint.traffic_split.items()}
    canary = next(k for k, v in split.items() if v == 10)
    served = [endpoint.predict(instances=[[1.0]]).deployed_model_id for _ in range(400)]
    share = served.count(canary) / len(served)
    assert share == pytest.approx(0.10, abs=0.05)  # ~40 of 400; the seed makes it repeatable
    assert set(served) == set(split)
