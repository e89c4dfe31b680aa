"""Golden interface of the compiled training pipeline: catches accidental signature changes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from kfp import compiler
from voltpipe.pipelines import build_pipeline

from voltpipe.config import load_config

GOLDEN = Path(__file__).with_name("golden") / "training_interface.json"


def _interface(tmp_path: Path) -> dict:
    out = tmp_path / "p.yaml"
    compiler.Compiler().compile(
        build_pipeline("training", load_config(None, cwd=tmp_path)), str(out)
    )
    spec = yaml.safe_load(out.read_text())
    root = spec["root"]
    return {
        "parameters": {
            k: v["parameterType"] for k, v in root["inputDefinitions"]["parameters"].items()
        },
        "outputs": sorted(root["outputDefinitions"]["artifacts"]),
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


def test_training_pipeline_interface_matches_golden(tmp_path: Path) -> None:
    current = _interface(tmp_path)
    if not GOLDEN.exists():  # first run writes it; commit the file
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(GOLDEN.read_text()), (
        "the compiled pipeline's interface changed; if intended, delete the golden file and re-run"
    )
