"""Multivariate drift: a joint shift with unchanged marginals, and no false alarm without one."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from voltpipe.errors import DataError
from voltpipe.monitoring.drift import compute_drift
from voltpipe.monitoring.multivariate import encode, multivariate_drift


def _wind(n: int, corr: float, seed: int) -> pa.Table:
    """Wind speed and direction (standardised scales) with a given correlation, a category."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = corr * a + np.sqrt(1 - corr**2) * rng.normal(size=n)
    return pa.table(
        {
            "wind_speed_ms": 8 + 3 * a,
            "wind_direction_deg": 180 + 40 * b,
            "air_temperature_c": rng.normal(10, 5, n),
            "turbine_id": rng.choice(["WT01", "WT02", "WT03"], n),
        }
    )


FEATURES = ["wind_speed_ms", "wind_direction_deg", "air_temperature_c", "turbine_id"]


def test_joint_shift_is_found_by_both_tests_and_missed_by_every_univariate_one() -> None:
    reference, current = _wind(4000, 0.9, 0), _wind(2000, -0.9, 1)
    univariate = compute_drift(reference, current, features=FEATURES)
    assert univariate.drifted_features == []  # the marginals did not change
    m = multivariate_drift(reference, current, FEATURES, max_rows=3000)
    recon, domain = m.tests["reconstruction_error"], m.tests["domain_classifier"]
    assert recon.drifted and recon.statistic > recon.threshold and recon.p_value < 0.01
    assert domain.drifted and domain.statistic > 0.7
    assert m.drifted and m.to_dict()["tests"]["domain_classifier"]["drifted"] is True


def test_same_distribution_does_not_drift() -> None:
    m = multivariate_drift(_wind(4000, 0.9, 0), _wind(2000, 0.9, 2), FEATURES, max_rows=3000)
    assert not m.drifted
    recon, domain = m.tests["reconstruction_error"], m.tests["domain_classifier"]
    assert recon.statistic == pytest.approx(recon.reference_value, rel=0.1)
    assert domain.statistic < 0.55


def test_encoding_standardises_by_the_reference_and_one_hots_categories() -> None:
    ref = pa.table({"x": [1.0, 2.0, 3.0, None], "c": ["a", "b", "a", "a"]})
    cur = pa.table({"x": [2.0, 10.0], "c": ["b", "z"]})
    xr, xc, names = encode(ref, cur, ["x", "c"])
    assert names == ["x", "x__null", "c=a", "c=b", "c=(other)"]
    assert xr[:3, 0].mean() == pytest.approx(0.0) and xc[0, 0] == pytest.approx(0.0)
    assert xc[1].tolist()[2:] == [0.0, 0.0, 1.0]  # an unseen category goes to (other)
    with pytest.raises(DataError, match="feature 'y' is not in the reference"):
        encode(ref, cur, ["y"])
