"""The generated smart-meter demo table and the seeding of the embedded warehouse."""

from __future__ import annotations

import os

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from voltpipe.demo import (
    CUSTOMER_TYPES,
    METERS_SCHEMA,
    MeterSpec,
    WindFarmSpec,
    generate_meters,
    seed_demo_warehouse,
    seed_duckdb,
    seed_meters,
    seed_tables,
)
from voltpipe.errors import ConfigError
from voltpipe.modelling.profiles import build_profiles

SMALL = MeterSpec(meters=24, days=14)


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


@pytest.fixture(scope="module")
def default_table() -> pa.Table:
    return generate_meters()


# --- determinism, schema, size ---------------------------------------------------------------


def test_same_spec_gives_a_byte_identical_table() -> None:
    assert _ipc_bytes(generate_meters(SMALL)) == _ipc_bytes(generate_meters(SMALL))
    other = generate_meters(MeterSpec(meters=24, days=14, seed=1))
    assert not other.column("kwh").equals(generate_meters(SMALL).column("kwh"))


def test_schema_order_and_grid(default_table: pa.Table) -> None:
    table = default_table
    assert table.schema.equals(METERS_SCHEMA, check_metadata=False)
    slots = 300 * 56 * 48
    assert 0.995 * slots < table.num_rows < slots  # a little missing data
    meters = table.column("meter_id").to_numpy(zero_copy_only=False)
    ts = table.column("ts").to_numpy()
    assert list(np.unique(meters)) == [f"M{i:04d}" for i in range(1, 301)]
    order = np.lexsort((ts, meters))
    assert (order == np.arange(len(order))).all()  # ordered by (meter_id, ts)
    assert ts.min() == np.datetime64("2024-03-04T00:00") and ts.max() == np.datetime64(
        "2024-04-28T23:30"
    )
    assert ((ts - ts.astype("datetime64[D]")) % np.timedelta64(30, "m") == 0).all()
    kwh = table.column("kwh").to_numpy()
    assert (kwh >= 0).all() and np.isfinite(kwh).all()
    assert np.allclose(kwh * 1000, np.round(kwh * 1000))  # 1 Wh resolution
    # one type per meter
    pairs = pc.unique(pc.binary_join_element_wise(table["meter_id"], table["customer_type"], "|"))
    assert len(pairs) == 300
    assert set(table.column("customer_type").to_pylist()) == set(CUSTOMER_TYPES)


def test_bad_spec_values_name_the_field() -> None:
    with pytest.raises(ConfigError, match="MeterSpec.meters"):
        MeterSpec(meters=0)
    with pytest.raises(ConfigError, match="MeterSpec.start"):
        MeterSpec(start="March")


# --- the types are distinct, the sizes are not ------------------------------------------------


def _weekday_shapes(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each meter's mean weekday shape, its type and its mean consumption."""
    p = build_profiles(
        table, time_column="ts", value="kwh", period="day", group_column="meter_id",
        normalise="shape", max_missing=4,
    )  # fmt: skip
    weekday = (
        p.keys.column("period_start").to_numpy().astype("datetime64[D]").astype(int) + 3
    ) % 7 < 5
    meters = p.keys.column("meter_id").to_numpy(zero_copy_only=False)
    ids = np.unique(meters)
    shapes = np.stack([p.matrix[(meters == m) & weekday].mean(axis=0) for m in ids])
    first = pc.index_in(pa.array(ids), table.column("meter_id"))
    types = table.column("customer_type").take(first).to_numpy(zero_copy_only=False)
    means = table.group_by("meter_id").aggregate([("kwh", "mean")]).column("kwh_mean").to_numpy()
    return shapes, types, means


def test_each_type_has_its_documented_daily_shape(default_table: pa.Table) -> None:
    shapes, types, _ = _weekday_shapes(default_table)
    hour = np.arange(48) / 2.0
    night, morning, midday = (
        (hour >= 1) & (hour < 5),
        (hour >= 7) & (hour < 8.5),
        (hour >= 11.5) & (hour < 14.5),
    )
    evening, office = (hour >= 17.5) & (hour < 20), (hour >= 10) & (hour < 16)
    mean = {t: shapes[types == t].mean(axis=0) for t in CUSTOMER_TYPES}
    household = mean["household"]
    assert household[evening].mean() > household[midday].mean() > household[night].mean()
    assert household[morning].mean() > household[night].mean() * 2
    pv = mean["pv_household"]
    assert pv[midday].mean() < 0.5 * household[midday].mean()  # the solar dip
    assert pv[evening].mean() > 2 * pv[midday].mean()
    storage = mean["storage_heating"]
    assert storage[night].mean() > 2 * storage[evening].mean()  # off-peak charging
    commercial = mean["commercial"]
    assert commercial[office].mean() > 3 * commercial[night].mean()
    assert commercial[office].std() < 0.1 * commercial[office].mean()  # a plateau


def test_types_are_recoverable_from_shape_but_sizes_overlap(default_table: pa.Table) -> None:
    shapes, types, means = _weekday_shapes(default_table)
    centroids = np.stack([shapes[types == t].mean(axis=0) for t in CUSTOMER_TYPES])
    nearest = np.argmin(((shapes[:, None, :] - centroids[None]) ** 2).sum(axis=2), axis=1)
    recovered = np.array(CUSTOMER_TYPES)[nearest]
    assert (recovered == types).mean() > 0.97
    # level varies between meters more than a factor 2 (10th to 90th percentile)
    low, high = np.percentile(means, [10, 90])
    assert high / low > 2.0


def test_some_days_miss_readings() -> None:
    table = generate_meters(SMALL)
    slots = SMALL.meters * SMALL.days * 48
    assert 0.001 < 1 - table.num_rows / slots < 0.05
    none_missing = generate_meters(MeterSpec(meters=24, days=14, missing_fraction=0.0, outages=0))
    assert none_missing.num_rows == slots


# --- seeding ---------------------------------------------------------------------------------


def test_seed_meters_writes_a_new_file_atomically_and_once(tmp_path) -> None:
    path = tmp_path / "demo.duckdb"
    rows = seed_meters(path, SMALL)
    assert rows == generate_meters(SMALL).num_rows
    assert sorted(os.listdir(tmp_path)) == ["demo.duckdb"]
    with duckdb.connect(str(path), read_only=True) as con:
        types = {r[0]: r[1] for r in con.execute("DESCRIBE meters.readings").fetchall()}
        stored = pa.table(con.sql("SELECT * FROM meters.readings ORDER BY meter_id, ts").arrow())
    assert types == {
        "meter_id": "VARCHAR",
        "ts": "TIMESTAMP",
        "kwh": "DOUBLE",
        "customer_type": "VARCHAR",
    }
    assert stored.cast(METERS_SCHEMA).equals(generate_meters(SMALL).replace_schema_metadata(None))
    mtime = path.stat().st_mtime_ns
    assert seed_meters(path, MeterSpec(meters=2, days=1)) == rows  # not replaced
    assert path.stat().st_mtime_ns == mtime


def test_an_existing_wind_warehouse_gains_the_meter_table_once(tmp_path) -> None:
    path = tmp_path / "warehouse.duckdb"
    wind = WindFarmSpec(turbines=1, days=2)
    seed_duckdb(path, wind)
    first = seed_demo_warehouse(path)
    assert first["scada.turbine"] == (wind.n_rows, False)  # the existing table is kept
    rows, written = first["meters.readings"]
    assert written and rows == generate_meters().num_rows
    mtime = path.stat().st_mtime_ns
    again = seed_demo_warehouse(path)
    assert again == {"scada.turbine": (wind.n_rows, False), "meters.readings": (rows, False)}
    assert path.stat().st_mtime_ns == mtime  # opened read-only
    assert sorted(os.listdir(tmp_path)) == ["warehouse.duckdb"]


def test_seeding_several_tables_is_all_or_nothing(tmp_path) -> None:
    path = tmp_path / "w.duckdb"
    seed_duckdb(path, WindFarmSpec(turbines=1, days=1))

    def broken() -> pa.Table:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        seed_tables(path, {("a", "one"): lambda: pa.table({"x": [1]}), ("b", "two"): broken})
    with duckdb.connect(str(path), read_only=True) as con:
        names = {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
    assert names == {"turbine"}

    fresh = tmp_path / "new.duckdb"
    with pytest.raises(RuntimeError, match="boom"):
        seed_tables(fresh, {("a", "one"): lambda: pa.table({"x": [1]}), ("b", "two"): broken})
    assert sorted(os.listdir(tmp_path)) == ["w.duckdb"]  # no half-seeded file, no temp file
