"""Each component's body called directly (``python_func``) with artifacts in a tmp folder."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kfp import dsl

from voltpipe.components import CATALOGUE, evaluate, extract, register, train, validate, with_image
from voltpipe.data.params import normalize_parameters

SQL = (
    "SELECT ts, turbine_id, wind_speed_ms, air_density_kgm3, power_kw FROM scada.turbine "
    "WHERE ts < @cutoff AND status = 'ok'"
)
PARAMS = normalize_parameters({"cutoff": {"type": "TIMESTAMP", "value": "2024-11-01"}})


def _art(cls: type, root: Path, name: str) -> dsl.Artifact:
    return cls(name=name, uri=str(root / name), metadata={})


@pytest.fixture
def extracted(wind_warehouse: Path, tmp_path: Path) -> dict[str, dsl.Dataset]:
    outs = {s: _art(dsl.Dataset, tmp_path / "extract", s) for s in ("train", "valid", "test")}
    extract.python_func(
        warehouse=f"duckdb:///{wind_warehouse}",
        query=SQL,
        query_parameters=PARAMS,
        split={"method": "hash", "column": "ts", "seed": 1},
        **outs,
    )
    return outs


def test_extract_writes_three_datasets_with_metadata(
    extracted: dict[str, dsl.Dataset], wind_warehouse: Path
) -> None:
    con = duckdb.connect(str(wind_warehouse), read_only=True)
    expected = con.execute(
        "SELECT count(*) FROM scada.turbine WHERE ts < TIMESTAMP '2024-11-01' AND status = 'ok'"
    ).fetchall()[0][0]
    con.close()
    rows = {k: a.metadata["rows"] for k, a in extracted.items()}
    assert sum(rows.values()) == expected
    assert all(n > 0 for n in rows.values())
    assert extracted["train"].metadata["schema"][0] == {"name": "ts", "type": "TIMESTAMP"}
    assert Path(extracted["train"].path, "part-00000.parquet").exists()


def test_extract_bad_table_exits_with_one_message(
    wind_warehouse: Path, tmp_path: Path, capsys
) -> None:
    outs = {s: _art(dsl.Dataset, tmp_path, s) for s in ("train", "valid", "test")}
    with pytest.raises(SystemExit) as exit_:
        extract.python_func(
            warehouse=f"duckdb:///{wind_warehouse}",
            query="SELECT * FROM scada.nope",
            query_parameters={},
            split={"method": "random"},
            **outs,
        )
    assert exit_.value.code == 1
    assert "voltpipe error: table scada.nope does not exist" in capsys.readouterr().err


def test_validate_writes_statistics_schema_and_report(
    extracted: dict[str, dsl.Dataset], tmp_path: Path
) -> None:
    outs = {
        "statistics": _art(dsl.Artifact, tmp_path, "stats"),
        "schema": _art(dsl.Artifact, tmp_path, "schema"),
        "report": _art(dsl.Markdown, tmp_path, "report"),
    }
    validate.python_func(
        train=extracted["train"],
        valid=extracted["valid"],
        test=extracted["test"],
        label="power_kw",
        task="regression",
        **outs,
    )
    stats = json.loads(Path(outs["statistics"].path).read_text())
    assert set(stats) == {"train", "valid", "test"}
    assert (
        json.loads(Path(outs["schema"].path).read_text())["columns"]["power_kw"]["kind"]
        == "numeric"
    )
    assert "**Verdict:** passed" in Path(outs["report"].path).read_text()


def test_validate_fails_on_constant_label(tmp_path: Path, capsys) -> None:
    splits = {}
    for name in ("train", "valid", "test"):
        splits[name] = _art(dsl.Dataset, tmp_path / "data", name)
        Path(splits[name].path).mkdir(parents=True)
        pq.write_table(
            pa.table({"x": [1.0, 2.0, 3.0], "y": ["on", "on", "on"]}),
            Path(splits[name].path) / "part-00000.parquet",
        )
    outs = {
        "statistics": _art(dsl.Artifact, tmp_path, "stats"),
        "schema": _art(dsl.Artifact, tmp_path, "schema"),
        "report": _art(dsl.Markdown, tmp_path, "report"),
    }
    with pytest.raises(SystemExit):
        validate.python_func(label="y", task="classification", **splits, **outs)
    assert "voltpipe error: data validation failed" in capsys.readouterr().err
    # The report is still written, so a person can see why the step failed.
    assert "**Verdict:** FAILED" in Path(outs["report"].path).read_text()


@pytest.mark.slow
def test_train_evaluate_register_chain(extracted: dict[str, dsl.Dataset], tmp_path: Path) -> None:
    model = _art(dsl.Model, tmp_path, "model")
    train.python_func(
        train_data=extracted["train"],
        valid_data=extracted["valid"],
        label="power_kw",
        task="regression",
        model=model,
        metrics=_art(dsl.Metrics, tmp_path, "train_metrics"),
        curves=_art(dsl.HTML, tmp_path, "curves"),
        exclude=["ts"],
        model_params={"family": "mlp", "hidden_units": [8]},
        training_params={"epochs": 2, "batch_size": 256},
    )
    assert Path(model.path, "model.keras").exists()
    assert "<svg" in Path(tmp_path / "curves").read_text()
    registry = str(tmp_path / "registry")
    ev = {
        "metrics": _art(dsl.Metrics, tmp_path, "metrics"),
        "evaluation": _art(dsl.Artifact, tmp_path, "evaluation"),
        "decision_report": _art(dsl.Markdown, tmp_path, "decision"),
        "classification_metrics": _art(dsl.ClassificationMetrics, tmp_path, "classification"),
        "plots": _art(dsl.HTML, tmp_path, "plots"),
    }
    out = evaluate.python_func(
        model=model,
        test_data=extracted["test"],
        registry_uri=registry,
        model_name="wind",
        gate_metric="rmse",
        **ev,
    )
    assert out.promote is True
    assert "<svg" in Path(tmp_path / "plots").read_text()  # the residual plot
    assert set(ev["metrics"].metadata) == {"rmse", "mae", "r2"}
    stats = {
        "statistics": _art(dsl.Artifact, tmp_path, "stats"),
        "schema": _art(dsl.Artifact, tmp_path, "schema"),
    }
    validate.python_func(
        train=extracted["train"],
        valid=extracted["valid"],
        test=extracted["test"],
        label="power_kw",
        task="regression",
        report=_art(dsl.Markdown, tmp_path, "r"),
        **stats,
    )
    reg = _art(dsl.Artifact, tmp_path, "registration")
    register.python_func(
        model=model,
        evaluation=ev["evaluation"],
        registry_uri=registry,
        model_name="wind",
        query=SQL,
        query_parameters=PARAMS,
        registration=reg,
        **stats,
    )
    info = json.loads(Path(reg.path).read_text())
    # The gate promoted it; the champion alias moves in deploy, after the smoke test.
    assert info["version"] == "1" and info["promote"] is True and info["champion"] is False
    lineage = json.loads(Path(info["uri"], "metadata.json").read_text())
    assert (
        lineage["query"] == SQL
        and lineage["metrics"]["test"]["rmse"] == ev["metrics"].metadata["rmse"]
    )


def test_with_image_sets_the_container_image_without_touching_the_original() -> None:
    custom = with_image(train, "europe-west1-docker.pkg.dev/p/voltpipe/voltpipe@sha256:abc")
    assert custom.component_spec.implementation.container.image.endswith("@sha256:abc")
    assert (
        train.component_spec.implementation.container.image
        != custom.component_spec.implementation.container.image
    )


def test_catalogue_lists_every_component() -> None:
    assert list(CATALOGUE) == [
        "extract",
        "validate",
        "tune",
        "train",
        "evaluate",
        "register",
        "deploy",
        "extract_window",
        "drift",
        "keep_champion",
        "batch_predict",
    ]
