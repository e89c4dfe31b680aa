"""Family auto (the forecasting default) and the training of the non-Keras forecasters.

``auto`` fits every candidate of ``forecasting.candidates`` (default gbdt and statistical) on
the train split and backtests each on the valid split, every candidate on the same targets
(valid origins take their history from the train tail), with the naive base itself as one more
candidate (so auto is never worse than it on the valid split), and a weighted mean of the two
best (forecast combinations are robust; the weights, per block of steps, are chosen on the same
targets: ``combination_weights``). The best valid MAE wins; the kept members are then fitted
again on train and valid. Every candidate's score and fit time go into the model meta as
``candidates``. The model folder holds the winner's files; ``forecasting.members`` names the
families whose forecasts are averaged (one or two) and ``forecasting.weights`` their weights.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from voltpipe.errors import DataError
from voltpipe.modelling.forecast_features import FeatureSpec
from voltpipe.modelling.forecasting import SeriesTable

FORMAT = "voltpipe-forecast-v1"
COMBINATION = "combination"
NAIVE = "naive"  # auto's floor: the naive base, backtested like every candidate
KERAS_FAMILIES = ("cnn", "lstm", "gru", "transformer", "mlp")
KERAS_FILE = "model.keras"


class KerasForecaster:
    """A Keras forecaster on the feature path (inputs window, base, seasonal)."""

    engine = "tensorflow"

    def __init__(self, model: Any, spec: FeatureSpec) -> None:
        self.model = model
        self.spec = spec

    def forecast(
        self, st: SeriesTable, origins: np.ndarray, step: np.ndarray | None = None
    ) -> np.ndarray:
        from voltpipe.modelling.forecast_features import design, keras_inputs

        d = design(st, origins, self.spec, step=step)
        if len(origins) == 0:
            return np.zeros((0, self.spec.horizon), "float32")
        out = self.model.predict(keras_inputs(d), batch_size=4096, verbose=0)
        return np.asarray(out, dtype="float32")

    def save(self, model_dir: str | Path) -> None:
        import os

        tmp = Path(model_dir) / ".tmp-model.keras"
        self.model.save(tmp)
        os.replace(tmp, Path(model_dir) / KERAS_FILE)

    @classmethod
    def load(cls, model_dir: str | Path, spec: FeatureSpec) -> KerasForecaster:
        import keras

        path = Path(model_dir) / KERAS_FILE
        return cls(keras.models.load_model(path, safe_mode=True, compile=False), spec)


class NaiveForecaster:
    """The naive base itself (``FeatureSpec.base``): auto's floor, nothing saved but the meta."""

    engine = "numpy"

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec

    def forecast(
        self, st: SeriesTable, origins: np.ndarray, step: np.ndarray | None = None
    ) -> np.ndarray:
        from voltpipe.modelling.forecast_features import base_rows

        rows = base_rows(np.asarray(origins, dtype="int64"), self.spec.horizon, self.spec.base)
        return st.target[rows].astype("float32")

    def save(self, model_dir: str | Path) -> None:
        pass

    @classmethod
    def load(cls, model_dir: str | Path, spec: FeatureSpec) -> NaiveForecaster:
        return cls(spec)


class MeanForecaster:
    """The weighted mean of its members' forecasts (one member: that member).

    `weights` maps a member to its weight at each horizon step (the weights of a step sum to
    1); without them the members count equally.
    """

    def __init__(
        self, members: dict[str, Any], weights: dict[str, list[float]] | None = None
    ) -> None:
        self.members = members
        self.weights = weights

    @property
    def engine(self) -> str:
        """``tensorflow`` when a member is a Keras model, else ``numpy`` (no TensorFlow)."""
        engines = {getattr(m, "engine", "numpy") for m in self.members.values()}
        return "tensorflow" if "tensorflow" in engines else "numpy"

    def forecast(
        self, st: SeriesTable, origins: np.ndarray, step: np.ndarray | None = None
    ) -> np.ndarray:
        parts = [m.forecast(st, origins, step) for m in self.members.values()]
        if not self.weights:
            return np.mean(parts, axis=0).astype("float32")
        w = [np.asarray(self.weights[name], dtype="float64") for name in self.members]
        return np.sum([p * wi for p, wi in zip(parts, w, strict=True)], axis=0).astype("float32")

    def save(self, model_dir: str | Path) -> None:
        for member in self.members.values():
            member.save(model_dir)


def load_forecaster(model_dir: str | Path, meta: dict[str, Any]) -> MeanForecaster:
    """The forecaster of a model folder whose meta names ``forecasting.members`` (no Keras)."""
    f = meta["forecasting"]
    spec = FeatureSpec.from_dict(f["features"])
    members: dict[str, Any] = {}
    for family in f["members"]:
        members[family] = _member_class(family).load(model_dir, spec)
    return MeanForecaster(members, f.get("weights"))


def member_files(meta: dict[str, Any]) -> list[str]:
    """The files of a non-Keras forecaster's members (for checks without loading)."""
    from voltpipe.modelling.forecast_gbdt import GBDT_FILE
    from voltpipe.modelling.forecast_stat import STAT_FILE

    names = {"gbdt": GBDT_FILE, "statistical": STAT_FILE}
    members = [m for m in meta["forecasting"].get("members") or [] if m != NAIVE]
    return [names.get(m, KERAS_FILE) for m in members]


def _member_class(family: str) -> Any:
    if family == NAIVE:
        return NaiveForecaster
    if family in KERAS_FAMILIES:
        return KerasForecaster
    if family == "gbdt":
        from voltpipe.modelling.forecast_gbdt import GbdtForecaster

        return GbdtForecaster
    if family == "statistical":
        from voltpipe.modelling.forecast_stat import StatForecaster

        return StatForecaster
    raise DataError(f"forecasting.members: no forecaster family {family!r}")


def _fit(family: str, problem: Any, mp: Any, tp: Any) -> tuple[Any, dict[str, Any]]:
    st, spec = problem.series, problem.spec
    if family == "gbdt":
        from voltpipe.modelling.forecast_gbdt import fit_gbdt

        return fit_gbdt(
            st, problem.train_origins, problem.valid_origins, spec, mp.gbdt, seed=tp.seed
        )
    if family == "statistical":
        from voltpipe.modelling.forecast_stat import fit_statistical

        return fit_statistical(st, problem.train_origins, problem.valid_origins, spec)
    if family == NAIVE:
        return NaiveForecaster(spec), {"base": spec.base}
    import copy

    from voltpipe.modelling.train import fit_problem

    neural = copy.copy(problem)
    neural.family = family
    fitted = fit_problem(neural, mp, tp, verbose=0)
    info = {"best_epoch": fitted.best_epoch, "epochs_run": len(fitted.history.get("loss", []))}
    return KerasForecaster(fitted.model, spec), info


def fit_forecaster(problem: Any, mp: Any, tp: Any) -> tuple[MeanForecaster, dict[str, Any]]:
    """Fits `problem.family` (gbdt, statistical or auto) on a ``ForecastProblem``.

    Returns the forecaster and the meta it adds: ``forecasting.members``, ``candidates``
    (``{family, score, metric, fit_seconds}`` each; score = valid MAE, None without a valid
    split) and ``fit``.
    """
    family = problem.family
    names = [*problem.cfg.candidates, NAIVE] if family == "auto" else [family]
    st = problem.series
    vo = problem.valid_origins
    truth = st.target[vo[:, None] + np.arange(problem.spec.horizon)] if len(vo) else None
    fitted: dict[str, Any] = {}
    preds: dict[str, np.ndarray] = {}
    candidates: list[dict[str, Any]] = []
    fit_info: dict[str, Any] = {}
    for name in names:
        started = time.perf_counter()
        model, info = _fit(name, problem, mp, tp)
        seconds = time.perf_counter() - started
        fitted[name], fit_info[name] = model, info
        score = None
        if truth is not None:
            preds[name] = model.forecast(st, vo)
            score = float(np.mean(np.abs(preds[name] - truth)))
        candidates.append(_candidate(name, score, seconds))
    weights = None
    if truth is not None and len(preds) >= 2:
        best_two = sorted(preds, key=lambda n: candidates[names.index(n)]["score"])[:2]
        w = combination_weights(preds[best_two[0]], preds[best_two[1]], truth)
        weights = {best_two[0]: w.tolist(), best_two[1]: (1.0 - w).tolist()}
        mean = preds[best_two[0]] * w + preds[best_two[1]] * (1.0 - w)
        seconds = sum(c["fit_seconds"] for c in candidates if c["family"] in best_two)
        candidates.append(
            {
                **_candidate(COMBINATION, float(np.mean(np.abs(mean - truth))), seconds),
                "members": best_two,
                "weights": {n: [round(v, 3) for v in ws] for n, ws in weights.items()},
            }
        )
    scored = [c for c in candidates if c["score"] is not None]
    # without a valid split: the first candidate, unjudged
    winner = min(scored, key=lambda c: c["score"]) if scored else candidates[0]
    members = winner.get("members") or [winner["family"]]
    kept = {m: fitted[m] for m in members}
    if len(vo):
        # The kept members are fitted again on train and valid (their settings as the backtest
        # chose them): the test period starts right after the valid one.
        for m in members:
            started = time.perf_counter()
            kept[m] = _refit(m, fitted[m], fit_info[m], problem, mp, tp)
            fit_info[m]["refit_seconds"] = round(time.perf_counter() - started, 3)
    kept_weights = weights if winner.get("members") is not None else None
    meta = {
        "members": members,
        "weights": kept_weights,
        "candidates": candidates,
        "fit": fit_info,
    }
    return MeanForecaster(kept, kept_weights), meta


WEIGHT_GRID = np.linspace(0.0, 1.0, 11)
WEIGHT_BLOCKS = 4  # a horizon's steps share their weight in this many blocks of consecutive steps


def combination_weights(first: np.ndarray, second: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(horizon,) the weight of `first` (that of `second` is 1 - it) at each step: the one of
    0, 0.1 .. 1 with the lowest valid MAE in each of ``WEIGHT_BLOCKS`` blocks of steps.

    Blocks, because the members' strengths change with the step (on demand the statistical
    family is the better at 30 minutes, the gbdt at a day ahead) while one weight per step of
    a 48-step horizon would be fitted to a few hundred valid origins each. The grid holds 0 and
    1, so the combination is never worse on the valid split than its better member.
    """
    h = truth.shape[1]
    w = np.empty(h)
    for block in np.array_split(np.arange(h), min(WEIGHT_BLOCKS, h)):
        f, s, t = first[:, block], second[:, block], truth[:, block]
        maes = [np.mean(np.abs(f * a + s * (1.0 - a) - t)) for a in WEIGHT_GRID]
        w[block] = WEIGHT_GRID[int(np.argmin(maes))]
    return w


def _refit(family: str, model: Any, info: dict[str, Any], problem: Any, mp: Any, tp: Any) -> Any:
    """`model` fitted on every origin (train and valid), or as it is (Keras families)."""
    every = np.sort(np.r_[problem.train_origins, problem.valid_origins])
    none = every[:0]
    if family == "gbdt":
        from voltpipe.modelling.forecast_gbdt import fit_gbdt

        trees = max(1, round(info["trees"] * 1.1))  # a tenth more rows, a tenth more trees
        refit, _ = fit_gbdt(
            problem.series, every, none, problem.spec, mp.gbdt, seed=tp.seed, trees=trees
        )
        return refit
    if family == "statistical":
        from voltpipe.modelling.forecast_stat import fit_statistical

        chosen = {k: model.params[k] for k in ("alpha", "beta", "phi")}
        chosen["gammas"] = {str(m): g for m, g in model.gammas().items()}
        stat_refit, _ = fit_statistical(problem.series, every, none, problem.spec, smoothing=chosen)
        return stat_refit
    return model


def _candidate(family: str, score: float | None, seconds: float) -> dict[str, Any]:
    return {
        "family": family,
        "score": None if score is None else round(score, 6),
        "metric": "valid_mae",
        "fit_seconds": round(seconds, 3),
    }


def train_forecaster(
    train: pa.Table,
    valid: pa.Table,
    out_dir: str | os.PathLike[str],
    *,
    label: str,
    model_params: dict[str, Any] | None,
    training_params: dict[str, Any] | None,
    task_params: dict[str, Any] | None,
) -> tuple[dict[str, Any], float]:
    """Trains family gbdt, statistical or auto and saves the model folder.

    Writes the members' files and ``voltpipe_model.json`` (``forecasting.context``,
    ``seasons``, ``features``, ``members``; ``candidates``). Returns the meta and seconds.

    Raises:
        DataError: the data or a setting cannot train this model (naming the key or column).
    """
    from voltpipe.data.io import write_json_atomic
    from voltpipe.modelling.problems import OUTPUTS, make_problem
    from voltpipe.modelling.train import META_FILE, _settings

    started = time.perf_counter()
    mp, tp, params = _settings(model_params, training_params, task_params)
    problem: Any = make_problem(
        train,
        valid,
        label=label,
        task="forecasting",
        features=None,
        exclude=None,
        mp=mp,
        tp=tp,
        params=params,
    )
    forecaster, extra = fit_forecaster(problem, mp, tp)
    meta = problem.meta()
    meta["forecasting"]["members"] = extra["members"]
    if extra["weights"]:
        meta["forecasting"]["weights"] = extra["weights"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("forecast_*"):
        stale.unlink()
    (out / "model.keras").unlink(missing_ok=True)
    forecaster.save(out)
    rows = {
        **problem.rows,
        "train_windows": len(problem.train_origins),
        "valid_windows": len(problem.valid_origins),
    }
    meta.update(
        {
            "format": FORMAT,
            "task": "forecasting",
            "label": label,
            "family": problem.family,
            "output": OUTPUTS["forecasting"],
            "model_params": {**mp.model_dump(), "family": problem.family},
            "training_params": tp.model_dump(),
            "task_params": params.to_dict(),
            "rows": rows,
            "best_epoch": 0,
            "epochs_run": 0,
            "resumed_after_epoch": 0,
            "candidates": extra["candidates"],
            "fit": extra["fit"],
            "replay": False,
        }
    )
    write_json_atomic(out / META_FILE, meta)
    return meta, time.perf_counter() - started
