"""Evaluation details: ROC, confusion matrix, slice metrics, plots, and the evaluate component."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from voltpipe.errors import ConfigError, DataError
from voltpipe.evaluation.evaluate import evaluate_challenger, score_model
from voltpipe.evaluation.metrics import (
    ROC_MAX_POINTS,
    binary_auc,
    classification_details,
    classification_metrics,
    roc_curve,
)
from voltpipe.evaluation.plots import regression_plots_html
from voltpipe.evaluation.slices import slice_metrics, slices_markdown


def test_roc_is_monotone_downsampled_and_matches_auc() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    s = rng.random(5000) + 0.5 * y
    roc = roc_curve(y == 1, s)
    fpr, tpr = np.array(roc["fpr"]), np.array(roc["tpr"])
    assert len(fpr) == len(tpr) == len(roc["thresholds"]) <= ROC_MAX_POINTS
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.all(np.diff(roc["thresholds"]) <= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(binary_auc(y, s), abs=0.01)


def test_confusion_matrix_precision_recall_and_threshold() -> None:
    y = np.array([0, 1, 1, 0, 1])
    p1 = np.array([0.1, 0.9, 0.4, 0.6, 0.7])
    proba = np.c_[1 - p1, p1]
    d = classification_details(y, proba, ["no", "yes"])
    assert d["confusion_matrix"] == {"categories": ["no", "yes"], "matrix": [[1, 1], [1, 2]]}
    assert d["precision"] == pytest.approx(2 / 3) and d["recall"] == pytest.approx(2 / 3)
    strict = classification_details(y, proba, ["no", "yes"], threshold=0.8)
    assert strict["confusion_matrix"]["matrix"] == [[2, 0], [2, 1]]
    assert strict["precision"] == 1.0 and strict["recall"] == pytest.approx(1 / 3)
    assert classification_metrics(y, proba, 0.8)["accuracy"] == pytest.approx(3 / 5)
    three = classification_details(np.array([0, 1, 2, 2]), np.eye(3)[[0, 1, 2, 1]], ["a", "b", "c"])
    assert np.sum(three["confusion_matrix"]["matrix"]) == 4
    assert three["roc"]["tpr"][-1] == pytest.approx(1.0)


def test_slice_metrics_top_values_and_markdown() -> None:
    table = pa.table({"turbine_id": ["A"] * 5 + ["B"] * 3 + [None] * 2, "x": range(10)})
    y = np.arange(10, dtype=float)
    pred = y + np.r_[np.zeros(5), np.ones(3), 2 * np.ones(2)]
    out = slice_metrics(
        table, ["turbine_id"], lambda m: {"mae": float(np.abs(pred - y)[m].mean())}, max_values=2
    )
    entry = out["turbine_id"]
    assert entry["distinct"] == 3
    assert [(s["value"], s["rows"], s["metrics"]["mae"]) for s in entry["slices"]] == [
        ("A", 5, 0.0),
        ("B", 3, 1.0),
    ]
    md = slices_markdown(out)
    assert (
        "| turbine_id | rows | mae |" in md
        and "| B | 3 | 1 |" in md
        and "2 most frequent of 3" in md
    )
    with pytest.raises(ConfigError, match="'site' is not in the test data"):
        slice_metrics(table, ["site"], lambda m: {})


def test_residual_plot_is_inline_svg_and_downsampled() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=10_000)
    page = regression_plots_html(y, y + rng.normal(0, 0.1, 10_000), title="t")
    assert page.startswith("<!doctype html>") and page.count("<svg") == 2
    assert page.count("<circle") == 2000 and page.count("<rect") == 40


# ----- with trained models ---------------------------------------------------------------------


def _equipment(n: int, seed: int) -> pa.Table:
    from tests.conftest import make_equipment_table

    return make_equipment_table(n, seed).drop_columns(["asset_id"])


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from voltpipe.modelling.train import train_model

    root = tmp_path_factory.mktemp("clf")
    for split, n, seed in (("train", 800, 1), ("valid", 200, 2), ("test", 300, 3)):
        (root / split).mkdir()
        pq.write_table(_equipment(n, seed), root / split / "part-0.parquet")
    train_model(
        root / "train",
        root / "valid",
        root / "model",
        label="outcome",
        task="classification",
        model_params={"family": "mlp"},
        training_params={"epochs": 2, "batch_size": 128},
    )
    return root / "model", root / "test"


@pytest.mark.slow
def test_evaluate_component_logs_classification_metrics(
    classifier: tuple[Path, Path], tmp_path: Path
) -> None:
    from kfp import dsl

    from voltpipe.components.evaluate import evaluate

    model_dir, test_dir = classifier

    def art(cls: type, name: str) -> dsl.Artifact:
        return cls(name=name, uri=str(tmp_path / name), metadata={})

    outputs = {
        "metrics": art(dsl.Metrics, "metrics"),
        "evaluation": art(dsl.Artifact, "evaluation"),
        "decision_report": art(dsl.Markdown, "decision_report"),
        "classification_metrics": art(dsl.ClassificationMetrics, "classification_metrics"),
        "plots": art(dsl.HTML, "plots"),
    }
    result = evaluate.python_func(
        model=dsl.Model(name="model", uri=str(model_dir), metadata={}),
        test_data=dsl.Dataset(name="test", uri=str(test_dir), metadata={}),
        registry_uri=str(tmp_path / "registry"),
        model_name="tx",
        gate_metric="recall",  # a detail metric can gate too
        slice_columns=["region"],
        **outputs,
    )
    assert result.promote is True
    cm = outputs["classification_metrics"].metadata
    categories = [c["displayName"] for c in cm["confusionMatrix"]["annotationSpecs"]]
    matrix = [r["row"] for r in cm["confusionMatrix"]["rows"]]
    assert categories == ["failed", "healthy"] and np.sum(matrix) == 300
    roc = cm["confidenceMetrics"]
    assert 2 <= len(roc) <= ROC_MAX_POINTS
    assert all(
        a["falsePositiveRate"] <= b["falsePositiveRate"] and a["recall"] <= b["recall"]
        for a, b in itertools.pairwise(roc)
    )
    # The Metrics artifact keeps the headline metrics; the evaluation holds the rest.
    assert set(outputs["metrics"].metadata) == {"accuracy", "auc", "f1", "log_loss"}
    evaluation = json.loads(Path(outputs["evaluation"].path).read_text())
    assert {"precision", "recall", "confusion_matrix", "roc"} <= set(evaluation["details"])
    slices = evaluation["slices"]["region"]["slices"]
    assert sorted(s["value"] for s in slices) == ["east", "north", "south", "west"]
    assert sum(s["rows"] for s in slices) == 300 and "recall" in slices[0]["metrics"]
    report = Path(outputs["decision_report"].path).read_text()
    assert "## Slice metrics" in report and "| south |" in report
    assert "<svg" in Path(outputs["plots"].path).read_text()


@pytest.mark.slow
def test_champion_scored_on_the_same_data_and_old_tuple_api(classifier: tuple[Path, Path]) -> None:
    model_dir, test_dir = classifier
    metrics, rows = score_model(model_dir, test_dir)  # the older tuple form still unpacks
    assert rows == 300 and set(metrics) == {"accuracy", "auc", "f1", "log_loss"}
    result = evaluate_challenger(
        model_dir, test_dir, champion_dir=model_dir, champion_version="1", metric="auc"
    )
    assert result.champion_metrics == result.metrics and not result.decision.promote
    assert result.champion_version == "1" and result.task == "classification"


def test_unknown_task_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voltpipe.modelling import predict

    class Fake:
        task = "ranking"
        meta: ClassVar[dict[str, str]] = {"label": "y"}

    (tmp_path / "test").mkdir()
    pq.write_table(pa.table({"y": [1.0]}), tmp_path / "test" / "p.parquet")
    monkeypatch.setattr(predict, "load_model", lambda _d: Fake())
    with pytest.raises(DataError, match="task ranking: evaluation not supported"):
        score_model(tmp_path / "model", tmp_path / "test")
