"""Tabular MLP (binary, multi-class with class weights, regression) and the anomaly autoencoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.modelling.synthetic import sensor_table, tabular_table, write_split
from voltpipe.evaluation.anomaly_metrics import anomaly_metrics, score_anomaly_detector
from voltpipe.evaluation.metrics import classification_metrics, regression_metrics
from voltpipe.modelling.predict import load_model
from voltpipe.modelling.problems import balanced_weights
from voltpipe.modelling.train import META_FILE, encode_labels, train_model

pytestmark = pytest.mark.slow
FAST = {"epochs": 3, "batch_size": 128, "learning_rate": 0.01, "steps_per_execution": 1}


def _splits(root: Path, make, n: int) -> tuple[Path, Path, Path]:  # type: ignore[no-untyped-def]
    return tuple(
        write_split(root / s, make(n, seed)) for s, seed in (("tr", 1), ("va", 2), ("te", 3))
    )  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("task", "classes"), [("classification", 2), ("classification", 3), ("regression", 0)]
)
def test_mlp_tasks(task: str, classes: int, tmp_path: Path) -> None:
    tr, va, te = _splits(tmp_path, lambda n, s: tabular_table(n, classes or 2, s), 1500)
    label, exclude = ("label", ["target"]) if task == "classification" else ("target", ["label"])
    result = train_model(
        tr,
        va,
        tmp_path / "m",
        label=label,
        task=task,
        exclude=exclude,
        model_params={"family": "mlp", "hidden_units": [16]},
        training_params={**FAST, "class_weight": "balanced"},
    )
    meta = json.loads((tmp_path / "m" / META_FILE).read_text())
    assert {"task", "label", "classes", "features"} <= set(meta)
    assert meta["family"] == "mlp" and result.epochs_run >= 1
    loaded = load_model(tmp_path / "m")
    test = pq.read_table(te)
    out = loaded.predict_raw(test)
    if task == "classification":
        y, _ = encode_labels(test, label, task, meta["classes"])
        assert out.shape == (test.num_rows, classes)
        assert meta["class_weights"] and len(meta["class_weights"]) == classes
        assert classification_metrics(y, out)["auc"] > 0.8
    else:
        assert regression_metrics(test.column("target").to_numpy(), out)["r2"] > 0.8


def test_balanced_weights_equalise_classes() -> None:
    y = np.array([0] * 90 + [1] * 10)
    w = balanced_weights(y, 2)
    assert w[1] / w[0] == pytest.approx(9.0)
    assert (w[y][y == 0].sum()) == pytest.approx(w[y][y == 1].sum())


def test_autoencoder_threshold_and_metrics(tmp_path: Path) -> None:
    tr = write_split(tmp_path / "tr", sensor_table(3000, 0.02, 1))
    va = write_split(tmp_path / "va", sensor_table(1000, 0.02, 2))
    te = sensor_table(1000, 0.05, 3)
    result = train_model(
        tr,
        va,
        tmp_path / "ae",
        label="fault",
        task="anomaly",
        model_params={"hidden_units": [16, 8], "latent_dim": 2, "dropout": 0.0},
        training_params={
            "epochs": 3,
            "batch_size": 64,
            "learning_rate": 0.01,
            "steps_per_execution": 1,
        },
        task_params={"anomaly": {"threshold_quantile": 0.98}},
    )
    meta = result.meta
    assert meta["family"] == "autoencoder" and "fault" not in meta["features"]["numeric"]
    assert meta["anomaly"]["threshold_quantile"] == 0.98 and meta["anomaly"]["threshold"] > 0
    assert meta["rows"]["train_normal"] < 3000  # labelled faults are left out of training
    loaded = load_model(tmp_path / "ae")
    errors = loaded.predict_raw(te)
    assert errors.shape == (1000,) and np.all(errors >= 0)
    # the threshold is the 98th percentile of normal validation errors
    va_tbl = pq.read_table(va)
    normal = va_tbl.filter(va_tbl.column("fault").to_numpy() == 0)
    share = float(np.mean(loaded.predict_raw(normal) > meta["anomaly"]["threshold"]))
    assert share == pytest.approx(0.02, abs=0.005)
    metrics = score_anomaly_detector(loaded, te)
    assert metrics["auc"] > 0.9 and metrics["recall"] > 0.5, metrics
    # unlabelled data still scores
    assert set(score_anomaly_detector(loaded, te.drop(["fault"]))) == {
        "anomaly_rate",
        "reconstruction_error",
        "threshold",
    }


def test_anomaly_metrics_at_threshold() -> None:
    m = anomaly_metrics(np.array([0.1, 0.2, 0.9, 0.8, 0.95]), 0.5, np.array([0, 0, 1, 0, 1]))
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0
    assert m["f1"] == pytest.approx(0.8) and m["anomaly_rate"] == pytest.approx(0.6)
