"""Forecast metrics (mae, rmse, mape) and skill against naive baselines, in numpy.

``skill_<baseline> = 1 - mae / mae_<baseline>``: above 0 the model beats the baseline. The
baselines are persistence (the last observed value) and, when a season is configured or
detected, seasonal naive (the value one season earlier).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from voltpipe.errors import DataError

FORECAST_METRICS = ("mae", "rmse", "mape", "skill_persistence")


def point_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """mae, rmse and mape (percent, over targets with |y| > 1e-9) over every horizon step."""
    y_true = np.asarray(y_true, dtype="float64")
    y_pred = np.asarray(y_pred, dtype="float64")
    err = y_pred - y_true
    nz = np.abs(y_true) > 1e-9
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mape": float(100.0 * np.mean(np.abs(err[nz] / y_true[nz]))) if nz.any() else float("nan"),
    }


def skill(mae: float, mae_baseline: float) -> float:
    """``1 - mae / mae_baseline`` (nan when the baseline is perfect)."""
    return float(1.0 - mae / mae_baseline) if mae_baseline > 0 else float("nan")


def forecast_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    persistence: np.ndarray,
    seasonal: np.ndarray | None = None,
    seasonal_mask: np.ndarray | None = None,
    season: int | None = None,
) -> dict[str, float]:
    """Metrics of (n_windows, horizon) forecasts with skill against the naive baselines.

    Args:
        persistence: the persistence forecast, same shape as `y_true`.
        seasonal: the seasonal-naive forecast; `seasonal_mask` marks the windows where it is
            defined (its source row lies in the series). Skill is computed on those windows.
        season: the season length in steps (reported as ``season``).

    Returns:
        mae, rmse, mape, mae_persistence, skill_persistence, and with a season mae_seasonal,
        skill_seasonal and season; plus mae_h<k> per horizon step when the horizon is > 1.
    """
    y_true = np.asarray(y_true, dtype="float64").reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype="float64").reshape(y_true.shape)
    persistence = np.asarray(persistence, dtype="float64").reshape(y_true.shape)
    out = point_metrics(y_true, y_pred)
    out["mae_persistence"] = float(np.mean(np.abs(persistence - y_true)))
    out["skill_persistence"] = skill(out["mae"], out["mae_persistence"])
    if seasonal is not None and season:
        mask = (
            np.ones(len(y_true), bool) if seasonal_mask is None else np.asarray(seasonal_mask, bool)
        )
        if mask.any():
            s = np.asarray(seasonal, dtype="float64").reshape(y_true.shape)[mask]
            mae_model = float(np.mean(np.abs(y_pred[mask] - y_true[mask])))
            out["mae_seasonal"] = float(np.mean(np.abs(s - y_true[mask])))
            out["skill_seasonal"] = skill(mae_model, out["mae_seasonal"])
            out["season"] = float(season)
    if y_true.shape[1] > 1:
        per_step = np.mean(np.abs(y_pred - y_true), axis=0)
        out.update({f"mae_h{k + 1}": float(v) for k, v in enumerate(per_step)})
    return out


@dataclasses.dataclass
class ForecastScore:
    """A forecaster's test metrics and what they were computed on.

    Attributes:
        metrics: see ``forecast_metrics``.
        details: ``windows`` (forecasts scored), ``targets`` (windows x horizon),
            ``test_rows``, ``history`` (where the first forecasts' past came from: ``valid``
            or ``test``), ``history_rows`` per series, and ``seasonal_windows`` (windows the
            seasonal-naive baseline could score: all of them unless a series' valid tail is
            shorter than the season), ``short_history_series`` (series whose valid tail is
            shorter than the model's context: their first test rows are history only) and
            ``interleaved_series`` (series whose valid rows come after test rows: a split not
            cut on time).
    """

    metrics: dict[str, float]
    details: dict[str, Any]
    y_true: np.ndarray | None = None  # (windows, horizon): the scored targets
    pred: np.ndarray | None = None  # (windows, horizon): the model's forecasts of them


def score_forecaster(loaded: Any, table: Any, history: Any = None) -> ForecastScore:
    """Scores a loaded forecasting model (``modelling.predict.LoadedModel``) on a test table.

    Honest evaluation: each series' last rows of `history` (the valid split) come before the
    test rows, as many as one forecast needs (``context_length``, or the season when longer,
    for the seasonal-naive baseline), and exactly the forecasts whose first target is a test
    row are scored. So every test row is a target, the number of targets does not depend on
    the window (two configs are scored on the same targets), and the persistence and
    seasonal-naive baselines are scored on exactly those targets. Without `history` the first
    rows of each test series are history only (as before).

    The season is the one stored with the model (configured or detected on the train split).
    """
    from voltpipe.modelling import forecasting as fc

    f = loaded.meta["forecasting"]
    season = f.get("season")
    need = max(fc.context_length(f), int(season or 0))
    source = "valid" if history is not None and history.num_rows else "test"
    rows, scored = fc.with_history(
        history if source == "valid" else None,
        table,
        time_column=f["time_column"],
        group_column=f["group_column"],
        rows=need,
    )
    windows = loaded.forecast_windows(rows)
    pred = np.asarray(loaded.predict_raw(rows))
    origins = windows.starts + windows.window
    keep = scored[origins]
    if not keep.any():
        raise DataError(
            f"no forecast of the test split has its first target in it: every series needs "
            f"{fc.context_length(f)} past rows (forecasting.window or the model's context) and "
            f"forecasting.horizon = {windows.horizon} test rows"
        )
    origins = origins[keep]
    naive = fc.naive_forecasts(windows.series, origins, windows.horizon, season)
    metrics = forecast_metrics(
        windows.y_true[keep],
        pred[keep],
        persistence=naive["persistence"],
        seasonal=naive.get("seasonal"),
        seasonal_mask=naive.get("seasonal_mask"),
        season=season,
    )
    details = {
        "windows": int(keep.sum()),
        "targets": int(keep.sum()) * int(windows.horizon),
        "test_rows": int(table.num_rows),
        "history": source,
        "history_rows": int(need) if source == "valid" else 0,
    }
    if "seasonal_mask" in naive:
        details["seasonal_windows"] = int(np.asarray(naive["seasonal_mask"]).sum())
    if source == "valid":
        # Series whose valid tail is shorter than the history a forecast needs: their first
        # test rows are history only (the validate step cannot know a detected season).
        sid = windows.series.series_id
        past = np.bincount(sid[~scored], minlength=int(sid.max()) + 1)
        tested = np.bincount(sid[scored], minlength=int(sid.max()) + 1) > 0
        short = int(np.sum(tested & (past < fc.context_length(f))))
        details["short_history_series"] = short
        # A valid row after a test row of the same series: the splits were not cut on time.
        after = np.flatnonzero(~scored[1:] & scored[:-1] & (sid[1:] == sid[:-1]))
        details["interleaved_series"] = len(np.unique(sid[after + 1]))
        if len(after):
            print(
                f"voltpipe: warning: the valid and test splits interleave in time in "
                f"{details['interleaved_series']} series, so test forecasts see valid rows from "
                "after them; split forecasting data on time (split: {method: time, column: "
                f"{f['time_column']}}})"
            )
        if short:
            print(
                f"voltpipe: {short} series have fewer than {fc.context_length(f)} rows in the "
                "valid split (the model's context): their first test rows are history only; "
                "a longer valid split (split.fractions) scores every test row"
            )
    return ForecastScore(metrics, details, windows.y_true[keep], pred[keep])
