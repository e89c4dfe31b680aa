"""Tests of the drift statistics and verdicts (voltpipe.monitoring.drift)."""

from __future__ import annotations

import json
import math
import types

import numpy as np
import pyarrow as pa
import pytest

from voltpipe.config import DriftThresholds
from voltpipe.errors import DataError
from voltpipe.monitoring import drift, drift_stats
from voltpipe.monitoring.drift import (
    chi2_sf,
    chi_square,
    compute_drift,
    js_distance,
    kolmogorov_sf,
    ks_2samp,
    performance_decay,
    prediction_drift,
    psi,
    reference_sample,
)

# Reference values computed once with scipy 1.17 (pinned here, so a scipy upgrade that moved
# them would show):
# special.kolmogorov, stats.chi2.sf, stats.chi2_contingency(correction=False),
# spatial.distance.jensenshannon(base=2), stats.ks_2samp(...).statistic.
KOLMOGOROV = {
    0.3: 0.9999906941986655,
    0.8: 0.5441424115741981,
    1.0: 0.26999967167735456,
    1.2: 0.11224966667072497,
    2.0: 0.0006709252557796953,
}
CHI2_SF = {
    (3.84, 1): 0.05004352124870519,
    (10, 5): 0.07523524614651217,
    (100, 3): 1.5541594313896026e-21,
    (2, 10): 0.9963401531726563,
    (50, 40): 0.1335748340856504,
    (0.5, 2): 0.7788007830714049,
}


def _brute_ks(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.sort(a), np.sort(b)
    pts = np.concatenate((a, b))
    return float(
        np.max(
            np.abs(
                np.searchsorted(a, pts, "right") / a.size
                - np.searchsorted(b, pts, "right") / b.size
            )
        )
    )


# --- statistics against reference values ----------------------------------------------------------


@pytest.mark.parametrize("x", sorted(KOLMOGOROV))
def test_kolmogorov_sf_matches_scipy(x: float) -> None:
    assert kolmogorov_sf(x) == pytest.approx(KOLMOGOROV[x], rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(("x", "dof"), sorted(CHI2_SF))
def test_chi2_sf_matches_scipy(x: float, dof: int) -> None:
    assert chi2_sf(x, dof) == pytest.approx(CHI2_SF[(x, dof)], rel=1e-9)


def test_ks_small_samples_by_hand() -> None:
    a = [0.1, 0.5, 0.9, 1.3, 2.0, 2.2, 3.1]
    b = [0.4, 0.8, 1.9, 2.5, 2.6, 3.3, 4.0, 4.1]
    d, p = ks_2samp(a, b)
    # By hand: at x = 2.2, F_a = 6/7 and F_b = 3/8, D = 6/7 - 3/8 = 27/56.
    assert d == pytest.approx(27 / 56)
    assert p == pytest.approx(0.3506178047886532, rel=1e-9)  # kolmogorov(sqrt(7*8/15) * D)


def test_ks_larger_samples_match_scipy_statistic() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=3000), rng.normal(0.1, 1.1, size=2500)
    d, p = ks_2samp(x, y)
    assert d == pytest.approx(0.0606, abs=1e-12)
    assert p == pytest.approx(8.940087465967294e-05, rel=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_ks_grid_pass_is_exact(seed: int) -> None:
    """The coarse-pivot shortcut used above 20k points gives the brute-force statistic, ties included."""
    rng = np.random.default_rng(seed)
    n1, n2 = int(rng.integers(15_000, 150_000)), int(rng.integers(8_000, 200_000))
    kind = seed % 3
    if kind == 0:
        a, b = rng.normal(size=n1), rng.normal(rng.normal() * 0.05, 1, size=n2)
    elif kind == 1:
        a, b = rng.integers(0, 30, n1).astype(float), rng.integers(0, 31, n2).astype(float)
    else:
        a, b = np.round(rng.exponential(size=n1), 2), np.round(rng.exponential(1.02, size=n2), 2)
    assert ks_2samp(a, b)[0] == _brute_ks(a, b)


def test_ks_identical_samples() -> None:
    x = np.random.default_rng(0).normal(size=50_000)
    assert ks_2samp(x, x) == (0.0, 1.0)


def test_psi_by_hand() -> None:
    ref = np.arange(100.0)  # quartile edges 24.75, 49.5, 74.25: 25 values in each bin
    cur = np.concatenate(
        (np.full(60, 10.0), np.full(20, 30.0), np.full(10, 60.0), np.full(10, 90.0))
    )
    expected = sum((q - 0.25) * math.log(q / 0.25) for q in (0.6, 0.2, 0.1, 0.1))
    assert psi(ref, cur, bins=4) == pytest.approx(expected)
    assert psi(ref, ref, bins=4) == pytest.approx(0.0, abs=1e-12)


def test_psi_empty_bin_uses_epsilon_and_open_outer_bins() -> None:
    ref = np.arange(100.0)
    cur = np.full(50, 1000.0)  # beyond the reference: all in the open top bin
    p, eps = 0.25, drift.PSI_EPSILON
    expected = 3 * (eps - p) * math.log(eps / p) + (1 - p) * math.log(1 / p)
    assert psi(ref, cur, bins=4) == pytest.approx(expected)


def test_psi_deduplicates_edges_of_a_point_mass() -> None:
    ref = np.concatenate((np.zeros(500), np.arange(1.0, 501.0)))  # half zeros: edges 0 collapse
    edges = drift_stats._quantile_edges(np.sort(ref), 10)
    assert np.all(np.diff(edges) > 0) and edges[0] == pytest.approx(0.0)
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-12)


def test_js_distance_matches_scipy() -> None:
    assert js_distance([10, 20, 30, 0], [15, 15, 40, 5]) == pytest.approx(
        0.21671782495096742, rel=1e-9
    )
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert js_distance([3, 4], [6, 8]) == pytest.approx(0.0, abs=1e-7)


def test_chi_square_matches_scipy() -> None:
    stat, p, dof = chi_square([10, 20, 30], [15, 15, 40])
    assert (stat, p, dof) == (
        pytest.approx(2.3877551020408165),
        pytest.approx(0.30304391468510006),
        2,
    )
    stat, p, dof = chi_square(
        [10, 20, 30, 0], [15, 15, 40, 5]
    )  # a category unseen in the reference
    assert (stat, p, dof) == (
        pytest.approx(6.557142857142857),
        pytest.approx(0.08743596797497216),
        3,
    )
    assert chi_square([5, 0], [7, 0]) == (0.0, 1.0, 0)


# --- verdicts: no drift on the same population, drift on shifts -----------------------------------


def _population(
    rng: np.random.Generator,
    n: int,
    *,
    shift: float = 0.0,
    scale: float = 1.0,
    probs: tuple[float, ...] = (0.5, 0.3, 0.15, 0.05),
) -> pa.Table:
    many = [f"site_{i:02d}" for i in range(40)]
    return pa.table(
        {
            "normal": rng.normal(shift, scale, n),
            "skewed": rng.lognormal(0.0 + shift, 0.8 * scale, n),
            "counts": rng.poisson(3.0 + shift, n).astype(np.int64),  # discrete, many ties
            "rounded": np.round(rng.normal(shift, scale, n), 1),
            "kind": rng.choice(["a", "b", "c", "d"], n, p=list(probs)),
            "many": rng.choice(many, n),  # 40 categories
            "flag": rng.random(n) < 0.3,
        }
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("n", [1_000, 10_000, 100_000])
def test_no_drift_on_a_fresh_sample_of_the_same_population(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    reference = _population(rng, 100_000)
    result = compute_drift(
        reference, _population(rng, n)
    )  # a window against a 100k reference sample
    assert not result.drift_detected, result.to_dict()["features"]
    result = compute_drift(_population(rng, n), _population(rng, n))  # two equal sizes
    assert not result.drift_detected, result.to_dict()["features"]


@pytest.mark.parametrize("seed", [7, 8])
def test_no_drift_between_two_million_row_samples(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 1_000_000
    reference = pa.table(
        {"x": rng.normal(size=n), "y": rng.gamma(2.0, size=n), "k": rng.integers(0, 5, n)}
    )
    current = pa.table(
        {"x": rng.normal(size=n), "y": rng.gamma(2.0, size=n), "k": rng.integers(0, 5, n)}
    )
    result = compute_drift(reference, current, categorical=["k"])
    assert not result.drift_detected
    assert result.features["x"].ks_statistic < 0.01


def test_trivial_shift_on_huge_samples_is_significant_but_not_drift() -> None:
    """At a million rows a 0.02 sd shift has KS p << 0.001; the effect-size guard stops the alarm."""
    rng = np.random.default_rng(3)
    reference = pa.table({"x": rng.normal(size=1_000_000)})
    current = pa.table({"x": rng.normal(0.02, 1.0, size=1_000_000)})
    f = compute_drift(reference, current).features["x"]
    assert f.ks_pvalue < 1e-6 and f.ks_statistic < 0.1
    assert not f.drifted


@pytest.mark.parametrize("seed", [1, 2])
def test_mean_shift_drifts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    result = compute_drift(_population(rng, 20_000), _population(rng, 5_000, shift=0.6))
    for name in ("normal", "skewed", "rounded"):
        assert result.features[name].drifted, name
        assert {"psi", "ks"} <= set(result.features[name].fired)
    assert "counts" in result.drifted_features


def test_variance_change_drifts() -> None:
    rng = np.random.default_rng(4)
    result = compute_drift(
        _population(rng, 20_000), _population(rng, 5_000, scale=2.0), features=["normal"]
    )
    f = result.features["normal"]
    assert f.drifted and "psi" in f.fired
    outer = f.current_bin_fractions[0] + f.current_bin_fractions[-1]
    assert outer > 0.4  # the reference's outer deciles (20 % of it) now hold much more


def test_category_shift_drifts() -> None:
    rng = np.random.default_rng(5)
    result = compute_drift(
        _population(rng, 20_000),
        _population(rng, 5_000, probs=(0.2, 0.3, 0.3, 0.2)),
        features=["kind", "flag"],
    )
    assert result.drifted_features == ["kind"]
    f = result.features["kind"]
    assert (
        f.kind == "categorical"
        and f.fired == ["js"]
        and f.js_distance > 0.1
        and f.chi2_pvalue < 1e-6
    )


def test_unseen_category_is_counted() -> None:
    reference = pa.table({"c": ["a"] * 500 + ["b"] * 500})
    current = pa.table({"c": ["a"] * 300 + ["b"] * 300 + ["new"] * 400})
    f = compute_drift(reference, current).features["c"]
    assert f.drifted
    assert dict(zip(f.categories, f.current_category_counts, strict=True)) == {
        "a": 300,
        "b": 300,
        "new": 400,
    }
    assert dict(zip(f.categories, f.reference_category_counts, strict=True))["new"] == 0


def test_thresholds_as_model_dict_or_object() -> None:
    rng = np.random.default_rng(6)
    reference = pa.table({"x": rng.normal(size=5000)})
    current = pa.table({"x": rng.normal(0.2, 1.0, size=5000)})  # PSI ~0.04, KS ~0.08
    assert not compute_drift(reference, current).drift_detected
    assert compute_drift(reference, current, thresholds={"psi": 0.02}).drift_detected
    assert compute_drift(reference, current, thresholds=DriftThresholds(psi=0.02)).drift_detected
    assert compute_drift(
        reference, current, thresholds=types.SimpleNamespace(psi=0.02)
    ).drift_detected
    result = compute_drift(reference, current, thresholds={"ks_statistic": 0.05})
    assert result.features["x"].fired == ["ks"] and result.thresholds["ks_statistic"] == 0.05


def test_null_rates_are_reported_and_nan_counts_as_null() -> None:
    x = np.arange(1000.0)
    current = x.copy()
    current[:250] = np.nan
    reference = pa.table({"x": x, "s": ["a", "b"] * 500})
    cur = pa.table({"x": current, "s": pa.array(["a", None] * 500)})
    result = compute_drift(reference, cur)
    fx, fs = result.features["x"], result.features["s"]
    assert (fx.null_rate_reference, fx.null_rate_current, fx.null_rate_change) == (0.0, 0.25, 0.25)
    assert fx.current_count == 750
    assert fs.null_rate_current == pytest.approx(0.5) and fs.current_count == 500


def test_result_shape_and_json() -> None:
    rng = np.random.default_rng(9)
    reference = _population(rng, 2000).append_column(
        "ts", pa.array(np.arange(2000), pa.timestamp("s"))
    )
    current = _population(rng, 2000, shift=1.0).append_column(
        "ts", pa.array(np.arange(2000), pa.timestamp("s"))
    )
    result = compute_drift(
        reference,
        current,
        reference_predictions=rng.normal(size=2000),
        current_predictions=rng.normal(1.0, 1.0, size=2000),
    )
    assert result.skipped == {"ts": "timestamp[s]"}
    assert list(result.features) == [
        "normal",
        "skewed",
        "counts",
        "rounded",
        "kind",
        "many",
        "flag",
    ]
    assert result.drift_detected and result.prediction is not None and result.prediction.drifted
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["drift_detected"] is True and data["drifted_features"] == result.drifted_features
    assert set(data["features"]["normal"]) >= {
        "psi",
        "ks_statistic",
        "ks_pvalue",
        "drifted",
        "fired",
        "null_rate_change",
    }
    assert data["features"]["kind"]["js_distance"] is not None
    summary = result.summary()
    assert (
        summary["drifted_features"] == result.drifted_features
        and summary["prediction_drift"] is True
    )
    json.dumps(summary, allow_nan=False)


def test_categorical_override_and_features_subset() -> None:
    reference = pa.table({"code": [1, 2, 3] * 100, "x": np.arange(300.0)})
    current = pa.table({"code": [1, 2, 3] * 100, "x": np.arange(300.0), "extra": [1] * 300})
    result = compute_drift(reference, current, features=["code"], categorical=["code"])
    assert list(result.features) == ["code"] and result.features["code"].kind == "categorical"
    assert not result.drift_detected


def test_parallel_and_serial_agree() -> None:
    rng = np.random.default_rng(10)
    reference, current = _population(rng, 30_000), _population(rng, 30_000, shift=0.1)
    assert (
        compute_drift(reference, current, workers=1).to_dict()
        == compute_drift(reference, current, workers=3).to_dict()
    )


# --- bad input ---------------------------------------------------------------------------------------


def test_empty_current_window() -> None:
    reference = pa.table({"x": [1.0, 2.0]})
    with pytest.raises(DataError, match="the current window has no rows"):
        compute_drift(reference, reference.slice(0, 0))


def test_missing_columns_are_all_named() -> None:
    reference = pa.table({"a": [1.0], "b": [2.0], "c": [3.0]})
    with pytest.raises(DataError, match=r"lacks 2 column\(s\) of the reference: a, c"):
        compute_drift(reference, pa.table({"b": [2.0]}))


def test_unknown_feature() -> None:
    reference = pa.table({"a": [1.0]})
    with pytest.raises(DataError, match="not in the reference sample: zz"):
        compute_drift(reference, reference, features=["a", "zz"])


@pytest.mark.parametrize("side", ["reference", "current window"])
def test_all_null_feature_is_named(side: str) -> None:
    good = pa.table({"x": [1.0, 2.0, 3.0], "s": ["a", "b", "c"]})
    bad = pa.table({"x": [1.0, 2.0, 3.0], "s": pa.array([None, None, None], pa.string())})
    ref, cur = (bad, good) if side == "reference" else (good, bad)
    with pytest.raises(DataError, match=rf"all null: 's' \({side}\)"):
        compute_drift(ref, cur)


def test_all_nan_numeric_feature_is_named() -> None:
    good = pa.table({"x": [1.0, 2.0, 3.0]})
    with pytest.raises(DataError, match="'x' has no finite value in the current window"):
        compute_drift(good, pa.table({"x": [float("nan")] * 3}))


def test_type_change_and_untestable_feature() -> None:
    with pytest.raises(DataError, match="'x' is double in the reference but string"):
        compute_drift(pa.table({"x": [1.0]}), pa.table({"x": ["1"]}))
    ts = pa.table({"t": pa.array([0, 1], pa.timestamp("s"))})
    with pytest.raises(DataError, match="'t' has type timestamp"):
        compute_drift(ts, ts, features=["t"])


# --- prediction drift, performance decay, reference sample ---------------------------------------------


def test_prediction_drift() -> None:
    rng = np.random.default_rng(12)
    ref = rng.gamma(2.0, 300.0, 20_000)
    same = prediction_drift(ref, rng.gamma(2.0, 300.0, 5_000))
    shifted = prediction_drift(ref, rng.gamma(2.0, 300.0, 5_000) * 1.6)
    assert not same.drifted and same.psi < 0.05
    assert shifted.drifted and shifted.psi > 0.2 and shifted.threshold == 0.2
    with pytest.raises(DataError, match="current predictions have no finite value"):
        prediction_drift(ref, [float("nan")])


def test_performance_decay_regression() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    decay = performance_decay(y, y + 1.0, y, y + 2.0, task="regression")
    assert decay.metric == "rmse"
    assert (decay.reference, decay.current, decay.change) == pytest.approx((1.0, 2.0, 1.0))
    assert decay.relative_change == pytest.approx(1.0) and decay.degraded
    assert not performance_decay(y, y + 1.0, y, y + 1.05, task="regression").degraded


def test_performance_decay_classification() -> None:
    y = np.array([0, 1, 1, 0, 1])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])  # all right
    decay = performance_decay(y, proba, y, np.array([0, 1, 0, 1, 1]), task="classification")
    assert (
        decay.metric == "accuracy"
        and decay.reference == pytest.approx(1.0)
        and decay.current == pytest.approx(0.6)
    )
    assert decay.change == pytest.approx(-0.4) and decay.degraded
    with pytest.raises(ValueError, match="task must be"):
        performance_decay(y, y, y, y, task="forecasting")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="5 labels but 2 predictions"):
        performance_decay(y, y[:2], y, y, task="classification")


def test_reference_sample_is_seeded_and_ordered() -> None:
    table = pa.table({"i": np.arange(10_000)})
    a, b = reference_sample(table, 500, seed=3), reference_sample(table, 500, seed=3)
    assert a.num_rows == 500 and a.equals(b)
    assert not a.equals(reference_sample(table, 500, seed=4))
    i = a.column("i").to_numpy()
    assert np.all(np.diff(i) > 0)  # original order kept
    assert reference_sample(table, 20_000, seed=0) is table
    with pytest.raises(ValueError, match="rows must be positive"):
        reference_sample(table, 0)
