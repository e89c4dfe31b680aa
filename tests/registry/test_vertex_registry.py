"""The Vertex AI Model Registry backend through the real aiplatform SDK, against VertexTestServer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from voltpipe.errors import ConfigError
from voltpipe.registry import open_registry
from voltpipe.registry.vertex import VertexRegistry, parse_vertex_uri, vertex_registry_uri
from voltpipe.testing.vertex_server import VertexTestServer

pytestmark = pytest.mark.integration
IMAGE = "europe-west1-docker.pkg.dev/my-proj/voltpipe/voltpipe:1"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[VertexTestServer]:
    with VertexTestServer() as srv:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", srv.endpoint)
        yield srv


@pytest.fixture
def registry(server: VertexTestServer, tmp_path: Path) -> VertexRegistry:
    uri = vertex_registry_uri(
        "my-proj",
        "europe-west1",
        image=IMAGE,
        api_endpoint=server.endpoint,
        labels={"team": "energy"},
        gcs_mount=str(tmp_path / "gcs"),
    )
    reg = open_registry(uri)
    assert isinstance(reg, VertexRegistry)
    return reg


def _model_dir(registry: VertexRegistry, run: str) -> Path:
    """A model folder as a KFP Model artifact is on Vertex: under the gs:// mount."""
    path = registry.gcs_mount / "bucket" / "pipeline-root" / run / "model"
    path.mkdir(parents=True)
    (path / "voltpipe_model.json").write_text("{}")
    return path


def _lineage(promote: bool) -> dict:
    return {
        "task": "regression",
        "label": "power_kW",
        "metrics": {"test": {"rmse": 12.5}},
        "decision": {"promote": promote, "reason": "rmse 12.5 beats 13.0" if promote else "no"},
        "data_statistics": {"rows": 1000},
    }


def test_register_uploads_versions_under_one_parent(registry, server) -> None:
    first = registry.register("wind-power", _model_dir(registry, "r1"), _lineage(True))
    second = registry.register("wind-power", _model_dir(registry, "r2"), _lineage(False))

    assert (first.version, second.version) == ("1", "2")
    assert first.uri == "gs://bucket/pipeline-root/r1/model"
    up1, up2 = (r.json for r in server.find("POST", r"/models:upload$"))
    assert "parentModel" not in up1
    assert up2["parentModel"] == first.metadata["vertex_model"]
    m1, m2 = up1["model"], up2["model"]
    assert m1["displayName"] == "wind-power"
    assert m1["artifactUri"] == "gs://bucket/pipeline-root/r1/model"
    # Upload moves no champion (deploy does, after its checks); the first version is the default.
    assert m1["versionAliases"] == ["default"]
    assert "versionAliases" not in m2  # the default stays where it was
    assert m1["containerSpec"] == {
        "imageUri": IMAGE,
        "predictRoute": "/predict",
        "healthRoute": "/health",
        "ports": [{"containerPort": 8080}],
    }
    assert m1["labels"] == {
        "team": "energy",
        "voltpipe-model": "wind-power",
        "voltpipe-promoted": "true",
        "voltpipe-task": "regression",
        "voltpipe-label": "power_kw",
    }
    assert m2["labels"]["voltpipe-promoted"] == "false"
    assert json.loads(m1["description"])["metrics"] == {"test": {"rmse": 12.5}}
    assert m1["versionDescription"] == "rmse 12.5 beats 13.0"
    # The test metrics are imported as each version's model evaluation.
    evaluation, _ = server.find("POST", r"/evaluations:import$")
    assert evaluation.path.endswith(f"{first.metadata['vertex_model']}@1/evaluations:import")
    assert evaluation.json["modelEvaluation"]["metrics"] == {"rootMeanSquaredError": 12.5}
    assert evaluation.json["modelEvaluation"]["metricsSchemaUri"].endswith(
        "regression_metrics_1.0.0.yaml"
    )
    assert first.metadata["vertex_evaluation"].startswith(f"{first.metadata['vertex_model']}@1/")
    # The full lineage is stored next to the model, with the version Vertex gave it.
    stored = json.loads(
        (registry.gcs_mount / "bucket/pipeline-root/r1/model/metadata.json").read_text()
    )
    assert stored["version"] == "1"
    assert stored["data_statistics"] == {"rows": 1000}


def test_aliases_get_and_versions(registry, server) -> None:
    registry.register("wind-power", _model_dir(registry, "r1"), _lineage(True))
    registry.register("wind-power", _model_dir(registry, "r2"), _lineage(False))
    assert registry.get("wind-power") is None  # registering names no champion
    assert registry.compare_and_set_alias("wind-power", "champion", "1", expected=None) is None
    assert registry.get("wind-power").version == "1"
    # A compare-and-swap against a stale expectation changes nothing and says what is there.
    assert registry.compare_and_set_alias("wind-power", "champion", "2", expected=None) == "1"
    assert registry.get("wind-power").version == "1"
    server.requests.clear()

    registry.set_alias("wind-power", "champion", "2")
    [merge] = server.find("POST", r":mergeVersionAliases$")
    assert merge.path.endswith("@2:mergeVersionAliases")
    assert merge.json["versionAliases"] == ["champion", "default"]
    champion = registry.get("wind-power", "champion")
    assert champion.version == "2"
    assert champion.uri == "gs://bucket/pipeline-root/r2/model"
    assert champion.metadata["decision"]["promote"] is False
    assert set(champion.aliases) == {"champion", "default"}

    registry.set_alias("wind-power", "staging", "1")
    registry.remove_alias("wind-power", "staging", "1")
    assert registry.get("wind-power", "staging") is None

    versions = registry.versions("wind-power")
    assert [(v.version, set(v.aliases)) for v in versions] == [
        ("1", set()),
        ("2", {"champion", "default"}),
    ]
    assert registry.get("wind-power", "7") is None
    assert registry.get("solar") is None
    assert registry.versions("solar") == []


def test_metadata_falls_back_to_the_description(registry, tmp_path) -> None:
    version = registry.register("wind-power", _model_dir(registry, "r1"), _lineage(True))
    (registry.gcs_mount / "bucket/pipeline-root/r1/model/metadata.json").unlink()
    meta = registry.get("wind-power", version.version).metadata
    assert meta["metrics"] == {"test": {"rmse": 12.5}}
    assert meta["vertex_model_version"].endswith("@1")


def test_local_folders_and_bad_uris_are_config_errors(registry, tmp_path) -> None:
    with pytest.raises(ConfigError, match="not on Cloud Storage"):
        registry.register("wind-power", tmp_path, _lineage(True))
    with pytest.raises(ConfigError, match="vertex://PROJECT/LOCATION"):
        open_registry("vertex://my-proj")
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        parse_vertex_uri("vertex://p/l?colour=blue")
    with pytest.raises(ConfigError, match="not in the Vertex AI Model Registry"):
        registry.set_alias("solar", "champion", "1")
    assert parse_vertex_uri("vertex://p/europe-west4?image=i&label.a=b") == {
        "project": "p",
        "location": "europe-west4",
        "image": "i",
        "labels": {"a": "b"},
    }


# ----- issue 12: evaluations under the schema's names; CMEK on every version ------------------


@pytest.mark.parametrize(
    ("task", "metrics", "expected"),
    [
        (
            "regression",
            {"rmse": 12.5, "mae": 9.0, "r2": 0.8},
            {"rootMeanSquaredError": 12.5, "meanAbsoluteError": 9.0, "rSquared": 0.8},
        ),
        (
            "classification",
            {"auc": 0.91, "log_loss": 0.3, "accuracy": 0.85, "f1": 0.7},
            {"auRoc": 0.91, "logLoss": 0.3},
        ),
        (
            "forecasting",
            {"mae": 3.0, "rmse": 4.0, "skill_persistence": 0.2, "mae_h1": 2.0},
            {"meanAbsoluteError": 3.0, "rootMeanSquaredError": 4.0},
        ),
    ],
)
def test_evaluation_is_imported_with_the_schemas_field_names(
    registry, server, task, metrics, expected
) -> None:
    lineage = {**_lineage(True), "task": task, "metrics": {"test": metrics}}
    version = registry.register("wind-power", _model_dir(registry, "r1"), lineage)
    # the test server refuses names the schema does not define, as the Model Registry does
    assert version.metadata["vertex_evaluation"]
    [stored] = server.evaluations.values()
    assert stored["metrics"] == pytest.approx(expected)
    assert stored["metricsSchemaUri"].endswith(f"/{task}_metrics_1.0.0.yaml")


def test_every_version_carries_the_cmek_key(tmp_path: Path, monkeypatch) -> None:
    key = "projects/my-proj/locations/europe-west1/keyRings/r/cryptoKeys/k"
    with VertexTestServer(cmek_projects={"my-proj"}) as srv:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", srv.endpoint)
        common = {"image": IMAGE, "api_endpoint": srv.endpoint, "gcs_mount": str(tmp_path / "g")}
        reg = open_registry(
            vertex_registry_uri("my-proj", "europe-west1", encryption_key=key, **common)
        )
        reg.register("wind-power", _model_dir(reg, "r1"), _lineage(True))
        [upload] = srv.find("POST", r"/models:upload$")
        assert upload.json["model"]["encryptionSpec"] == {"kmsKeyName": key}
        # without the key, the organisation policy refuses the upload
        bare = open_registry(vertex_registry_uri("my-proj", "europe-west1", **common))
        from voltpipe.errors import DataError

        with pytest.raises(DataError, match="refused a version of 'wind-power': .*restrictNonCmek"):
            bare.register("wind-power", _model_dir(bare, "r2"), _lineage(True))
