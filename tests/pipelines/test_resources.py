"""Per-step resources (``resources.<step>``): validated in the config, compiled into the IR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from voltpipe.config import load_config, memory_bytes
from voltpipe.errors import ConfigError
from voltpipe.runners.templates import compile_template


def _compiled(tmp_path: Path, pipeline: str, overrides: list[str]) -> dict[str, Any]:
    cfg = load_config(None, overrides, cwd=tmp_path)
    # compile_template mends the header KFP writes for a multi-line query default.
    out = compile_template(pipeline, cfg, tmp_path / f"{pipeline}.yaml")
    return yaml.safe_load(out.read_text())


def _resources(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Executor name -> its container's resources (absent: Vertex's default machine)."""
    return {
        name: e["container"].get("resources", {})
        for name, e in spec["deploymentSpec"]["executors"].items()
    }


def test_no_resources_configured_leaves_every_step_on_the_default_machine(
    tmp_path: Path,
) -> None:
    got = _resources(_compiled(tmp_path, "training", []))
    assert {"exec-train", "exec-extract", "exec-register"} <= set(got)
    assert all(r == {} for r in got.values()), got


def test_training_steps_carry_their_configured_machine(tmp_path: Path) -> None:
    spec = _compiled(
        tmp_path,
        "training",
        [
            "resources.train.cpu=8",
            "resources.train.memory=32Gi",
            "resources.train.accelerator_type=NVIDIA_TESLA_T4",
            "resources.train.accelerator_count=2",
            "resources.extract.memory=16G",
            "resources.validate.cpu=500m",
        ],
    )
    got = _resources(spec)
    train = got["exec-train"]
    assert float(train["resourceCpuLimit"]) == 8
    assert train["resourceMemoryLimit"] == "32Gi"
    assert train["accelerator"]["resourceType"] == "NVIDIA_TESLA_T4"
    assert int(train["accelerator"]["resourceCount"]) == 2
    assert got["exec-extract"]["resourceMemoryLimit"] == "16G"
    assert "resourceCpuLimit" not in got["exec-extract"]
    assert got["exec-validate"]["resourceCpuLimit"] == "500m"
    # Steps not configured stay on the default machine.
    assert got["exec-evaluate"] == {} and got["exec-register"] == {}


def test_an_accelerator_type_alone_asks_for_one(tmp_path: Path) -> None:
    got = _resources(
        _compiled(tmp_path, "training", ["resources.train.accelerator_type=NVIDIA_L4"])
    )
    assert int(got["exec-train"]["accelerator"]["resourceCount"]) == 1


def test_prediction_and_monitoring_steps_carry_theirs(tmp_path: Path) -> None:
    got = _resources(_compiled(tmp_path, "prediction", ["resources.batch_predict.memory=64G"]))
    assert got["exec-batch-predict"]["resourceMemoryLimit"] == "64G"
    got = _resources(
        _compiled(
            tmp_path,
            "monitoring",
            ["resources.drift.cpu=4", "resources.extract_window.memory=8G"],
        )
    )
    assert float(got["exec-drift"]["resourceCpuLimit"]) == 4
    assert got["exec-extract-window"]["resourceMemoryLimit"] == "8G"


@pytest.mark.parametrize(
    ("override", "culprit"),
    [
        ("resources.trian.cpu=4", "resources.trian: unknown key"),
        ("resources.train.memory=lots", "resources.train.memory"),
        ("resources.train.memory=16GB", "resources.train.memory"),
        ("resources.train.cpu=-1", "resources.train.cpu"),
        ("resources.train.cpu=0", "resources.train.cpu"),
        ("resources.train.accelerator_count=2", "accelerator_count needs accelerator_type"),
        ("resources.train.accelerator_count=0", "resources.train.accelerator_count"),
        ("resources.train.accelerator_type=t4", "resources.train.accelerator_type"),
        ("resources.train.gpus=1", "resources.train.gpus: unknown key"),
    ],
)
def test_a_bad_resource_names_its_key(tmp_path: Path, override: str, culprit: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override], cwd=tmp_path)
    assert culprit in str(info.value)


def test_memory_sizes_use_kubernetes_units() -> None:
    assert memory_bytes("16G") == 16 * 10**9
    assert memory_bytes("2Gi") == 2 * 2**30
    assert memory_bytes("512Mi") == 512 * 2**20
    assert memory_bytes("1000") == 1000


def test_the_prediction_backend_is_a_pipeline_parameter(tmp_path: Path) -> None:
    spec = _compiled(
        tmp_path,
        "prediction",
        [
            "warehouse=bigquery://p",
            "vertex.project=p",
            "deploy.target=vertex",
            "prediction.backend=vertex",
            "prediction.vertex.machine_type=n1-highmem-16",
            "prediction.vertex.max_replica_count=40",
        ],
    )
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["backend"]["defaultValue"] == "vertex"
    vertex = params["vertex_params"]["defaultValue"]
    assert vertex["machine_type"] == "n1-highmem-16" and vertex["max_replica_count"] == 40
    with pytest.raises(ConfigError, match=r"prediction\.backend: vertex scores BigQuery"):
        load_config(None, ["prediction.backend=vertex"], cwd=tmp_path)
