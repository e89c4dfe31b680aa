"""Family gbdt for forecasting: one direct multi-horizon LightGBM model (the step is a feature)
that predicts each step's correction to the naive base, in units of the history's scale.

Features come from ``forecast_features.design`` (lags, seasonal lags, rolling means, calendar
of the target time, covariates), relative to the last value and scaled per history, so one
model fits many series (``group_column``) and trees never have to extrapolate a level. Saved in
LightGBM's text format; no TensorFlow.

One model with the step as a feature, not one per step: a day-ahead horizon of 48 steps would
otherwise cost 48 early-stopped fits. (Chosen by that cost; the two were not benchmarked side by
side.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from voltpipe.config import GbdtConfig
from voltpipe.modelling.forecast_features import FeatureSpec, design
from voltpipe.modelling.forecasting import SeriesTable
from voltpipe.modelling.gbdt import lightgbm_params

GBDT_FILE = "forecast_gbdt.txt"
MAX_TRAIN_ROWS = 40_000  # (origin, step) pairs; a random subset beyond this keeps fits short
MAX_VALID_ROWS = 20_000
OBJECTIVE = "l2"
STOPPING_METRIC = "l1"


def _rows(design_n: int, horizon: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    total = design_n * horizon
    if total <= limit:
        return np.arange(total)
    return np.sort(rng.choice(total, size=limit, replace=False))


class GbdtForecaster:
    """A fitted LightGBM forecaster: ``forecast(st, origins)`` -> (n, horizon) label values."""

    def __init__(self, booster: Any, spec: FeatureSpec) -> None:
        self.booster = booster
        self.spec = spec

    def forecast(
        self, st: SeriesTable, origins: np.ndarray, step: np.ndarray | None = None
    ) -> np.ndarray:
        d = design(st, origins, self.spec, step=step)
        n, h = d.base.shape
        if n == 0:
            return np.zeros((0, h), "float32")
        x = d.gbdt_matrix()
        correction = self.booster.predict(x, num_threads=1).reshape(n, h)
        return (d.base + correction * d.scale[:, None]).astype("float32")

    def save(self, model_dir: str | Path) -> None:
        path = Path(model_dir) / GBDT_FILE
        tmp = path.with_suffix(".tmp")
        self.booster.save_model(str(tmp), num_iteration=self.booster.best_iteration or None)
        tmp.replace(path)

    @classmethod
    def load(cls, model_dir: str | Path, spec: FeatureSpec) -> GbdtForecaster:
        import lightgbm as lgb

        return cls(lgb.Booster(model_file=str(Path(model_dir) / GBDT_FILE)), spec)


def fit_gbdt(
    st: SeriesTable,
    train_origins: np.ndarray,
    valid_origins: np.ndarray,
    spec: FeatureSpec,
    cfg: GbdtConfig,
    *,
    seed: int = 42,
    trees: int | None = None,
) -> tuple[GbdtForecaster, dict[str, Any]]:
    """Fits on the train origins, early-stopping on the valid origins (when there are any), or
    exactly `trees` trees (a refit on train and valid with the number early stopping chose).

    Returns the forecaster and facts for the model meta (trees, rows, seconds).
    """
    import lightgbm as lgb

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    h = spec.horizon

    def matrix(origins: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        d = design(st, origins, spec)
        truth = st.target[origins[:, None] + np.arange(h)]
        y = ((truth - d.base) / d.scale[:, None]).reshape(-1)
        keep = _rows(len(origins), h, limit, rng)
        return d.gbdt_matrix()[keep], y[keep]

    x, y = matrix(train_origins, MAX_TRAIN_ROWS)
    params = lightgbm_params(cfg, seed, len(x)) | {
        "objective": OBJECTIVE,
        "metric": STOPPING_METRIC,
        "max_bin": 63,
    }
    train_set = lgb.Dataset(x, y, free_raw_data=True)
    callbacks: list[Callable[..., Any]] = []
    valid_sets = []
    if len(valid_origins):
        xv, yv = matrix(valid_origins, MAX_VALID_ROWS)
        valid_sets = [lgb.Dataset(xv, yv, reference=train_set)]
        callbacks.append(lgb.early_stopping(cfg.early_stopping_rounds, verbose=False))
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=trees or (cfg.max_trees if valid_sets else min(cfg.max_trees, 300)),
        valid_sets=valid_sets,
        callbacks=callbacks,
    )
    trees = int(booster.best_iteration or booster.current_iteration())
    info = {
        "trees": trees,
        "train_rows": len(y),
        "features": int(x.shape[1]),
        "fit_seconds": round(time.perf_counter() - started, 3),
    }
    return GbdtForecaster(booster, spec), info
