"""Forecast metrics (mae, rmse, mape) and skill against naive baselines, in numpy.

``skill_<baseline> = 1 - mae / mae_<baseline>``: above 0 the model beats the baseline. The
baselines are persistence (the last observed value) and, when a season is configured or
detected, seasonal naive (the value one season earlier).
"""

from __future__ import annotations

from typing import Any

import numpy as np

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


def score_forecaster(loaded: Any, table: Any) -> dict[str, float]:
    """Scores a loaded forecasting model (``modelling.predict.LoadedModel``) on a table.

    The season is the one stored with the model (configured or detected on the train split).
    """
    from voltpipe.modelling.forecasting import naive_forecasts

    windows = loaded.forecast_windows(table)
    pred = loaded.predict_raw(table)
    season = loaded.meta["forecasting"].get("season")
    naive = naive_forecasts(windows.series, windows.starts, windows.window, windows.horizon, season)
    return forecast_metrics(
        windows.y_true,
        pred,
        persistence=naive["persistence"],
        seasonal=naive.get("seasonal"),
        seasonal_mask=naive.get("seasonal_mask"),
        season=season,
    )
