"""Fixtures for the runner tests: a compiled training template and configs pointing at local servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from voltpipe.config import VoltpipeConfig, load_config
from voltpipe.testing.kfp_server import KfpTestServer, RegistryTestServer
from voltpipe.testing.vertex_server import VertexTestServer

CLOUD = [
    "warehouse=bigquery://my-proj",
    "vertex.project=my-proj",
    "vertex.location=europe-west1",
    "vertex.pipeline_root=gs://b/root",
    "vertex.service_account=runner@my-proj.iam.gserviceaccount.com",
]


@pytest.fixture(scope="session")
def training_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real training pipeline, compiled exactly as a user would (raw kfp compiler output)."""
    from kfp import compiler

    from voltpipe.pipelines import build_pipeline

    out = tmp_path_factory.mktemp("compiled")
    cfg = load_config(None, [*CLOUD, f"workdir={out / 'wd'}"])
    path = out / "training.yaml"
    compiler.Compiler().compile(build_pipeline("training", cfg), str(path))
    return path


@pytest.fixture
def vertex_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[VertexTestServer]:
    with VertexTestServer() as srv:
        # PipelineJob.submit checks the pipeline_root bucket with google-cloud-storage.
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", srv.endpoint)
        yield srv


@pytest.fixture
def kfp_server() -> Iterator[KfpTestServer]:
    with KfpTestServer() as srv:
        yield srv


@pytest.fixture
def registry_server() -> Iterator[RegistryTestServer]:
    with RegistryTestServer() as srv:
        yield srv


@pytest.fixture
def make_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(*overrides: str) -> VoltpipeConfig:
        return load_config(None, [*CLOUD, f"workdir={tmp_path / 'wd'}", *overrides])

    return make
