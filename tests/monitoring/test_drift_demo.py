"""Drift on the demo wind farm (voltpipe.demo): its November 2024 climate change is caught.

Choosing windows. Real weather makes short windows poor controls: the demo's wind direction
wanders with a 4-day memory (and the wind speed with a 36-hour one), so two adjacent months
differ as much as the drift itself, and wind speed and temperature follow the seasons. So:

* the drift test compares a reference sample of January-October (what a model trained on the
  year so far would store) with the current window November-December;
* the first control is the same comparison on the same farm generated without the drift
  (``drift_start=None`` draws the same random numbers, so both tables share their weather): wind
  speed and direction do not drift there, the temperature does (November is colder than the
  January-October average: seasonality is a real change of distribution);
* the second control splits January-October into alternate weeks: the same seasons and weather
  regimes on both sides, nothing drifts.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from voltpipe.demo import WindFarmSpec, generate_scada
from voltpipe.monitoring import compute_drift, reference_sample

DRIFT_START = np.datetime64("2024-11-01", "us").astype(np.int64)
WEEK_US = 7 * 86_400 * 10**6
FEATURES = [
    "turbine_id",
    "wind_speed_ms",
    "wind_direction_deg",
    "air_temperature_c",
    "air_pressure_hpa",
    "power_kw",
    "status",
]


def _split(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    ts = table.column("ts").cast(pa.int64()).to_numpy()
    before = ts < DRIFT_START
    return table.filter(pa.array(before)), table.filter(pa.array(~before))


@pytest.fixture(scope="module")
def farms() -> dict[str, pa.Table]:
    return {
        "drift": generate_scada(WindFarmSpec(turbines=3)),
        "no_drift": generate_scada(WindFarmSpec(turbines=3, drift_start=None)),
    }


def test_drift_after_november_is_flagged(farms: dict[str, pa.Table]) -> None:
    before, after = _split(farms["drift"])
    result = compute_drift(reference_sample(before, 50_000, seed=0), after, features=FEATURES)
    assert {"wind_speed_ms", "wind_direction_deg", "power_kw"} <= set(result.drifted_features)
    assert result.features["wind_direction_deg"].psi > 1.0  # the 40° veer
    assert "turbine_id" not in result.drifted_features


def test_same_windows_without_the_drift_keep_the_wind(farms: dict[str, pa.Table]) -> None:
    before, after = _split(farms["no_drift"])
    result = compute_drift(reference_sample(before, 50_000, seed=0), after, features=FEATURES)
    assert "wind_speed_ms" not in result.drifted_features
    assert "wind_direction_deg" not in result.drifted_features
    assert "air_temperature_c" in result.drifted_features  # the season, not the scenario


def test_alternate_pre_drift_weeks_do_not_drift(farms: dict[str, pa.Table]) -> None:
    before, _ = _split(farms["drift"])
    ts = before.column("ts").cast(pa.int64()).to_numpy()
    odd = ((ts - ts[0]) // WEEK_US) % 2 == 1
    result = compute_drift(
        before.filter(pa.array(~odd)), before.filter(pa.array(odd)), features=FEATURES
    )
    assert result.drifted_features == []
