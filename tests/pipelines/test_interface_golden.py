"""Golden interfaces of the compiled training, prediction and monitoring pipelines: catch
accidental signature changes (parameters, outputs, tasks and their dependencies, components)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from voltpipe.config import load_config
from voltpipe.runners.templates import compile_template

GOLDEN = Path(__file__).with_name("golden")
PIPELINES = ("training", "prediction", "monitoring")


def _interface(pipeline: str, tmp_path: Path) -> dict[str, Any]:
    out = compile_template(pipeline, load_config(None, cwd=tmp_path), tmp_path / "p.yaml")
    spec = yaml.safe_load(out.read_text())
    root = spec["root"]
    return {
        "parameters": {
            k: v["parameterType"] for k, v in root["inputDefinitions"]["parameters"].items()
        },
        "outputs": sorted(root.get("outputDefinitions", {}).get("artifacts", {})),
        "tasks": {
            name: sorted(t.get("dependentTasks", [])) for name, t in root["dag"]["tasks"].items()
        },
        "components": {
            name: {
                "inputs": sorted(
                    [
                        *c.get("inputDefinitions", {}).get("parameters", {}),
                        *c.get("inputDefinitions", {}).get("artifacts", {}),
                    ]
                ),
                "outputs": sorted(
                    [
                        *c.get("outputDefinitions", {}).get("parameters", {}),
                        *c.get("outputDefinitions", {}).get("artifacts", {}),
                    ]
                ),
            }
            for name, c in spec["components"].items()
        },
    }


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_pipeline_interface_matches_golden(pipeline: str, tmp_path: Path) -> None:
    golden = GOLDEN / f"{pipeline}_interface.json"
    current = _interface(pipeline, tmp_path)
    if not golden.exists():  # first run writes it; commit the file
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(golden.read_text()), (
        f"the compiled {pipeline} pipeline's interface changed; if intended, delete "
        f"{golden.name} and re-run"
    )


def test_the_query_default_is_the_users_text(tmp_path: Path) -> None:
    """The compiled template carries the query as written (comments, line breaks), and the
    repaired header keeps the file valid YAML."""
    cfg = load_config(None, cwd=tmp_path)
    out = compile_template("training", cfg, tmp_path / "t.yaml")
    params = yaml.safe_load(out.read_text())["root"]["inputDefinitions"]["parameters"]
    assert params["query"]["defaultValue"] == cfg.sql
    assert "\n" in cfg.sql  # the demo query spans lines: the case the header repair is for
