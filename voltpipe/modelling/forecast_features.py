"""The one feature path of every forecaster: naive base, seasonal lags, lags, rolling statistics,
calendar of the target times and covariates, in NumPy (no TensorFlow).

Training, evaluation (``predict_raw``), ``forecast_last``, serving and batch forecasts all call
``design``: a forecast *origin* ``o`` is the first forecast row; its history is the ``context``
rows before it, and the targets are rows ``o .. o + horizon - 1``. Every feature depends on the
history and on the step only, so a forecast from a request's history equals the one made in
training or evaluation from the same rows.

The base is the naive forecast a model corrects: ``last`` (persistence) or ``season:m``
(``y[o + k - m * ceil((k + 1) / m)]``), picked at training by its MAE on the training windows.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from voltpipe.modelling.forecasting import SeriesTable

EPS = 1e-9
STRONG_ACF = 0.25  # below it, the differenced series shows no season worth trusting
SEASONAL_DIFFS = 24  # recent steps over which "now vs one season ago" is averaged
# History rows a forecast reads, in cycles of the longest season (capped by the shortest valid
# series, where evaluation takes a test forecast's past from): the statistical family's trend
# is the filtered slope of its history, and on CO2 (52 weeks ahead) its test MAE was 0.787
# from 76 rows (one cycle + 24), 0.658 from 176 and 0.655 from 228; 600 rows gave 0.639.
HISTORY_CYCLES = 4


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """What ``design`` computes (stored as ``voltpipe_model.json`` -> forecasting -> features)."""

    window: int
    horizon: int
    seasons: tuple[int, ...]
    base: str = "last"  # "last" or "season:<m>"
    calendar: bool = True
    n_covariates: int = 0
    diffs: int = SEASONAL_DIFFS  # recent steps compared with one season back
    history: int = 0  # at least this many history rows (the statistical family's filter)

    @property
    def context(self) -> int:
        """History rows one forecast needs: the window, one cycle of every season plus the
        recent steps compared with one cycle back, and `history`."""
        return max(self.feature_context, self.history)

    @property
    def feature_context(self) -> int:
        """History rows ``design``'s features read (the statistical family reads `context`)."""
        return max([self.window, 2, *(m + min(m, self.diffs) for m in self.seasons)])

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["seasons"] = list(self.seasons)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(**{**d, "seasons": tuple(int(m) for m in d["seasons"])})


def seasonal_lag(origins: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """(n, horizon) row numbers ``o + k - m * ceil((k + 1) / m)``: the same phase one cycle back."""
    k = np.arange(horizon)
    return origins[:, None] + k - m * np.ceil((k + 1) / m).astype("int64")


def base_rows(origins: np.ndarray, horizon: int, base: str) -> np.ndarray:
    """(n, horizon) row numbers of the naive base forecast of each step."""
    if base == "last":
        return np.repeat((origins - 1)[:, None], horizon, axis=1)
    return seasonal_lag(origins, horizon, int(base.split(":")[1]))


def choose_base(y: np.ndarray, origins: np.ndarray, horizon: int, seasons: tuple[int, ...]) -> str:
    """The naive base with the lowest MAE on these windows (their targets must exist)."""
    truth = y[origins[:, None] + np.arange(horizon)]
    best, best_mae = "last", np.inf
    for base in ["last", *(f"season:{m}" for m in seasons)]:
        mae = float(np.mean(np.abs(y[base_rows(origins, horizon, base)] - truth)))
        if mae < best_mae - 1e-12:
            best, best_mae = base, mae
    return best


def detect_seasons(
    y: np.ndarray, max_lag: int, *, relative: float = 0.6, min_acf: float = 0.1, limit: int = 3
) -> list[int]:
    """Significant season lengths (steps, ascending) of `y`, or [] when it has none.

    The autocorrelation is taken of the differenced series (a trend would otherwise hide or
    shift its peaks); when that shows no strong season (differencing is a high-pass filter: a
    noisy smooth cycle loses its peak), of the series minus a quadratic trend
    (``forecasting.autocorrelation``). A candidate is a lag >= 4 whose autocorrelation is the highest within
    10 % of it, at least `min_acf` and `relative` times the strongest candidate's. Candidates
    are taken from the shortest up; a multiple of an accepted season ``m`` is kept only if it
    clearly beats the multiples of ``m`` beside it (weekly 336 over daily 48's 288 and 384), so that it
    is a season of its own, not an echo of ``m``.
    """
    from voltpipe.modelling.forecasting import autocorrelation

    y = np.asarray(y, dtype="float64")
    max_lag = min(max_lag, (len(y) - 1) // 3)
    if max_lag < 8 or not np.any(np.diff(y)):
        return []
    found, strength = _seasons_in(
        autocorrelation(y, max_lag, detrend="difference"), max_lag, relative, min_acf, limit
    )
    if strength < STRONG_ACF:
        detrended, strength_d = _seasons_in(
            autocorrelation(y, max_lag), max_lag, relative, min_acf, limit
        )
        if detrended and strength_d >= STRONG_ACF:
            found = detrended
    return found


def _seasons_in(
    acf: np.ndarray, max_lag: int, relative: float, min_acf: float, limit: int
) -> tuple[list[int], float]:
    """The seasons an ACF shows (see ``detect_seasons``) and the ACF at the strongest."""

    def near(lag: int, m: int) -> float:  # a season that is not a whole number of steps blurs
        r = max(2, m // 10)
        return float(acf[max(lag - r, 1) : lag + r + 1].max()) if 2 <= lag <= max_lag else -1.0

    candidates = []
    for p in range(4, max_lag + 1):
        r = max(2, p // 10)
        if acf[p] >= acf[max(p - r, 1) : p + r + 1].max() and acf[p] > min_acf:
            candidates.append(p)
    if not candidates:
        return [], 0.0
    strongest = float(max(acf[p] for p in candidates))
    floor = relative * strongest
    accepted: list[float] = []  # refined lengths (a year of weeks is 52.18)
    for p in (p for p in candidates if acf[p] >= floor):
        echo = False
        for m in accepted:
            q = round(p / m)
            beside = max(near(round(p - m), round(m)), near(round(p + m), round(m)))
            # A multiple is a season of its own when it stands out from its neighbours by a
            # good part of what is left to explain (weekly 336: 0.88 against 0.83 of 288).
            if abs(p / m - q) <= 0.1 and not (acf[p] - beside > max(0.03, 0.2 * (1 - beside))):
                echo = True
                break
        if not echo:
            accepted.append(_refine(acf, p, max_lag))
        if len(accepted) >= limit:
            break
    return sorted({round(m) for m in accepted}), strongest


def _refine(acf: np.ndarray, m: int, max_lag: int) -> float:
    """A season's length from the peaks at its multiples (a 52.18-week year peaks at 54 in
    one noisy cycle, at 104, 156, 209 ... over several): the slope through them."""
    qs, peaks = [1], [m]
    estimate = float(m)
    for q in range(2, 11):
        centre = q * estimate
        lo, hi = int(centre - estimate / 4), int(centre + estimate / 4)
        if hi > max_lag:
            break
        peak = lo + int(np.argmax(acf[lo : hi + 1]))
        qs.append(q)
        peaks.append(peak)
        estimate = float(np.dot(qs, peaks) / np.dot(qs, qs))
    return estimate


@dataclasses.dataclass
class Design:
    """The inputs of the forecasts from `origins` (n of them).

    Attributes:
        base: (n, horizon) the naive base forecast (label units).
        seasonal: (n, horizon, seasons) seasonal-lag values (label units).
        window: (n, window, channels) the last `window` rows of every channel.
        level: (n,) the last value; scale: (n,) the history's mean absolute step (> 0).
        target_calendar: (n, horizon, 6) sin/cos of hour, weekday and day of year of each
            target time, or None without a calendar time column.
    """

    base: np.ndarray
    seasonal: np.ndarray
    window: np.ndarray
    level: np.ndarray
    scale: np.ndarray
    history: np.ndarray  # (n, context) the label over the history
    covariates: np.ndarray  # (n, n_covariates) their last values
    target_calendar: np.ndarray | None
    seasons: tuple[int, ...] = ()
    diffs: int = SEASONAL_DIFFS

    def gbdt_matrix(self) -> np.ndarray:
        """(n * horizon, features) float32 rows, window-major: features of (window i, step k).

        Everything is relative to the last value and divided by the history's scale, so one
        model serves series of any level and size, and trees need not extrapolate levels.
        """
        n, h = self.base.shape
        lvl, sc = self.level[:, None], self.scale[:, None]
        hist = (self.history - lvl) / sc  # (n, context)
        w = self.window.shape[1]
        lags = hist[:, ::-1][:, :w]  # lag 1 .. window
        rolls = [hist[:, -r:].mean(axis=1) for r in sorted({w, *self.seasons}) if r > 1]
        rolls.append(hist[:, -w:].std(axis=1))
        # Now vs one season ago, the correction a seasonal base most needs: last step, mean of
        # the recent ones.
        sdiffs = []
        for m in self.seasons:
            r = max(1, min(m, self.diffs, self.history.shape[1] - m))
            diff = (self.history[:, -r:] - self.history[:, -r - m : -m]) / sc
            sdiffs += [diff[:, -1], diff.mean(axis=1)]
        per_window = np.column_stack(
            [lags, *rolls, *sdiffs, np.log(sc[:, 0] + EPS), self.covariates]
        )
        step = np.tile(np.arange(h, dtype="float64"), n)[:, None]
        per_step = [
            step,
            ((self.base - lvl) / sc).reshape(-1, 1),
            ((self.seasonal - lvl[:, :, None]) / sc[:, :, None]).reshape(n * h, -1),
        ]
        if self.target_calendar is not None:
            per_step.append(self.target_calendar.reshape(n * h, -1))
        return np.hstack([np.repeat(per_window, h, axis=0), *per_step]).astype("float32")


def design(
    st: SeriesTable,
    origins: np.ndarray,
    spec: FeatureSpec,
    *,
    step: np.ndarray | None = None,
) -> Design:
    """The features of forecasts from `origins` (first forecast rows of `st`).

    Every origin must have `spec.context` rows of its own series before it (the callers cut
    windows so). Target times are the last history time plus (k + 1) steps, the step being the
    spacing of the last two history rows (or `step` when given), as a server infers them.
    """
    origins = np.asarray(origins, dtype="int64")
    h, ctx = spec.horizon, spec.feature_context
    y = st.target
    hist = y[origins[:, None] - ctx + np.arange(ctx)]
    level = hist[:, -1]
    scale = np.mean(np.abs(np.diff(hist, axis=1)), axis=1)
    scale = np.where(scale > EPS, scale, np.maximum(np.abs(level), 1.0))
    base = y[base_rows(origins, h, spec.base)]
    seasonal = (
        np.stack([y[seasonal_lag(origins, h, m)] for m in spec.seasons], axis=2)
        if spec.seasons
        else np.zeros((len(origins), h, 0))
    )
    win = st.values[origins[:, None] - spec.window + np.arange(spec.window)]
    covs = st.values[origins - 1][:, 1 : 1 + spec.n_covariates].astype("float64")
    cal = None
    if spec.calendar and np.issubdtype(st.times.dtype, np.datetime64):
        last = st.times[origins - 1]
        if step is None:
            step = last - st.times[origins - 2]
        times = last[:, None] + step.reshape(-1, 1) * np.arange(1, h + 1)
        cal = calendar_features(times)
    return Design(base, seasonal, win, level, scale, hist, covs, cal, spec.seasons, spec.diffs)


def keras_inputs(d: Design) -> dict[str, np.ndarray]:
    """A Keras forecaster's inputs: the raw window, the base and the seasonal lags."""
    x = {"window": d.window.astype("float32"), "base": d.base.astype("float32")}
    if d.seasonal.shape[2]:
        x["seasonal"] = d.seasonal.astype("float32")
    return x


def calendar_features(times: np.ndarray) -> np.ndarray:
    """(..., 6) sin/cos of hour of day, day of week and day of year of numpy datetimes (UTC)."""
    secs = times.astype("datetime64[s]").astype("int64").astype("float64")
    hour = (secs % 86_400) / 3_600.0
    days = np.floor(secs / 86_400)
    dow = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    doy = (secs / 86_400.0) % 365.25
    a, b, c = 2 * np.pi * hour / 24.0, 2 * np.pi * dow / 7.0, 2 * np.pi * doy / 365.25
    return np.stack([np.sin(a), np.cos(a), np.sin(b), np.cos(b), np.sin(c), np.cos(c)], axis=-1)


def valid_origins(series_id: np.ndarray, *, context: int, horizon: int) -> np.ndarray:
    """Every origin with `context` rows before it and `horizon` rows from it in its series."""
    from voltpipe.modelling.forecasting import window_starts

    return window_starts(series_id, window=context, horizon=horizon) + context


def splice(train: SeriesTable, valid: SeriesTable | None) -> tuple[SeriesTable, np.ndarray]:
    """One table of each series' train rows followed by its valid rows, and the valid-row mask.

    Valid origins then take their history from the train tail, as evaluation takes a test
    window's history from the valid tail, so every valid row can be a target.
    """
    if valid is None or len(valid.target) == 0:
        return train, np.zeros(len(train.target), dtype=bool)
    parts = (train, valid)
    groups = np.concatenate([p.groups for p in parts])
    split = np.r_[np.zeros(len(train.target), "int8"), np.ones(len(valid.target), "int8")]
    _, codes = np.unique(groups.astype(str), return_inverse=True)
    order = np.lexsort((np.arange(len(groups)), split, codes))
    st = SeriesTable(
        values=np.concatenate([p.values for p in parts])[order],
        target=np.concatenate([p.target for p in parts])[order],
        series_id=codes[order].astype("int64"),
        groups=groups[order],
        times=np.concatenate([p.times for p in parts])[order],
    )
    return st, split[order].astype(bool)


def split_origins(
    st: SeriesTable, is_valid: np.ndarray, *, context: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Origins whose targets all lie in the train rows, and those whose targets all lie in the
    valid rows (each with `context` rows of history in its series)."""
    origins = valid_origins(st.series_id, context=context, horizon=horizon)
    last = origins + horizon - 1
    return origins[~is_valid[last]], origins[is_valid[origins]]
