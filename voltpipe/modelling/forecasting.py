"""Forecasting data: series sorted by group then time, window starts that never cross a series,
calendar channels, season detection and the naive baselines. No TensorFlow here.

A window is ``window`` consecutive rows of one series (channels: the label, the covariates and,
with ``calendar``, hour-of-day and day-of-week as sin/cos); its target is the label over the
``horizon`` rows that follow. Windows are ordered by series then time: window ``i`` starts at
row ``starts[i]`` of the sorted table.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from voltpipe.errors import DataError

CALENDAR_CHANNELS = ["hour_sin", "hour_cos", "dow_sin", "dow_cos"]


@dataclasses.dataclass
class SeriesTable:
    """One table's series, sorted by group then time, as numpy arrays."""

    values: np.ndarray  # (n, channels) float32: label, covariates, calendar
    target: np.ndarray  # (n,) float64: the label
    series_id: np.ndarray  # (n,) int: series number, non-decreasing
    groups: np.ndarray  # (n,) group value of each row (str), "" without a group column
    times: np.ndarray  # (n,) the time column as numpy values


def _numeric(table: pa.Table, name: str, role: str) -> np.ndarray:
    if name not in table.column_names:
        raise DataError(
            f"{role} column {name!r} is missing (columns: {', '.join(table.column_names)})"
        )
    col = table.column(name)
    t = col.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
        raise DataError(f"{role} column {name!r} should be numeric but is {t}")
    values = col.to_numpy(zero_copy_only=False).astype("float64")
    bad = int((~np.isfinite(values)).sum())  # nulls become NaN in to_numpy
    if col.null_count or not np.all(np.isfinite(values)):
        raise DataError(
            f"{role} column {name!r} holds {bad} null, NaN or infinite value(s); "
            "fill or filter them in the query"
        )
    return values


def epoch_seconds(times: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """Seconds since 1970-01-01 UTC (float64) of a DATE, DATETIME or TIMESTAMP column, else None.

    DATE (date32/date64) counts whole days; a timestamp without a zone (DATETIME) is read as
    UTC, one with a zone is converted to UTC, so serving (which converts offsets to UTC) and
    training see the same hours. Sub-second parts are kept as fractions.
    """
    t = times.type
    if pa.types.is_timestamp(t):
        per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[t.unit]
        raw = pc.cast(times, pa.int64()).to_numpy(zero_copy_only=False)
        return raw.astype("float64") / per_second
    if pa.types.is_date(t):
        days = pc.cast(pc.cast(times, pa.date32()), pa.int32()).to_numpy(zero_copy_only=False)
        return days.astype("float64") * 86_400.0
    return None


def _calendar(times: pa.ChunkedArray) -> np.ndarray | None:
    """sin/cos of hour-of-day and day-of-week (UTC), or None when the column is not a time."""
    s = epoch_seconds(times)
    if s is None:
        return None
    hour = (s % 86_400) / 3_600.0
    dow = (np.floor(s / 86_400) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    a, b = 2 * np.pi * hour / 24.0, 2 * np.pi * dow / 7.0
    return np.stack([np.sin(a), np.cos(a), np.sin(b), np.cos(b)], axis=1)


def series_table(
    table: pa.Table,
    *,
    label: str,
    time_column: str,
    group_column: str | None,
    covariates: list[str],
    calendar: bool,
) -> SeriesTable:
    """Sorts `table` by group then time and returns its channels.

    Raises:
        DataError: a missing column, a null time, a non-numeric or non-finite label/covariate.
    """
    if time_column not in table.column_names:
        raise DataError(
            f"time_column {time_column!r} is not in the data (columns: {', '.join(table.column_names)})"
        )
    if table.column(time_column).null_count:
        raise DataError(f"time_column {time_column!r} holds null values")
    if group_column is not None and group_column not in table.column_names:
        raise DataError(
            f"forecasting.group_column {group_column!r} is not in the data "
            f"(columns: {', '.join(table.column_names)})"
        )
    keys = [(time_column, "ascending")]
    if group_column is not None:
        keys.insert(0, (group_column, "ascending"))
    table = table.sort_by(keys)
    target = _numeric(table, label, "label")
    channels = [target]
    for name in covariates:
        channels.append(_numeric(table, name, "covariate"))
    values = np.stack(channels, axis=1)
    if calendar:
        cal = _calendar(table.column(time_column))
        if cal is not None:
            values = np.concatenate([values, cal], axis=1)
    if group_column is not None:
        groups = np.asarray(
            pc.fill_null(pc.cast(table.column(group_column), pa.string()), "").to_numpy(
                zero_copy_only=False
            ),
            dtype=object,
        )
        change = np.empty(len(groups), dtype=bool)
        if len(groups):
            change[0] = False
            change[1:] = groups[1:] != groups[:-1]
        series_id = np.cumsum(change)
    else:
        groups = np.full(table.num_rows, "", dtype=object)
        series_id = np.zeros(table.num_rows, dtype="int64")
    times = table.column(time_column).to_numpy(zero_copy_only=False)
    return SeriesTable(values.astype("float32"), target, series_id, groups, times)


def has_calendar(table: pa.Table, time_column: str) -> bool:
    t = table.schema.field(time_column).type if time_column in table.column_names else None
    return t is not None and (pa.types.is_timestamp(t) or pa.types.is_date(t))


def context_length(forecasting: dict[str, Any]) -> int:
    """Past rows one forecast needs: a model meta's ``forecasting.context`` (>= ``window``), or
    its ``window`` for models saved before ``context`` existed.

    Everything that cuts a history uses it: evaluation's context from the valid split,
    ``forecast_last``, serving's minimum history, batch forecasts and the validate check.
    """
    return int(forecasting.get("context") or forecasting["window"])


def window_starts(
    series_id: np.ndarray, *, window: int, horizon: int, stride: int = 1
) -> np.ndarray:
    """First rows of every window (`window` inputs + `horizon` targets) inside one series.

    Vectorised: a start is valid when its last target row exists and is in the same series.
    """
    span = window + horizon
    n = len(series_id)
    if n < span:
        return np.zeros(0, dtype="int64")
    first = np.arange(n - span + 1)
    ok = series_id[first] == series_id[first + span - 1]
    starts = first[ok]
    if stride > 1:
        # Keep every `stride`-th start counted from each series' own first window.
        series_first = np.searchsorted(series_id, series_id[starts], side="left")
        starts = starts[(starts - series_first) % stride == 0]
    return starts.astype("int64")


def checked_starts(
    st: SeriesTable,
    *,
    window: int,
    horizon: int,
    split: str,
    group_column: str | None,
    stride: int = 1,
) -> np.ndarray:
    """``window_starts`` with a DataError naming the setting when no window fits.

    Raises:
        DataError: fewer rows than ``window + horizon``, or every series shorter than that.
    """
    span = window + horizon
    n = len(st.target)
    if n < span:
        raise DataError(
            f"the {split} split has {n} rows, fewer than forecasting.window + forecasting.horizon "
            f"= {window} + {horizon}; lower forecasting.window or extract more rows"
        )
    starts = window_starts(st.series_id, window=window, horizon=horizon, stride=stride)
    if len(starts) == 0:
        longest = int(np.bincount(st.series_id).max())
        raise DataError(
            f"forecasting.window + horizon = {span} is longer than every series in the {split} "
            f"split (the longest, by {group_column or 'the whole table'}, has {longest} rows); "
            "lower forecasting.window"
        )
    return starts


SEASON_TOLERANCE = 0.1  # a shorter season wins when its peak is this close to the highest


def autocorrelation(y: np.ndarray, max_lag: int, *, detrend: str = "quadratic") -> np.ndarray:
    """ACF at lags 0..`max_lag` (one FFT) of `y` with its trend removed.

    Args:
        detrend: ``quadratic``: minus a least-squares quadratic in time (a deterministic
            trend, linear or slowly curving as in CO2); ``difference``: first differences (a
            stochastic trend, as in a random walk). Either way a trend's own slowly decaying
            autocorrelation no longer shifts or hides the seasonal peaks.
    """
    y = np.asarray(y, dtype="float64")
    if detrend == "difference":
        r = np.diff(y)
    else:
        t = np.linspace(-1.0, 1.0, len(y))
        r = y - np.polyval(np.polyfit(t, y, min(2, len(y) - 1)), t)
    r = r - r.mean()
    out = np.zeros(max_lag + 1)
    if len(r) < 2 or not np.any(np.abs(r) > 1e-12 * (np.abs(y).max() or 1.0)):
        return out
    size = 1 << int(np.ceil(np.log2(2 * len(r))))
    f = np.fft.rfft(r, size)
    acf = np.fft.irfft(f * np.conj(f), size)[: max_lag + 1]
    out[: len(acf)] = acf / acf[0]
    return out


def _season_peak(acf: np.ndarray, max_lag: int, min_acf: float) -> int | None:
    """The season from an ACF: the shortest lag among the highest peaks.

    A peak is a local maximum above `min_acf` that rises at least `min_acf` above the lowest
    ACF before it (a season's ACF dips between its peaks; noise on a decaying trend does not).
    Peaks at multiples of a season are nearly as high as the season's own: the shortest lag
    within ``SEASON_TOLERANCE`` of the highest is the season.
    """
    k = np.arange(2, max_lag + 1)
    lowest_before = np.minimum.accumulate(acf[1 : max_lag + 1])[k - 2]
    peak = (
        (acf[k] >= acf[k - 1])
        & (acf[k] >= acf[k + 1])
        & (acf[k] > min_acf)
        & (acf[k] - lowest_before >= min_acf)
    )
    if not peak.any():
        return None
    lags, heights = k[peak], acf[k[peak]]
    return int(lags[np.argmax(heights >= heights.max() - SEASON_TOLERANCE)])


def seasonal_acf(
    y: np.ndarray, max_lag: int, min_acf: float = 0.2
) -> tuple[np.ndarray, int | None]:
    """The ACF (lags 0..`max_lag` + 1) season detection reads, and the season it shows.

    The trend is removed by a quadratic fit; when that leaves no clear peak (a stochastic
    trend, as in a random walk) by differencing. Differencing first would be wrong for the
    common case: it is a high-pass filter, and on a noisy smooth cycle (half-hourly demand
    with noise) it leaves no peak at all where the detrended ACF peaks at 0.9.
    """
    acf = autocorrelation(y, max_lag + 1)
    season = _season_peak(acf, max_lag, min_acf)
    if season is None:
        acf = autocorrelation(y, max_lag + 1, detrend="difference")
        season = _season_peak(acf, max_lag, min_acf)
    return acf, season


def detect_season(y: np.ndarray, max_lag: int, min_acf: float = 0.2) -> int | None:
    """The season length (>= 2 steps) of `y` from the ACF of its detrended values, or None.

    See ``seasonal_acf`` (the detrending) and ``_season_peak`` (the peak). Lags go up to
    `max_lag`, capped at half the series. Vectorised: two FFTs at most.
    """
    max_lag = min(max_lag, len(y) // 2 - 1)
    if max_lag < 3:
        return None
    return seasonal_acf(y, max_lag, min_acf)[1]


def targets(st: SeriesTable, starts: np.ndarray, window: int, horizon: int) -> np.ndarray:
    """The true label of each window's horizon: (n_windows, horizon)."""
    return st.target[starts[:, None] + window + np.arange(horizon)]


def naive_forecasts(
    st: SeriesTable, origins: np.ndarray, horizon: int, season: int | None
) -> dict[str, Any]:
    """Persistence and seasonal-naive forecasts from every origin (first forecast row).

    Persistence repeats ``y[o - 1]``; seasonal naive predicts step ``o + k`` by
    ``y[o + k - season * ceil((k + 1) / season)]``, always a row before the origin. Origins
    whose seasonal source row falls before their series' start are marked False in
    ``seasonal_mask`` (give each origin ``season`` rows of history to avoid that: see
    ``with_history``).
    """
    origins = np.asarray(origins, dtype="int64")
    persistence = np.repeat(st.target[origins - 1][:, None], horizon, axis=1)
    out: dict[str, Any] = {"persistence": persistence}
    if season:
        k = np.arange(horizon)
        lag = season * np.ceil((k + 1) / season).astype("int64")
        src = origins[:, None] + k - lag
        series_first = np.searchsorted(st.series_id, st.series_id[origins], side="left")
        ok = np.all(src >= series_first[:, None], axis=1)
        seasonal = st.target[np.clip(src, 0, None)]
        out["seasonal"] = seasonal
        out["seasonal_mask"] = ok
    return out


HISTORY_MARK = "__voltpipe_scored__"


def with_history(
    history: pa.Table | None,
    table: pa.Table,
    *,
    time_column: str,
    group_column: str | None,
    rows: int,
) -> tuple[pa.Table, np.ndarray]:
    """`table` with the last `rows` rows of each of its series in `history` before it.

    This is how a test split gets the past its first forecasts need (from the valid split):
    every row of `table` can then be a forecast target, whatever the window. The result is
    sorted by group then time, as ``series_table`` sorts it (a stable sort, so the order is
    kept there), and comes with a mask of the rows that came from `table`.

    Args:
        history: the rows just before `table` (same columns), or None.
        rows: how many past rows each series needs (``context_length``, or more for a
            seasonal-naive baseline).

    Returns:
        (the sorted rows, (n,) bool: True for the rows of `table`).
    """
    keys = [(time_column, "ascending")]
    if group_column is not None and group_column in table.column_names:
        keys.insert(0, (group_column, "ascending"))
    else:
        group_column = None
    parts = [table.append_column(HISTORY_MARK, pa.repeat(pa.scalar(True), table.num_rows))]
    if history is not None and history.num_rows and rows > 0:
        missing = [c for c in table.column_names if c not in history.column_names]
        if missing:
            raise DataError(
                f"the history rows lack column(s) {', '.join(missing)} of the scored rows"
            )
        past = history.select(table.column_names).cast(table.schema).sort_by(keys)
        if group_column is not None:
            g = pc.fill_null(pc.cast(past.column(group_column), pa.string()), "")
            g = np.asarray(g.to_numpy(zero_copy_only=False), dtype=object)
            wanted = set(
                pc.unique(
                    pc.fill_null(pc.cast(table.column(group_column), pa.string()), "")
                ).to_pylist()
            )
            ends = np.r_[np.flatnonzero(g[1:] != g[:-1]), len(g) - 1]
            series_end = ends[np.searchsorted(ends, np.arange(len(g)))]
            keep = (series_end - np.arange(len(g)) < rows) & np.isin(g, list(wanted))
        else:
            keep = np.arange(past.num_rows) >= past.num_rows - rows
        past = past.filter(pa.array(keep))
        parts.insert(
            0, past.append_column(HISTORY_MARK, pa.repeat(pa.scalar(False), past.num_rows))
        )
    combined = pa.concat_tables(parts).sort_by([*keys, (HISTORY_MARK, "ascending")])
    scored = combined.column(HISTORY_MARK).to_numpy(zero_copy_only=False).astype(bool)
    return combined.drop_columns([HISTORY_MARK]), scored
