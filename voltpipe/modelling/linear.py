"""Family linear: a regularised linear model (ridge regression, multinomial logistic regression).

Inputs are the standardised numeric features (zero variance -> scale 1, values clipped to
[-10, 10], the rule the Keras models follow) plus one-hot categories (an unseen value: all
zeros). scikit-learn fits it; the regularisation strength is chosen on the valid split, or by
3-fold cross-validation over train + valid when the valid split is small. The model is saved as
plain weights (``voltpipe_linear.json``) and scored with NumPy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from voltpipe.errors import DataError
from voltpipe.model_dir import FileModel, Forward

__all__ = ["LinearModel", "fit_linear"]

FORMAT = "voltpipe-linear-v1"
CLIP = 10.0
MIN_VARIANCE = 1e-12  # below it a feature is constant in train: scale 1 (scikit-learn's rule)
SMALL_VALID = 200  # fewer valid rows: choose the strength by cross-validation instead
CHOICE_ROWS = 50_000  # more train rows: choose the strength on a sample of this many
# Ridge alpha, or 1/C, every half decade from C = 1e-3 to 1e4 (the logistic_cv peer's range):
# nearly separable tables want a weak penalty (the benchmark's iris and wine choose C 32 and
# 100, inside the old 1e-3..316 grid; a table wanting less penalty is no longer cut off).
STRENGTHS = tuple(float(v) for v in np.logspace(-4, 3, 15))
# 3 folds. 5 were tried (issue 17): wine's choice moved from C 100 to 3.2 and its linear test
# log loss from 0.050 to 0.072; iris, breast_cancer, anes96, diabetes kept theirs.
CV_FOLDS = 3


class LinearModel(FileModel):
    """Weights over the standardised numeric features and one-hot categories."""

    family = "linear"

    def __init__(
        self,
        *,
        task: str,
        numeric: list[str],
        mean: np.ndarray,
        scale: np.ndarray,
        categorical: dict[str, list[str]],
        coef: np.ndarray,
        intercept: np.ndarray,
        strength: float,
    ) -> None:
        self.task = task
        self.numeric = list(numeric)
        self.mean = np.asarray(mean, np.float64)
        self.scale = np.asarray(scale, np.float64)
        self.categorical = list(categorical)
        self.vocabularies = [list(v) for v in categorical.values()]
        self.coef = np.asarray(coef, np.float64)  # (inputs, outputs)
        self.intercept = np.asarray(intercept, np.float64)  # (outputs,)
        self.strength = float(strength)

    def design(self, xn: np.ndarray, xc: np.ndarray) -> np.ndarray:
        """The model's input matrix: clipped standardised numbers, then one-hot categories."""
        z = np.clip((xn.astype(np.float64) - self.mean) / self.scale, -CLIP, CLIP)
        blocks = [z]
        for j, vocab in enumerate(self.vocabularies):
            index = {v: i for i, v in enumerate(vocab)}
            codes = np.array([index.get(v, -1) for v in xc[:, j]], np.int64)
            onehot = np.zeros((len(codes), len(vocab)))
            seen = codes >= 0
            onehot[np.flatnonzero(seen), codes[seen]] = 1.0
            blocks.append(onehot)
        return np.hstack(blocks) if blocks else np.empty((len(xn), 0))

    def outputs(self, x: np.ndarray) -> np.ndarray:
        logits = x @ self.coef + self.intercept
        if self.task != "classification":
            return logits.reshape(-1, 1)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def forward(
        self, numeric: list[str] | None = None, categorical: list[str] | None = None
    ) -> Forward:
        num_cols, cat_cols = self._columns(numeric, categorical)

        def forward(xn: np.ndarray, xc: np.ndarray) -> np.ndarray:
            return self.outputs(self.design(xn[:, num_cols], xc[:, cat_cols]))

        return forward

    def to_bytes(self) -> bytes:
        data = {
            "format": FORMAT,
            "task": self.task,
            "numeric": self.numeric,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "categorical": dict(zip(self.categorical, self.vocabularies, strict=True)),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
            "strength": self.strength,
        }
        return json.dumps(data).encode()

    @classmethod
    def from_bytes(cls, data: bytes, meta: dict[str, Any], where: Path | str) -> LinearModel:
        """Loads the weights saved by `save`.

        Raises:
            DataError: the file is not a voltpipe linear model.
        """
        try:
            d = json.loads(data.decode())
            if d.get("format") != FORMAT:
                raise ValueError(f"format {d.get('format')!r}, expected {FORMAT}")
            model = cls(
                task=str(d["task"]),
                numeric=list(d["numeric"]),
                mean=np.asarray(d["mean"]),
                scale=np.asarray(d["scale"]),
                categorical=dict(d["categorical"]),
                coef=np.asarray(d["coef"], np.float64).reshape(-1, len(d["intercept"])),
                intercept=np.asarray(d["intercept"]),
                strength=float(d["strength"]),
            )
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{where} is not a readable voltpipe linear model: {exc}") from None
        return model


def _scaling(plan: Any) -> tuple[np.ndarray, np.ndarray]:
    stats = list(plan.numeric.values())
    mean = np.array([float(s["mean"]) for s in stats])
    var = np.array([float(s["variance"]) for s in stats])
    scale = np.where(var > MIN_VARIANCE, np.sqrt(np.maximum(var, 0.0)), 1.0)
    return mean, scale


def _fit(x: np.ndarray, y: np.ndarray, task: str, strength: float, n_classes: int, w: Any) -> Any:
    if task == "regression":
        from sklearn.linear_model import Ridge

        return Ridge(alpha=strength).fit(x, y, sample_weight=w)
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0 / strength, max_iter=1000).fit(x, y, sample_weight=w)


def _loss(est: Any, x: np.ndarray, y: np.ndarray, task: str, n_classes: int) -> float:
    if task == "regression":
        return float(np.mean((est.predict(x) - y) ** 2))
    p = _proba(est, x, n_classes)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-15, 1.0))))


def _proba(est: Any, x: np.ndarray, n_classes: int) -> np.ndarray:
    p = np.zeros((len(x), n_classes))
    p[:, est.classes_] = est.predict_proba(x)
    return p


def _weights(est: Any, task: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(coef (inputs, outputs), intercept (outputs,)) as logits over all `n_classes`."""
    if task == "regression":
        return est.coef_.reshape(-1, 1), np.atleast_1d(est.intercept_).astype(np.float64)
    coef = np.zeros((est.coef_.shape[1], n_classes))
    intercept = np.full(n_classes, -50.0)  # a class absent from train: probability ~ 0
    if len(est.classes_) == 2:  # one logit for class 1 against class 0
        coef[:, est.classes_[1]] = est.coef_[0]
        intercept[est.classes_[0]] = 0.0
        intercept[est.classes_[1]] = est.intercept_[0]
    else:
        coef[:, est.classes_] = est.coef_.T
        intercept[est.classes_] = est.intercept_
    return coef, intercept


def _kfold(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    parts = np.array_split(np.random.default_rng(seed).permutation(n), k)
    return [(np.concatenate(parts[:i] + parts[i + 1 :]), parts[i]) for i in range(k)]


def fit_linear(
    x_train: dict[str, np.ndarray],
    y_train: np.ndarray,
    x_valid: dict[str, np.ndarray] | None,
    y_valid: np.ndarray | None,
    *,
    task: str,
    plan: Any,
    n_classes: int,
    seed: int,
    weights: np.ndarray | None = None,
    refit_all: bool = False,
) -> tuple[LinearModel, dict[str, list[float]]]:
    """Fits the linear model on train, its strength chosen on valid (or by 3-fold CV over
    train + valid when valid has fewer than 200 rows).

    BLAS runs on one thread: these are small dense problems, where OpenBLAS threads only
    spin on a busy machine (breast_cancer's 76 fits: 72 s on two threads with other jobs on
    both cores, about 8x less on one), and one thread gives the same bits on every machine.

    Args:
        refit_all: after a choice by cross-validation, fit the final model on train + valid
            (the valid rows were not held out anyway); off when the caller scores the model on
            valid (``auto``'s candidates).

    Returns:
        The model and its history: ``val_loss`` per strength tried (MSE or log loss).
    """
    import sklearn.linear_model  # noqa: F401  (loads its BLAS first: the limit sees it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _fit_linear(
            x_train, y_train, x_valid, y_valid, task=task, plan=plan, n_classes=n_classes,
            seed=seed, weights=weights, refit_all=refit_all,
        )  # fmt: skip


def _fit_linear(
    x_train: dict[str, np.ndarray],
    y_train: np.ndarray,
    x_valid: dict[str, np.ndarray] | None,
    y_valid: np.ndarray | None,
    *,
    task: str,
    plan: Any,
    n_classes: int,
    seed: int,
    weights: np.ndarray | None,
    refit_all: bool,
) -> tuple[LinearModel, dict[str, list[float]]]:
    from voltpipe.model_dir import packed_inputs

    numeric, categorical = list(plan.numeric), list(plan.categorical)
    mean, scale = _scaling(plan)
    shell = LinearModel(
        task=task,
        numeric=numeric,
        mean=mean,
        scale=scale,
        categorical=plan.categorical,
        coef=np.zeros((0, 1)),
        intercept=np.zeros(1),
        strength=1.0,
    )
    xt = shell.design(*packed_inputs(x_train, numeric, categorical))
    yt = np.asarray(y_train)
    if task == "classification" and len(np.unique(yt)) < 2:
        raise DataError("family linear: the train split holds a single class")
    has_valid = x_valid is not None and y_valid is not None and len(y_valid) > 0
    if has_valid and x_valid is not None and y_valid is not None:
        xv, yv = shell.design(*packed_inputs(x_valid, numeric, categorical)), np.asarray(y_valid)
    else:  # no valid rows
        xv, yv = np.empty((0, xt.shape[1])), np.empty(0, yt.dtype)
    losses = []
    if has_valid and len(yv) >= SMALL_VALID:
        # A big table chooses the strength on a seeded sample (the refit below takes all rows).
        pick = np.arange(len(yt))
        if len(yt) > CHOICE_ROWS:
            pick = np.sort(np.random.default_rng(seed).choice(len(yt), CHOICE_ROWS, replace=False))
        ws = None if weights is None else weights[pick]
        for s in STRENGTHS:
            est = _fit(xt[pick], yt[pick], task, s, n_classes, ws)
            losses.append(_loss(est, xv, yv, task, n_classes))
    else:
        xa = np.vstack([xt, xv]) if has_valid else xt
        ya = np.concatenate([yt, yv]) if has_valid else yt
        wa = None
        if weights is not None:
            wa = np.concatenate([weights, np.ones(len(ya) - len(yt))])
        folds = _kfold(len(ya), min(CV_FOLDS, max(2, len(ya) // 2)), seed)
        for s in STRENGTHS:
            fold_losses = []
            for tr, va in folds:
                if task == "classification" and len(np.unique(ya[tr])) < 2:
                    continue
                est = _fit(xa[tr], ya[tr], task, s, n_classes, None if wa is None else wa[tr])
                fold_losses.append(_loss(est, xa[va], ya[va], task, n_classes))
            losses.append(float(np.mean(fold_losses)) if fold_losses else np.inf)
    best = STRENGTHS[int(np.argmin(losses))]
    if refit_all and has_valid and len(yv) < SMALL_VALID:
        est = _fit(xa, ya, task, best, n_classes, wa)
    else:
        est = _fit(xt, yt, task, best, n_classes, weights)
    coef, intercept = _weights(est, task, n_classes)
    shell.coef, shell.intercept, shell.strength = coef, intercept, best
    return shell, {"val_loss": [float(v) for v in losses]}
