"""Vertex AI BatchPredictionJob (BigQuery -> BigQuery) through the real SDK, against the test
servers, which validate the job as the service does and run it with the model's serving code."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.api_core import exceptions as gexc

from tests.serving.conftest import scada_table
from voltpipe.deploy.vertex_batch import predict_batch_vertex
from voltpipe.errors import ConfigError
from voltpipe.registry import open_registry
from voltpipe.registry.vertex import VertexRegistry, init_sdk, vertex_registry_uri
from voltpipe.testing.bigquery_server import BigQueryTestServer
from voltpipe.testing.vertex_server import VertexTestServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
IMAGE = "europe-west1-docker.pkg.dev/p/voltpipe/voltpipe:1"


@pytest.fixture(scope="module")
def gbdt_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from voltpipe.modelling.train import train_model

    root = tmp_path_factory.mktemp("gbdt")
    for split, n, seed in (("train", 800, 1), ("valid", 200, 2)):
        (root / split).mkdir()
        pq.write_table(scada_table(n, seed).drop_columns(["state"]), root / split / "p.parquet")
    train_model(
        root / "train",
        root / "valid",
        root / "model",
        label="power_kw",
        task="regression",
        model_params={"family": "gbdt", "gbdt": {"max_trees": 20}},
    )
    return root / "model"


def _rows(n: int) -> pa.Table:
    rows = scada_table(n, 7).drop_columns(["power_kw", "state"])
    return rows.append_column("row_id", pa.array(np.arange(n)))


@pytest.fixture
def servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[BigQueryTestServer, VertexTestServer]]:
    db = tmp_path / "src.duckdb"
    con = duckdb.connect(str(db))
    con.register("rows", _rows(1500))
    con.execute("CREATE SCHEMA scada; CREATE TABLE scada.rows AS SELECT * FROM rows")
    con.close()
    with (
        BigQueryTestServer(db, project="p", storage_api=False) as bq,
        VertexTestServer(bigquery=bq, gcs_root=tmp_path / "gcs") as vx,
    ):
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", vx.endpoint)
        yield bq, vx


def _register(tmp_path: Path, vx: VertexTestServer, model: Path) -> str:
    uri = vertex_registry_uri(
        "p", "europe-west1", image=IMAGE, api_endpoint=vx.endpoint, gcs_mount=str(tmp_path / "gcs")
    )
    registry = open_registry(uri)
    assert isinstance(registry, VertexRegistry)
    folder = tmp_path / "gcs" / "bucket" / "run-1" / "model"
    shutil.copytree(model, folder)
    version = registry.register("wind", folder, {"task": "regression"})
    registry.set_alias("wind", "champion", version.version)
    return uri


def test_batch_prediction_job_scores_bigquery_into_the_destination(
    tmp_path: Path, servers: tuple[BigQueryTestServer, VertexTestServer], gbdt_model: Path
) -> None:
    from voltpipe.modelling.predict import load_model

    bq, vx = servers
    registry_uri = _register(tmp_path, vx, gbdt_model)
    summary = predict_batch_vertex(
        warehouse="bigquery://p",
        sql="SELECT * FROM scada.rows WHERE hour >= @h",
        parameters={"h": {"type": "INT64", "value": 0}},
        registry_uri=registry_uri,
        model_name="wind",
        selector="champion",
        destination="preds.wind",
        mode="replace",
        warehouse_options={"api_endpoint": bq.endpoint},
        vertex={"machine_type": "n1-highmem-8", "max_replica_count": 4},
        poll_seconds=0.01,
    )
    assert summary["rows"] == summary["source_rows"] == 1500
    assert summary["backend"] == "vertex" and "/batchPredictionJobs/" in summary["vertex_job"]
    # The job as the SDK sent it: the registered version, BigQuery in and out, the machines.
    (request,) = vx.find("POST", r"/batchPredictionJobs$")
    body = request.json
    assert body["model"].endswith("@1")
    assert body["inputConfig"]["instancesFormat"] == "bigquery"
    assert body["inputConfig"]["bigquerySource"]["inputUri"].startswith(
        "bq://p.preds._voltpipe_bp_source_"
    )
    assert body["outputConfig"]["bigqueryDestination"]["outputUri"] == "bq://p.preds"
    resources = body["dedicatedResources"]
    assert resources["machineSpec"]["machineType"] == "n1-highmem-8"
    assert resources["maxReplicaCount"] == 4
    # The rows, scored by the model's serving code, copied into the destination.
    out = bq.engine.read_table("p", "preds", "wind").sort_by("row_id")
    expected = np.asarray(load_model(gbdt_model).predict_raw(_rows(1500))).reshape(-1)
    assert np.allclose(out.column("prediction").to_numpy(), expected, rtol=1e-6, atol=1e-6)
    # No scratch table is left beside the destination.
    with bq.engine.cursor() as cur:
        tables = {
            r[0]
            for r in cur.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'preds'"
            ).fetchall()
        }
    assert tables == {"wind"}


def test_the_service_validation_and_error_shapes(
    tmp_path: Path, servers: tuple[BigQueryTestServer, VertexTestServer], gbdt_model: Path
) -> None:
    bq, vx = servers
    _register(tmp_path, vx, gbdt_model)
    aiplatform = init_sdk("p", "europe-west1", vx.endpoint)
    (model,) = [m for m in vx.models.values() if m["versionId"] == "1"]
    name = f"{model['name']}@1"

    def create(**kwargs: object) -> object:
        args = {
            "job_display_name": "j",
            "model_name": name,
            "instances_format": "bigquery",
            "predictions_format": "bigquery",
            "bigquery_source": "bq://p.scada.rows",
            "bigquery_destination_prefix": "bq://p.out",
            "sync": False,
            **kwargs,
        }
        job = aiplatform.BatchPredictionJob.create(**args)
        job.wait_for_resource_creation()
        return job

    with pytest.raises(gexc.NotFound, match="not found"):
        create(model_name=f"{model['name'].rsplit('/', 1)[0]}/424242")
    with pytest.raises(gexc.BadRequest, match="Invalid BigQuery source URI"):
        create(bigquery_source="bq://p.scada")
    job = create()
    assert _final(job) == "JOB_STATE_SUCCEEDED"
    info = job.output_info
    dataset = info.bigquery_output_dataset.removeprefix("bq://p.")
    assert dataset == "out" and info.bigquery_output_table.startswith("predictions_")
    assert bq.engine.read_table("p", dataset, info.bigquery_output_table).num_rows == 1500
    listed = aiplatform.BatchPredictionJob.list()
    assert [j.resource_name for j in listed] == [job.resource_name]
    # A job whose source lacks the model's features fails with the serving code's message.
    bq.engine.write_table("bad", "rows", pa.table({"x": [1.0]}), "WRITE_TRUNCATE", "p")
    bad = create(bigquery_source="bq://p.bad.rows")
    assert _final(bad) == "JOB_STATE_FAILED"
    assert "feature column" in bad.gca_resource.error.message
    with pytest.raises(gexc.BadRequest, match="Invalid BigQuery destination URI"):
        create(bigquery_destination_prefix="bq://p.a.b.c")
    assert {j.state.name for j in aiplatform.BatchPredictionJob.list()} == {
        "JOB_STATE_SUCCEEDED",
        "JOB_STATE_FAILED",
    }


def _final(job: object) -> str:
    """Reads the job until it is terminal (each read moves it on, as the service's work does)."""
    for _ in range(10):
        state = job.state.name  # type: ignore[attr-defined]
        if state.endswith(("SUCCEEDED", "FAILED", "CANCELLED")):
            return state
    return state


def test_vertex_backend_refuses_a_duckdb_warehouse_or_local_registry(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bigquery://PROJECT"):
        predict_batch_vertex(
            warehouse="duckdb:///x.duckdb",
            sql="SELECT 1",
            parameters={},
            registry_uri=str(tmp_path / "registry"),
            model_name="wind",
            selector="champion",
            destination="p.w",
        )
    with pytest.raises(ConfigError, match="Vertex AI Model Registry"):
        predict_batch_vertex(
            warehouse="bigquery://p",
            sql="SELECT 1",
            parameters={},
            registry_uri=str(tmp_path / "registry"),
            model_name="wind",
            selector="champion",
            destination="p.w",
        )
