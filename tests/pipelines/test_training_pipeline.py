"""The whole training pipeline under kfp.local, asserting on what every step produced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from voltpipe.config import load_config
from voltpipe.errors import PipelineError
from voltpipe.registry import open_registry
from voltpipe.runners.local import run_local
from voltpipe.runners.templates import compile_template

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _task_dir(workdir: Path, run_id: str, task: str) -> Path:
    return workdir / "pipeline-root" / run_id / task


def test_regression_pipeline_outputs_of_every_step(wind_config: Path) -> None:
    cfg = load_config(wind_config)
    summary = run_local("training", cfg, cache=True)
    assert summary["status"] == "succeeded" and summary["pipeline"] == "training"
    run = summary["run_id"]
    # extract: three parquet datasets
    for split in ("train", "valid", "test"):
        assert list(_task_dir(cfg.workdir, run, "extract").joinpath(split).glob("*.parquet"))
    # validate: statistics, schema, report
    validate = _task_dir(cfg.workdir, run, "validate")
    assert json.loads((validate / "statistics").read_text())["train"]["rows"] > 1000
    assert "power_kw" in json.loads((validate / "schema").read_text())["columns"]
    assert "**Verdict:** passed" in (validate / "report").read_text()
    # train: the model with preprocessing inside, and its curves
    train = _task_dir(cfg.workdir, run, "train")
    assert (train / "model" / "model.keras").exists()
    meta = json.loads((train / "model" / "voltpipe_model.json").read_text())
    assert meta["features"]["categorical"]["turbine_id"] == ["WT01", "WT02"]
    assert "ts" not in meta["features"]["numeric"]
    # evaluate: metrics that beat a trivial model
    metrics = summary["metrics"]["test"]
    assert set(metrics) == {"rmse", "mae", "r2"}
    assert metrics["r2"] > 0.5
    assert "PROMOTE" in (_task_dir(cfg.workdir, run, "evaluate") / "decision_report").read_text()
    # register: version 1 is champion, with lineage
    assert summary["model"] == {"name": "wind-test", "version": "1", "uri": summary["model"]["uri"]}
    assert summary["champion"]["promoted"] is True and summary["champion"]["version"] == "1"
    champion = open_registry(cfg.registry_uri).get("wind-test")
    assert champion is not None and champion.uri == summary["model"]["uri"]
    assert champion.metadata["query_parameters"]["cutoff"]["type"] == "TIMESTAMP"
    assert champion.metadata["data_statistics"]["train"]["rows"] > 1000
    # tracking: the MLflow run holds the parameters, test metrics and registered version
    import mlflow

    logged = mlflow.MlflowClient(tracking_uri=cfg.tracking_uri).get_run(summary["mlflow_run_id"])
    assert logged.data.metrics["test_rmse"] == pytest.approx(metrics["rmse"])
    assert logged.data.params["training.epochs"] == "6"
    assert logged.data.tags["voltpipe.model_version"] == "1"

    # A cached re-run reuses extract, validate and train; evaluate, register and deploy always
    # run (they read or write the registry). The same model is the same version: no new one.
    cached = run_local("training", cfg, cache=True)
    assert cached["model"]["version"] == "1"
    assert cached["champion"]["promoted"] is False and cached["champion"]["version"] == "1"
    assert "already the champion" in cached["champion"]["reason"]
    assert cached["run_id"] != run and cached["log"] != summary["log"]
    assert cached["seconds"] < summary["seconds"] / 2
    assert [v.version for v in open_registry(cfg.registry_uri).versions("wind-test")] == ["1"]

    # Without the cache: a new version is scored against the champion on the same test data.
    again = run_local("training", load_config(wind_config, ["training.seed=7"]), cache=False)
    assert again["model"]["version"] == "2"
    decision = json.loads(
        (_task_dir(cfg.workdir, again["run_id"], "evaluate") / "evaluation").read_text()
    )
    assert decision["champion_metrics"] is not None and decision["champion_version"] == "1"
    expected = "2" if decision["decision"]["promote"] else "1"
    assert open_registry(cfg.registry_uri).get("wind-test").version == expected


def test_failed_run_leaves_the_champion_untouched(wind_config: Path) -> None:
    cfg = load_config(wind_config)
    first = run_local("training", cfg, cache=False)
    champion = first["champion"]["version"]
    # A label that validation rejects (all null for these rows) fails the run after extraction.
    bad = load_config(
        wind_config,
        [
            "query=SELECT ts, wind_speed_ms, CAST(NULL AS FLOAT64) AS power_kw FROM scada.turbine",
        ],
    )
    with pytest.raises(PipelineError, match="label column 'power_kw' is all null"):
        run_local("training", bad, cache=False)
    registry = open_registry(cfg.registry_uri)
    assert registry.get("wind-test").version == champion
    assert len(registry.versions("wind-test")) == 1


def test_classification_on_a_different_table(equipment_config: Path) -> None:
    cfg = load_config(equipment_config)
    summary = run_local("training", cfg, cache=False)
    metrics = summary["metrics"]["test"]
    assert set(metrics) == {"accuracy", "auc", "f1", "log_loss"}
    assert metrics["auc"] > 0.7  # the label depends on oil temperature, age and region
    meta = json.loads(Path(summary["model"]["uri"], "voltpipe_model.json").read_text())
    assert meta["classes"] == ["failed", "healthy"]
    assert meta["features"]["categorical"]["region"] == ["east", "north", "south", "west"]


def test_compiled_pipeline_loads_with_kfp(tmp_path: Path, wind_config: Path) -> None:
    from kfp import components

    cfg = load_config(wind_config, ["image=europe-west1-docker.pkg.dev/p/voltpipe/voltpipe:9.9"])
    out = tmp_path / "training.yaml"
    compile_template("training", cfg, out)  # kfp's compiler, then its header repaired
    loaded = components.load_component_from_file(str(out))
    assert loaded.name == "wind-test-training"
    spec = yaml.safe_load(out.read_text())
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"europe-west1-docker.pkg.dev/p/voltpipe/voltpipe:9.9"}


def test_training_backend_vertex_compiles_into_the_train_step(
    tmp_path: Path, wind_config: Path
) -> None:
    """With training.backend vertex, the train step carries what it needs to submit the
    CustomJob: the machine settings, the vertex section and the image."""
    image = "europe-west1-docker.pkg.dev/p/voltpipe/voltpipe:9.9"
    cfg = load_config(
        wind_config,
        [
            f"image={image}",
            "training.backend=vertex",
            "training.vertex={machine_type: n1-highmem-8, accelerator_type: NVIDIA_TESLA_T4, "
            "accelerator_count: 1, replica_count: 2}",
            "vertex.project=wind-prod",
        ],
    )
    out = tmp_path / "training.yaml"
    compile_template("training", cfg, out)  # kfp's compiler, then its header repaired
    spec = yaml.safe_load(out.read_text())
    inputs = spec["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]
    assert inputs["image"]["runtimeValue"]["constant"] == image
    assert inputs["vertex"]["runtimeValue"]["constant"]["project"] == "wind-prod"
    defaults = spec["root"]["inputDefinitions"]["parameters"]["training_params"]["defaultValue"]
    assert defaults["backend"] == "vertex"
    assert defaults["vertex"] == {
        "machine_type": "n1-highmem-8",
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 1,
        "replica_count": 2,
    }


def test_the_same_pipeline_on_bigquery_through_the_wire(
    wind_config: Path, wind_warehouse: Path
) -> None:
    """warehouse: bigquery://p, served by the wire-level BigQuery test server (REST + Storage Read)."""
    from voltpipe.testing.bigquery_server import BigQueryTestServer

    with BigQueryTestServer(wind_warehouse, project="p", location="EU") as srv:
        cfg = load_config(
            wind_config,
            [
                "warehouse=bigquery://p",
                f"bigquery.api_endpoint={srv.endpoint}",
                f"bigquery.read_api_endpoint={srv.read_api_endpoint}",
                "bigquery.location=EU",
                "bigquery.labels={team: energy}",
                "name=wind-bq",
            ],
        )
        summary = run_local("training", cfg, cache=False)
        jobs = srv.job_requests()
        reads = srv.grpc_requests("CreateReadSession")
    assert summary["status"] == "succeeded" and summary["metrics"]["test"]["r2"] > 0.5
    real = [j for j in jobs if not j["configuration"].get("dryRun")]
    assert len(reads) == 3  # one Storage Read session per split
    assert real, "the extraction ran a query job"
    query = real[-1]["configuration"]["query"]
    assert query["queryParameters"][0]["parameterType"]["type"] == "TIMESTAMP"
    assert real[-1]["configuration"]["labels"] == {"team": "energy"}
    assert real[-1]["jobReference"]["location"] == "EU"


def test_data_is_validated_against_the_champions_schema(wind_config: Path) -> None:
    cfg = load_config(wind_config)
    run_local("training", cfg, cache=True)
    changed_query = (
        "SELECT ts, turbine_id, wind_speed_ms, air_density_kgm3, rotor_speed_rpm, power_kw "
        "FROM scada.turbine WHERE ts < @cutoff AND status = 'ok'"
    )
    with pytest.raises(PipelineError, match="not in the schema: rotor_speed_rpm"):
        run_local("training", load_config(wind_config, [f"query={changed_query}"]), cache=False)
    assert open_registry(cfg.registry_uri).get("wind-test").version == "1"
