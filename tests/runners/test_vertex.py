"""submit_vertex through the real aiplatform SDK against the local Vertex AI server."""

from __future__ import annotations

from pathlib import Path

import pytest

from voltpipe.errors import ConfigError, PipelineError
from voltpipe.runners.vertex import submit_vertex
from voltpipe.testing.vertex_server import VertexTestServer

KEY = "projects/my-proj/locations/europe-west1/keyRings/voltpipe/cryptoKeys/pipelines"
NETWORK = "projects/123456789/global/networks/vpc"


def _vertex_overrides(srv: VertexTestServer, *extra: str) -> list[str]:
    return [
        f"vertex.api_endpoint={srv.endpoint}",
        f"vertex.network={NETWORK}",
        f"vertex.encryption_key={KEY}",
        "vertex.labels={team: energy, env: test}",
        *extra,
    ]


@pytest.mark.integration
def test_submit_sends_the_compiled_pipeline_with_the_config(
    vertex_server, make_config, training_template
):
    cfg = make_config(*_vertex_overrides(vertex_server))
    summary = submit_vertex(
        cfg,
        "training",
        str(training_template),
        cache=False,
        wait=False,
        parameter_values={"min_improvement": 0.01},
    )

    [create] = vertex_server.find(
        "POST", r"/v1/projects/my-proj/locations/europe-west1/pipelineJobs$"
    )
    job_id = create.param("pipelineJobId")
    assert job_id and job_id.startswith("wind-power-training-")
    body = create.json
    assert body["pipelineSpec"]["pipelineInfo"]["name"] == "wind-power-training"
    assert body["runtimeConfig"]["gcsOutputDirectory"] == "gs://b/root"
    assert body["runtimeConfig"]["parameterValues"]["min_improvement"] == 0.01
    assert body["runtimeConfig"]["parameterValues"] == {"min_improvement": 0.01}
    params = body["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    assert params["warehouse"]["defaultValue"] == "bigquery://my-proj"  # the config's, compiled in
    assert body["serviceAccount"] == "runner@my-proj.iam.gserviceaccount.com"
    assert body["network"] == NETWORK
    assert body["encryptionSpec"]["kmsKeyName"] == KEY
    assert body["labels"] == {"voltpipe-pipeline": "training", "team": "energy", "env": "test"}
    # enable_caching=False is written into every task of the spec.
    tasks = body["pipelineSpec"]["root"]["dag"]["tasks"]
    assert tasks and all(
        t["cachingOptions"] == {} or t["cachingOptions"].get("enableCache") is False
        for t in tasks.values()
    )
    assert not any(t["cachingOptions"].get("enableCache") for t in tasks.values())
    assert create.headers.get("authorization") is None  # anonymous credentials on http://

    assert summary["status"] == "submitted"
    assert summary["target"] == "vertex"
    assert summary["run_id"] == job_id
    assert summary["job_name"] == f"projects/my-proj/locations/europe-west1/pipelineJobs/{job_id}"
    assert summary["console_url"].endswith(f"/pipelines/runs/{job_id}?project=my-proj")
    # The pipeline_root bucket was created with access for the run-as service account.
    [iam] = vertex_server.find("PUT", r"/storage/v1/b/b/iam$")
    assert "serviceAccount:runner@my-proj.iam.gserviceaccount.com" in str(iam.json)


@pytest.mark.integration
def test_cache_true_enables_caching_on_every_task(vertex_server, make_config, training_template):
    cfg = make_config(*_vertex_overrides(vertex_server))
    submit_vertex(cfg, "training", training_template, cache=True, wait=False)
    [create] = vertex_server.find("POST", r"/pipelineJobs$")
    tasks = create.json["pipelineSpec"]["root"]["dag"]["tasks"]
    assert create.json["runtimeConfig"].get("enableCaching") is None  # the compiled settings stand
    assert tasks["extract"]["cachingOptions"]["enableCache"] is True
    # Steps with side effects (and evaluate, whose verdict depends on the registry) never are.
    assert not tasks["register"]["cachingOptions"].get("enableCache")


@pytest.mark.integration
def test_wait_follows_the_job_to_success(vertex_server, make_config, training_template):
    cfg = make_config(*_vertex_overrides(vertex_server))
    summary = submit_vertex(
        cfg, "training", training_template, cache=True, wait=True, poll_seconds=0.01
    )
    assert summary["status"] == "succeeded"
    assert summary["state"] == "PIPELINE_STATE_SUCCEEDED"
    gets = vertex_server.find("GET", rf"/pipelineJobs/{summary['run_id']}$")
    assert len(gets) >= 2  # RUNNING, then SUCCEEDED


@pytest.mark.integration
def test_wait_raises_naming_the_failed_state(monkeypatch, make_config, training_template):
    with VertexTestServer(
        pipeline_states=["PIPELINE_STATE_RUNNING", "PIPELINE_STATE_FAILED"],
        failure_message="step 'train' failed: out of memory",
    ) as srv:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", srv.endpoint)
        cfg = make_config(*_vertex_overrides(srv))
        with pytest.raises(
            PipelineError, match=r"PIPELINE_STATE_FAILED: step 'train' failed: out of memory"
        ):
            submit_vertex(
                cfg, "training", training_template, cache=True, wait=True, poll_seconds=0.01
            )


@pytest.mark.integration
def test_experiment_is_created_and_the_run_associated(
    vertex_server, make_config, training_template
):
    cfg = make_config(*_vertex_overrides(vertex_server, "vertex.experiment=wind-power-exp"))
    summary = submit_vertex(cfg, "training", training_template, cache=True, wait=False)
    [ctx] = vertex_server.find("POST", r"/metadataStores/default/contexts$")
    assert ctx.param("contextId") == "wind-power-exp"
    assert ctx.json["schemaTitle"] == "system.Experiment"
    [child] = vertex_server.find("POST", r"/contexts/wind-power-exp:addContextChildren$")
    assert child.json["childContexts"][0].endswith(f"/contexts/{summary['run_id']}")


def test_refuses_a_local_duckdb_warehouse(make_config, training_template):
    cfg = make_config("warehouse=duckdb:///data/wh.duckdb")
    with pytest.raises(
        ConfigError,
        match=r"cannot read your laptop's file duckdb:///.*wh\.duckdb; use bigquery://PROJECT",
    ):
        submit_vertex(cfg, "training", training_template, cache=True, wait=False)


def test_refuses_the_embedded_warehouse(tmp_path, training_template):
    from voltpipe.config import load_config

    cfg = load_config(
        None, ["vertex.project=p", "vertex.pipeline_root=gs://b/r", f"workdir={tmp_path}"]
    )
    with pytest.raises(ConfigError, match="warehouse: a Vertex AI pipeline cannot read"):
        submit_vertex(cfg, "training", training_template, cache=True, wait=False)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("vertex.project=null", "vertex.project is not set"),
        ("vertex.pipeline_root=null", "vertex.pipeline_root is not set"),
        ("vertex.pipeline_root=/tmp/root", "vertex.pipeline_root '/tmp/root' must be a gs://"),
        ("vertex.encryption_key=my-key", "vertex.encryption_key 'my-key'"),
    ],
)
def test_refuses_missing_or_invalid_keys(make_config, training_template, override, message):
    with pytest.raises(ConfigError, match=message):
        submit_vertex(make_config(override), "training", training_template, cache=True, wait=False)


@pytest.mark.integration
def test_unknown_parameter_is_a_config_error(vertex_server, make_config, training_template):
    cfg = make_config(*_vertex_overrides(vertex_server))
    with pytest.raises(ConfigError, match="epochs"):
        submit_vertex(
            cfg,
            "training",
            training_template,
            cache=True,
            wait=False,
            parameter_values={"epochs": 3},
        )
    assert not vertex_server.find("POST", r"/pipelineJobs$")


@pytest.mark.integration
def test_submits_a_registry_template_by_digest(
    vertex_server, registry_server, make_config, training_template
):
    from voltpipe.runners.templates import publish_template, resolve_template

    host = registry_server.host()
    publish_template(training_template, host=host, tags=["v1"])
    uri, version = resolve_template(host, "wind-power-training", "v1")
    cfg = make_config(*_vertex_overrides(vertex_server))
    summary = submit_vertex(cfg, "training", None, cache=True, wait=False, template_uri=uri)
    assert summary["template"] == uri
    assert registry_server.find("GET", rf"/wind-power-training/{version}$")
    [create] = vertex_server.find("POST", r"/pipelineJobs$")
    assert create.json["pipelineSpec"]["pipelineInfo"]["name"] == "wind-power-training"


def test_a_template_with_a_broken_header_is_repaired_under_the_workdir(
    make_config, training_template, tmp_path
):
    """KFP 2.17 writes a multi-line string default into the header without '#' on every line."""
    import yaml

    from voltpipe.runners.vertex import resolve_template_path

    text = training_template.read_text()
    broken = text.replace(
        "# Inputs:\n", "# Inputs:\n#    note: str [Default: 'first line\nsecond line']\n", 1
    )
    path = tmp_path / "broken.yaml"
    path.write_text(broken)
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(broken)
    cfg = make_config()
    fixed = Path(resolve_template_path(cfg, path, None))
    assert fixed.parent == cfg.workdir / "templates"
    assert yaml.safe_load(fixed.read_text())["pipelineInfo"]["name"] == "wind-power-training"
    # A valid template is used as it is. (The raw fixture is not one: the demo query spans
    # lines, which kfp writes into the header uncommented.)
    from voltpipe.runners.templates import repair_template_text

    valid = tmp_path / "valid.yaml"
    valid.write_text(repair_template_text(text))
    assert Path(resolve_template_path(cfg, valid, None)) == valid


@pytest.mark.integration
def test_wait_gives_up_after_the_timeout(monkeypatch, make_config, training_template):
    with VertexTestServer(pipeline_states=["PIPELINE_STATE_RUNNING"]) as srv:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", srv.endpoint)
        cfg = make_config(*_vertex_overrides(srv))
        with pytest.raises(
            PipelineError,
            match=r"still PIPELINE_STATE_RUNNING after 0 s; follow it at https://console",
        ):
            submit_vertex(
                cfg,
                "training",
                training_template,
                cache=True,
                wait=True,
                poll_seconds=0.01,
                timeout_seconds=0.05,
            )


# ----- issue 12: labels checked at config load; the server refuses what the service refuses ---


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("vertex.labels={Team: energy}", r"vertex.labels: label key 'Team'"),
        ("vertex.labels={team: Energy ML}", r"vertex.labels: label 'team': value 'Energy ML'"),
        ("bigquery.labels={1team: x}", r"bigquery.labels: label key '1team'"),
        (f"vertex.labels={{k: {'x' * 64}}}", r"at most 63"),
        (
            "vertex.labels={" + ", ".join(f"k{i}: v" for i in range(61)) + "}",
            r"61 labels: at most 60",
        ),
    ],
)
def test_labels_are_validated_at_config_load(make_config, override, message) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(override)
    ok = make_config("vertex.labels={team: energy-ml, env: dev_1, empty: ''}")
    assert ok.vertex.labels == {"team": "energy-ml", "env": "dev_1", "empty": ""}


def test_the_vertex_server_refuses_invalid_labels(vertex_server) -> None:
    from google.api_core import exceptions

    from voltpipe.registry.vertex import init_sdk

    aiplatform = init_sdk("my-proj", "europe-west1", vertex_server.endpoint)
    with pytest.raises(exceptions.BadRequest, match="invalid label key 'Team'"):
        aiplatform.Endpoint.create(display_name="e", labels={"Team": "x"}, sync=True)
    with pytest.raises(exceptions.BadRequest, match="invalid label value 'X Y'"):
        aiplatform.Model.upload(
            display_name="m",
            artifact_uri="gs://b/m",
            serving_container_image_uri="img",
            labels={"team": "X Y"},
        )


@pytest.mark.integration
def test_a_cmek_project_refuses_a_pipeline_job_without_the_key(
    monkeypatch, make_config, training_template
) -> None:
    with VertexTestServer(cmek_projects={"my-proj"}) as srv:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", srv.endpoint)
        cfg = make_config(*_vertex_overrides(srv))
        # (the SDK's own pipeline_root bucket creation has no key: the policy refuses it, the
        # SDK logs that and submits; create that bucket with its default key beforehand)
        summary = submit_vertex(cfg, "training", str(training_template), cache=True, wait=False)
        assert summary["status"] == "submitted"
        [job] = srv.find("POST", r"/pipelineJobs$")
        assert job.json["encryptionSpec"] == {"kmsKeyName": KEY}
        # without the key, the project's policy refuses the job
        bare = make_config(f"vertex.api_endpoint={srv.endpoint}")
        with pytest.raises(PipelineError, match="restrictNonCmekServices"):
            submit_vertex(bare, "training", str(training_template), cache=True, wait=False)
