"""Tabular peers, run in the bench virtualenv on the rows voltpipe trained, validated and tested on.

``python benchmarks/peers_tabular.py CASE_DIR SPEC_JSON`` reads ``CASE_DIR/{train,valid,test}.parquet``
(label ``y``; every other column a numeric feature) and prints one JSON line:
``{"peers": {name: {"error", "seconds", ...}}, ...}``. The error is the log loss (classification,
natural log, probabilities clipped at 1e-15 as scikit-learn does) or the RMSE (regression) on the
test split. Peers, each a few lines a data scientist would write first:

* ``logistic`` / ``ridge``: standardised inputs, default ``C=1`` / ``alpha=1``, fitted on train.
* ``logistic_cv`` / ``ridge_cv``: the same with C (8 values) / alpha (13) chosen by 5-fold CV on
  train.
* ``hist_gbdt``: ``HistGradientBoostingClassifier/Regressor()`` defaults, fitted on train.
* ``lightgbm``: ``LGBMClassifier/Regressor()`` defaults, fitted on train.
* ``lightgbm_es``: LightGBM with up to 2,000 trees and early stopping (50 rounds) on the valid split.
* ``mlp``: ``MLPClassifier/Regressor((64, 32), max_iter=500)`` on standardised inputs (and a
  standardised target for regression), fitted on train.

Every peer is seeded (``random_state=0``) and single-threaded where it has the choice, so the
errors do not depend on the machine's load; ``seconds`` is wall time and ``cpu_seconds`` this
process's CPU time (the honest figure on a shared machine).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

EPS = 1e-15


def log_loss(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class; rows of `proba` follow `classes`."""
    proba = np.clip(np.asarray(proba, dtype="float64"), EPS, 1 - EPS)
    proba = proba / proba.sum(axis=1, keepdims=True)
    index = np.searchsorted(classes, y)
    if np.any(index >= len(classes)) or np.any(classes[np.minimum(index, len(classes) - 1)] != y):
        raise ValueError("a test label is not among the classes")
    return float(-np.mean(np.log(proba[np.arange(len(y)), index])))


def rmse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, "float64") - np.asarray(pred, "float64")) ** 2)))


def _full_proba(model: Any, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """predict_proba widened to every class (a class missing from train gets probability 0)."""
    proba = model.predict_proba(x)
    out = np.zeros((len(x), len(classes)))
    out[:, np.searchsorted(classes, model.classes_)] = proba
    return out


def _models(task: str, n_train: int) -> dict[str, Callable[[], Any]]:
    import lightgbm as lgb
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, Ridge, RidgeCV
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = max(2, min(5, n_train // 10))
    if task == "classification":
        return {
            "logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
            "logistic_cv": lambda: make_pipeline(
                StandardScaler(),
                LogisticRegressionCV(Cs=8, cv=folds, scoring="neg_log_loss", max_iter=2000),
            ),
            "hist_gbdt": lambda: HistGradientBoostingClassifier(random_state=0),
            "lightgbm": lambda: lgb.LGBMClassifier(random_state=0, n_jobs=1, verbose=-1),
            "mlp": lambda: make_pipeline(
                StandardScaler(),
                MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=500, random_state=0),
            ),
        }
    return {
        "ridge": lambda: make_pipeline(StandardScaler(), Ridge(alpha=1.0)),
        "ridge_cv": lambda: make_pipeline(
            StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13), cv=folds)
        ),
        "hist_gbdt": lambda: HistGradientBoostingRegressor(random_state=0),
        "lightgbm": lambda: lgb.LGBMRegressor(random_state=0, n_jobs=1, verbose=-1),
        "mlp": lambda: TransformedTargetRegressor(
            regressor=make_pipeline(
                StandardScaler(),
                MLPRegressor(hidden_layer_sizes=(64, 32), max_iter=500, random_state=0),
            ),
            transformer=StandardScaler(),
        ),
    }


def _lightgbm_es(task: str, xtr, ytr, xva, yva) -> Any:
    import lightgbm as lgb

    cls = lgb.LGBMClassifier if task == "classification" else lgb.LGBMRegressor
    model = cls(n_estimators=2000, random_state=0, n_jobs=1, verbose=-1)
    model.fit(
        xtr,
        ytr,
        eval_set=[(xva, yva)],
        callbacks=[lgb.early_stopping(50, verbose=False)],
    )
    return model


def run_peers(folder: Path, task: str) -> dict[str, Any]:
    """Fits every peer on train (LightGBM-ES also watches valid) and scores it on test."""
    import pandas as pd

    frames = {s: pd.read_parquet(folder / f"{s}.parquet") for s in ("train", "valid", "test")}
    features = [c for c in frames["train"].columns if c != "y"]
    x = {s: f[features].to_numpy(dtype="float64") for s, f in frames.items()}
    y = {s: f["y"].to_numpy() for s, f in frames.items()}
    classes = np.unique(np.concatenate(list(y.values()))) if task == "classification" else None
    out: dict[str, Any] = {}
    builders: dict[str, Callable[[], Any]] = {
        name: (lambda b=b: b().fit(x["train"], y["train"]))
        for name, b in _models(task, len(y["train"])).items()
    }
    builders["lightgbm_es"] = lambda: _lightgbm_es(
        task, x["train"], y["train"], x["valid"], y["valid"]
    )
    for name, build in builders.items():
        started, cpu = time.perf_counter(), time.process_time()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = build()
                if task == "classification":
                    error = log_loss(y["test"], _full_proba(model, x["test"], classes), classes)
                else:
                    error = rmse(y["test"], model.predict(x["test"]))
        except Exception as exc:  # a failing peer is reported, not fatal
            out[name] = {"error": None, "failed": f"{type(exc).__name__}: {exc}"}
            continue
        entry: dict[str, Any] = {
            "error": error,
            "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu,
        }
        if name == "lightgbm_es":
            entry["trees"] = int(model.best_iteration_ or model.n_estimators)
        out[name] = entry
    return {
        "peers": out,
        "rows": {s: len(f) for s, f in frames.items()},
        "features": len(features),
    }


def main(argv: list[str]) -> None:
    folder, spec = Path(argv[0]), json.loads(argv[1])
    print(json.dumps(run_peers(folder, spec["task"])))


if __name__ == "__main__":
    main(sys.argv[1:])
