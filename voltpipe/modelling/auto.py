"""Table families beyond Keras: fits gbdt and linear, and ``auto``, which picks one of linear,
mlp and gbdt by its validation loss.

``train.fit_tables`` hands classification and regression with these families here.

``auto`` fits every candidate on train and scores it on valid by the task's loss (RMSE for
regression, log loss for classification). A small table (fewer than `SMALL_TABLE` train rows)
is judged by k-fold cross-validation over train + valid instead: a valid split of a few dozen
rows is noise. A big table (more than `CHOICE_ROWS` train rows) is judged on a seeded sample,
so the choice costs a bounded time whatever the table's size. The winner is then refitted on
the whole train split (unless it already was); its folder is that family's folder, and the
metadata's ``candidates`` lists every candidate's score and fit time.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa

from voltpipe.errors import DataError
from voltpipe.model_dir import FORMATS
from voltpipe.modelling.problems import OUTPUTS, TabularProblem, TaskParams

__all__ = ["CANDIDATES", "CHOICE_ROWS", "SMALL_TABLE", "fit_table_family", "task_loss"]

CANDIDATES = ("linear", "mlp", "gbdt")
SMALL_TABLE = 2_000  # fewer train rows: choose by k-fold CV over train + valid
CV_FOLDS = 3  # 5 doubled the choice's cost (mostly the mlp's) on the benchmark's tables
CHOICE_ROWS = 20_000  # more train rows: choose on a sample of this many (valid: the same)


def task_loss(task: str, y: np.ndarray, out: np.ndarray) -> float:
    """RMSE (regression) or log loss (classification) of outputs `out` for labels `y`."""
    if task == "regression":
        return float(np.sqrt(np.mean((out.reshape(-1) - y.astype(np.float64)) ** 2)))
    p = np.clip(out[np.arange(len(y)), y.astype(np.int64)], 1e-15, 1.0)
    return float(-np.mean(np.log(p)))


def _problem(
    train: pa.Table, valid: pa.Table, family: str, kw: dict[str, Any], tp: Any
) -> TabularProblem:
    return TabularProblem(
        train,
        valid,
        label=kw["label"],
        task=kw["task"],
        family=family,
        features=kw["features"],
        exclude=kw["exclude"],
        tp=tp,
    )


def _meta(problem: TabularProblem, mp: Any, tp: Any, params: TaskParams) -> dict[str, Any]:
    return {
        **problem.meta(),
        "format": FORMATS[problem.family],
        "task": problem.task,
        "label": problem.label,
        "family": problem.family,
        "output": OUTPUTS[problem.task],
        "model_params": {**mp.model_dump(), "family": problem.family},
        "training_params": tp.model_dump(),
        "task_params": params.to_dict(),
        "rows": problem.rows,
        "resumed_after_epoch": 0,
    }


def fit_file_family(
    problem: TabularProblem, mp: Any, tp: Any, params: TaskParams, *, final: bool = True
) -> Any:
    """Fits family gbdt or linear on the problem's arrays; returns a ``train.Fitted``.

    Args:
        final: the model to keep (not a candidate scored on valid): the linear model may then
            use the valid rows for its final fit (see ``linear.fit_linear``).
    """
    from voltpipe.modelling.train import Fitted

    n_classes = len(problem.classes or [])
    valid = (problem.x_valid, problem.y_valid) if problem.has_valid else (None, None)
    meta = _meta(problem, mp, tp, params)
    if problem.family == "gbdt":
        from voltpipe.modelling.gbdt import fit_gbdt

        model, history, best, stopped_by = fit_gbdt(
            problem.x_train,
            problem.y_train,
            *valid,
            task=problem.task,
            plan=problem.plan,
            n_classes=n_classes,
            cfg=mp.gbdt,
            seed=tp.seed,
            weights=problem.weights,
        )
        meta |= {"best_epoch": best, "epochs_run": len(history["val_loss"]), "trees": best}
    else:
        from voltpipe.modelling.linear import fit_linear

        model, history = fit_linear(
            problem.x_train,
            problem.y_train,
            *valid,
            task=problem.task,
            plan=problem.plan,
            n_classes=n_classes,
            seed=tp.seed,
            weights=problem.weights,
            refit_all=final,
        )
        best, stopped_by = 1, "converged"
        meta |= {"best_epoch": 1, "epochs_run": 1, "strength": model.strength}
        history = {"val_loss": [float(min(history["val_loss"]))]}
    meta["stopped_by"] = stopped_by
    return Fitted(model, history, best, 0, meta, "val_loss")


def _outputs(fitted: Any, problem: TabularProblem, x: dict[str, np.ndarray]) -> np.ndarray:
    from voltpipe.model_dir import FileModel, packed_inputs

    numeric, categorical = list(problem.plan.numeric), list(problem.plan.categorical)
    if isinstance(fitted.model, FileModel):
        return fitted.model.forward()(*packed_inputs(x, numeric, categorical))
    from voltpipe.modelling.inputs import row_dataset

    ds = row_dataset(x, None, batch=4096, shuffle=False)
    return np.asarray(fitted.model.predict(ds, verbose=0), np.float64)


def _fit_candidate(
    family: str, train: pa.Table, valid: pa.Table, kw: dict[str, Any], final: bool, **fit: Any
) -> tuple[Any, TabularProblem]:
    from voltpipe.modelling.train import fit_tables

    mp, tp, params = kw["mp"], kw["tp"], kw["params"]
    if family == "mlp":
        return fit_tables(
            train,
            valid,
            label=kw["label"],
            task=kw["task"],
            features=kw["features"],
            exclude=kw["exclude"],
            model_params={**mp.model_dump(), "family": "mlp"},
            training_params=tp.model_dump(),
            task_params=params,
            **fit,
        )
    problem = _problem(train, valid, family, kw, tp)
    return fit_file_family(problem, mp, tp, params, final=final), problem


def _sample(table: pa.Table, n: int, seed: int) -> pa.Table:
    """`n` seeded rows of `table`, the same whatever order the warehouse returned them in."""
    if table.num_rows <= n:
        return table
    keys = [
        (c, "ascending")
        for c in table.column_names
        if not pa.types.is_nested(table.schema.field(c).type)
    ]
    table = table.sort_by(keys)
    rows = np.sort(np.random.default_rng(seed).choice(table.num_rows, n, replace=False))
    return table.take(pa.array(rows))


def fit_auto(
    train: pa.Table, valid: pa.Table, kw: dict[str, Any], fit: dict[str, Any]
) -> tuple[Any, TabularProblem]:
    """Fits the candidates, keeps the best (see the module docstring)."""
    from voltpipe.modelling.tuning import cv_folds

    tp, task = kw["tp"], kw["task"]
    n = train.num_rows
    if n < SMALL_TABLE:
        mode = f"{CV_FOLDS}-fold CV over train + valid"
        folds = cv_folds(train, valid, k=CV_FOLDS, task=task, time_column=None, seed=tp.seed)
    elif n > CHOICE_ROWS:
        mode = f"valid split, candidates fitted on a {CHOICE_ROWS:,}-row sample of train"
        folds = [(_sample(train, CHOICE_ROWS, tp.seed), _sample(valid, CHOICE_ROWS, tp.seed))]
    else:
        mode = "valid split"
        folds = [(train, valid)]
    if not all(va.num_rows for _, va in folds):
        raise DataError(
            "model.family auto needs a valid split to compare its candidates; give split a "
            "valid fraction, or pick a family (model.family: linear, mlp or gbdt)"
        )
    metric = "rmse" if task == "regression" else "log_loss"
    candidates: list[dict[str, Any]] = []
    kept: dict[str, tuple[Any, TabularProblem]] = {}
    for family in CANDIDATES:
        t0 = time.perf_counter()
        scores = []
        try:
            for tr, va in folds:
                fitted, problem = _fit_candidate(family, tr, va, kw, False, verbose=0)
                scores.append(
                    task_loss(task, problem.y_valid, _outputs(fitted, problem, problem.x_valid))
                )
        except DataError as exc:
            candidates.append(
                {"family": family, "metric": metric, "score": None, "error": str(exc)}
            )
            continue
        if len(folds) == 1 and folds[0][0] is train:
            kept[family] = (fitted, problem)
        candidates.append(
            {
                "family": family,
                "metric": metric,
                "score": float(np.mean(scores)),
                "score_std": float(np.std(scores)) if len(scores) > 1 else 0.0,
                "fit_seconds": round(time.perf_counter() - t0, 3),
                "folds": len(folds),
            }
        )
        print(
            f"voltpipe: auto candidate {family}: {metric} {np.mean(scores):.6g} "
            f"({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
    scored = [c for c in candidates if c.get("score") is not None and np.isfinite(c["score"])]
    if not scored:
        raise DataError(
            "model.family auto: no candidate could train: "
            + "; ".join(f"{c['family']}: {c.get('error')}" for c in candidates)
        )
    best = min(scored, key=lambda c: c["score"])  # ties: the earlier, simpler family
    for c in candidates:
        c["chosen"] = c is best
    t0 = time.perf_counter()
    if best["family"] in kept:
        fitted, problem = kept[best["family"]]
    else:
        fitted, problem = _fit_candidate(best["family"], train, valid, kw, True, **fit)
    best["refit_seconds"] = round(time.perf_counter() - t0, 3)
    fitted.meta["candidates"] = candidates
    fitted.meta["auto"] = {"metric": metric, "chosen_by": mode, "chosen": best["family"]}
    fitted.meta["model_params"]["family"] = best["family"]
    print(f"voltpipe: auto chose {best['family']} ({mode})", flush=True)
    return fitted, problem


def fit_table_family(
    train: pa.Table,
    valid: pa.Table,
    *,
    family: str,
    label: str,
    task: str,
    features: list[str] | None,
    exclude: list[str] | None,
    mp: Any,
    tp: Any,
    params: TaskParams,
    **fit: Any,
) -> tuple[Any, TabularProblem]:
    """``train.fit_tables`` for family gbdt, linear or auto (classification, regression).

    Args:
        fit: the Keras fit options (callbacks, backup_dir, strategy, verbose), used when
            ``auto`` keeps the mlp.
    """
    if train.num_rows == 0:
        raise DataError("the train split is empty")
    kw = dict(
        label=label, task=task, features=features, exclude=exclude, mp=mp, tp=tp, params=params
    )
    if family == "auto":
        _problem(train, valid, "auto", kw, tp)  # bad data fails once, naming the column
        return fit_auto(train, valid, kw, fit)
    problem = _problem(train, valid, family, kw, tp)
    return fit_file_family(problem, mp, tp, params), problem
