"""The drift statistics moved to scipy give the values of the hand-written versions they replace
(voltpipe.monitoring.drift_stats), and voltpipe.monitoring.drift still exports every name."""

from __future__ import annotations

import math

import numpy as np
import pytest

from voltpipe.monitoring import drift, drift_results, drift_stats

# --- the hand-written versions replaced by scipy (voltpipe 2026-11), kept as the oracle ---------


def _old_kolmogorov_sf(x: float) -> float:
    if x <= 0.0:
        return 1.0
    if x < 1.0:
        k = np.arange(1, 12)
        cdf = (
            math.sqrt(2.0 * math.pi)
            / x
            * float(np.sum(np.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8.0 * x * x))))
        )
        return float(min(max(1.0 - cdf, 0.0), 1.0))
    k = np.arange(1, 101)
    terms = np.exp(-2.0 * k * k * x * x) * np.where(k % 2 == 1, 1.0, -1.0)
    return float(min(max(2.0 * np.sum(terms), 0.0), 1.0))


def _old_chi2_sf(x: float, dof: int) -> float:
    if dof <= 0:
        return float("nan")
    if x <= 0:
        return 1.0
    a, z = dof / 2.0, x / 2.0
    log_prefactor = a * math.log(z) - z - math.lgamma(a)
    if z < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1.0
            term *= z / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return float(min(max(1.0 - total * math.exp(log_prefactor), 0.0), 1.0))
    tiny = 1e-300
    b = z + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return float(min(max(math.exp(log_prefactor) * h, 0.0), 1.0))


def _old_js_distance(reference_counts: object, current_counts: object) -> float:
    p = np.asarray(reference_counts, dtype=np.float64)
    q = np.asarray(current_counts, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / m[nz])))

    return math.sqrt(max(0.5 * kl(p) + 0.5 * kl(q), 0.0))


# --- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x", [-1.0, 0.0, 0.05, 0.2, 0.5, 0.8, 0.99, 1.0, 1.01, 1.36, 2.0, 3.5, 8.0]
)
def test_kolmogorov_sf_equals_the_hand_written_series(x: float) -> None:
    assert drift_stats.kolmogorov_sf(x) == pytest.approx(_old_kolmogorov_sf(x), abs=1e-9)


def test_kolmogorov_sf_on_a_fine_grid() -> None:
    for x in np.linspace(0.01, 6.0, 600):
        assert abs(drift_stats.kolmogorov_sf(float(x)) - _old_kolmogorov_sf(float(x))) < 1e-9


@pytest.mark.parametrize("dof", [1, 2, 3, 5, 9, 30, 199])
def test_chi2_sf_equals_the_hand_written_gamma_function(dof: int) -> None:
    for x in [0.0, 1e-6, 0.5, 1.0, 3.84, 7.8, 20.0, 100.0, 250.0, 1000.0]:
        assert abs(drift_stats.chi2_sf(x, dof) - _old_chi2_sf(x, dof)) < 1e-9, (x, dof)


def test_chi2_sf_without_degrees_of_freedom_is_nan() -> None:
    assert math.isnan(drift_stats.chi2_sf(3.0, 0))


def test_js_distance_equals_the_hand_written_one() -> None:
    rng = np.random.default_rng(7)
    for size in (2, 3, 12, 200):
        for _ in range(20):
            p = rng.integers(0, 50, size=size)
            q = rng.integers(0, 50, size=size)
            p[0], q[-1] = 0, 0  # categories one side never saw
            p[1], q[0] = 1, 1  # neither side empty
            assert abs(drift_stats.js_distance(p, q) - _old_js_distance(p, q)) < 1e-9
    assert drift_stats.js_distance([5, 0], [0, 7]) == pytest.approx(1.0, abs=1e-12)
    assert drift_stats.js_distance([3, 4, 5], [6, 8, 10]) == pytest.approx(0.0, abs=1e-9)


def test_chi_square_pvalue_follows_the_new_survival_function() -> None:
    stat, p, dof = drift_stats.chi_square([30, 10, 20], [10, 30, 20])
    assert dof == 2
    assert p == pytest.approx(_old_chi2_sf(stat, dof), abs=1e-9)


def test_drift_module_still_exports_every_name() -> None:
    for name in drift.__all__:
        assert hasattr(drift, name), name
    assert drift.psi is drift_stats.psi
    assert drift.ks_2samp is drift_stats.ks_2samp
    assert drift.FeatureDrift is drift_results.FeatureDrift
    assert drift.DriftResult is drift_results.DriftResult
    assert drift.PSI_BINS == drift_stats.PSI_BINS == 10
    assert drift.MAX_REPORTED_CATEGORIES == drift_results.MAX_REPORTED_CATEGORIES
