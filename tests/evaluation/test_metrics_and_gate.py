"""Metrics by task and the champion/challenger gate."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from voltpipe.evaluation.gate import decide
from voltpipe.evaluation.metrics import binary_auc, classification_metrics, regression_metrics


def _brute_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p, n in itertools.product(pos, neg)]
    return float(np.mean(pairs))


def test_auc_matches_pairwise_definition_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 1)  # rounding creates ties
    assert binary_auc(y, s) == pytest.approx(_brute_auc(y, s))


def test_regression_metrics() -> None:
    m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert m["mae"] == pytest.approx(2 / 3)
    assert m["rmse"] == pytest.approx(np.sqrt(4 / 3))
    assert m["r2"] == pytest.approx(1 - 4 / 2)


def test_classification_metrics_binary_and_multiclass() -> None:
    y = np.array([0, 1, 1, 0])
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    m = classification_metrics(y, p)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["auc"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4, 0.7])))
    y3 = np.array([0, 1, 2])
    m3 = classification_metrics(y3, np.eye(3))
    assert (m3["accuracy"], m3["f1"], m3["auc"]) == pytest.approx((1.0, 1.0, 1.0))


def test_gate_first_model_is_promoted() -> None:
    d = decide({"rmse": 5.0}, None, metric="rmse")
    assert d.promote and "first model" in d.reason


@pytest.mark.parametrize(
    ("metric", "new", "old", "min_imp", "promote"),
    [
        ("rmse", 4.0, 5.0, 0.0, True),
        ("rmse", 5.0, 5.0, 0.0, False),
        ("rmse", 4.9, 5.0, 0.5, False),
        ("auc", 0.9, 0.8, 0.05, True),
        ("auc", 0.8, 0.9, 0.0, False),
    ],
)
def test_gate_direction_and_margin(
    metric: str, new: float, old: float, min_imp: float, promote: bool
) -> None:
    d = decide({metric: new}, {metric: old}, metric=metric, min_improvement=min_imp)
    assert d.promote is promote
    assert metric in d.reason


def test_gate_unknown_metric() -> None:
    with pytest.raises(ValueError, match="gate metric 'auc'"):
        decide({"rmse": 1.0}, None, metric="auc")
