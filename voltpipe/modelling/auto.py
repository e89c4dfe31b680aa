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

Two blends compete too: the mean of the best two candidates' outputs (probabilities or values)
and of all three, scored on the same folds from the outputs already computed. A blend wins only
when its per-row gain over the best candidate is at least `BLEND_Z` standard errors; its
members are then refitted and saved in sub-folders (``modelling.blend``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa

from voltpipe.errors import DataError
from voltpipe.model_dir import FORMATS, FileModel
from voltpipe.modelling.problems import OUTPUTS, TabularProblem, TaskParams

__all__ = ["CANDIDATES", "CHOICE_ROWS", "SMALL_TABLE", "fit_table_family", "task_loss"]

CANDIDATES = ("linear", "mlp", "gbdt")
SMALL_TABLE = 2_000  # fewer train rows: choose by k-fold CV over train + valid
CV_FOLDS = 3  # 5 doubled the choice's cost (mostly the mlp's) on the benchmark's tables
CHOICE_ROWS = 20_000  # more train rows: choose on a sample of this many (valid: the same)
# A blend is kept only when its per-row gain over the best candidate is at least this many
# standard errors (the one-standard-error rule): on the benchmark's small tables the blends that
# lost on test had gains of 0.5 standard errors (iris: linear + mlp won CV by 6% and lost on test
# by 70%); on digits, mlp + gbdt won CV by 10% at 1.65 standard errors, and test by 14%.
BLEND_Z = 1.0


def task_loss(task: str, y: np.ndarray, out: np.ndarray) -> float:
    """RMSE (regression) or log loss (classification) of outputs `out` for labels `y`."""
    if task == "regression":
        return float(np.sqrt(np.mean((out.reshape(-1) - y.astype(np.float64)) ** 2)))
    p = np.clip(out[np.arange(len(y)), y.astype(np.int64)], 1e-15, 1.0)
    return float(-np.mean(np.log(p)))


def row_losses(task: str, y: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Each row's squared error (regression) or log loss (classification)."""
    if task == "regression":
        return (out.reshape(-1) - y.astype(np.float64)) ** 2
    return -np.log(np.clip(out[np.arange(len(y)), y.astype(np.int64)], 1e-15, 1.0))


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
    model: FileModel
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

        linear, history = fit_linear(
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
        model = linear
        best, stopped_by = 1, "converged"
        meta |= {"best_epoch": 1, "epochs_run": 1, "strength": linear.strength}
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
        fitted, mlp_problem = fit_tables(
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
        if not isinstance(mlp_problem, TabularProblem):
            raise TypeError(f"task {kw['task']!r}: family auto compares tabular models only")
        return fitted, mlp_problem
    problem = _problem(train, valid, family, kw, tp)
    return fit_file_family(problem, mp, tp, params, final=final), problem


def canonical_order(table: pa.Table) -> pa.Table:
    """`table`'s rows sorted by every (non-nested) column: the same whatever order the
    warehouse returned them in. DuckDB's parallel scans do not keep an order (two extracts of
    the demo's 202,115 train rows came in different orders), and the CV folds, the linear
    model's strength choice (predictions moved by up to 0.08 on a shuffled test table) and the
    MLP's seeded shuffle follow the row order."""
    keys = [
        (c, "ascending")
        for c in table.column_names
        if not pa.types.is_nested(table.schema.field(c).type)
    ]
    return table.sort_by(keys) if keys and table.num_rows > 1 else table


def _sample(table: pa.Table, n: int, seed: int) -> pa.Table:
    """`n` seeded rows of `table`, the same whatever order the warehouse returned them in."""
    if table.num_rows <= n:
        return table
    table = canonical_order(table)
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
    outs: dict[str, list[np.ndarray]] = {}  # each candidate's valid outputs, fold by fold
    ys: list[np.ndarray] = []
    for family in CANDIDATES:
        t0 = time.perf_counter()
        scores, fold_outs = [], []
        try:
            for i, (tr, va) in enumerate(folds):
                fitted, problem = _fit_candidate(family, tr, va, kw, False, verbose=0)
                fold_outs.append(_outputs(fitted, problem, problem.x_valid))
                if len(ys) <= i:
                    ys.append(problem.y_valid)
                scores.append(task_loss(task, ys[i], fold_outs[-1]))
        except DataError as exc:
            candidates.append(
                {"family": family, "metric": metric, "score": None, "error": str(exc)}
            )
            continue
        outs[family] = fold_outs
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
    candidates += _blend_candidates(task, metric, scored, outs, ys)
    scored = [
        c
        for c in candidates
        if c.get("score") is not None and np.isfinite(c["score"]) and c.get("eligible", True)
    ]
    best = min(scored, key=lambda c: c["score"])  # ties: the earlier, simpler family
    t0 = time.perf_counter()
    got = None
    if best["family"] == "blend":
        got = _fit_blend(best["members"], train, valid, kw, kept, fit)
        if got is None:  # a member without a NumPy scorer: keep the best single candidate
            best["error"] = "a member has no NumPy replay"
            best = min((c for c in scored if c["family"] != "blend"), key=lambda c: c["score"])
    if best["family"] == "blend" and got is not None:
        fitted, problem = got
    elif best["family"] in kept:
        fitted, problem = kept[best["family"]]
    else:
        fitted, problem = _fit_candidate(best["family"], train, valid, kw, True, **fit)
    for c in candidates:
        c["chosen"] = c is best
    best["refit_seconds"] = round(time.perf_counter() - t0, 3)
    fitted.meta["candidates"] = candidates
    chosen = best["family"]
    fitted.meta["auto"] = {"metric": metric, "chosen_by": mode, "chosen": chosen}
    if chosen == "blend":
        fitted.meta["auto"]["members"] = list(best["members"])
    # a blend is auto's own: training it again takes family auto
    fitted.meta["model_params"]["family"] = "auto" if chosen == "blend" else chosen
    print(f"voltpipe: auto chose {chosen} ({mode})", flush=True)
    return fitted, problem


def _blend_candidates(
    task: str,
    metric: str,
    scored: list[dict[str, Any]],
    outs: dict[str, list[np.ndarray]],
    ys: list[np.ndarray],
) -> list[dict[str, Any]]:
    """The blends of the best two candidates and of all, scored on the same folds (the mean
    of the candidates' valid outputs: no extra fit). A blend is ``eligible`` when its per-row
    gain over the best candidate is at least `BLEND_Z` standard errors (``gain_z``)."""
    ranked = [c["family"] for c in sorted(scored, key=lambda c: c["score"])]
    if len(ranked) < 2:
        return []
    best_rows = np.concatenate([row_losses(task, y, outs[ranked[0]][i]) for i, y in enumerate(ys)])
    groups = [ranked[:2]] + ([ranked] if len(ranked) > 2 else [])
    blends = []
    for members in groups:
        if any(
            outs[f][i].shape != outs[members[0]][i].shape for f in members for i in range(len(ys))
        ):
            continue  # e.g. a fold where a candidate saw fewer classes
        means = [np.mean([outs[f][i] for f in members], axis=0) for i in range(len(ys))]
        scores = [task_loss(task, y, means[i]) for i, y in enumerate(ys)]
        gain = best_rows - np.concatenate([row_losses(task, y, means[i]) for i, y in enumerate(ys)])
        se = float(np.std(gain, ddof=1) / np.sqrt(len(gain))) if len(gain) > 1 else 0.0
        gain_z = float(np.mean(gain) / se) if se > 0 else 0.0
        blends.append(
            {
                "family": "blend",
                "name": "blend_" + "_".join(members),
                "members": members,
                "metric": metric,
                "score": float(np.mean(scores)),
                "score_std": float(np.std(scores)) if len(scores) > 1 else 0.0,
                "fit_seconds": 0.0,
                "folds": len(ys),
                "gain_z": round(gain_z, 3),
                "eligible": gain_z >= BLEND_Z,
            }
        )
        print(
            f"voltpipe: auto candidate blend of {'+'.join(members)}: {metric} "
            f"{np.mean(scores):.6g} (gain {gain_z:.2f} standard errors)",
            flush=True,
        )
    return blends


def _fit_blend(
    members: list[str],
    train: pa.Table,
    valid: pa.Table,
    kw: dict[str, Any],
    kept: dict[str, tuple[Any, TabularProblem]],
    fit: dict[str, Any],
) -> tuple[Any, TabularProblem] | None:
    """Fits the blend's members on the whole train split (or keeps those that were); None
    when a Keras member has no NumPy replay."""
    from voltpipe.model_dir import FileModel
    from voltpipe.modelling.blend import BlendModel, Member
    from voltpipe.modelling.train import Fitted, verified_replay

    fits = {}
    for family in members:
        fits[family] = kept.get(family) or _fit_candidate(family, train, valid, kw, True, **fit)
    blend_members = []
    for family in members:
        fitted, problem = fits[family]
        if isinstance(fitted.model, FileModel):
            scorer = fitted.model
        else:
            scorer = verified_replay(fitted.model, fitted.meta)
            if scorer is None:
                return None
        blend_members.append(Member(family, fitted.model, scorer, fitted.meta, fitted.history))
    lead, problem = fits[members[0]]  # the best member: the folder's plan, curves, settings
    numeric, categorical = list(problem.plan.numeric), list(problem.plan.categorical)
    meta = {
        **lead.meta,
        "format": FORMATS["blend"],
        "family": "blend",
        "members": list(members),
    }
    meta["model_params"] = {**lead.meta["model_params"]}
    model = BlendModel(blend_members, numeric, categorical)
    fitted = Fitted(
        model,
        lead.history,
        lead.best_epoch,
        0,
        meta,
        lead.monitor,
        lead.stopped_by,
        lead.budget,
        list(lead.warnings),
    )
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
    train, valid = canonical_order(train), canonical_order(valid)
    kw = dict(
        label=label, task=task, features=features, exclude=exclude, mp=mp, tp=tp, params=params
    )
    if family == "auto":
        _problem(train, valid, "auto", kw, tp)  # bad data fails once, naming the column
        return fit_auto(train, valid, kw, fit)
    problem = _problem(train, valid, family, kw, tp)
    return fit_file_family(problem, mp, tp, params), problem
