"""Schedules on Vertex AI (PipelineJobSchedule) and KFP (recurring runs) through the real clients."""

from __future__ import annotations

import pytest

from voltpipe.errors import ConfigError
from voltpipe.runners.schedules import (
    create_schedule,
    delete_schedule,
    kfp_cron,
    list_schedules,
    pause_schedule,
    resume_schedule,
    validate_cron,
)


def test_validate_cron():
    assert validate_cron("0  6 * *   1") == "0 6 * * 1"
    assert validate_cron("TZ=Europe/Berlin 30 2 * * *") == "TZ=Europe/Berlin 30 2 * * *"
    for bad in ("0 6 * *", "0 0 6 * * 1", "every day", ""):
        with pytest.raises(ConfigError, match="expected 5 fields"):
            validate_cron(bad)


def test_kfp_cron_prefixes_seconds():
    assert kfp_cron("15 4 * * 1-5") == "0 15 4 * * 1-5"
    with pytest.raises(ConfigError, match="TZ= prefix"):
        kfp_cron("TZ=UTC 0 4 * * *")


def test_unknown_target(make_config):
    with pytest.raises(ConfigError, match="unknown schedule target 'local'"):
        list_schedules(make_config(), target="local")


@pytest.mark.integration
def test_vertex_schedule_lifecycle(vertex_server, make_config, training_template):
    cfg = make_config(
        f"vertex.api_endpoint={vertex_server.endpoint}", "vertex.labels={team: energy}"
    )
    created = create_schedule(
        cfg,
        "training",
        training_template,
        cron="TZ=Europe/Berlin 0 6 * * 1",
        target="vertex",
        display_name="weekly-training",
        parameter_values={"min_improvement": 0.01},
    )
    [req] = vertex_server.find("POST", r"/v1/projects/my-proj/locations/europe-west1/schedules$")
    body = req.json
    assert body["displayName"] == "weekly-training"
    assert body["cron"] == "TZ=Europe/Berlin 0 6 * * 1"
    job = body["createPipelineJobRequest"]["pipelineJob"]
    assert body["createPipelineJobRequest"]["parent"] == "projects/my-proj/locations/europe-west1"
    assert job["pipelineSpec"]["pipelineInfo"]["name"] == "wind-power-training"
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://b/root"
    assert job["runtimeConfig"]["parameterValues"] == {"min_improvement": 0.01}
    assert job["serviceAccount"] == "runner@my-proj.iam.gserviceaccount.com"
    assert job["labels"]["team"] == "energy"
    assert created["state"] == "active"
    assert created["cron"] == "TZ=Europe/Berlin 0 6 * * 1"
    assert created["target"] == "vertex"

    [listed] = list_schedules(cfg, target="vertex")
    assert listed["id"] == created["id"] and listed["display_name"] == "weekly-training"

    assert pause_schedule(cfg, created["id"], target="vertex")["state"] == "paused"
    assert vertex_server.find("POST", rf"/schedules/{created['id']}:pause$")
    assert resume_schedule(cfg, created["name"], target="vertex")["state"] == "active"
    assert vertex_server.find("POST", rf"/schedules/{created['id']}:resume$")
    assert delete_schedule(cfg, created["id"], target="vertex")["state"] == "deleted"
    assert vertex_server.find("DELETE", rf"/schedules/{created['id']}$")
    assert list_schedules(cfg, target="vertex") == []


@pytest.mark.integration
def test_vertex_schedule_refuses_a_bad_cron_before_any_call(
    vertex_server, make_config, training_template
):
    cfg = make_config(f"vertex.api_endpoint={vertex_server.endpoint}")
    with pytest.raises(ConfigError, match="expected 5 fields"):
        create_schedule(cfg, "training", training_template, cron="0 0 6 * * 1", target="vertex")
    assert not vertex_server.requests


@pytest.mark.integration
def test_kfp_recurring_run_lifecycle(kfp_server, make_config, training_template):
    cfg = make_config(f"kfp.host={kfp_server.endpoint}")
    created = create_schedule(
        cfg, "training", training_template, cron="0 6 * * 1", target="kfp", cache=False
    )
    [req] = kfp_server.find("POST", r"/apis/v2beta1/recurringruns$")
    body = req.json
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 6 * * 1"
    assert body["display_name"] == "wind-power-training"
    assert body["mode"] == "ENABLE"
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "wind-power-training"
    assert body["experiment_id"] == next(iter(kfp_server.experiments))
    assert created["cron"] == "0 6 * * 1" and created["kfp_cron"] == "0 0 6 * * 1"
    assert created["state"] == "active"

    [listed] = list_schedules(cfg, target="kfp")
    assert listed["id"] == created["id"]

    assert pause_schedule(cfg, created["id"], target="kfp")["state"] == "paused"
    assert kfp_server.find("POST", rf"/recurringruns/{created['id']}:disable$")
    assert resume_schedule(cfg, created["id"], target="kfp")["state"] == "active"
    assert kfp_server.find("POST", rf"/recurringruns/{created['id']}:enable$")
    assert delete_schedule(cfg, created["id"], target="kfp")["state"] == "deleted"
    assert kfp_server.find("DELETE", rf"/recurringruns/{created['id']}$")
    assert list_schedules(cfg, target="kfp") == []


@pytest.mark.integration
def test_a_vertex_schedule_carries_network_and_cmek(monkeypatch, make_config, training_template):
    from voltpipe.errors import PipelineError
    from voltpipe.testing.vertex_server import VertexTestServer

    key = "projects/my-proj/locations/europe-west1/keyRings/r/cryptoKeys/k"
    network = "projects/123/global/networks/vpc"
    with VertexTestServer(cmek_projects={"my-proj"}) as srv:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", srv.endpoint)
        cfg = make_config(
            f"vertex.api_endpoint={srv.endpoint}",
            f"vertex.encryption_key={key}",
            f"vertex.network={network}",
        )
        create_schedule(cfg, "training", training_template, cron="0 6 * * 1", target="vertex")
        [req] = srv.find("POST", r"/schedules$")
        job = req.json["createPipelineJobRequest"]["pipelineJob"]
        assert job["encryptionSpec"] == {"kmsKeyName": key}
        assert job["network"] == network
        # without the key, the CMEK-only project refuses the schedule's job
        bare = make_config(f"vertex.api_endpoint={srv.endpoint}")
        with pytest.raises(PipelineError, match="restrictNonCmekServices"):
            create_schedule(bare, "training", training_template, cron="0 6 * * 1", target="vertex")
