"""A generated wind-farm SCADA table: the embedded demo dataset of voltpipe.

The demo pipelines, the docs and many tests need realistic-looking turbine data without a
cloud account or a download. :func:`generate_scada` builds it from a small, documented
physical model, deterministically from :class:`WindFarmSpec` (same spec, byte-identical
table), and :func:`seed_duckdb` writes it into a local DuckDB file, the stand-in for the
BigQuery table a production deployment reads.

One row per turbine and 10-minute SCADA interval, ordered by ``(ts, turbine_id)``; the default
spec (6 turbines, leap year 2024) has 6 × 366 × 144 = 316,224 rows.

Physical model
==============
All times are naive UTC. ``doy`` is the (fractional) day of the year, ``hour`` the hour of
the day. "AR(1)" below means a stationary, unit-variance Gaussian AR(1) (Ornstein-Uhlenbeck)
process with the stated e-folding time, sampled by convolving white noise with an
exponential kernel (FFT, so the generator stays vectorised); consecutive 10-minute values
are therefore correlated, as in real SCADA data.

Wind speed (``wind_speed_ms``, at hub height)
    A farm-wide regime ``U(t) = m(t) · |w(t)| / sqrt(pi/2)``, where ``w = (x, y)`` is a pair
    of independent latent fluctuation components, each ``sqrt(3/4)·AR(36 h) + sqrt(1/4)·AR(2 h)``
    (synoptic weather plus mesoscale gusts). ``|w|`` is Rayleigh distributed, so the marginal
    of ``U`` is Weibull-like with shape k ≈ 2, and ``m(t)`` is its mean:
    ``m = mean_wind_speed_ms · (1 + 0.20·cos(2π(doy − 15)/365.25)) · (1 + 0.07·cos(2π(hour − 2)/24))``
    — windiest in mid-January and at night (nocturnal low-level jet at hub height).
    Each turbine sees ``U · terrain_i · wake_i(direction) · (1 + 0.05·AR(20 min))``: a fixed
    terrain speed-up/slow-down (0.95-1.05), a wake deficit of 3-12 % when the wind blows from
    the direction of an upstream neighbour (Gaussian in the angle, 12° wide) and small
    turbine-local turbulence.
Wind direction (``wind_direction_deg``, meteorological, where the wind comes from)
    Prevailing south-west: ``225° + 30°·AR(4 days) + 10°·AR(3 h)`` (a slow, mean-reverting
    random walk), plus 2° of vane noise per turbine, wrapped into [0, 360).
Air temperature (``air_temperature_c``)
    ``9.5 + 8.5·cos(2π(doy − 200)/365.25) + 3.5·cos(2π(hour − 15)/24)`` (warmest mid-July
    and mid-afternoon) plus weather ``2.5·AR(2 days) + 0.4·AR(1 h)`` and 0.15 °C sensor noise.
Air pressure (``air_pressure_hpa``)
    ``1013.25 + 7·AR(3 days) + 0.3·AR(2 h)`` minus up to a few hPa when the synoptic wind is
    strong (lows are windy), plus 0.1 hPa sensor noise.
Air density (``air_density_kgm3``)
    Ideal gas: ``rho = p / (R_specific · T)`` with ``R_specific = 287.05 J/(kg·K)`` for dry
    air, p in Pa and T in K.
Power (``power_kw``)
    :func:`power_curve`: 0 below cut-in (3 m/s); ``½·rho·A·Cp·(v³ − v_cut_in³)`` between cut-in
    and rated, with A the rotor area and ``Cp`` (≈ 0.31) chosen so that the curve reaches
    rated power (2 MW) exactly at rated speed (12 m/s) at the reference density 1.225 kg/m³
    — so thinner air gives less power at the same wind (density correction); rated power
    from there to cut-out (25 m/s); 0 at and above cut-out (storm shutdown). The measured
    value carries 2 % multiplicative noise and is clipped to ``[0, 1.02 · rated]``.
Rotor speed (``rotor_speed_rpm``) and blade pitch (``blade_pitch_deg``)
    Variable-speed operation at a tip-speed ratio of 7, clipped to [8.5, 16] rpm, so the rotor
    reaches its rated 16 rpm a little below rated wind; idling at ~0.6·v rpm below cut-in and
    ~0.5 rpm above cut-out. Pitch is ~0° while the rotor is below its power cap and rises as
    ``25° · ((v − v_cap)/(v_cut_out − v_rated))^0.7`` above the speed ``v_cap`` at which the
    cap (rated power, or the curtailment set-point) is reached; the blades are feathered
    (~89°) when the turbine is stopped. Both carry small sensor noise.
Curtailment (``status == "curtailed"``)
    Grid-limited nights: on ~15 % of nights the whole farm gets a set-point of 30-70 % of
    rated power for 2.5-7 h starting between 21:30 and 01:00. Power is capped at the
    set-point (and the blades pitch to shed the rest); every non-fault row inside the window
    is flagged, whether or not the cap bites. About 3 % of rows.
Faults (``status == "fault"``)
    Per turbine, Poisson(8 per year) non-overlapping fault periods lasting 2 h to 2.5 days
    (log-normal, median 10 h). Three in four are trips (power and rotor speed 0, blades
    feathered, while the anemometer keeps measuring the wind); one in four is a frozen
    data feed (power, rotor speed and pitch stuck at their value when the fault began).
    About 1-2 % of rows.
Drift scenario (from ``drift_start``; ``None`` disables it)
    From ``drift_start`` on, the farm sits in a different climate: the mean wind speed is
    20 % higher, the prevailing direction veers by 40° (changing which turbines are waked)
    and it is 3 °C warmer. In addition the ``degraded_turbine`` (blade leading-edge erosion
    plus a protective derate) produces ``degradation_factor`` (86.5 %, i.e. 13.5 % less) of
    the power it would produce at the same wind and density, while still reporting status
    ``"ok"`` — a silent performance drift for monitoring demos to catch.
    ``drift_start=None`` consumes the same random numbers, so a spec with and without drift
    differ only by the drift itself.

Column values are rounded to SCADA-like resolutions (0.01 m/s, 0.1°, 0.1 kW, ...).
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from voltpipe.errors import ConfigError

__all__ = [
    "SCADA_SCHEMA",
    "STATUSES",
    "WindFarmSpec",
    "generate_scada",
    "power_curve",
    "seed_duckdb",
    "seed_tables",
]

#: The values of the ``status`` column.
STATUSES: tuple[str, ...] = ("ok", "curtailed", "fault")

#: The schema of the table returned by :func:`generate_scada` (column order included).
SCADA_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("ts", pa.timestamp("us"), nullable=False),
        pa.field("turbine_id", pa.string(), nullable=False),
        pa.field("wind_speed_ms", pa.float64(), nullable=False),
        pa.field("wind_direction_deg", pa.float64(), nullable=False),
        pa.field("air_temperature_c", pa.float64(), nullable=False),
        pa.field("air_pressure_hpa", pa.float64(), nullable=False),
        pa.field("air_density_kgm3", pa.float64(), nullable=False),
        pa.field("rotor_speed_rpm", pa.float64(), nullable=False),
        pa.field("blade_pitch_deg", pa.float64(), nullable=False),
        pa.field("power_kw", pa.float64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
    ]
)

_R_SPECIFIC_DRY_AIR = 287.05  # J/(kg·K)
_ZERO_CELSIUS_K = 273.15
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OK, _CURTAILED, _FAULT = range(3)


def _parse_utc(value: str, name: str) -> np.datetime64:
    """Parses an ISO date/date-time into a naive-UTC ``datetime64[us]``."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"WindFarmSpec.{name} must be an ISO date or date-time such as '2024-01-01', "
            f"got {value!r}"
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(parsed, "us")


@dataclass(frozen=True)
class WindFarmSpec:
    """What to generate: the farm, the period, the turbine type and the drift scenario.

    Attributes:
        turbines: Number of turbines, identified ``"WT01"``, ``"WT02"``, ...
        start: First timestamp (inclusive), an ISO date or date-time; naive values are UTC,
            aware ones are converted to UTC.
        days: Length of the period in days.
        interval_minutes: SCADA averaging interval; must divide a day (1440 minutes).
        seed: Seed of the ``numpy.random.default_rng`` generator; the only source of randomness.
        drift_start: ISO date or date-time from which the drift scenario applies (see the
            module docstring), or ``None`` for no drift.
        degraded_turbine: The turbine that loses power from ``drift_start`` on; a name that
            is not in the farm (e.g. with fewer turbines) means no turbine degrades.
        degradation_factor: Fraction of its normal power the degraded turbine still produces.
        rated_power_kw: Rated (maximum) electrical power of a turbine.
        cut_in_ms: Wind speed below which a turbine produces nothing.
        rated_ms: Wind speed at which rated power is reached at the reference density.
        cut_out_ms: Wind speed at and above which a turbine shuts down.
        rotor_diameter_m: Rotor diameter, for the swept area and the tip-speed ratio.
        rated_rotor_rpm: Maximum (rated) rotor speed.
        min_rotor_rpm: Minimum rotor speed while producing.
        reference_density_kgm3: Air density at which the power curve is specified.
        mean_wind_speed_ms: Annual mean hub-height wind speed of the farm-wide regime
            (before wake/terrain factors and drift).
    """

    turbines: int = 6
    start: str = "2024-01-01"
    days: int = 366
    interval_minutes: int = 10
    seed: int = 42
    drift_start: str | None = "2024-11-01"
    degraded_turbine: str = "WT04"
    degradation_factor: float = 0.865
    rated_power_kw: float = 2000.0
    cut_in_ms: float = 3.0
    rated_ms: float = 12.0
    cut_out_ms: float = 25.0
    rotor_diameter_m: float = 90.0
    rated_rotor_rpm: float = 16.0
    min_rotor_rpm: float = 8.5
    reference_density_kgm3: float = 1.225
    mean_wind_speed_ms: float = 7.5

    def __post_init__(self) -> None:
        if self.turbines < 1:
            raise ConfigError(f"WindFarmSpec.turbines must be at least 1, got {self.turbines}")
        if self.days < 1:
            raise ConfigError(f"WindFarmSpec.days must be at least 1, got {self.days}")
        if self.interval_minutes < 1 or 1440 % self.interval_minutes:
            raise ConfigError(
                "WindFarmSpec.interval_minutes must divide a day (1440 minutes), "
                f"got {self.interval_minutes}"
            )
        if not 0 < self.cut_in_ms < self.rated_ms < self.cut_out_ms:
            raise ConfigError(
                "WindFarmSpec needs 0 < cut_in_ms < rated_ms < cut_out_ms, got "
                f"{self.cut_in_ms}, {self.rated_ms}, {self.cut_out_ms}"
            )
        for name in ("rated_power_kw", "rotor_diameter_m", "reference_density_kgm3"):
            if not getattr(self, name) > 0:
                raise ConfigError(
                    f"WindFarmSpec.{name} must be positive, got {getattr(self, name)}"
                )
        if not 0 < self.min_rotor_rpm < self.rated_rotor_rpm:
            raise ConfigError(
                "WindFarmSpec needs 0 < min_rotor_rpm < rated_rotor_rpm, got "
                f"{self.min_rotor_rpm}, {self.rated_rotor_rpm}"
            )
        if not 0 < self.degradation_factor <= 1:
            raise ConfigError(
                f"WindFarmSpec.degradation_factor must be in (0, 1], got {self.degradation_factor}"
            )
        if not self.mean_wind_speed_ms > 0:
            raise ConfigError(
                f"WindFarmSpec.mean_wind_speed_ms must be positive, got {self.mean_wind_speed_ms}"
            )
        _parse_utc(self.start, "start")
        if self.drift_start is not None:
            _parse_utc(self.drift_start, "drift_start")

    @property
    def turbine_ids(self) -> list[str]:
        """The turbine identifiers, ``["WT01", "WT02", ...]``."""
        return [f"WT{i:02d}" for i in range(1, self.turbines + 1)]

    @property
    def steps_per_day(self) -> int:
        """Number of SCADA intervals per day."""
        return 1440 // self.interval_minutes

    @property
    def n_rows(self) -> int:
        """Rows of the generated table: ``turbines · days · steps_per_day``."""
        return self.turbines * self.days * self.steps_per_day

    @property
    def rotor_area_m2(self) -> float:
        """Swept rotor area."""
        return math.pi * (self.rotor_diameter_m / 2.0) ** 2

    @property
    def power_coefficient(self) -> float:
        """The ``Cp`` of :func:`power_curve`: rated power exactly at rated speed and reference density."""
        return (self.rated_power_kw * 1000.0) / (
            0.5
            * self.reference_density_kgm3
            * self.rotor_area_m2
            * (self.rated_ms**3 - self.cut_in_ms**3)
        )


def power_curve(
    wind_speed_ms: np.ndarray | float,
    air_density_kgm3: np.ndarray | float = 1.225,
    spec: WindFarmSpec = WindFarmSpec(),
) -> np.ndarray:
    """The turbine's noise-free electrical power at a given wind speed and air density.

    ``P = min(rated, ½·rho·A·Cp·(v³ − v_cut_in³))`` for ``cut_in ≤ v < cut_out`` and 0
    otherwise, with ``Cp = spec.power_coefficient`` (see the module docstring).

    Args:
        wind_speed_ms: Hub-height wind speed(s), m/s.
        air_density_kgm3: Air density(ies), kg/m³, broadcast against ``wind_speed_ms``.
        spec: The turbine type (cut-in, rated and cut-out speeds, rated power, rotor).

    Returns:
        Power in kW, a float64 array of the broadcast shape, in ``[0, rated_power_kw]``.
    """
    v = np.asarray(wind_speed_ms, dtype=np.float64)
    rho = np.asarray(air_density_kgm3, dtype=np.float64)
    k = 0.5 * spec.rotor_area_m2 * spec.power_coefficient / 1000.0  # kW per (kg/m³ · m³/s³)
    aero = k * rho * (v**3 - spec.cut_in_ms**3)
    power = np.minimum(aero, spec.rated_power_kw)
    operating = (v >= spec.cut_in_ms) & (v < spec.cut_out_ms)
    return np.where(operating, np.maximum(power, 0.0), 0.0)


def generate_scada(spec: WindFarmSpec = WindFarmSpec()) -> pa.Table:
    """Generates the wind-farm SCADA table described in the module docstring.

    Args:
        spec: What to generate; the default is a 6-turbine farm over 2024 with drift from
            November.

    Returns:
        A table with schema :data:`SCADA_SCHEMA` and ``spec.n_rows`` rows ordered by
        ``(ts, turbine_id)``. The schema metadata key ``voltpipe.demo.spec`` holds the spec
        as JSON. Equal specs give byte-identical tables.
    """
    rng = np.random.default_rng(spec.seed)
    n_turb = spec.turbines
    per_day = spec.steps_per_day
    n_steps = spec.days * per_day
    steps_per_hour = 60.0 / spec.interval_minutes

    def ar(hours: float, size: tuple[int, ...] = ()) -> np.ndarray:
        return _ar1(rng, n_steps, hours * steps_per_hour, size)

    # --- time axis ------------------------------------------------------------------------
    start = _parse_utc(spec.start, "start")
    ts = start + np.arange(n_steps) * np.timedelta64(spec.interval_minutes, "m")
    doy = (ts - ts.astype("datetime64[Y]")) / np.timedelta64(1, "D")
    hour = (ts - ts.astype("datetime64[D]")) / np.timedelta64(1, "h")
    if spec.drift_start is None:
        drift = np.zeros(n_steps, dtype=bool)
    else:
        drift = ts >= _parse_utc(spec.drift_start, "drift_start")
    drift_f = drift.astype(np.float64)

    # --- farm-wide weather (all random draws happen in a fixed order) -----------------------
    slow_x, slow_y = ar(36.0), ar(36.0)
    fast_x, fast_y = ar(2.0), ar(2.0)
    x = math.sqrt(0.75) * slow_x + math.sqrt(0.25) * fast_x
    y = math.sqrt(0.75) * slow_y + math.sqrt(0.25) * fast_y
    season = 1.0 + 0.20 * np.cos(2 * np.pi * (doy - 15.0) / 365.25)
    diurnal = 1.0 + 0.07 * np.cos(2 * np.pi * (hour - 2.0) / 24.0)
    mean_speed = spec.mean_wind_speed_ms * season * diurnal * (1.0 + 0.20 * drift_f)
    regime = mean_speed * np.hypot(x, y) / math.sqrt(math.pi / 2.0)

    direction = 225.0 + 30.0 * ar(96.0) + 10.0 * ar(3.0) + 40.0 * drift_f

    temperature = (
        9.5
        + 8.5 * np.cos(2 * np.pi * (doy - 200.0) / 365.25)
        + 3.5 * np.cos(2 * np.pi * (hour - 15.0) / 24.0)
        + 2.5 * ar(48.0)
        + 0.4 * ar(1.0)
        + 3.0 * drift_f
    )

    slow_strength = (np.hypot(slow_x, slow_y) - math.sqrt(math.pi / 2.0)) / math.sqrt(
        2.0 - math.pi / 2.0
    )
    pressure = 1013.25 + 7.0 * ar(72.0) + 0.3 * ar(2.0) - 3.0 * slow_strength

    # --- per turbine: constants, then (time, turbine) arrays --------------------------------
    terrain = rng.uniform(0.95, 1.05, n_turb)
    wake_from = rng.uniform(0.0, 360.0, n_turb)
    wake_depth = rng.uniform(0.03, 0.12, n_turb)
    turbulence = ar(1.0 / 3.0, (n_turb,)).T  # (time, turbine)
    vane_noise = rng.standard_normal((n_steps, n_turb))
    temp_noise = rng.standard_normal((n_steps, n_turb))
    pres_noise = rng.standard_normal((n_steps, n_turb))
    power_noise = rng.standard_normal((n_steps, n_turb))
    rpm_noise = rng.standard_normal((n_steps, n_turb))
    pitch_noise = rng.standard_normal((n_steps, n_turb))

    off_wake = (direction[:, None] - wake_from[None, :] + 180.0) % 360.0 - 180.0
    wake = 1.0 - wake_depth * np.exp(-0.5 * (off_wake / 12.0) ** 2)
    # Measured values at their SCADA resolution; everything downstream derives from these.
    wind = np.round(regime[:, None] * terrain * wake * np.maximum(1.0 + 0.05 * turbulence, 0.5), 2)
    wind_dir = np.round((direction[:, None] + 2.0 * vane_noise) % 360.0, 1) % 360.0
    temp = np.round(temperature[:, None] + 0.15 * temp_noise, 2)
    pres = np.round(pressure[:, None] + 0.1 * pres_noise, 1)
    rho = pres * 100.0 / (_R_SPECIFIC_DRY_AIR * (temp + _ZERO_CELSIUS_K))

    # --- curtailment: grid-limited nights, farm-wide -------------------------------------------
    # Night k runs from noon of day k-1 to noon of day k; h_night is the hour since that noon.
    hours_since_start = np.arange(n_steps) / steps_per_hour + _hour_of_day(start) - 12.0
    night = np.floor(hours_since_start / 24.0).astype(np.int64) + 1  # 0 .. days + 1
    h_night = hours_since_start - 24.0 * (night - 1)
    n_nights = spec.days + 2  # a start after noon reaches into night days + 1
    night_on = rng.random(n_nights) < 0.15
    night_from = rng.uniform(9.5, 13.0, n_nights)  # 21:30 .. 01:00
    night_len = rng.uniform(2.5, 7.0, n_nights)
    night_setpoint = rng.uniform(0.3, 0.7, n_nights) * spec.rated_power_kw
    curtailed = (
        night_on[night]
        & (h_night >= night_from[night])
        & (h_night < night_from[night] + night_len[night])
    )
    setpoint = np.where(curtailed, night_setpoint[night], np.inf)[:, None]

    # --- power, rotor speed, pitch in normal operation --------------------------------------
    available = power_curve(wind, rho, spec)
    available = available * (1.0 + 0.02 * power_noise)
    if spec.drift_start is not None and spec.degraded_turbine in spec.turbine_ids:
        degraded = spec.turbine_ids.index(spec.degraded_turbine)
        available[:, degraded] *= np.where(drift, spec.degradation_factor, 1.0)
    available = np.clip(available, 0.0, 1.02 * spec.rated_power_kw)
    power = np.minimum(available, setpoint)

    producing = (wind >= spec.cut_in_ms) & (wind < spec.cut_out_ms)
    radius = spec.rotor_diameter_m / 2.0
    rpm_tsr = 7.0 * wind / radius * 60.0 / (2.0 * np.pi)
    rpm = np.where(
        producing,
        np.clip(rpm_tsr, spec.min_rotor_rpm, spec.rated_rotor_rpm),
        np.where(wind < spec.cut_in_ms, 0.6 * wind, 0.5),
    )
    rpm = np.maximum(rpm * (1.0 + 0.01 * rpm_noise), 0.0)

    cap = np.minimum(setpoint, spec.rated_power_kw)
    k = 0.5 * spec.rotor_area_m2 * spec.power_coefficient / 1000.0
    v_cap = np.cbrt(spec.cut_in_ms**3 + cap / (k * rho))
    excess = np.maximum(wind - v_cap, 0.0) / (spec.cut_out_ms - spec.rated_ms)
    pitch = np.where(producing, np.minimum(25.0 * excess**0.7, 35.0), 0.0)
    pitch = np.where(wind >= spec.cut_out_ms, 89.0, pitch)
    pitch = np.maximum(pitch + 0.15 * pitch_noise, -0.5)

    # --- faults -----------------------------------------------------------------------------
    status = np.where(curtailed[:, None], _CURTAILED, _OK).astype(np.int8)
    status = np.broadcast_to(status, (n_steps, n_turb)).copy()
    events_per_turbine = rng.poisson(8.0 * spec.days / 365.25, n_turb)
    for j, n_events in enumerate(events_per_turbine.tolist()):
        if n_events == 0:
            continue
        segment = n_steps // n_events
        position = rng.random(n_events)
        hours = np.clip(rng.lognormal(math.log(10.0), 0.9, n_events), 2.0, 60.0)
        frozen = rng.random(n_events) < 0.25
        length = np.minimum(np.round(hours * steps_per_hour).astype(np.int64), segment)
        first = np.arange(n_events) * segment + np.floor(position * (segment - length + 1)).astype(
            np.int64
        )
        for s, n, is_frozen in zip(first.tolist(), length.tolist(), frozen.tolist(), strict=True):
            if n == 0:
                continue
            status[s : s + n, j] = _FAULT
            if is_frozen:
                power[s : s + n, j] = power[s, j]
                rpm[s : s + n, j] = rpm[s, j]
                pitch[s : s + n, j] = pitch[s, j]
            else:
                power[s : s + n, j] = 0.0
                rpm[s : s + n, j] = 0.0
                pitch[s : s + n, j] = 89.0 + 0.5 * pitch_noise[s : s + n, j]

    # --- assemble ---------------------------------------------------------------------------
    ts_us = ts.astype("datetime64[us]").astype(np.int64)
    columns = [
        pa.array(np.repeat(ts_us, n_turb), type=pa.int64()).cast(pa.timestamp("us")),
        pa.array(spec.turbine_ids, type=pa.string()).take(
            pa.array(np.tile(np.arange(n_turb, dtype=np.int32), n_steps))
        ),
        pa.array(wind.ravel()),
        pa.array(wind_dir.ravel()),
        pa.array(temp.ravel()),
        pa.array(pres.ravel()),
        _column(rho, 4),
        _column(rpm, 2),
        _column(pitch, 2),
        _column(power, 1),
        pa.array(list(STATUSES), type=pa.string()).take(pa.array(status.ravel())),
    ]
    schema = SCADA_SCHEMA.with_metadata(
        {"voltpipe.demo.spec": json.dumps(asdict(spec), sort_keys=True)}
    )
    return pa.Table.from_arrays(columns, schema=schema)


def seed_duckdb(
    path: str | os.PathLike[str],
    spec: WindFarmSpec = WindFarmSpec(),
    *,
    schema: str = "scada",
    table: str = "turbine",
    replace: bool = False,
) -> int:
    """Writes the generated SCADA table into a DuckDB database file, once.

    * The file does not exist: the database is built in a temporary file next to ``path``
      and moved into place with ``os.replace``, so ``path`` never holds a half-written
      database (missing parent folders are created).
    * The file exists and already has the table: nothing is written (the file is opened
      read-only) unless ``replace`` is true, in which case the table is replaced in one
      transaction.
    * The file exists without the table: schema and table are created in one transaction.

    Args:
        path: The DuckDB database file.
        spec: What to generate.
        schema: Schema to create the table in (a plain SQL identifier).
        table: Table name (a plain SQL identifier).
        replace: Regenerate and replace an existing table.

    Returns:
        The number of rows in the table.

    Raises:
        ConfigError: ``schema`` or ``table`` is not a plain identifier.
    """
    seeded = seed_tables(path, {(schema, table): lambda: generate_scada(spec)}, replace=replace)
    return seeded[(schema, table)][0]


def seed_tables(
    path: str | os.PathLike[str],
    tables: Mapping[tuple[str, str], Callable[[], pa.Table]],
    *,
    replace: bool = False,
) -> dict[tuple[str, str], tuple[int, bool]]:
    """Writes generated tables into a DuckDB database file, each once (the rules of
    :func:`seed_duckdb`, for several tables at a time).

    A new file gets every table before it is moved into place, so it is never seen with only
    some of them; an existing file gains the tables it lacks (all or none, one transaction)
    and is only opened read-only when it has them all. A table's generator runs only when
    the table is written.

    Args:
        path: The DuckDB database file.
        tables: ``(schema, table)`` -> a function generating the table's rows.
        replace: Regenerate and replace tables that exist.

    Returns:
        ``(schema, table)`` -> (rows in the table, whether this call wrote it).

    Raises:
        ConfigError: a schema or table name is not a plain identifier.
    """
    for schema, table in tables:
        for what, name in (("schema", schema), ("table", table)):
            if not _IDENTIFIER.match(name):
                raise ConfigError(
                    f"seed_duckdb: {what} name {name!r} must be a plain SQL identifier "
                    "(letters, digits, underscores; not starting with a digit)"
                )
    target = Path(path)
    out: dict[tuple[str, str], tuple[int, bool]] = {}

    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            con = duckdb.connect(str(tmp))
            try:
                for (schema, table), generate in tables.items():
                    rows = _create_table(con, generate, schema, table, replace=False)
                    out[(schema, table)] = (rows, True)
                con.execute("CHECKPOINT")
            finally:
                con.close()
            os.replace(tmp, target)
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
                leftover.unlink(missing_ok=True)
        return out

    with duckdb.connect(str(target), read_only=True) as con:
        for schema, table in tables:
            if _table_exists(con, schema, table) and not replace:
                out[(schema, table)] = (_count(con, f'"{schema}"."{table}"'), False)
    missing = {key: generate for key, generate in tables.items() if key not in out}
    if not missing:
        return out

    con = duckdb.connect(str(target))
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            for (schema, table), generate in missing.items():
                rows = _create_table(con, generate, schema, table, replace=True)
                out[(schema, table)] = (rows, True)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return {key: out[key] for key in tables}


# --- helpers --------------------------------------------------------------------------------


def _hour_of_day(moment: np.datetime64) -> float:
    return float((moment - moment.astype("datetime64[D]")) / np.timedelta64(1, "h"))


def _ar1(
    rng: np.random.Generator, n_steps: int, tau_steps: float, size: tuple[int, ...] = ()
) -> np.ndarray:
    """Stationary unit-variance AR(1) series with e-folding time ``tau_steps``, shape ``size + (n_steps,)``.

    White noise convolved (via FFT) with the truncated, normalised kernel ``phi**k``,
    ``phi = exp(-1/tau)``: the same process as ``x[t] = phi·x[t-1] + sqrt(1-phi²)·e[t]``
    started in its stationary state, without a Python loop over time.
    """
    phi = math.exp(-1.0 / tau_steps)
    k = math.ceil(8.0 * tau_steps) + 1  # phi**k < e**-8
    kernel = phi ** np.arange(k)
    kernel /= np.sqrt(np.sum(kernel**2))
    noise = rng.standard_normal((*size, n_steps + k - 1))
    n_fft = 1 << (n_steps + 2 * k - 2).bit_length()
    spectrum = np.fft.rfft(noise, n_fft) * np.fft.rfft(kernel, n_fft)
    return np.fft.irfft(spectrum, n_fft)[..., k - 1 : k - 1 + n_steps]


def _column(values: np.ndarray, decimals: int) -> pa.Array:
    return pa.array((np.round(values, decimals) + 0.0).ravel())  # + 0.0: no negative zeros


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    (found,) = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchall()
    return bool(found[0])


def _count(con: duckdb.DuckDBPyConnection, qualified: str) -> int:
    # fetchall, not fetchone: it completes the result, which duckdb 2 requires before the
    # connection runs the next statement.
    ((rows,),) = con.execute(f"SELECT count(*) FROM {qualified}").fetchall()
    return int(rows)


def _create_table(
    con: duckdb.DuckDBPyConnection,
    generate: Callable[[], pa.Table],
    schema: str,
    table: str,
    *,
    replace: bool,
) -> int:
    """Creates (or replaces) a table from a generated Arrow table, in the caller's transaction."""
    data = generate()
    qualified = f'"{schema}"."{table}"'
    view = f"_voltpipe_seed_{uuid.uuid4().hex}"
    con.register(view, data)
    try:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        create = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE"
        con.execute(f'{create} {qualified} AS SELECT * FROM "{view}"')
        return _count(con, qualified)
    finally:
        con.unregister(view)
