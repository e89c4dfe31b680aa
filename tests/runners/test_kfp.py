"""submit_kfp through the real kfp.Client against the local KFP API server."""

from __future__ import annotations

import json

import pytest

from voltpipe.errors import ConfigError, PipelineError
from voltpipe.runners.kfp import submit_kfp
from voltpipe.testing.kfp_server import KfpTestServer

pytestmark = pytest.mark.integration


def test_submit_creates_the_experiment_and_a_run_from_the_package(
    kfp_server, make_config, training_template
):
    cfg = make_config(f"kfp.host={kfp_server.endpoint}", "kfp.experiment=wind")
    summary = submit_kfp(
        cfg,
        "training",
        training_template,
        cache=False,
        wait=False,
        parameter_values={"min_improvement": 0.02},
    )

    # get-or-create: looked up by name, then created
    [lookup] = kfp_server.find("GET", r"/apis/v2beta1/experiments$")
    assert json.loads(lookup.param("filter"))["predicates"][0]["stringValue"] == "wind"
    [create_exp] = kfp_server.find("POST", r"/apis/v2beta1/experiments$")
    assert create_exp.json["display_name"] == "wind"

    [create_run] = kfp_server.find("POST", r"/apis/v2beta1/runs$")
    run = create_run.json
    assert run["experiment_id"] == summary["experiment_id"]
    assert run["pipeline_spec"]["pipelineInfo"]["name"] == "wind-power-training"
    assert run["runtime_config"]["parameters"] == {"min_improvement": 0.02}
    tasks = run["pipeline_spec"]["root"]["dag"]["tasks"]
    assert not any(t.get("cachingOptions", {}).get("enableCache") for t in tasks.values())
    assert run["display_name"] == summary["run_name"]
    assert summary["status"] == "submitted"
    assert summary["target"] == "kfp"
    assert summary["run_url"] == f"{kfp_server.endpoint}/#/runs/details/{summary['run_id']}"


def test_an_existing_experiment_is_reused(kfp_server, make_config, training_template):
    cfg = make_config(f"kfp.host={kfp_server.endpoint}")
    first = submit_kfp(cfg, "training", training_template, cache=True, wait=False)
    second = submit_kfp(cfg, "training", training_template, cache=True, wait=False)
    assert len(kfp_server.find("POST", r"/experiments$")) == 1
    assert first["experiment_id"] == second["experiment_id"]
    tasks = kfp_server.find("POST", r"/runs$")[0].json["pipeline_spec"]["root"]["dag"]["tasks"]
    assert tasks["extract"]["cachingOptions"]["enableCache"] is True
    assert not tasks["register"]["cachingOptions"].get("enableCache")  # a side effect


def test_wait_follows_the_run_to_success(kfp_server, make_config, training_template):
    cfg = make_config(f"kfp.host={kfp_server.endpoint}")
    summary = submit_kfp(
        cfg, "training", training_template, cache=True, wait=True, poll_seconds=0.01
    )
    assert summary["status"] == "succeeded"
    assert summary["state"] == "SUCCEEDED"
    assert len(kfp_server.find("GET", rf"/runs/{summary['run_id']}$")) == 2


def test_wait_raises_naming_the_failed_state(make_config, training_template):
    with KfpTestServer(
        run_states=["RUNNING", "FAILED"], failure_message="train: loss is NaN"
    ) as srv:
        cfg = make_config(f"kfp.host={srv.endpoint}")
        with pytest.raises(PipelineError, match=r"ended in state FAILED: train: loss is NaN"):
            submit_kfp(cfg, "training", training_template, cache=True, wait=True, poll_seconds=0.01)


def test_upload_registers_the_pipeline_then_new_versions(
    kfp_server, make_config, training_template
):
    cfg = make_config(f"kfp.host={kfp_server.endpoint}")
    first = submit_kfp(cfg, "training", training_template, cache=True, wait=False, upload=True)
    second = submit_kfp(
        cfg, "training", training_template, cache=True, wait=False, upload=True, version_name="v2"
    )
    [upload] = kfp_server.find("POST", r"/pipelines/upload$")
    assert upload.param("name") == "wind-power-training"
    assert upload.headers["content-type"].startswith("multipart/form-data")
    [version] = kfp_server.find("POST", r"/pipelines/upload_version$")
    assert version.param("pipelineid") == first["pipeline_id"]
    assert version.param("name") == "v2"
    assert second["pipeline_id"] == first["pipeline_id"]
    assert second["version_id"] != first["version_id"]


def test_auth_options_pass_through_to_the_client(kfp_server, make_config, training_template):
    cfg = make_config(f"kfp.host={kfp_server.endpoint}")
    submit_kfp(
        cfg,
        "training",
        training_template,
        cache=True,
        wait=False,
        client_kwargs={"existing_token": "tok-123"},
    )
    assert kfp_server.find("POST", r"/runs$")[0].headers["authorization"] == "Bearer tok-123"


def test_refusals(make_config, training_template):
    with pytest.raises(ConfigError, match="kfp.host is not set"):
        submit_kfp(make_config(), "training", training_template, cache=True, wait=False)
    cfg = make_config("kfp.host=http://127.0.0.1:9", "warehouse=duckdb:///wh.duckdb")
    with pytest.raises(
        ConfigError, match="Kubeflow Pipelines pipeline cannot read your laptop's file duckdb:///"
    ):
        submit_kfp(cfg, "training", training_template, cache=True, wait=False)


def test_unknown_parameter_is_refused_before_any_call(kfp_server, make_config, training_template):
    cfg = make_config(f"kfp.host={kfp_server.endpoint}")
    with pytest.raises(ConfigError, match="unknown pipeline parameter.*epochs"):
        submit_kfp(
            cfg,
            "training",
            training_template,
            cache=True,
            wait=False,
            parameter_values={"epochs": 1},
        )
    assert not kfp_server.requests


# ----- issue 12: the namespace follows the cluster's mode -------------------------------------


def test_multi_user_cluster_gets_the_namespace(make_config, training_template):
    with KfpTestServer(multi_user=True) as srv:
        # the default kfp.namespace (kubeflow) is sent too, not an empty one
        cfg = make_config(f"kfp.host={srv.endpoint}")
        summary = submit_kfp(cfg, "training", training_template, cache=False, wait=True)
        [lookup] = srv.find("GET", r"/apis/v2beta1/experiments$")
        assert lookup.param("namespace") == "kubeflow"
        [create] = srv.find("POST", r"/apis/v2beta1/experiments$")
        assert create.json["namespace"] == "kubeflow"
        assert summary["state"] == "SUCCEEDED"
        assert srv.find("GET", r"/apis/v2beta1/healthz$")


def test_single_user_cluster_gets_no_namespace(make_config, training_template):
    with KfpTestServer(multi_user=False) as srv:
        cfg = make_config(f"kfp.host={srv.endpoint}", "kfp.namespace=team-wind")
        summary = submit_kfp(cfg, "training", training_template, cache=False, wait=False)
        [create] = srv.find("POST", r"/apis/v2beta1/experiments$")
        assert not create.json.get("namespace")
        assert summary["status"] == "submitted"


def test_the_test_server_enforces_both_modes():
    import urllib.request

    import kfp_server_api

    for multi_user, body, refused in (
        (True, {"display_name": "e"}, "multi-user mode"),
        (False, {"display_name": "e", "namespace": "team"}, "single-user mode"),
    ):
        with KfpTestServer(multi_user=multi_user) as srv:
            with urllib.request.urlopen(f"{srv.endpoint}/apis/v2beta1/healthz") as resp:
                assert json.load(resp) == {"multi_user": multi_user}
            api = kfp_server_api.ExperimentServiceApi(
                kfp_server_api.ApiClient(kfp_server_api.Configuration(host=srv.endpoint))
            )
            with pytest.raises(kfp_server_api.ApiException, match=refused):
                api.experiment_service_create_experiment(
                    experiment=kfp_server_api.V2beta1Experiment(**body)
                )
