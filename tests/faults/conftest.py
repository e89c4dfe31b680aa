"""Fixtures for fault injection: the inputs of one registration, and a tiny file system."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

META = {
    "task": "regression",
    "label": "power_kw",
    "features": {"numeric": {"wind_speed": {"mean": 8.0, "variance": 9.0}}, "categorical": {}},
}


def registration_inputs(folder: Path, *, promote: bool = True, champion: str | None = None) -> dict:
    """Keyword arguments for `register_and_promote`: a model folder and the step inputs."""
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "model"
    model.mkdir(exist_ok=True)
    (model / "voltpipe_model.json").write_text(json.dumps(META))
    (model / "model.keras").write_bytes(uuid.uuid4().bytes)  # a distinct model per call
    evaluation = {
        "metrics": {"rmse": 10.0},
        "champion_version": champion,
        "decision": {"promote": promote, "reason": "rmse 10.0 beats none" if promote else "no"},
    }
    files = {"evaluation": evaluation, "statistics": {"train": {"rows": 10}}, "schema": {}}
    for name, data in files.items():
        (folder / f"{name}.json").write_text(json.dumps(data))
    return {
        "model_dir": str(model),
        "evaluation_path": str(folder / "evaluation.json"),
        "statistics_path": str(folder / "statistics.json"),
        "schema_path": str(folder / "schema.json"),
        "model_name": "wind",
        "query": "SELECT 1",
        "query_parameters": {},
        "out_path": str(folder / "registration.json"),
    }


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: a real full disk (ENOSPC). Needs root and mount rights, else skipped."""
    mount = shutil.which("mount")
    point = tmp_path / "tiny"
    point.mkdir()
    if mount is None:
        pytest.skip("no mount command")
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(point)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)
