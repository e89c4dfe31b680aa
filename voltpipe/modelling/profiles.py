"""Load profiles: a long series table (group, time, value) reshaped into one vector per group and period.

A smart-meter table holds one row per meter and half-hour; load-profile segmentation clusters
the *daily curves*: one 48-point vector per meter and day. :func:`build_profiles` does that
reshaping for training and batch scoring, :func:`profile_from_history` builds the one vector a
serving request needs from one group's recent readings, under the same rules:

Sampling step
    ``step_seconds`` is the most common difference between consecutive timestamps of a group
    (over all groups; a tie goes to the shorter step). It must divide the period (a day, or a
    week), and every timestamp must sit on that grid (its time since the start of its period a
    multiple of the step); otherwise the data is irregular and a :class:`DataError` names the
    first timestamp off the grid.
Periods and points
    A period is a calendar day, or an ISO week (Monday 00:00 to Monday 00:00), **in the time
    column's own clock**: naive timestamps as they are; a time-zone-aware column
    (TIMESTAMPTZ) in the zone it carries (its wall clock, so a day starts at local midnight);
    a DATE column is a timestamp at midnight (``period: week`` then gives 7 daily points).
    Point ``i`` (named ``p00``, ``p01``, ... ``p47`` for half-hourly days; three digits from 100
    points) holds the reading at ``period_start + i * step`` on that wall clock. On a
    daylight-saving change the skipped wall-clock hour counts as missing points and the
    readings of a repeated hour are averaged point by point.
Missing points and partial periods
    A point is missing when no row has its timestamp or its value is null (NaN counts as
    null). A period missing at most ``max_missing`` points is kept, its gaps filled by linear
    interpolation between the nearest readings of the same period (the nearest reading at
    either end); one missing more is dropped and counted in ``dropped`` - so are whole periods
    without any row between a group's first and last period, and partial first and last
    periods (the data starting or ending mid-day) unless their gap is within ``max_missing``.
Duplicates
    Two rows with the same group and timestamp are an error naming them (they cannot be
    told apart; aggregate them in the query).
Normalisation (``normalise``), applied to each profile on its own, so serving one profile
needs no statistics of the training data
    ``none``: the readings as they are (clusters on consumption size and timing together).
    ``shape``: the profile divided by its mean absolute value (for a non-negative load simply
    its mean), a curve averaging 1: customers of different size with the same daily shape
    fall together. An all-zero profile (a vacant property) has no shape: it is kept as zeros
    (its own, easily recognised group) and counted in ``zero_profiles``.
    ``level``: the profile's mean only, one point named ``mean`` (how much, not when).

Ordering is deterministic: rows are sorted by group value, then period start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from voltpipe.errors import DataError

__all__ = ["NORMALISATIONS", "PERIODS", "Profiles", "build_profiles", "profile_from_history"]

PERIODS: dict[str, int] = {"day": 86_400, "week": 7 * 86_400}
NORMALISATIONS: tuple[str, ...] = ("none", "shape", "level")

_US = 1_000_000
# 1970-01-01 was a Thursday: ISO weeks start 4 days later, on Monday 1970-01-05.
_WEEK_ORIGIN_US = 4 * 86_400 * _US


@dataclass(frozen=True)
class Profiles:
    """Profiles built from a series table.

    Attributes:
        keys: One row per profile: the group value (column named like the group column, when
            there is one) and ``period_start`` (a timestamp in the time column's zone).
        matrix: ``(n_profiles, len(points))`` float64 values, normalised.
        points: Names of the matrix columns (``p00`` ... for the readings, ``mean`` for
            ``normalise: level``).
        step_seconds: The sampling step inferred from the data (or the one given).
        dropped: Periods dropped for missing points (partial and absent periods included).
        interpolated: Missing points filled by interpolation in the kept periods.
        zero_profiles: Kept profiles that are all zero (``normalise: shape`` leaves them zero).
    """

    keys: pa.Table
    matrix: np.ndarray
    points: list[str]
    step_seconds: int
    dropped: int
    interpolated: int = 0
    zero_profiles: int = 0


def build_profiles(
    table: pa.Table,
    *,
    time_column: str,
    value: str,
    period: str = "day",
    group_column: str | None = None,
    normalise: str = "none",
    max_missing: int = 0,
    step_seconds: int | None = None,
) -> Profiles:
    """Reshapes a long table into one profile per group and period (rules: module docstring).

    Args:
        table: The series rows, in any order.
        time_column: DATE, TIMESTAMP or TIMESTAMPTZ column.
        value: Numeric column holding the readings.
        period: ``day`` or ``week``.
        group_column: Column identifying the series (a meter id); None: one series.
        normalise: ``none``, ``shape`` or ``level``.
        max_missing: Most missing points a kept period may have.
        step_seconds: The sampling step to expect (a trained model's); None infers it.

    Returns:
        The profiles, sorted by group and period start.

    Raises:
        DataError: a missing or mistyped column, a null time or group, duplicate timestamps,
            irregular sampling, a step that does not divide the period, or no complete period.
    """
    if period not in PERIODS:
        raise DataError(f"profile period {period!r} is not one of: {', '.join(PERIODS)}")
    if normalise not in NORMALISATIONS:
        raise DataError(
            f"profile normalise {normalise!r} is not one of: {', '.join(NORMALISATIONS)}"
        )
    if max_missing < 0:
        raise DataError(f"profile max_missing must be 0 or more, got {max_missing}")
    for role, name in (
        ("time_column", time_column),
        ("value", value),
        ("group_column", group_column),
    ):
        if name is not None and name not in table.column_names:
            raise DataError(
                f"profile {role} {name!r} is not a column of the data "
                f"(columns: {', '.join(table.column_names)})"
            )

    instants, local, tz = _times(table.column(time_column), time_column)
    values = _values(table.column(value), value)
    codes, group_values = _groups(table, group_column)

    order = np.lexsort((instants, codes))
    instants, local, values, codes = instants[order], local[order], values[order], codes[order]
    same_group = codes[1:] == codes[:-1]
    dup = np.flatnonzero(same_group & (instants[1:] == instants[:-1]))
    if dup.size:
        raise DataError(
            _duplicates_message(dup, codes, local, group_values, group_column, time_column)
        )

    period_us = PERIODS[period] * _US
    step = (
        step_seconds if step_seconds is not None else _infer_step(instants, same_group, time_column)
    )
    step_us = step * _US
    if period_us % step_us:
        raise DataError(
            f"profile period {period!r} ({PERIODS[period]} s) is not a whole number of sampling "
            f"steps: {time_column!r} is sampled every {step} s"
        )
    n_points = period_us // step_us

    origin = _WEEK_ORIGIN_US if period == "week" else 0
    period_index = np.floor_divide(local - origin, period_us)
    offset = local - origin - period_index * period_us
    off_grid = np.flatnonzero(offset % step_us)
    if off_grid.size:
        first = off_grid[0]
        raise DataError(
            f"{time_column!r} is irregular: {off_grid.size} timestamp(s) are off the {step} s "
            f"sampling grid of their {period}, the first "
            f"{_fmt_us(int(local[first]))}{_group_suffix(group_values, group_column, codes[first])}"
        )
    point = (offset // step_us).astype(np.int64)

    # One row per (group, period) from each group's first to its last period.
    n_groups = len(group_values) if group_column else 1
    # Rows are sorted by group then time, so each group's first and last rows bound its periods.
    first_period = np.full(n_groups, np.iinfo(np.int64).max)
    last_period = np.full(n_groups, np.iinfo(np.int64).min)
    starts_at = np.flatnonzero(np.concatenate([[True], ~same_group]))
    ends_at = np.concatenate([starts_at[1:], [len(codes)]]) - 1
    first_period[codes[starts_at]] = period_index[starts_at]
    last_period[codes[ends_at]] = period_index[ends_at]
    present = first_period <= last_period
    span = np.where(present, last_period - first_period + 1, 0)
    row_base = np.concatenate([[0], np.cumsum(span)[:-1]])
    row = row_base[codes] + (period_index - first_period[codes])
    n_rows = int(span.sum())

    ok = ~np.isnan(values)
    cell = row[ok] * n_points + point[ok]
    size = n_rows * n_points
    sums = np.bincount(cell, weights=values[ok], minlength=size).reshape(n_rows, n_points)
    counts = np.bincount(cell, minlength=size).reshape(n_rows, n_points)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = sums / counts  # NaN where missing; repeated wall-clock points averaged
    missing = (counts == 0).sum(axis=1)
    keep = missing <= max_missing
    if not keep.any():
        raise DataError(
            f"no complete {period} profile in the data: every {period} misses more than "
            f"max_missing={max_missing} of its {n_points} points of {value!r} "
            f"(sampled every {step} s)"
        )
    matrix = matrix[keep]
    interpolated = int(missing[keep].sum())
    if interpolated:
        matrix = _interpolate_rows(matrix)

    row_group = np.repeat(np.arange(n_groups), span)[keep]
    row_period = (
        np.concatenate([np.arange(f, f + s) for f, s in zip(first_period, span, strict=True) if s])
        if n_rows
        else np.zeros(0, dtype=np.int64)
    )[keep]
    starts = row_period * period_us + origin
    key_columns: dict[str, pa.Array] = {}
    if group_column:
        key_columns[group_column] = group_values.take(pa.array(row_group))
    key_columns["period_start"] = _period_starts(starts, tz)

    zero = ~np.any(matrix != 0.0, axis=1)
    matrix, points = _normalise(matrix, normalise, n_points)
    return Profiles(
        keys=pa.table(key_columns),
        matrix=matrix,
        points=points,
        step_seconds=int(step),
        dropped=int((~keep).sum()),
        interpolated=interpolated,
        zero_profiles=int(zero.sum()),
    )


def profile_from_history(
    history: pa.Table,
    *,
    time_column: str,
    value: str,
    period: str = "day",
    group_column: str | None = None,
    normalise: str = "none",
    max_missing: int = 0,
    step_seconds: int | None = None,
) -> np.ndarray:
    """The profile vector of one group's most recent usable period, for serving.

    Same rules as :func:`build_profiles`; with `step_seconds` (the trained model's step) a
    history of a single period needs no step inference, and a history sampled at another step
    is refused.

    Returns:
        A float64 vector of the model's points for the latest period with at most
        `max_missing` missing points.

    Raises:
        DataError: as :func:`build_profiles`, and when the history holds several groups or is
            sampled at a step other than `step_seconds`.
    """
    if group_column is not None and group_column in history.column_names:
        distinct = pc.unique(history.column(group_column))
        if len(distinct) > 1:
            raise DataError(
                f"a profile request holds {len(distinct)} different {group_column!r} values; "
                "send one group's history per request"
            )
    if step_seconds is not None and time_column in history.column_names and history.num_rows > 1:
        instants, _, _ = _times(history.column(time_column), time_column)
        instants = np.sort(instants)
        inferred = _infer_step(instants, np.ones(len(instants) - 1, dtype=bool), time_column)
        if inferred != step_seconds:
            raise DataError(
                f"the history's {time_column!r} is sampled every {inferred} s, the model's "
                f"profiles every {step_seconds} s"
            )
    profiles = build_profiles(
        history,
        time_column=time_column,
        value=value,
        period=period,
        group_column=None,
        normalise=normalise,
        max_missing=max_missing,
        step_seconds=step_seconds,
    )
    return np.asarray(profiles.matrix[-1], dtype=np.float64)


# --- helpers --------------------------------------------------------------------------------


def _times(column: pa.ChunkedArray, name: str) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(UTC instants, wall-clock times, zone) as int64 microseconds; DATE is midnight."""
    kind = column.type
    if column.null_count:
        raise DataError(f"profile time_column {name!r} has {column.null_count} null value(s)")
    if pa.types.is_date(kind):
        days = column.cast(pa.date32()).cast(pa.int32()).to_numpy().astype(np.int64)
        stamps = days * 86_400 * _US
        return stamps, stamps, None
    if not pa.types.is_timestamp(kind):
        raise DataError(
            f"profile time_column {name!r} must be a DATE, TIMESTAMP or TIMESTAMPTZ column, "
            f"got {kind}"
        )
    tz = kind.tz
    as_us = column.cast(pa.timestamp("us", tz=tz))
    instants = as_us.cast(pa.int64()).to_numpy()
    if tz is None:
        return instants, instants, None
    local = pc.local_timestamp(as_us).cast(pa.int64()).to_numpy()
    return instants, local, tz


def _values(column: pa.ChunkedArray, name: str) -> np.ndarray:
    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
        raise DataError(f"profile value {name!r} must be a numeric column, got {kind}")
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _groups(table: pa.Table, group_column: str | None) -> tuple[np.ndarray, pa.Array]:
    """Dense group codes in sorted group order, and the sorted distinct group values."""
    if group_column is None:
        return np.zeros(table.num_rows, dtype=np.int64), pa.array([], pa.null())
    column = table.column(group_column)
    if column.null_count:
        raise DataError(
            f"profile group_column {group_column!r} has {column.null_count} null value(s)"
        )
    distinct = pc.unique(column)
    distinct = distinct.take(pc.sort_indices(distinct))
    codes = pc.index_in(column, value_set=distinct).to_numpy(zero_copy_only=False)
    return np.asarray(codes, dtype=np.int64), distinct


def _infer_step(instants: np.ndarray, same_group: np.ndarray, time_column: str) -> int:
    diffs = (instants[1:] - instants[:-1])[same_group]
    diffs = diffs[diffs > 0]
    if diffs.size == 0:
        raise DataError(
            f"cannot infer the sampling step of {time_column!r}: no group has two readings"
        )
    steps, counts = np.unique(diffs, return_counts=True)
    step_us = int(steps[np.argmax(counts)])  # np.unique sorts: a tie goes to the shorter step
    if step_us % _US:
        raise DataError(
            f"{time_column!r} is sampled every {step_us / _US:g} s; profiles need a step of "
            "whole seconds"
        )
    return step_us // _US


def _interpolate_rows(matrix: np.ndarray) -> np.ndarray:
    out = matrix.copy()
    x = np.arange(matrix.shape[1])
    for i in np.flatnonzero(np.isnan(matrix).any(axis=1)):
        known = ~np.isnan(matrix[i])
        out[i] = np.interp(x, x[known], matrix[i, known])
    return out


def _normalise(matrix: np.ndarray, normalise: str, n_points: int) -> tuple[np.ndarray, list[str]]:
    if normalise == "level":
        return matrix.mean(axis=1, keepdims=True), ["mean"]
    if normalise == "shape":
        scale = np.abs(matrix).mean(axis=1, keepdims=True)
        matrix = np.divide(matrix, scale, out=np.zeros_like(matrix), where=scale > 0)
    width = max(2, len(str(n_points - 1)))
    return matrix, [f"p{i:0{width}d}" for i in range(n_points)]


def _period_starts(starts_us: np.ndarray, tz: str | None) -> pa.Array:
    naive = pa.array(starts_us.astype(np.int64), pa.int64()).cast(pa.timestamp("us"))
    if tz is None:
        return naive
    return pc.assume_timezone(naive, tz, ambiguous="earliest", nonexistent="earliest")


def _fmt_us(us: int) -> str:
    moment = np.datetime64(us // _US, "s") if us % _US == 0 else np.datetime64(us, "us")
    return str(moment).replace("T", " ")


def _group_suffix(group_values: pa.Array, group_column: str | None, code: int) -> str:
    if not group_column:
        return ""
    return f" ({group_column} {group_values[int(code)].as_py()!r})"


def _duplicates_message(
    dup: np.ndarray,
    codes: np.ndarray,
    local: np.ndarray,
    group_values: pa.Array,
    group_column: str | None,
    time_column: str,
) -> str:
    shown = [
        f"{_fmt_us(int(local[i]))}{_group_suffix(group_values, group_column, codes[i])}"
        for i in dup[:3]
    ]
    more = f" and {dup.size - 3} more" if dup.size > 3 else ""
    per = f" per {group_column!r}" if group_column else ""
    return (
        f"{dup.size} duplicate timestamp(s) in {time_column!r}{per}: {', '.join(shown)}{more}; "
        "aggregate them in the query (one reading per timestamp)"
    )
