"""Family gbdt: gradient-boosted trees (LightGBM) for classification and regression.

Numeric features go in as they are (trees need no scaling); categorical ones as integer codes
of the feature plan's vocabulary, LightGBM's native categorical splits, with an unseen or null
value as missing. Early stopping on the valid split picks the number of trees. Training is
deterministic (``deterministic=True``, a fixed thread count, seeded from ``training.seed``).
The model is saved in LightGBM's text format (no pickle) and scored without TensorFlow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from voltpipe.errors import DataError
from voltpipe.model_dir import FileModel, Forward

__all__ = ["GbdtModel", "category_codes", "fit_gbdt", "gbdt_threads"]

MULTI_THREAD_ROWS = 2_000_000


def gbdt_threads(rows: int = 0) -> int:
    """The fixed thread count: results depend on it, so it depends only on the table's size
    and the machine. One thread below `MULTI_THREAD_ROWS` rows: OpenMP threads cost more than
    they save on a busy machine (the demo's 200k-row refit took 11 s on one thread, 150 s on
    two, with other processes on both cores); at most 4 above."""
    if rows < MULTI_THREAD_ROWS:
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def category_codes(xc: np.ndarray, vocabularies: list[list[str]]) -> np.ndarray:
    """(n, m) float64 codes: each value's index in its column's vocabulary; NaN (missing) for
    an unseen or empty value."""
    out = np.full(xc.shape, np.nan)
    for j, vocab in enumerate(vocabularies):
        index = {v: float(i) for i, v in enumerate(vocab) if v != ""}
        get = index.get
        out[:, j] = [get(v, np.nan) for v in xc[:, j]]
    return out


class GbdtModel(FileModel):
    """A LightGBM booster with the feature plan's column order and vocabularies."""

    family = "gbdt"
    engine = "lightgbm"

    def __init__(
        self,
        booster: Any,
        *,
        task: str,
        numeric: list[str],
        categorical: dict[str, list[str]],
        n_classes: int,
    ) -> None:
        self.booster = booster
        self.task = task
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.vocabularies = [list(v) for v in categorical.values()]
        self.n_classes = n_classes

    def matrix(self, xn: np.ndarray, xc: np.ndarray) -> np.ndarray:
        """The booster's input: numeric columns, then category codes."""
        return np.hstack([xn.astype(np.float64), category_codes(xc, self.vocabularies)])

    def forward(
        self, numeric: list[str] | None = None, categorical: list[str] | None = None
    ) -> Forward:
        num_cols, cat_cols = self._columns(numeric, categorical)
        booster, task = self.booster, self.task

        def forward(xn: np.ndarray, xc: np.ndarray) -> np.ndarray:
            x = self.matrix(xn[:, num_cols], xc[:, cat_cols])
            if len(x) == 0:
                width = self.n_classes if task == "classification" else 1
                return np.zeros((0, width))
            threads = gbdt_threads(len(x))
            raw = np.asarray(booster.predict(x, num_threads=threads), dtype=np.float64)
            if task != "classification":
                return raw.reshape(-1, 1)
            if raw.ndim == 1:  # binary: P(class 1)
                return np.column_stack([1.0 - raw, raw])
            return raw

        return forward

    def to_bytes(self) -> bytes:
        return self.booster.model_to_string().encode()

    @classmethod
    def from_bytes(cls, data: bytes, meta: dict[str, Any], where: Path | str) -> GbdtModel:
        """Loads the text model saved by `save` (LightGBM's own parser; no pickle).

        Raises:
            DataError: the file does not parse as a LightGBM model.
        """
        import lightgbm as lgb

        try:
            booster = lgb.Booster(model_str=data.decode())
        except (lgb.basic.LightGBMError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"{where} is not a readable LightGBM model: {exc}") from None
        plan, order = meta["features"], meta.get("model_file") or {}
        numeric = list(order.get("numeric", plan["numeric"]))
        categorical = list(order.get("categorical", plan["categorical"]))
        return cls(
            booster,
            task=str(meta["task"]),
            numeric=numeric,
            categorical={name: list(plan["categorical"][name]) for name in categorical},
            n_classes=len(meta.get("classes") or []),
        )


def lightgbm_params(cfg: Any, seed: int, rows: int) -> dict[str, Any]:
    """LightGBM's parameters for ``model.gbdt`` (`cfg`), seeded and deterministic, for tables
    and forecasting alike (each adds its objective)."""
    return {
        "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves,
        "min_child_samples": cfg.min_child_samples,
        "feature_fraction": cfg.feature_fraction,
        "bagging_fraction": cfg.bagging_fraction,
        "bagging_freq": 1 if cfg.bagging_fraction < 1 else 0,
        "lambda_l2": cfg.lambda_l2,
        "seed": seed,
        "deterministic": True,
        "num_threads": gbdt_threads(rows),
        "verbosity": -1,
    }


def _params(cfg: Any, task: str, n_classes: int, seed: int, rows: int) -> dict[str, Any]:
    params = lightgbm_params(cfg, seed, rows) | {
        "force_row_wise": True,
        "max_cat_to_onehot": 8,
        "cat_smooth": 10,
    }
    if task == "regression":
        params |= {"objective": "regression", "metric": "l2"}
    elif n_classes == 2:
        params |= {"objective": "binary", "metric": "binary_logloss"}
    else:
        params |= {"objective": "multiclass", "num_class": n_classes, "metric": "multi_logloss"}
    return params


def fit_gbdt(
    x_train: dict[str, np.ndarray],
    y_train: np.ndarray,
    x_valid: dict[str, np.ndarray] | None,
    y_valid: np.ndarray | None,
    *,
    task: str,
    plan: Any,
    n_classes: int,
    cfg: Any,
    seed: int,
    weights: np.ndarray | None = None,
) -> tuple[GbdtModel, dict[str, list[float]], int, str]:
    """Fits the booster, early-stopping on the valid split (without one, on a seeded 10% of
    train).

    Args:
        x_train, x_valid: (n, 1) feature columns by name (``features.model_inputs``).
        y_train, y_valid: labels (float for regression, class indices for classification).
        cfg: ``model.gbdt`` (`GbdtConfig`).
        weights: per-row training weights (``training.class_weight: balanced``).

    Returns:
        The model, its history (``loss``, ``val_loss`` per tree), the best number of trees and
        what stopped it (``early_stopping`` or ``epoch_cap``).
    """
    import lightgbm as lgb

    from voltpipe.model_dir import packed_inputs

    numeric, categorical = list(plan.numeric), list(plan.categorical)
    model = GbdtModel(
        None, task=task, numeric=numeric, categorical=plan.categorical, n_classes=n_classes
    )
    xt = model.matrix(*packed_inputs(x_train, numeric, categorical))
    yt, wt = np.asarray(y_train), weights
    if x_valid is not None and y_valid is not None and len(y_valid):
        xv = model.matrix(*packed_inputs(x_valid, numeric, categorical))
        yv = np.asarray(y_valid)
    else:  # no valid split: early-stop on a seeded tenth of train
        if len(yt) < 10:
            raise DataError("family gbdt needs a valid split or at least 10 training rows")
        held = np.random.default_rng(seed).permutation(len(yt))[: max(1, len(yt) // 10)]
        keep = np.setdiff1d(np.arange(len(yt)), held)
        xv, yv = xt[held], yt[held]
        xt, yt = xt[keep], yt[keep]
        wt = None if weights is None else weights[keep]
    cat_idx = list(range(len(numeric), len(numeric) + len(categorical)))
    names = [f"f{j}" for j in range(xt.shape[1])]
    train_set = lgb.Dataset(
        xt,
        label=yt,
        weight=wt,
        feature_name=names,
        categorical_feature=cat_idx,
        free_raw_data=True,
        params={"verbosity": -1},
    )
    valid_set = lgb.Dataset(xv, label=yv, reference=train_set, params={"verbosity": -1})
    record: dict[str, Any] = {}
    params = _params(cfg, task, n_classes, seed, len(yt))
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=cfg.max_trees,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[
            lgb.early_stopping(cfg.early_stopping_rounds, verbose=False),
            lgb.record_evaluation(record),
        ],
    )
    best = int(booster.best_iteration or booster.current_iteration())
    metric = params["metric"]
    history = {
        "val_loss": [float(v) for v in record["valid"][metric]],
    }
    stopped_by = "early_stopping" if len(history["val_loss"]) < cfg.max_trees else "epoch_cap"
    # Keep only the trees early stopping chose, so the saved model is the one scored.
    model.booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    return model, history, best, stopped_by
