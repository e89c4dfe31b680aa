"""Label-free performance estimation: CBPE and DLE against the realised metric."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from voltpipe.monitoring.estimation import CBPE, estimate_performance, realised_metric


def _classifier_window(n: int, spread: float, seed: int):
    """A calibrated classifier: labels drawn from its own probabilities; a smaller `spread` of
    the logits puts rows nearer the boundary (a covariate shift that lowers accuracy)."""
    rng = np.random.default_rng(seed)
    p1 = 1 / (1 + np.exp(-rng.normal(0, spread, n)))
    y = (rng.random(n) < p1).astype(int)
    return y, np.column_stack([1 - p1, p1])


def test_cbpe_on_a_shifted_window_lies_in_the_realised_bootstrap_interval() -> None:
    y_ref, p_ref = _classifier_window(5000, 3.0, 0)
    y_cur, p_cur = _classifier_window(3000, 1.0, 1)  # harder rows: accuracy drops
    cbpe = CBPE.fit(y_ref, p_ref)
    est = cbpe.estimate(p_cur)
    realised = realised_metric("accuracy", y_cur, p_cur)
    assert realised["low"] <= est.estimate <= realised["high"]
    assert est.estimate < cbpe.reference_accuracy - 0.05 and est.degraded
    assert est.low < est.estimate < est.high
    assert set(est.others) == {"precision", "recall", "f1"}


def test_cbpe_no_shift_is_not_degraded() -> None:
    y_ref, p_ref = _classifier_window(5000, 3.0, 0)
    _, p_cur = _classifier_window(3000, 3.0, 2)
    est = CBPE.fit(y_ref, p_ref).estimate(p_cur)
    assert est.estimate == pytest.approx(est.reference, abs=0.02) and not est.degraded
    assert CBPE.fit(y_ref, p_ref).estimate(p_cur, threshold=0.95).degraded  # absolute limit


def test_dle_estimates_a_noisier_window_and_sets_realised_beside_it() -> None:
    rng = np.random.default_rng(0)

    def window(n: int, wind_mean: float) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        wind = rng.normal(wind_mean, 2.0, n)
        noise = 5 + 4 * np.abs(wind - 8)  # the model is worse away from 8 m/s
        y = 100 * wind + rng.normal(0, noise)
        return pa.table({"wind_speed_ms": wind}), y, 100 * wind

    ref, y_ref, pred_ref = window(6000, 8.0)
    cur, y_cur, pred_cur = window(3000, 12.0)
    est = estimate_performance(
        "regression",
        ref,
        cur,
        features=["wind_speed_ms"],
        y_reference=y_ref,
        reference_outputs=pred_ref,
        current_outputs=pred_cur,
        y_current=y_cur,
    )
    assert est.method == "dle" and est.metric == "rmse" and est.degraded
    assert est.estimate > 1.5 * est.reference
    realised = est.realised
    assert realised is not None and realised["rows"] == 3000
    assert est.estimate == pytest.approx(realised["value"], rel=0.1)
    assert "mae" in est.others


def test_realised_metric_interval_brackets_the_value() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=1000)
    r = realised_metric("rmse", y, y + rng.normal(0, 2.0, 1000))
    assert r["low"] < r["value"] < r["high"] and r["value"] == pytest.approx(2.0, rel=0.1)
