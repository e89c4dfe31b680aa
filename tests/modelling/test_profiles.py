"""Load profiles from a long series table (voltpipe.modelling.profiles)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from voltpipe.errors import DataError
from voltpipe.modelling.profiles import build_profiles, profile_from_history

HALF_HOUR = np.timedelta64(30, "m")


def _series(
    groups: list[str],
    start: str = "2024-01-01T00:00",
    days: int = 3,
    step: np.timedelta64 = HALF_HOUR,
    seed: int = 0,
) -> pa.Table:
    """Regular readings for every group: ``value = group scale * (1 + point / 10)`` plus noise."""
    per_day = int(np.timedelta64(1, "D") // step)
    ts = np.datetime64(start, "us") + np.arange(days * per_day) * step
    rng = np.random.default_rng(seed)
    rows = {"meter": [], "ts": [], "kwh": []}
    for i, group in enumerate(groups):
        point = np.arange(len(ts)) % per_day
        rows["meter"] += [group] * len(ts)
        rows["ts"].append(ts)
        rows["kwh"].append((i + 1) * (1.0 + point / 10.0) + rng.normal(0, 0.01, len(ts)))
    return pa.table(
        {
            "meter": pa.array(rows["meter"]),
            "ts": pa.array(np.concatenate(rows["ts"])),
            "kwh": pa.array(np.concatenate(rows["kwh"])),
        }
    )


def _build(table: pa.Table, **kw: object) -> object:
    args: dict[str, object] = {
        "time_column": "ts",
        "value": "kwh",
        "period": "day",
        "group_column": "meter",
        "normalise": "none",
        "max_missing": 0,
    }
    args.update(kw)
    return build_profiles(table, **args)  # type: ignore[arg-type]


def _drop_rows(table: pa.Table, indices: list[int]) -> pa.Table:
    mask = np.ones(table.num_rows, dtype=bool)
    mask[indices] = False
    return table.filter(pa.array(mask))


# --- shapes, names, ordering -----------------------------------------------------------------


def test_one_profile_per_group_and_day_with_named_points() -> None:
    table = _series(["b", "a"], days=3)
    p = _build(table)
    assert p.matrix.shape == (6, 48) and p.matrix.dtype == np.float64
    assert p.points[:3] == ["p00", "p01", "p02"] and p.points[-1] == "p47"
    assert p.step_seconds == 1800 and p.dropped == 0 and p.interpolated == 0
    assert p.keys.column_names == ["meter", "period_start"]
    assert p.keys.schema.field("period_start").type == pa.timestamp("us")
    assert p.keys.column("meter").to_pylist() == ["a"] * 3 + ["b"] * 3
    assert p.keys.column("period_start").to_pylist()[:3] == [
        datetime(2024, 1, 1),
        datetime(2024, 1, 2),
        datetime(2024, 1, 3),
    ]
    # group "a" was the second one generated: scale 2; point i holds 2 * (1 + i / 10)
    np.testing.assert_allclose(p.matrix[0], 2 * (1 + np.arange(48) / 10), atol=0.05)


def test_row_order_of_the_input_does_not_matter() -> None:
    table = _series(["m1", "m2", "m3"], days=4)
    shuffled = table.take(pa.array(np.random.default_rng(3).permutation(table.num_rows)))
    a, b = _build(table), _build(shuffled)
    assert a.keys.equals(b.keys)
    np.testing.assert_array_equal(a.matrix, b.matrix)


def test_without_a_group_column_the_table_is_one_series() -> None:
    table = _series(["only"], days=2).drop_columns(["meter"])
    p = _build(table, group_column=None)
    assert p.keys.column_names == ["period_start"] and p.matrix.shape == (2, 48)


def test_weekly_profiles_start_on_monday_and_have_three_digit_points() -> None:
    table = _series(["a"], start="2024-01-03T00:00", days=20)  # Wednesday to Monday
    p = _build(table, period="week")
    # Mon 8 Jan and Mon 15 Jan are whole weeks; the partial weeks around them are dropped
    assert p.keys.column("period_start").to_pylist() == [
        datetime(2024, 1, 8),
        datetime(2024, 1, 15),
    ]
    assert p.matrix.shape == (2, 336) and p.points[0] == "p000" and p.points[-1] == "p335"
    assert p.dropped == 2


# --- missing points, partial and absent periods ----------------------------------------------


def test_missing_points_drop_the_period_or_are_interpolated_within_max_missing() -> None:
    table = _series(["a"], days=3)
    holed = _drop_rows(table, [48 + 10, 48 + 11])  # day 2, points 10 and 11
    strict = _build(holed)
    assert strict.matrix.shape[0] == 2 and strict.dropped == 1
    assert datetime(2024, 1, 2) not in strict.keys.column("period_start").to_pylist()

    lenient = _build(holed, max_missing=2)
    assert lenient.matrix.shape[0] == 3 and lenient.dropped == 0 and lenient.interpolated == 2
    day2 = lenient.matrix[1]
    kwh = table.column("kwh").to_numpy()[48:96]
    expected = kwh[9] + (kwh[12] - kwh[9]) * np.array([1, 2]) / 3
    np.testing.assert_allclose(day2[10:12], expected, rtol=1e-12)


def test_a_null_value_is_a_missing_point() -> None:
    table = _series(["a"], days=2)
    kwh = table.column("kwh").to_pylist()
    kwh[5] = None
    table = table.set_column(2, "kwh", pa.array(kwh, pa.float64()))
    assert _build(table).dropped == 1
    assert _build(table, max_missing=1).interpolated == 1


def test_partial_first_and_last_days_and_absent_days_are_dropped_and_counted() -> None:
    table = _series(["a", "b"], start="2024-01-01T12:00", days=4)  # ends 2024-01-05 11:30
    # meter "b" has no reading at all on 2024-01-03
    ts = table.column("ts")
    gap = pc.and_(
        pc.equal(table.column("meter"), "b"),
        pc.equal(
            pc.floor_temporal(ts, unit="day"), pa.scalar(datetime(2024, 1, 3), pa.timestamp("us"))
        ),
    )
    table = table.filter(pc.invert(gap))
    p = _build(table)
    kept = list(
        zip(
            p.keys.column("meter").to_pylist(),
            p.keys.column("period_start").to_pylist(),
            strict=True,
        )
    )
    assert kept == [
        ("a", datetime(2024, 1, 2)),
        ("a", datetime(2024, 1, 3)),
        ("a", datetime(2024, 1, 4)),
        ("b", datetime(2024, 1, 2)),
        ("b", datetime(2024, 1, 4)),
    ]
    assert p.dropped == 2 + 3  # a: first and last day; b: first, absent and last day


def test_no_complete_period_is_a_clear_error() -> None:
    table = _series(["a"], start="2024-01-01T12:00", days=1)
    with pytest.raises(DataError, match="no complete day profile.*max_missing=0"):
        _build(table)


# --- time types and zones --------------------------------------------------------------------


def test_a_date_column_with_weekly_periods_gives_seven_daily_points() -> None:
    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(21)]  # Monday, three weeks
    table = pa.table({"day": pa.array(days, pa.date32()), "kwh": np.arange(21, dtype=float)})
    p = build_profiles(
        table, time_column="day", value="kwh", period="week", group_column=None,
        normalise="none", max_missing=0,
    )  # fmt: skip
    assert p.step_seconds == 86_400 and p.points == [f"p{i:02d}" for i in range(7)]
    assert p.keys.column("period_start").to_pylist() == [
        datetime(2024, 1, 1),
        datetime(2024, 1, 8),
        datetime(2024, 1, 15),
    ]
    np.testing.assert_array_equal(p.matrix[1], np.arange(7, 14, dtype=float))


def test_an_aware_column_is_cut_into_days_of_its_own_zone() -> None:
    zone = ZoneInfo("America/New_York")
    local_start = datetime(2024, 1, 10, tzinfo=zone)
    instants = [local_start + timedelta(minutes=30 * i) for i in range(48 * 2)]
    utc = pa.array([t.astimezone(UTC) for t in instants], pa.timestamp("us", tz="UTC"))
    table = pa.table(
        {"ts": utc.cast(pa.timestamp("us", tz="America/New_York")), "kwh": np.arange(96.0)}
    )
    p = build_profiles(
        table, time_column="ts", value="kwh", period="day", group_column=None,
        normalise="none", max_missing=0,
    )  # fmt: skip
    assert p.matrix.shape == (2, 48) and p.dropped == 0
    assert p.keys.schema.field("period_start").type == pa.timestamp("us", tz="America/New_York")
    starts = p.keys.column("period_start").to_pylist()
    assert starts[0] == local_start and starts[1] == local_start + timedelta(days=1)
    np.testing.assert_array_equal(p.matrix[0], np.arange(48.0))  # p00 is local midnight


def test_daylight_saving_days_have_a_skipped_and_a_repeated_hour() -> None:
    zone = "Europe/London"
    # UTC instants from 2024-03-30 00:00 local (= UTC) every 30 min, 4 days: crosses 31 March
    start = datetime(2024, 3, 30, tzinfo=UTC)
    instants = [start + timedelta(minutes=30 * i) for i in range(48 * 4 - 2)]
    table = pa.table(
        {
            "ts": pa.array(instants, pa.timestamp("us", tz="UTC")).cast(
                pa.timestamp("us", tz=zone)
            ),
            "kwh": np.ones(len(instants)),
        }
    )
    strict = build_profiles(
        table, time_column="ts", value="kwh", period="day", group_column=None,
        normalise="none", max_missing=0,
    )  # fmt: skip
    days = [d.date() for d in strict.keys.column("period_start").to_pylist()]
    assert date(2024, 3, 31) not in days  # 01:00 and 01:30 never happen that day: 2 missing
    lenient = build_profiles(
        table, time_column="ts", value="kwh", period="day", group_column=None,
        normalise="none", max_missing=2,
    )  # fmt: skip
    assert date(2024, 3, 31) in [d.date() for d in lenient.keys.column("period_start").to_pylist()]

    # Autumn: 27 October repeats 01:00-02:00; the two readings of each repeated point average.
    start = datetime(2024, 10, 26, 23, tzinfo=UTC)  # local midnight (BST) of 27 October
    instants = [start + timedelta(minutes=30 * i) for i in range(50)]
    values = np.ones(50)
    values[2:4] = 3.0  # first 01:00 and 01:30 (BST)
    values[4:6] = 5.0  # second 01:00 and 01:30 (GMT)
    table = pa.table(
        {
            "ts": pa.array(instants, pa.timestamp("us", tz="UTC")).cast(
                pa.timestamp("us", tz=zone)
            ),
            "kwh": values,
        }
    )
    p = build_profiles(
        table, time_column="ts", value="kwh", period="day", group_column=None,
        normalise="none", max_missing=0,
    )  # fmt: skip
    assert p.matrix.shape == (1, 48)
    np.testing.assert_allclose(p.matrix[0, 2:4], [4.0, 4.0])
    np.testing.assert_allclose(p.matrix[0, [0, 1, 4, 47]], 1.0)


# --- normalisation ---------------------------------------------------------------------------


def test_shape_removes_the_consumption_level_and_level_keeps_only_it() -> None:
    table = _series(["small", "big"], days=2)
    big = pc.equal(table.column("meter"), "big")
    scaled = table.set_column(
        2, "kwh", pc.if_else(big, pc.multiply(table.column("kwh"), 7.0), table.column("kwh"))
    )
    shape = _build(scaled, normalise="shape")
    np.testing.assert_allclose(shape.matrix.mean(axis=1), 1.0, rtol=1e-12)
    raw = _build(scaled)
    np.testing.assert_allclose(shape.matrix, raw.matrix / raw.matrix.mean(axis=1, keepdims=True))

    level = _build(scaled, normalise="level")
    assert level.points == ["mean"] and level.matrix.shape == (4, 1)
    np.testing.assert_allclose(level.matrix[:, 0], raw.matrix.mean(axis=1), rtol=1e-12)


def test_an_all_zero_profile_stays_zero_under_shape_and_is_counted() -> None:
    table = _series(["a", "b"], days=2)
    is_b = pc.equal(table.column("meter"), "b")
    table = table.set_column(2, "kwh", pc.if_else(is_b, 0.0, table.column("kwh")))
    p = _build(table, normalise="shape")
    assert p.zero_profiles == 2
    np.testing.assert_array_equal(p.matrix[2:], 0.0)
    assert np.isfinite(p.matrix).all()


# --- bad input -------------------------------------------------------------------------------


def test_duplicate_timestamps_are_named() -> None:
    table = _series(["a", "b"], days=2)
    table = pa.concat_tables([table, table.slice(48 * 2 + 5, 1)])  # b, 2024-01-01 02:30
    with pytest.raises(
        DataError, match=r"1 duplicate timestamp.*2024-01-01 02:30:00 \(meter 'b'\)"
    ):
        _build(table)


def test_irregular_sampling_is_refused_with_the_first_bad_timestamp() -> None:
    table = _series(["a"], days=2)
    ts = table.column("ts").to_numpy().copy()
    ts[7] = ts[7] + np.timedelta64(7, "m")
    table = table.set_column(1, "ts", pa.array(ts))
    with pytest.raises(DataError, match=r"irregular.*1800 s.*2024-01-01 03:37:00 \(meter 'a'\)"):
        _build(table)


def test_a_step_that_does_not_divide_the_period_is_refused() -> None:
    table = _series(["a"], days=2, step=np.timedelta64(7, "m"))
    with pytest.raises(DataError, match="every 420 s"):
        _build(table)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"time_column": "when"}, "time_column 'when' is not a column"),
        ({"value": "power"}, "value 'power' is not a column"),
        ({"group_column": "site"}, "group_column 'site' is not a column"),
        ({"value": "meter"}, "value 'meter' must be a numeric column"),
        ({"time_column": "kwh"}, "must be a DATE, TIMESTAMP or TIMESTAMPTZ"),
        ({"period": "month"}, "period 'month'"),
        ({"normalise": "minmax"}, "normalise 'minmax'"),
    ],
)
def test_bad_arguments_name_the_culprit(kw: dict[str, str], match: str) -> None:
    with pytest.raises(DataError, match=match):
        _build(_series(["a"], days=2), **kw)


def test_null_groups_and_times_are_refused() -> None:
    table = _series(["a"], days=2)
    meters = table.column("meter").to_pylist()
    meters[3] = None
    with pytest.raises(DataError, match="group_column 'meter' has 1 null"):
        _build(table.set_column(0, "meter", pa.array(meters, pa.string())))


# --- serving ---------------------------------------------------------------------------------


def test_profile_from_history_is_the_latest_usable_period_under_the_same_rules() -> None:
    table = _series(["a"], start="2024-01-01T00:00", days=3)
    history = table.slice(0, 48 * 3 - 5)  # the last day is partial
    vector = profile_from_history(
        history, time_column="ts", value="kwh", period="day", group_column="meter",
        normalise="shape", max_missing=0, step_seconds=1800,
    )  # fmt: skip
    expected = _build(table, normalise="shape").matrix[1]  # 2 January
    np.testing.assert_allclose(vector, expected, rtol=1e-12)

    one_day = table.slice(48, 48)
    assert profile_from_history(
        one_day, time_column="ts", value="kwh", group_column="meter", step_seconds=1800
    ).shape == (48,)


def test_profile_from_history_refuses_another_step_or_several_groups() -> None:
    quarter_hourly = _series(["a"], days=1, step=np.timedelta64(15, "m"))
    with pytest.raises(DataError, match="every 900 s, the model's profiles every 1800 s"):
        profile_from_history(
            quarter_hourly, time_column="ts", value="kwh", group_column="meter", step_seconds=1800
        )
    with pytest.raises(DataError, match="2 different 'meter' values"):
        profile_from_history(
            _series(["a", "b"], days=1), time_column="ts", value="kwh", group_column="meter"
        )
