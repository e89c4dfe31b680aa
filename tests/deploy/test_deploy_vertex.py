"""deploy_vertex through the real aiplatform SDK against VertexTestServer: canary splits, pruning
and rollback, asserted on the recorded requests and the endpoint's final state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from voltpipe.deploy import deploy_registered
from voltpipe.deploy.vertex import canary_split, deploy_vertex
from voltpipe.errors import ConfigError, DataError
from voltpipe.registry.vertex import VertexRegistry
from voltpipe.testing._http import HttpError
from voltpipe.testing.vertex_server import VertexTestServer

IMAGE = "europe-west1-docker.pkg.dev/my-proj/voltpipe/voltpipe:1"
INSTANCES = [{"wind_speed": 7.0, "turbine_id": "T01"}]


# -- the traffic split (no server) -------------------------------------------------------------


def test_canary_split_keeps_the_rest_proportionally() -> None:
    assert canary_split({}, [], 20) == {"0": 100}  # first deployment: nothing to share with
    assert canary_split({"a": 100}, ["a"], 100) == {"0": 100}
    assert canary_split({"a": 100}, ["a"], 20) == {"0": 20, "a": 80}
    assert canary_split({"a": 75, "b": 25}, ["a", "b"], 20) == {"0": 20, "a": 60, "b": 20}
    split = canary_split({"a": 50, "b": 50}, ["a", "b"], 25)
    assert sum(split.values()) == 100 and sorted(split.values()) == [25, 37, 38]
    assert canary_split({"a": 0, "b": 0}, ["a", "b"], 50) == {"0": 50, "a": 25, "b": 25}
    with pytest.raises(ConfigError, match="canary_percent 0"):
        canary_split({}, [], 0)


def test_canary_without_a_kept_model_is_refused_before_any_call() -> None:
    with pytest.raises(ConfigError, match="keep_versions >= 2"):
        deploy_vertex(
            project="p", location="l", endpoint_name="e", model="m", canary_percent=20,
            keep_versions=1,
        )  # fmt: skip


# -- against the server ------------------------------------------------------------------------


class Broken:
    """The server's predict: fails while a deployed model of one of `versions` is deployed."""

    def __init__(self) -> None:
        self.versions: set[str] = set()
        self.server: VertexTestServer | None = None

    def __call__(self, instances: list[Any]) -> list[Any]:
        assert self.server is not None
        for endpoint in self.server.endpoints.values():
            for deployed in endpoint["deployedModels"]:
                if deployed.get("modelVersionId") in self.versions:
                    raise HttpError(500, "the model container crashed")
        return [1.0 for _ in instances]


@pytest.fixture
def broken() -> Broken:
    return Broken()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, broken: Broken) -> Iterator[VertexTestServer]:
    with VertexTestServer(predict=broken) as srv:
        broken.server = srv
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", srv.endpoint)
        yield srv


@pytest.fixture
def model(server: VertexTestServer) -> str:
    """A model with three versions; returns its resource name."""
    from voltpipe.registry.vertex import init_sdk

    aiplatform = init_sdk("my-proj", "europe-west1", server.endpoint)
    first = aiplatform.Model.upload(
        display_name="wind-power", artifact_uri="gs://b/m1", serving_container_image_uri=IMAGE
    )
    for n in (2, 3):
        aiplatform.Model.upload(
            display_name="wind-power",
            parent_model=first.resource_name,
            artifact_uri=f"gs://b/m{n}",
            serving_container_image_uri=IMAGE,
            is_default_version=False,
        )
    return first.resource_name


def _deploy(server: VertexTestServer, model: str, version: str, **kwargs: Any) -> dict[str, Any]:
    return deploy_vertex(
        project="my-proj",
        location="europe-west1",
        api_endpoint=server.endpoint,
        endpoint_name="wind-power-endpoint",
        model=model,
        version=version,
        health_instances=INSTANCES,
        **kwargs,
    )


def _endpoint(server: VertexTestServer) -> dict[str, Any]:
    [endpoint] = server.endpoints.values()
    return endpoint


@pytest.mark.integration
def test_first_deploy_creates_the_endpoint_with_all_traffic(server, model) -> None:
    summary = _deploy(server, model, "1", machine_type="n1-standard-4", max_replicas=3)

    [create] = server.find("POST", r"/endpoints$")
    assert create.json["displayName"] == "wind-power-endpoint"
    [request] = server.find("POST", r":deployModel$")
    assert request.json["trafficSplit"] == {"0": 100}
    deployed = request.json["deployedModel"]
    assert deployed["model"] == f"{model}@1"
    resources = deployed["dedicatedResources"]
    assert resources["machineSpec"]["machineType"] == "n1-standard-4"
    assert (resources["minReplicaCount"], resources["maxReplicaCount"]) == (1, 3)
    new_id = summary["deployed_model_id"]
    assert summary["traffic_before"] == {}
    assert summary["traffic_after"] == {new_id: 100}
    assert summary["health_check"] == "passed"
    assert summary["rolled_back"] is False
    assert len(server.find("POST", r":predict$")) == 3  # health_check_attempts
    assert _endpoint(server)["trafficSplit"] == {new_id: 100}


@pytest.mark.integration
def test_canary_sends_a_share_to_the_new_version_and_keeps_the_rest(server, model) -> None:
    first = _deploy(server, model, "1")["deployed_model_id"]
    summary = _deploy(server, model, "2", canary_percent=20)

    assert len(server.find("POST", r"/endpoints$")) == 1  # found by display name the 2nd time
    request = server.find("POST", r":deployModel$")[-1]
    assert request.json["trafficSplit"] == {"0": 20, first: 80}
    second = summary["deployed_model_id"]
    assert summary["traffic_before"] == {first: 100}
    assert summary["traffic_after"] == {first: 80, second: 20}
    assert summary["undeployed"] == []


@pytest.mark.integration
def test_deployed_models_beyond_keep_versions_are_undeployed(server, model) -> None:
    first = _deploy(server, model, "1")["deployed_model_id"]
    second = _deploy(server, model, "2", canary_percent=50)["deployed_model_id"]
    summary = _deploy(server, model, "3", canary_percent=50, keep_versions=2)

    # The oldest gets no traffic in the new split, then is undeployed after the health check.
    request = server.find("POST", r":deployModel$")[-1]
    assert request.json["trafficSplit"] == {"0": 50, second: 50}
    third = summary["deployed_model_id"]
    assert summary["undeployed"] == [first]
    [undeploy] = server.find("POST", r":undeployModel$")
    assert undeploy.json["deployedModelId"] == first
    assert summary["traffic_after"] == {second: 50, third: 50}
    assert [d["id"] for d in _endpoint(server)["deployedModels"]] == [second, third]


@pytest.mark.integration
def test_failed_health_check_rolls_back_to_the_previous_split(server, model, broken) -> None:
    first = _deploy(server, model, "1")["deployed_model_id"]
    second = _deploy(server, model, "2", canary_percent=30)["deployed_model_id"]
    before = dict(_endpoint(server)["trafficSplit"])
    assert before == {first: 70, second: 30}

    broken.versions = {"3"}
    summary = _deploy(server, model, "3", canary_percent=20, keep_versions=2)

    assert summary["rolled_back"] is True
    assert "the model container crashed" in summary["error"]
    failed = summary["deployed_model_id"]
    assert failed not in (first, second)
    # The new deployed model is undeployed with the old split; the pruned one was kept.
    [undeploy] = server.find("POST", r":undeployModel$")
    assert undeploy.json["deployedModelId"] == failed
    assert undeploy.json["trafficSplit"] == before
    assert summary["traffic_before"] == summary["traffic_after"] == before
    assert _endpoint(server)["trafficSplit"] == before
    assert [d["id"] for d in _endpoint(server)["deployedModels"]] == [first, second]


@pytest.mark.integration
def test_failed_first_deploy_leaves_an_empty_endpoint(server, model, broken) -> None:
    broken.versions = {"1"}
    summary = _deploy(server, model, "1")
    assert summary["rolled_back"] is True
    assert _endpoint(server)["deployedModels"] == []
    assert summary["traffic_after"] == {}


# -- the component's core function -------------------------------------------------------------


@pytest.mark.integration
def test_deploy_registered_moves_champion_back_when_vertex_rolls_back(
    server, broken, tmp_path: Path
) -> None:
    registry = VertexRegistry(
        "my-proj", "europe-west1", image=IMAGE, api_endpoint=server.endpoint, gcs_mount=tmp_path
    )
    for run in ("r1", "r2"):
        (tmp_path / "b" / run).mkdir(parents=True)
        registry.register("wind-power", tmp_path / "b" / run, {"decision": {"promote": True}})
    uri = "vertex://my-proj/europe-west1?" + f"image={IMAGE}&api_endpoint={server.endpoint}"
    params = {"health_instances": INSTANCES, "canary_percent": 100}

    skipped = deploy_registered(
        {"version": "2", "champion": False}, registry_uri=uri, model_name="wind-power",
        target="vertex", deploy_params=params,
    )  # fmt: skip
    assert skipped["deployed"] is False
    assert server.find("POST", r":deployModel$") == []

    first = deploy_registered(
        {"version": "1", "champion": True}, registry_uri=uri, model_name="wind-power",
        target="vertex", deploy_params=params,
    )  # fmt: skip
    assert first["deployed"] is True and first["endpoint_name"] == "wind-power-endpoint"
    assert registry.get("wind-power").version == "1"  # the alias moves after a healthy deploy

    # Gated against "no champion", but version 1 is champion now: not even deployed.
    deploys = len(server.find("POST", r":deployModel$"))
    stale = deploy_registered(
        {"version": "2", "promote": True, "gated_against": None}, registry_uri=uri,
        model_name="wind-power", target="vertex", deploy_params=params,
    )  # fmt: skip
    assert stale["deployed"] is False and "another run moved it" in stale["reason"]
    assert len(server.find("POST", r":deployModel$")) == deploys

    broken.versions = {"2"}
    with pytest.raises(DataError, match=r"rolled back .* previous champion \(version 1\) keeps"):
        deploy_registered(
            {"version": "2", "promote": True, "gated_against": "1"}, registry_uri=uri,
            model_name="wind-power", target="vertex", deploy_params=params,
        )  # fmt: skip
    assert registry.get("wind-power").version == "1"  # never moved to the failed version
    assert _endpoint(server)["trafficSplit"] == {first["deployed_model_id"]: 100}


# -- issue 12: the health check reaches the canary; the endpoint inherits the model's CMEK ------


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> Iterator[VertexTestServer]:
    """A server routing predicts at random by traffic share (seeded), version 2 broken."""
    with VertexTestServer(
        predict=lambda instances: [1.0 for _ in instances],
        failing_models=set(),
        seed=7,
    ) as srv:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", srv.endpoint)
        yield srv


@pytest.mark.integration
def test_the_health_check_reaches_a_10_percent_canary(routed) -> None:
    model = _three_versions(routed)
    first = _deploy(routed, model, "1")["deployed_model_id"]
    routed.failing_models = {f"{model}@2"}  # the new version's container fails every predict
    summary = _deploy(routed, model, "2", canary_percent=10, health_check_attempts=3)

    # With 3 requests at 10 %, the canary is missed ~73 % of the time; the check keeps going
    # until the new model itself has answered, so the broken canary is caught and rolled back.
    assert summary["rolled_back"] is True
    assert "Prediction failed" in summary["error"]
    assert _endpoint(routed)["trafficSplit"] == {first: 100}


@pytest.mark.integration
def test_a_healthy_canary_answers_the_health_check_itself(routed) -> None:
    model = _three_versions(routed)
    first = _deploy(routed, model, "1")["deployed_model_id"]
    sent_before = len(routed.find("POST", r":predict$"))
    summary = _deploy(routed, model, "2", canary_percent=10, health_check_attempts=3)

    new_id = summary["deployed_model_id"]
    assert summary["health_check"] == "passed" and summary["rolled_back"] is False
    assert summary["traffic_after"] == {first: 90, new_id: 10}
    sent = len(routed.find("POST", r":predict$")) - sent_before
    # at least the 3 answers from the canary, within the budget
    from voltpipe.deploy.vertex import health_check_budget

    assert 3 <= sent <= health_check_budget(3, 10)
    assert health_check_budget(3, 100) == 3 and health_check_budget(1, 10) == 132


@pytest.mark.integration
def test_the_endpoint_inherits_the_models_cmek_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from voltpipe.registry.vertex import init_sdk

    key = "projects/my-proj/locations/europe-west1/keyRings/r/cryptoKeys/k"
    with VertexTestServer(cmek_projects={"my-proj"}) as srv:
        aiplatform = init_sdk("my-proj", "europe-west1", srv.endpoint)
        model = aiplatform.Model.upload(
            display_name="wind-power",
            artifact_uri="gs://b/m1",
            serving_container_image_uri=IMAGE,
            encryption_spec_key_name=key,
        )
        summary = _deploy(srv, model.resource_name, "1")
        assert summary["rolled_back"] is False
        [create] = srv.find("POST", r"/endpoints$")
        assert create.json["encryptionSpec"] == {"kmsKeyName": key}


def _three_versions(server: VertexTestServer) -> str:
    from voltpipe.registry.vertex import init_sdk

    aiplatform = init_sdk("my-proj", "europe-west1", server.endpoint)
    first = aiplatform.Model.upload(
        display_name="wind-power", artifact_uri="gs://b/m1", serving_container_image_uri=IMAGE
    )
    for n in (2, 3):
        aiplatform.Model.upload(
            display_name="wind-power",
            parent_model=first.resource_name,
            artifact_uri=f"gs://b/m{n}",
            serving_container_image_uri=IMAGE,
            is_default_version=False,
        )
    return first.resource_name
