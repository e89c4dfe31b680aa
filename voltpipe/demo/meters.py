"""A generated smart-meter table: half-hourly consumption of households and small businesses.

The load-profile clustering demo (``configs/load_profiles.yaml``) needs customers whose daily
curves differ by *type*, while their size varies much more between meters than between types -
so only clustering on the curve's shape finds the types. :func:`generate_meters` builds that
table deterministically from :class:`MeterSpec` (same spec, byte-identical table) and
:func:`seed_meters` writes it into the embedded DuckDB warehouse as ``meters.readings``.

One row per meter and half-hour (``ts`` is the start of the interval, naive local time, no
daylight-saving change in the default period), ordered by ``(meter_id, ts)``; ``kwh`` is the
energy imported in the interval, at the meters' 1 Wh resolution. ``customer_type`` is the
generator's type of the meter: the ground truth a clustering is scored against (adjusted Rand
index), never a model input. The default spec (300 meters, 8 weeks from Monday 2024-03-04) has
806,400 slots, of which about 0.2 % are missing.

Customer types (:data:`CUSTOMER_TYPES`; shares of the meters 35/20/20/25 %)
==========================================================================
``household``
    A low night base, a morning peak around 07:30 (breakfast, showers) and a larger, broader
    evening peak around 18:30 (cooking, lighting, television). At weekends the morning peak
    comes about an hour later and daytime use is higher.
``pv_household``
    The same household behaviour minus a rooftop solar system's output (a bell from about
    07:00 to 18:00, peaking near 13:00, scaled by the day's sunshine), so the imported energy
    dips at midday, often to the base load's floor.
``storage_heating``
    Night storage heaters charging on an off-peak tariff (a 7-hour window starting between
    23:30 and 01:00, the largest load of the day), plus small household peaks in the day;
    the same on every day of the week, colder days charging more.
``commercial``
    A small office or shop: a flat plateau during opening hours (from 07:30-09:00 to
    17:00-18:30 on weekdays, a ramp at either end, a small lunchtime dip), a standby base of
    about an eighth of it outside. Closed at weekends, when the building services run on
    their timer (half the plateau, 07:00-18:30), except for one business in three, open on
    Saturday 09:00-16:00.

Variation and noise
===================
* Size: each meter's consumption is scaled by a log-normal factor (sigma 0.45), so two
  meters of one type differ in level more than the types' mean levels do.
* Per meter: its own peak times (a standard deviation of 30 min), peak heights (+-25 %) and, for solar
  owners, system size; per day: a shared weather factor (colder days use more, notably
  storage heaters) and, for solar, the day's sunshine (0.6-1).
* Per half-hour: multiplicative log-normal noise (sigma 0.08) plus random appliance spikes
  (kettle, oven, washing) in households, drawn as Poisson events.
* Missing data: about 0.2 % of the readings are absent at random, and a few meters have an
  outage of 2-12 hours (no rows), so some days miss points and ``max_missing`` matters.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import date

import numpy as np
import pyarrow as pa

from voltpipe.demo.windfarm import seed_tables
from voltpipe.errors import ConfigError

__all__ = [
    "CUSTOMER_TYPES",
    "METERS_SCHEMA",
    "MeterSpec",
    "generate_meters",
    "seed_demo_warehouse",
    "seed_meters",
]

#: The generator's customer types, in the order of their share of the meters.
CUSTOMER_TYPES: tuple[str, ...] = ("household", "pv_household", "storage_heating", "commercial")
_SHARES = (0.35, 0.20, 0.20, 0.25)

#: The schema of the table returned by :func:`generate_meters` (column order included).
METERS_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("meter_id", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us"), nullable=False),
        pa.field("kwh", pa.float64(), nullable=False),
        pa.field("customer_type", pa.string(), nullable=False),
    ]
)

_SLOTS = 48  # half-hours per day
_HOURS = (np.arange(_SLOTS) + 0.5) / 2.0  # mid-interval hour of each slot


@dataclass(frozen=True)
class MeterSpec:
    """What to generate.

    Attributes:
        meters: Number of meters, identified ``"M0001"``, ``"M0002"``, ...
        start: First day (an ISO date); the table starts at its midnight.
        days: Number of days.
        seed: Seed of the ``numpy.random.default_rng`` generator; the only source of randomness.
        missing_fraction: Share of the readings dropped at random.
        outages: Number of meters with one outage of 2-12 hours.
    """

    meters: int = 300
    start: str = "2024-03-04"
    days: int = 56
    seed: int = 16
    missing_fraction: float = 0.002
    outages: int = 12

    def __post_init__(self) -> None:
        if self.meters < 1:
            raise ConfigError(f"MeterSpec.meters must be at least 1, got {self.meters}")
        if self.days < 1:
            raise ConfigError(f"MeterSpec.days must be at least 1, got {self.days}")
        if not 0 <= self.missing_fraction < 0.5:
            raise ConfigError(
                f"MeterSpec.missing_fraction must be in [0, 0.5), got {self.missing_fraction}"
            )
        if self.outages < 0:
            raise ConfigError(f"MeterSpec.outages must be 0 or more, got {self.outages}")
        try:
            date.fromisoformat(self.start)
        except (TypeError, ValueError):
            raise ConfigError(
                f"MeterSpec.start must be an ISO date such as '2024-03-04', got {self.start!r}"
            ) from None

    @property
    def meter_ids(self) -> list[str]:
        return [f"M{i + 1:04d}" for i in range(self.meters)]


def _bump(hours: np.ndarray, centre: np.ndarray | float, width: np.ndarray | float) -> np.ndarray:
    """Gaussian bumps on the 24-hour clock; arguments broadcast, hours on the last axis."""
    return np.exp(-0.5 * ((hours - centre) / width) ** 2)


def _ramp(
    hours: np.ndarray, on: np.ndarray | float, off: np.ndarray | float, edge: float = 0.35
) -> np.ndarray:
    """A smooth plateau from `on` to `off` hours (logistic edges `edge` hours wide)."""
    return 1.0 / (1.0 + np.exp(-(hours - on) / edge)) - 1.0 / (1.0 + np.exp(-(hours - off) / edge))


def generate_meters(spec: MeterSpec = MeterSpec()) -> pa.Table:
    """Generates the smart-meter table described in the module docstring.

    Returns:
        A table with schema :data:`METERS_SCHEMA` ordered by ``(meter_id, ts)``; the schema
        metadata key ``voltpipe.demo.spec`` holds the spec as JSON. Equal specs give
        byte-identical tables.
    """
    rng = np.random.default_rng(spec.seed)
    n, days = spec.meters, spec.days
    h = _HOURS[None, None, :]  # (1, 1, slot)

    # --- meters: type, size and their own timing ----------------------------------------------
    counts = np.floor(np.array(_SHARES) * n).astype(np.int64)
    counts[0] += n - counts.sum()
    kind = rng.permutation(np.repeat(np.arange(len(CUSTOMER_TYPES)), counts))
    size = np.exp(rng.normal(0.0, 0.45, n))
    shift = rng.normal(0.0, 0.5, n)  # hours
    morning_amp = rng.uniform(0.75, 1.25, n)
    evening_amp = rng.uniform(0.75, 1.25, n)
    pv_size = rng.uniform(2.0, 3.0, n)  # kW at noon in full sun
    heat_start = rng.choice([-0.5, 0.0, 0.5, 1.0], n)  # 23:30 .. 01:00
    opening = rng.uniform(7.5, 9.0, n)
    closing = rng.uniform(17.0, 18.5, n)
    saturday = rng.random(n) < 1.0 / 3.0

    # --- days: weather and calendar (shared by all meters) ---------------------------------------
    start = np.datetime64(spec.start, "D")
    day_dates = start + np.arange(days)
    weekday = (day_dates.astype(np.int64) + 3) % 7  # 0 = Monday (1970-01-01 was a Thursday)
    weekend = (weekday >= 5)[None, :, None]
    is_saturday = (weekday == 5)[None, :, None]
    cold = np.clip(1.0 + 0.12 * np.cumsum(rng.normal(0.0, 0.35, days)) / np.sqrt(days), 0.7, 1.3)
    cold = cold - 0.15 * np.arange(days) / max(days, 1)  # spring: getting warmer
    sun = rng.uniform(0.6, 1.0, days)

    s = shift[:, None, None]
    # Households (every type but commercial behaves like one at home).
    morning_at = np.where(weekend, 8.5, 7.5) + s
    base = 0.12 + 0.05 * cold[None, :, None]
    home = (
        base
        + 0.55 * morning_amp[:, None, None] * _bump(h, morning_at, np.where(weekend, 1.1, 0.8))
        + 0.95 * evening_amp[:, None, None] * _bump(h, 18.5 + s, 1.6)
        + np.where(weekend, 0.4, 0.3) * _ramp(h, 9.0 + s, 16.5 + s, 0.8)
        + 0.10 * _ramp(h, 20.0 + s, 23.0 + s, 0.5)
    )
    home = home * (0.85 + 0.15 * cold[None, :, None])

    load = np.empty((n, days, _SLOTS))
    for code, name in enumerate(CUSTOMER_TYPES):
        m = kind == code
        if not m.any():
            continue
        if name == "household":
            load[m] = home[m]
        elif name == "pv_household":
            pv = pv_size[m, None, None] * sun[None, :, None] * _bump(h, 13.0, 3.0)
            load[m] = np.maximum(home[m] - 0.9 * pv, 0.03)
        elif name == "storage_heating":
            # A 7-hour off-peak window starting at `heat_start` (negative: before midnight).
            hs = heat_start[m, None, None]
            window = _ramp(h, hs, hs + 7.0, 0.15) + _ramp(h, hs + 24.0, hs + 31.0, 0.15)
            heat = 1.6 * cold[None, :, None] ** 2 * window
            load[m] = 0.6 * home[m] + heat
        else:
            hours = _ramp(h, opening[m, None, None], closing[m, None, None])
            lunch = 1.0 - 0.12 * _bump(h, 12.75, 0.5)
            # Closed days: building services on their timer (heating, ventilation, lights).
            services = 0.5 * _ramp(h, 7.0, 18.5)
            sat = saturday[m, None, None] & is_saturday
            open_now = np.where(weekend, np.where(sat, 0.8 * _ramp(h, 9.0, 16.0), services), hours)
            load[m] = 0.12 + (0.88 + 0.08 * cold[None, :, None]) * open_now * lunch
    load *= size[:, None, None]

    # --- noise: appliance spikes, multiplicative noise, metering resolution -----------------------
    spikes = rng.poisson(0.04, (n, days, _SLOTS)) * rng.uniform(0.15, 0.6, (n, days, _SLOTS))
    at_home = kind != CUSTOMER_TYPES.index("commercial")
    load += spikes * at_home[:, None, None] * size[:, None, None]
    load *= np.exp(rng.normal(0.0, 0.08, load.shape))
    kwh = np.round(load * 0.5, 3) + 0.0  # kW over half an hour; + 0.0: no negative zeros

    # --- missing data -----------------------------------------------------------------------------
    flat = kwh.reshape(n, days * _SLOTS)
    keep = rng.random(flat.shape) >= spec.missing_fraction
    outage_meters = rng.choice(n, size=min(spec.outages, n), replace=False)
    outage_len = rng.integers(4, 25, outage_meters.size)  # half-hours: 2 .. 12 hours
    outage_at = rng.integers(0, max(days * _SLOTS - 24, 1), outage_meters.size)
    for j, at, length in zip(outage_meters, outage_at, outage_len, strict=True):
        keep[j, at : at + length] = False

    # --- assemble ---------------------------------------------------------------------------------
    slot_us = np.arange(days * _SLOTS, dtype=np.int64) * 1_800_000_000
    start_us = start.astype("datetime64[us]").astype(np.int64)
    meter_index, slot_index = np.nonzero(keep)  # row-major: ordered by (meter, ts)
    ids = pa.array(spec.meter_ids, pa.string())
    types = pa.array(list(CUSTOMER_TYPES), pa.string())
    columns = [
        ids.take(pa.array(meter_index)),
        pa.array(start_us + slot_us[slot_index], pa.int64()).cast(pa.timestamp("us")),
        pa.array(flat[meter_index, slot_index]),
        types.take(pa.array(kind[meter_index])),
    ]
    schema = METERS_SCHEMA.with_metadata(
        {"voltpipe.demo.spec": json.dumps(asdict(spec), sort_keys=True)}
    )
    return pa.Table.from_arrays(columns, schema=schema)


def seed_meters(
    path: str | os.PathLike[str],
    spec: MeterSpec = MeterSpec(),
    *,
    schema: str = "meters",
    table: str = "readings",
    replace: bool = False,
) -> int:
    """Writes the generated smart-meter table into a DuckDB database file, once.

    Same rules as :func:`voltpipe.demo.windfarm.seed_duckdb`: a new file is built aside and
    moved into place; an existing file gains the table in one transaction, or is left alone
    (opened read-only) when it has it, unless `replace`.

    Returns:
        The number of rows in the table.

    Raises:
        ConfigError: ``schema`` or ``table`` is not a plain identifier.
    """
    seeded = seed_tables(path, {(schema, table): lambda: generate_meters(spec)}, replace=replace)
    return seeded[(schema, table)][0]


def seed_demo_warehouse(path: str | os.PathLike[str]) -> dict[str, tuple[int, bool]]:
    """Seeds the embedded warehouse with every demo table it lacks: ``scada.turbine`` (the
    default :class:`~voltpipe.demo.windfarm.WindFarmSpec`) and ``meters.readings`` (the
    default :class:`MeterSpec`).

    A warehouse seeded before the meter table existed gains it once; a new one gets both
    tables before the file appears.

    Returns:
        ``"schema.table"`` -> (rows, whether this call wrote the table).
    """
    from voltpipe.demo.windfarm import WindFarmSpec, generate_scada

    seeded = seed_tables(
        path,
        {
            ("scada", "turbine"): lambda: generate_scada(WindFarmSpec()),
            ("meters", "readings"): lambda: generate_meters(MeterSpec()),
        },
    )
    return {f"{schema}.{table}": value for (schema, table), value in seeded.items()}
