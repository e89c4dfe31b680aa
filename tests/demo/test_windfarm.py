"""Tests of the generated wind-farm SCADA demo dataset (voltpipe.demo.windfarm)."""

from __future__ import annotations

import os
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from voltpipe.demo import windfarm
from voltpipe.demo.windfarm import (
    SCADA_SCHEMA,
    STATUSES,
    WindFarmSpec,
    generate_scada,
    power_curve,
    seed_duckdb,
)

SMALL = WindFarmSpec(turbines=2, days=20, drift_start=None)
DEFAULT = WindFarmSpec()
RATED = DEFAULT.rated_power_kw


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _columns(table: pa.Table) -> dict[str, np.ndarray]:
    out = {name: table.column(name).to_numpy() for name in table.column_names}
    out["ts"] = out["ts"].astype("datetime64[us]")
    return out


@pytest.fixture(scope="module")
def default() -> dict[str, np.ndarray]:
    return _columns(generate_scada(DEFAULT))


@pytest.fixture(scope="module")
def no_drift() -> dict[str, np.ndarray]:
    return _columns(generate_scada(WindFarmSpec(drift_start=None)))


# --- determinism, schema, shape ---------------------------------------------------------------


def test_same_spec_gives_a_byte_identical_table() -> None:
    assert _ipc_bytes(generate_scada(SMALL)) == _ipc_bytes(generate_scada(SMALL))


def test_a_different_seed_gives_different_data() -> None:
    a = generate_scada(SMALL)
    b = generate_scada(WindFarmSpec(turbines=2, days=20, drift_start=None, seed=7))
    assert a.column("ts").equals(b.column("ts"))
    assert not a.column("wind_speed_ms").equals(b.column("wind_speed_ms"))


def test_schema_has_the_documented_names_and_types() -> None:
    table = generate_scada(SMALL)
    assert table.column_names == [
        "ts",
        "turbine_id",
        "wind_speed_ms",
        "wind_direction_deg",
        "air_temperature_c",
        "air_pressure_hpa",
        "air_density_kgm3",
        "rotor_speed_rpm",
        "blade_pitch_deg",
        "power_kw",
        "status",
    ]
    assert table.schema.equals(SCADA_SCHEMA, check_metadata=False)
    assert table.schema.field("ts").type == pa.timestamp("us")  # naive: no time zone
    assert table.schema.field("turbine_id").type == pa.string()
    assert table.schema.field("status").type == pa.string()
    assert b"voltpipe.demo.spec" in table.schema.metadata
    assert sum(column.null_count for column in table.columns) == 0


@pytest.mark.parametrize(
    "spec",
    [
        WindFarmSpec(turbines=1, days=1),
        WindFarmSpec(turbines=2, days=3, interval_minutes=30),
        WindFarmSpec(turbines=3, days=2, interval_minutes=60, start="2024-06-30T15:00"),
    ],
)
def test_row_count_and_ordering(spec: WindFarmSpec) -> None:
    table = generate_scada(spec)
    assert (
        table.num_rows == spec.n_rows == spec.turbines * spec.days * 1440 // spec.interval_minutes
    )
    cols = _columns(table)
    n_steps = spec.days * spec.steps_per_day
    ts = cols["ts"].reshape(n_steps, spec.turbines)
    assert (ts == ts[:, :1]).all()  # ts-major, one row per turbine per interval
    start = np.datetime64(datetime.fromisoformat(spec.start), "us")
    expected = start + np.arange(n_steps) * np.timedelta64(spec.interval_minutes, "m")
    np.testing.assert_array_equal(ts[:, 0], expected)
    ids = cols["turbine_id"].reshape(n_steps, spec.turbines)
    assert (ids == np.array(spec.turbine_ids)).all()


def test_default_spec_has_six_turbines_over_2024() -> None:
    assert DEFAULT.turbine_ids == ["WT01", "WT02", "WT03", "WT04", "WT05", "WT06"]
    assert DEFAULT.n_rows == 6 * 366 * 144 == 316_224


def test_aware_start_is_converted_to_naive_utc() -> None:
    table = generate_scada(WindFarmSpec(turbines=1, days=1, start="2024-03-01T01:00+01:00"))
    assert table.column("ts")[0].as_py() == datetime(2024, 3, 1, 0, 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"turbines": 0},
        {"days": 0},
        {"interval_minutes": 7},
        {"cut_in_ms": 13.0},
        {"rated_ms": 30.0},
        {"rated_power_kw": 0.0},
        {"degradation_factor": 1.5},
        {"start": "first of January"},
        {"drift_start": "2024-13-01"},
    ],
)
def test_invalid_spec_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        WindFarmSpec(**kwargs)


# --- physics ----------------------------------------------------------------------------------


def test_power_curve_shape() -> None:
    spec = DEFAULT
    v = np.linspace(0.0, 35.0, 3501)
    p = power_curve(v)
    assert (p[v < spec.cut_in_ms] == 0).all()
    assert (p[v >= spec.cut_out_ms] == 0).all()
    ramp = (v > spec.cut_in_ms) & (v <= spec.rated_ms)
    assert (np.diff(p[ramp]) > 0).all()
    assert p[ramp][0] < 0.01 * spec.rated_power_kw
    flat = (v >= spec.rated_ms) & (v < spec.cut_out_ms)
    np.testing.assert_allclose(p[flat], spec.rated_power_kw, rtol=1e-9)
    assert p.max() <= spec.rated_power_kw
    # Cubic between cut-in and rated: P ∝ v³ − v_cut_in³.
    np.testing.assert_allclose(
        power_curve(8.0) / power_curve(6.0), (8.0**3 - 27.0) / (6.0**3 - 27.0), rtol=1e-12
    )


def test_power_curve_density_correction_and_broadcasting() -> None:
    thin, dense = power_curve(np.array([8.0, 8.0]), np.array([1.10, 1.30]))
    np.testing.assert_allclose(dense / thin, 1.30 / 1.10)
    # Thin air reaches rated power only above the nominal rated speed.
    assert power_curve(12.0, 1.10) < RATED
    assert power_curve(13.0, 1.10) == RATED
    assert power_curve(np.zeros((2, 3))).shape == (2, 3)
    assert 0.25 < DEFAULT.power_coefficient < 0.5


def test_measured_values_are_physical(default: dict[str, np.ndarray]) -> None:
    power, wind = default["power_kw"], default["wind_speed_ms"]
    assert power.min() >= 0.0
    assert power.max() <= 1.02 * RATED
    assert wind.min() >= 0.0
    direction = default["wind_direction_deg"]
    assert direction.min() >= 0.0 and direction.max() < 360.0
    assert set(np.unique(default["status"])) <= set(STATUSES)
    # Ideal gas: rho = p / (R_specific · T).
    rho = default["air_pressure_hpa"] * 100 / (287.05 * (default["air_temperature_c"] + 273.15))
    np.testing.assert_allclose(default["air_density_kgm3"], rho, rtol=1e-3)
    assert 1.1 < default["air_density_kgm3"].mean() < 1.35
    assert 1000 < default["air_pressure_hpa"].mean() < 1025
    ok = default["status"] == "ok"
    # Outside faults and curtailment: nothing below cut-in or at/above cut-out.
    assert (power[ok & (wind < 3.0)] == 0).all()
    assert (power[ok & (wind >= 25.0)] == 0).all()
    # Rotor speed and pitch follow the regime.
    low = ok & (wind > 5.0) & (wind < 8.0)
    high = ok & (wind > 15.0) & (wind < 24.0)
    assert np.abs(default["blade_pitch_deg"][low]).mean() < 1.0
    assert default["blade_pitch_deg"][high].mean() > 5.0
    assert default["rotor_speed_rpm"][high].mean() == pytest.approx(16.0, abs=0.3)
    assert default["rotor_speed_rpm"][low].mean() < default["rotor_speed_rpm"][high].mean()


def test_wind_is_weibull_like_and_autocorrelated(default: dict[str, np.ndarray]) -> None:
    wind = default["wind_speed_ms"].reshape(-1, DEFAULT.turbines)
    one = wind[:, 0]
    lag1 = np.corrcoef(one[:-1], one[1:])[0, 1]
    assert lag1 > 0.9
    # Rayleigh (Weibull k=2): std/mean ≈ 0.52; a seasonal mixture is a bit wider.
    assert 0.4 < one.std() / one.mean() < 0.7
    assert 6.0 < one.mean() < 10.0
    # Turbines of one farm see strongly correlated, not identical, wind.
    assert 0.8 < np.corrcoef(wind[:, 0], wind[:, 1])[0, 1] < 0.999


def test_prevailing_wind_is_south_west(no_drift: dict[str, np.ndarray]) -> None:
    rad = np.deg2rad(no_drift["wind_direction_deg"])
    mean = np.rad2deg(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())) % 360
    assert 205 < mean < 245


def test_status_rates_are_plausible(default: dict[str, np.ndarray]) -> None:
    status = default["status"]
    fault = (status == "fault").mean()
    curtailed = (status == "curtailed").mean()
    assert 0.005 <= fault <= 0.05
    assert 0.01 <= curtailed <= 0.10
    # Every turbine has some faults; curtailment is farm-wide.
    by_turbine = (status == "fault").reshape(-1, DEFAULT.turbines)
    assert by_turbine.any(axis=0).all()
    curtailed_2d = (status == "curtailed").reshape(-1, DEFAULT.turbines)
    assert (curtailed_2d | (status == "fault").reshape(curtailed_2d.shape)).all(axis=1).sum() > 0


def test_faults_and_curtailment_behave(default: dict[str, np.ndarray]) -> None:
    status, power, wind = default["status"], default["power_kw"], default["wind_speed_ms"]
    fault = status == "fault"
    # Faults: the turbine produces nothing (or a frozen value) although the wind blows.
    windy_fault = fault & (wind > 6.0)
    assert windy_fault.sum() > 100
    assert (power[windy_fault] == 0).mean() > 0.5
    # Curtailment caps power at a set-point of at most 70 % of rated.
    curtailed = status == "curtailed"
    assert power[curtailed].max() <= 0.7 * RATED + 0.05
    assert power[curtailed & (wind > 14.0)].mean() < power[(status == "ok") & (wind > 14.0)].mean()
    # Curtailment happens at night.
    hours = (default["ts"] - default["ts"].astype("datetime64[D]")) / np.timedelta64(1, "h")
    assert ((hours[curtailed] >= 21.5) | (hours[curtailed] < 8.0)).all()


def test_seasonal_and_diurnal_patterns(no_drift: dict[str, np.ndarray]) -> None:
    ts, wind, temp = no_drift["ts"], no_drift["wind_speed_ms"], no_drift["air_temperature_c"]
    month = ts.astype("datetime64[M]").astype(int) % 12 + 1
    winter = np.isin(month, [12, 1, 2])
    summer = np.isin(month, [6, 7, 8])
    assert wind[winter].mean() > 1.15 * wind[summer].mean()
    assert temp[summer].mean() > temp[winter].mean() + 10.0
    hour = ((ts - ts.astype("datetime64[D]")) / np.timedelta64(1, "h")).astype(int)
    wind_by_hour = np.bincount(hour, weights=wind) / np.bincount(hour)
    temp_by_hour = np.bincount(hour, weights=temp) / np.bincount(hour)
    assert wind_by_hour.max() > 1.05 * wind_by_hour.min()
    assert wind_by_hour[0:5].mean() > wind_by_hour[12:17].mean()  # windier at night
    assert temp_by_hour[13:17].mean() > temp_by_hour[3:7].mean() + 4.0  # warmer afternoons


# --- drift scenario ---------------------------------------------------------------------------


def test_drift_shifts_the_wind_regime(
    default: dict[str, np.ndarray], no_drift: dict[str, np.ndarray]
) -> None:
    after = default["ts"] >= np.datetime64("2024-11-01")
    wind = default["wind_speed_ms"]
    assert wind[after].mean() > 1.10 * wind[~after].mean()
    # Against the same seed without drift (which isolates the drift from the season):
    ratio = wind[after].mean() / no_drift["wind_speed_ms"][after].mean()
    assert 1.12 < ratio < 1.28
    veer = (default["wind_direction_deg"][after] - no_drift["wind_direction_deg"][after]) % 360
    assert np.median(veer) == pytest.approx(40.0, abs=3.0)
    warmer = default["air_temperature_c"][after] - no_drift["air_temperature_c"][after]
    assert warmer.mean() == pytest.approx(3.0, abs=0.1)


def test_without_drift_the_data_before_drift_start_is_identical() -> None:
    with_drift = generate_scada(WindFarmSpec(turbines=6, days=20, drift_start="2024-01-11"))
    without = generate_scada(WindFarmSpec(turbines=6, days=20, drift_start=None))
    before = 10 * 144 * 6
    assert with_drift.slice(0, before).equals(without.slice(0, before))
    assert not with_drift.slice(before).equals(without.slice(before))


def _degraded_ratio(cols: dict[str, np.ndarray], mask: np.ndarray) -> float:
    """Mean over 1 m/s wind bins (4-11 m/s) of WT04's mean power / the others' mean power."""
    ok = mask & (cols["status"] == "ok")
    wind, power, ids = cols["wind_speed_ms"], cols["power_kw"], cols["turbine_id"]
    ratios = []
    for lo in range(4, 11):
        in_bin = ok & (wind >= lo) & (wind < lo + 1)
        mine = power[in_bin & (ids == "WT04")]
        others = power[in_bin & (ids != "WT04")]
        ratios.append(mine.mean() / others.mean())
    return float(np.mean(ratios))


def test_degraded_turbine_loses_power_after_drift_start(
    default: dict[str, np.ndarray], no_drift: dict[str, np.ndarray]
) -> None:
    after = default["ts"] >= np.datetime64("2024-11-01")
    before_ratio = _degraded_ratio(default, ~after)
    after_ratio = _degraded_ratio(default, after)
    assert before_ratio == pytest.approx(1.0, abs=0.03)
    assert after_ratio < 0.92 * before_ratio
    assert after_ratio == pytest.approx(DEFAULT.degradation_factor, abs=0.03)
    # Silent drift: the status stays "ok"; the same turbine without drift does not degrade.
    assert _degraded_ratio(no_drift, after) == pytest.approx(1.0, abs=0.03)


def test_degraded_turbine_outside_the_farm_is_ignored() -> None:
    table = generate_scada(WindFarmSpec(turbines=2, days=3, drift_start="2024-01-02"))
    assert table.num_rows == 2 * 3 * 144


# --- seed_duckdb ------------------------------------------------------------------------------


def test_seed_duckdb_creates_the_table_atomically_and_only_once(tmp_path) -> None:
    path = tmp_path / "demo.duckdb"
    assert seed_duckdb(path, SMALL) == SMALL.n_rows
    assert sorted(os.listdir(tmp_path)) == ["demo.duckdb"]  # no temp or WAL file left
    with duckdb.connect(str(path), read_only=True) as con:
        types = {row[0]: row[1] for row in con.execute("DESCRIBE scada.turbine").fetchall()}
        (first,) = con.execute(
            "SELECT ts, turbine_id FROM scada.turbine ORDER BY ts, turbine_id LIMIT 1"
        ).fetchall()
        generated = generate_scada(SMALL)
        result = con.sql("SELECT * FROM scada.turbine")
        stored = pa.table(result.arrow())  # a Table (duckdb 1.x) or a RecordBatchReader (2.x)
    assert types["ts"] == "TIMESTAMP"
    assert types["turbine_id"] == "VARCHAR"
    assert types["power_kw"] == "DOUBLE"
    assert types["status"] == "VARCHAR"
    assert first == (datetime(2024, 1, 1), "WT01")
    assert stored.cast(SCADA_SCHEMA).equals(generated.replace_schema_metadata(None))

    mtime = path.stat().st_mtime_ns
    assert seed_duckdb(path, SMALL) == SMALL.n_rows
    assert seed_duckdb(path, WindFarmSpec(turbines=1, days=1)) == SMALL.n_rows  # not replaced
    assert path.stat().st_mtime_ns == mtime
    assert sorted(os.listdir(tmp_path)) == ["demo.duckdb"]


def test_seed_duckdb_replace_and_existing_database(tmp_path) -> None:
    path = tmp_path / "sub" / "warehouse.duckdb"
    path.parent.mkdir()
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE keep_me AS SELECT 1 AS x")
    tiny = WindFarmSpec(turbines=1, days=2)
    assert seed_duckdb(path, tiny, schema="raw", table="scada_10min") == tiny.n_rows
    assert seed_duckdb(path, SMALL, schema="raw", table="scada_10min") == tiny.n_rows
    assert seed_duckdb(path, SMALL, schema="raw", table="scada_10min", replace=True) == SMALL.n_rows
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.scada_10min").fetchall() == [(SMALL.n_rows,)]
        assert con.execute("SELECT x FROM keep_me").fetchall() == [(1,)]
    assert sorted(os.listdir(path.parent)) == ["warehouse.duckdb"]


def test_seed_duckdb_leaves_nothing_behind_when_generation_fails(tmp_path, monkeypatch) -> None:
    def broken(spec: WindFarmSpec) -> pa.Table:
        raise RuntimeError("boom")

    monkeypatch.setattr(windfarm, "generate_scada", broken)
    path = tmp_path / "demo.duckdb"
    with pytest.raises(RuntimeError, match="boom"):
        seed_duckdb(path, SMALL)
    assert os.listdir(tmp_path) == []


def test_seed_duckdb_rejects_unsafe_identifiers(tmp_path) -> None:
    with pytest.raises(ValueError, match="identifier"):
        seed_duckdb(tmp_path / "x.duckdb", SMALL, table='t"; DROP TABLE x; --')
    assert os.listdir(tmp_path) == []
