"""Forecasting peers, run in the bench virtualenv on the series voltpipe trained and tested on.

``python benchmarks/peers_forecast.py CASE_DIR SPEC_JSON`` reads ``CASE_DIR/{train,valid,test}.parquet``
(columns ``ts``, ``y``; a time split), with ``SPEC_JSON`` = ``{"horizon": H, "seasons": [m, ...],
"freq": ...}``, and prints one JSON line ``{"peers": {name: {"mae", "seconds", ...}}, ...}``.

**Targets** (the same as voltpipe's honest evaluation): every test row is a target. The series is
train + valid + test in time order; forecast origins ``t`` run from the last valid row to the last
test row minus ``H``; origin ``t`` forecasts rows ``t+1 .. t+H`` from the history ``y[:t+1]``.
The MAE is the mean over every (origin, step) pair.

Peers:

* ``persistence``: ``y[t]`` for every step.
* ``seasonal_naive_<m>``: ``y[t+k-m*ceil(k/m)]``, for each known season ``m`` of the data's
  frequency (48 and 336 for half-hours, 24 for hours, 52 for weeks).
* ``ets``: statsforecast ``AutoETS(season_length=m)`` with the shortest season; statsforecast fits
  no seasonal ETS for ``m > 24``, so there it is ``season_length=1`` (level and trend only).
* ``mstl_ets``: ``MSTL(season_length=[every season], trend_forecaster=AutoETS(model="ZZN"))``.
* ``lightgbm_lags``: LightGBM (defaults, up to 2,000 trees, early stopping on the valid rows) on
  lags ``1 .. m`` (``m`` the shortest season, at most 96), the seasonal lags ``m_i`` and
  ``2 m_i`` of each season, and calendar features of the target time (hour/minute of day and
  day of week for sub-daily data, day of year); one-step model, recursive over the horizon
  (each step's forecast feeds the next step's lags), all origins at once; the lags and target
  as levels (``lightgbm_lags``) and relative to the last value (``lightgbm_diff``: target
  ``y[t+1] - y[t]``, lags ``y[t+1-k] - y[t]``, which follows a trend such as CO2's).

**Refitting across origins** (the statistical peers): a full fit (parameter estimation; for MSTL
also the decomposition) at the first origin and then every ``refit_every = max(H, m)`` origins;
between refits ETS is moved forward with statsforecast's ``forward`` (the fitted parameters run
over the longer history) and MSTL keeps the decomposition of the last refit: the new
observations are seasonally adjusted with its seasonal components continued (their last cycle,
as MSTL itself forecasts them), the trend model is moved forward on the adjusted series, and the
continued seasonality is added back. ``seconds`` is every fit and forecast over the whole test
period, after a warm-up fit on a short series that takes numba's compilation out of the figure.
LightGBM is fitted once (``seconds`` = fit + all forecasts). ``cpu_seconds`` is this process's CPU
time for the same work (the honest figure on a shared machine).
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

MAX_PLAIN_LAGS = 96


def origins(n_context: int, n_total: int, horizon: int) -> np.ndarray:
    """Forecast origins: from the last context row to the last row that still has `horizon` after it."""
    if n_total - horizon < n_context:
        raise ValueError(
            f"the test split ({n_total - n_context} rows) is shorter than the horizon ({horizon})"
        )
    return np.arange(n_context - 1, n_total - horizon)


def targets(y: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
    """(n_origins, horizon): ``y[t+1 .. t+horizon]`` for each origin ``t``."""
    return y[starts[:, None] + np.arange(1, horizon + 1)[None, :]]


def persistence(y: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
    return np.repeat(y[starts][:, None], horizon, axis=1)


def seasonal_naive(y: np.ndarray, starts: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """``y[t+k-m*ceil(k/m)]``: the last observed value at the same phase of the season."""
    k = np.arange(1, horizon + 1)
    back = k - season * np.ceil(k / season).astype(int)
    return y[starts[:, None] + back[None, :]]


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred, "float64") - truth)))


def _continue_seasons(decomposition: Any, seasons: list[int], n: int) -> np.ndarray:
    """Sum of every seasonal component's last cycle, repeated for `n` steps."""
    columns = [c for c in decomposition.columns if c.startswith("seasonal")]
    out = np.zeros(n)
    for column, m in zip(columns, sorted(seasons), strict=True):
        last = decomposition[column].to_numpy()[-m:]
        out += np.tile(last, math.ceil(n / m) + 1)[:n]
    return out


def rolling_ets(
    y: np.ndarray, starts: np.ndarray, horizon: int, season: int, refit_every: int
) -> np.ndarray:
    from statsforecast.models import AutoETS

    m = season if season <= 24 else 1
    preds = np.empty((len(starts), horizon))
    model = None
    for i, t in enumerate(starts):
        history = y[: t + 1]
        if i % refit_every == 0:
            model = AutoETS(season_length=m).fit(history)
            preds[i] = model.predict(horizon)["mean"]
        else:
            preds[i] = model.forward(y=history, h=horizon)["mean"]
    return preds


def rolling_mstl(
    y: np.ndarray, starts: np.ndarray, horizon: int, seasons: list[int], refit_every: int
) -> np.ndarray:
    from statsforecast.models import MSTL, AutoETS

    preds = np.empty((len(starts), horizon))
    model, refit_at, adjusted = None, 0, None
    for i, t in enumerate(starts):
        if i % refit_every == 0:
            model = MSTL(season_length=list(seasons), trend_forecaster=AutoETS(model="ZZN"))
            model.fit(y[: t + 1])
            refit_at = t
            adjusted = model.model_[["trend", "remainder"]].sum(axis=1).to_numpy()
            preds[i] = model.predict(horizon)["mean"]
            continue
        new = t - refit_at
        seas = _continue_seasons(model.model_, seasons, new + horizon)
        history = np.concatenate([adjusted, y[refit_at + 1 : t + 1] - seas[:new]])
        trend = model.trend_forecaster.forward(y=history, h=horizon)["mean"]
        preds[i] = trend + seas[new:]
    return preds


def _calendar(ts: Any, freq_minutes: float) -> np.ndarray:
    cols = [ts.dayofyear.to_numpy()]
    if freq_minutes < 24 * 60:
        cols += [(ts.hour * 60 + ts.minute).to_numpy(), ts.dayofweek.to_numpy()]
    return np.column_stack(cols).astype("float64")


def _lag_list(seasons: list[int]) -> list[int]:
    plain = list(range(1, min(min(seasons), MAX_PLAIN_LAGS) + 1))
    seasonal = sorted({k * m for m in seasons for k in (1, 2)} - set(plain))
    return plain + seasonal


def lightgbm_lags(
    y: np.ndarray,
    ts: Any,
    starts: np.ndarray,
    horizon: int,
    seasons: list[int],
    n_train: int,
    n_valid: int,
    freq_minutes: float,
    relative: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One-step LightGBM on lags and calendar, recursive over the horizon.

    With `relative`, the target and every lag are taken relative to the last value
    (``y[t+1] - y[t]``, ``y[t+1-k] - y[t]``), so the trees can follow a trend past the training
    range; otherwise they see levels.
    """
    import lightgbm as lgb

    lags = _lag_list(seasons)
    max_lag = max(lags)
    zero_tol = 1e-9 * max(float(np.max(np.abs(y))), 1.0)
    calendar = _calendar(ts, freq_minutes)
    rows = np.arange(max_lag, n_train + n_valid)  # targets with a full set of lags

    def lag_matrix(columns: list[np.ndarray]) -> np.ndarray:
        lagged = np.column_stack(columns)
        return lagged[:, 1:] - lagged[:, :1] if relative else lagged

    x_all = np.column_stack([lag_matrix([y[rows - k] for k in lags]), calendar[rows]])
    y_all = y[rows] - y[rows - 1] if relative else y[rows]
    is_train = rows < n_train
    if is_train.sum() < 10 or (~is_train).sum() < 1:
        raise ValueError(f"too few rows with {max_lag} lags for LightGBM")
    model = lgb.LGBMRegressor(n_estimators=2000, random_state=0, n_jobs=1, verbose=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eval_set's deprecation in newer LightGBM
        model.fit(
            x_all[is_train],
            y_all[is_train],
            eval_set=[(x_all[~is_train], y_all[~is_train])],
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )
    # Each origin's buffer: its last max_lag observed values, then its own forecasts.
    buffer = np.empty((len(starts), max_lag + horizon))
    buffer[:, :max_lag] = y[starts[:, None] + np.arange(-max_lag + 1, 1)[None, :]]
    for k in range(1, horizon + 1):
        pos = max_lag - 1 + k  # buffer column of the target t+k
        lagged = lag_matrix([buffer[:, pos - lag] for lag in lags])
        x = np.column_stack([lagged, calendar[starts + k]])
        value = buffer[:, pos - 1] + model.predict(x) if relative else model.predict(x)
        # LightGBM bins exact zeros apart (night-time irradiance): a forecast of 1e-22 fed back
        # as a lag must read as the zero it stands for, not as an unseen small positive value.
        buffer[:, pos] = np.where(np.abs(value) < zero_tol, 0.0, value)
    return buffer[:, max_lag:], {"trees": int(model.best_iteration_ or 0), "lags": len(lags)}


def _warm_up(seasons: list[int]) -> None:
    """Compiles statsforecast's numba code on a short series, outside the timings."""
    from statsforecast.models import MSTL, AutoETS

    rng = np.random.default_rng(0)
    m = min(seasons)
    n = 3 * max(seasons) + 10
    toy = 10 + np.sin(np.arange(n) * 2 * np.pi / m) + rng.normal(0, 0.1, n)
    AutoETS(season_length=m if m <= 24 else 1).fit(toy).forward(y=toy, h=2)
    fitted = MSTL(season_length=seasons, trend_forecaster=AutoETS(model="ZZN")).fit(toy)
    fitted.trend_forecaster.forward(y=toy, h=2)


def run_peers(folder: Path, spec: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    frames = {s: pd.read_parquet(folder / f"{s}.parquet") for s in ("train", "valid", "test")}
    for s, f in frames.items():
        frames[s] = f.sort_values("ts", kind="stable").reset_index(drop=True)
    full = pd.concat([frames[s] for s in ("train", "valid", "test")], ignore_index=True)
    if not full["ts"].is_monotonic_increasing:
        raise ValueError("the splits overlap in time: not a time split")
    y = full["y"].to_numpy(dtype="float64")
    ts = pd.DatetimeIndex(full["ts"])
    horizon, seasons = int(spec["horizon"]), sorted(int(m) for m in spec["seasons"])
    n_train, n_valid = len(frames["train"]), len(frames["valid"])
    starts = origins(n_train + n_valid, len(y), horizon)
    truth = targets(y, starts, horizon)
    refit_every = max(horizon, seasons[0])
    freq_minutes = float(np.median(np.diff(ts.asi8)) / 60e9)
    out: dict[str, Any] = {}

    def timed(name: str, fn: Callable[[], Any]) -> None:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = fn()
        except Exception as exc:  # a failing peer is reported, not fatal
            out[name] = {"mae": None, "failed": f"{type(exc).__name__}: {exc}"}
            return
        pred, info = result if isinstance(result, tuple) else (result, {})
        out[name] = {
            "mae": mae(pred, truth),
            "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu,
            **info,
        }
        if horizon > 1:
            out[name]["mae_h1"] = mae(pred[:, 0], truth[:, 0])
            out[name][f"mae_h{horizon}"] = mae(pred[:, -1], truth[:, -1])

    timed("persistence", lambda: persistence(y, starts, horizon))
    for m in seasons:
        if starts[0] - m + 1 >= 0:
            timed(f"seasonal_naive_{m}", lambda m=m: seasonal_naive(y, starts, horizon, m))
    if not spec.get("skip_statistical"):
        warm = time.perf_counter()
        _warm_up(seasons)
        warm_seconds = time.perf_counter() - warm
        timed("ets", lambda: rolling_ets(y, starts, horizon, seasons[0], refit_every))
        timed("mstl_ets", lambda: rolling_mstl(y, starts, horizon, seasons, refit_every))
    else:
        warm_seconds = 0.0
    for name, relative in (("lightgbm_lags", False), ("lightgbm_diff", True)):
        timed(
            name,
            lambda r=relative: lightgbm_lags(
                y, ts, starts, horizon, seasons, n_train, n_valid, freq_minutes, relative=r
            ),
        )
    return {
        "peers": out,
        "rows": {s: len(f) for s, f in frames.items()},
        "origins": len(starts),
        "targets": int(truth.size),
        "refit_every": refit_every,
        "warm_up_seconds": warm_seconds,
    }


def main(argv: list[str]) -> None:
    folder, spec = Path(argv[0]), json.loads(argv[1])
    print(json.dumps(run_peers(folder, spec)))


if __name__ == "__main__":
    main(sys.argv[1:])
