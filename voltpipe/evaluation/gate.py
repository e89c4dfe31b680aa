"""The champion/challenger decision: a paired comparison on the same test rows, and a verdict.

The challenger and the champion score the same test split. The improvement of the gate metric
(champion minus challenger for error metrics, challenger minus champion for the others; above
zero the challenger is better) gets a confidence interval:

* rows (regression, classification): a seeded **paired bootstrap** that resamples test rows and
  recomputes both models' metric on the same resample (per-row losses for rmse, mae and
  log_loss; the metric itself for auc, accuracy, f1, r2, ...);
* windows (forecasting): a **Diebold-Mariano** test on the per-window loss differences, with a
  Newey-West (HAC) variance over ``horizon - 1`` lags, since overlapping windows share errors.

Verdict: ``promote`` when the interval's lower bound beats ``min_improvement``; ``reject`` when
the challenger is significantly worse (upper bound below zero) or, with ``slices``, when a slice
of ``evaluation.slice_columns`` got worse by more than ``max_slice_regression`` (relative);
``hold`` otherwise (not significant: the champion stays).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from voltpipe.config import LOWER_IS_BETTER

Verdict = Literal["promote", "hold", "reject"]
#: Seed of the bootstrap: the same two models on the same rows always get the same interval.
BOOTSTRAP_SEED = 0
#: Resamples drawn at once (bounds the index matrix to about 64 MB at a million rows).
_CHUNK_CELLS = 8_000_000
#: Slices with fewer rows than this are reported but never reject a challenger.
MIN_SLICE_ROWS = 30
_EPS = 1e-15


@dataclasses.dataclass(frozen=True)
class GateDecision:
    """The gate's decision and the comparison behind it (stored with the version).

    Attributes:
        promote: whether the challenger becomes champion (``verdict == "promote"``).
        metric: the gate metric; ``challenger``/``champion`` its values on the test rows.
        min_improvement: the improvement the interval's lower bound must beat.
        reason: the verdict in words and numbers.
        verdict: ``promote``, ``hold`` (not significant) or ``reject`` (worse, or a slice
            regressed).
        improvement: the point improvement (positive: the challenger is better).
        interval: its confidence interval ``[low, high]`` at ``confidence``.
        method: ``paired bootstrap``, ``diebold-mariano``, ``aggregate`` (no paired rows) or
            ``first model``.
        rows: test rows (or forecast windows) compared.
        samples: bootstrap resamples (0 for the other methods).
        p_value: Diebold-Mariano's two-sided p-value (forecasts), else the bootstrap's share of
            resamples where the challenger is not better.
        slices: per-slice comparison rows (column, value, rows, champion, challenger,
            relative_change, regressed).
        test_data_hash: sha256 of the test split's rows.
        champion_version: the champion's registry version; ``challenger_model`` its folder.
    """

    promote: bool
    metric: str
    challenger: float
    champion: float | None
    min_improvement: float
    reason: str
    verdict: Verdict = "promote"
    improvement: float | None = None
    interval: list[float] | None = None
    confidence: float = 0.95
    method: str = "first model"
    rows: int = 0
    samples: int = 0
    p_value: float | None = None
    slices: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    max_slice_regression: float | None = None
    test_data_hash: str | None = None
    champion_version: str | None = None
    challenger_model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(dataclasses.asdict(self))


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ----- per-row metrics ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PairedOutputs:
    """Both models' outputs on the same test rows (or forecast windows).

    Attributes:
        task: regression, classification or forecasting.
        y_true: (n,) labels (class indices for classification), or (n, horizon) for forecasts.
        challenger, champion: (n,) predictions, (n, classes) probabilities, or (n, horizon).
        threshold: the binary decision threshold (``evaluation.classification_threshold``).
    """

    task: str
    y_true: np.ndarray
    challenger: np.ndarray
    champion: np.ndarray
    threshold: float | None = None


def row_losses(
    metric: str, task: str, y_true: np.ndarray, out: np.ndarray, threshold: float | None = None
) -> np.ndarray | None:
    """Per-row losses whose mean (rmse: whose mean's square root) is `metric`, or None when the
    metric does not decompose over rows (auc, f1, r2, ...).

    Clustering and embedding models' outputs are their per-row values (see
    ``cluster_metrics.UnsupervisedScore``): silhouette and own-centre distance, or the
    explained-variance share and reconstruction error; their mean is the metric."""
    if task in ("clustering", "embedding"):
        column = {
            ("clustering", "silhouette"): 0,
            ("clustering", "mean_distance"): 1,
            ("embedding", "explained_variance"): 0,
            ("embedding", "reconstruction_error"): 1,
        }.get((task, metric))
        return None if column is None else np.asarray(out, "float64")[:, column]
    if task == "regression" and metric in ("rmse", "mae"):
        err = np.asarray(out, "float64").reshape(-1) - np.asarray(y_true, "float64").reshape(-1)
        return err * err if metric == "rmse" else np.abs(err)
    if task == "classification" and metric == "log_loss":
        y = np.asarray(y_true).astype(int).reshape(-1)
        p = np.clip(np.asarray(out, "float64")[np.arange(len(y)), y], _EPS, 1.0)
        return -np.log(p)
    if task == "classification" and metric == "accuracy":
        from voltpipe.evaluation.metrics import predicted_classes

        pred = predicted_classes(out, threshold)
        return (pred == np.asarray(y_true).astype(int).reshape(-1)).astype("float64")
    return None


def metric_of(metric: str, task: str, threshold: float | None = None) -> Callable[..., float]:
    """``f(y_true, outputs) -> value`` of `metric` for a row task (the evaluation's own metrics)."""
    from voltpipe.evaluation.metrics import (
        classification_metrics,
        confusion_matrix,
        precision_recall,
        predicted_classes,
        regression_metrics,
    )

    if task == "regression":
        return lambda y, out: regression_metrics(y, out)[metric]
    if metric in ("precision", "recall"):

        def pr(y: np.ndarray, out: np.ndarray) -> float:
            pred = predicted_classes(out, threshold)
            return precision_recall(confusion_matrix(y, pred, out.shape[1]))[metric]

        return pr
    return lambda y, out: classification_metrics(y, out, threshold)[metric]


def _gain(metric: str, champion: Any, challenger: Any) -> Any:
    """Improvement in the metric's units: positive when the challenger is better."""
    return champion - challenger if metric in LOWER_IS_BETTER else challenger - champion


# ----- the statistics ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Interval:
    improvement: float
    low: float
    high: float
    method: str
    rows: int
    samples: int = 0
    p_value: float | None = None


def _resample_chunks(n: int, samples: int, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    per = max(1, _CHUNK_CELLS // max(n, 1))
    done = 0
    while done < samples:
        k = min(per, samples - done)
        yield rng.integers(0, n, size=(k, n), dtype=np.int64 if n > 2**31 - 1 else np.int32)
        done += k


def paired_bootstrap(
    paired: PairedOutputs,
    metric: str,
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """The improvement of `metric` and its percentile interval from resampling test rows.

    Both models are scored on each resample of the same rows, so what they share (hard rows,
    easy rows) cancels and only their difference varies.
    """
    y, a, b = paired.y_true, paired.challenger, paired.champion
    n = len(y)
    if n < 2:
        raise ValueError("the paired bootstrap needs at least two test rows")
    loss_a = row_losses(metric, paired.task, y, a, paired.threshold)
    if loss_a is not None:
        loss_b = row_losses(metric, paired.task, y, b, paired.threshold)
        assert loss_b is not None
        finish: Callable[[np.ndarray], np.ndarray] = np.sqrt if metric == "rmse" else (lambda v: v)
        sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
        point = float(sign * (finish(loss_b.mean()) - finish(loss_a.mean())))
        gains = []
        for idx in _resample_chunks(n, samples, seed):
            gains.append(
                sign * (finish(loss_b[idx].mean(axis=1)) - finish(loss_a[idx].mean(axis=1)))
            )
        boot = np.concatenate(gains)
    else:
        f = metric_of(metric, paired.task, paired.threshold)
        point = float(_gain(metric, f(y, b), f(y, a)))
        boot_list = []
        for idx in _resample_chunks(n, samples, seed):
            for row in idx:
                boot_list.append(_gain(metric, f(y[row], b[row]), f(y[row], a[row])))
        boot = np.asarray(boot_list, dtype="float64")
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        raise ValueError(f"the bootstrap of {metric} gave no finite value")
    alpha = 1.0 - confidence
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    p = float(np.mean(boot <= 0))
    return Interval(point, float(low), float(high), "paired bootstrap", n, int(boot.size), p)


def hac_variance(d: np.ndarray, lags: int) -> float:
    """Newey-West long-run variance of a series (Bartlett weights over `lags` lags)."""
    d = np.asarray(d, "float64") - np.mean(d)
    n = d.size
    var = float(d @ d) / n
    for k in range(1, min(lags, n - 1) + 1):
        var += 2.0 * (1.0 - k / (lags + 1)) * float(d[k:] @ d[:-k]) / n
    return max(var, 0.0)


def diebold_mariano(
    loss_champion: np.ndarray,
    loss_challenger: np.ndarray,
    *,
    horizon: int = 1,
    confidence: float = 0.95,
) -> tuple[float, float, float, float]:
    """Diebold-Mariano test of equal forecast accuracy on per-window losses.

    ``d = loss_champion - loss_challenger`` (positive: the challenger is better); its mean's
    variance is the HAC variance over ``horizon - 1`` lags, with the Harvey-Leybourne-Newbold
    small-sample correction and Student-t quantiles.

    Returns:
        (mean difference, interval low, interval high, two-sided p-value).
    """
    from scipy import stats

    d = np.asarray(loss_champion, "float64") - np.asarray(loss_challenger, "float64")
    d = d[np.isfinite(d)]
    n = d.size
    if n < 3:
        raise ValueError("the Diebold-Mariano test needs at least three forecast windows")
    h = max(1, int(horizon))
    mean = float(d.mean())
    se = math.sqrt(hac_variance(d, h - 1) / n)
    correction = math.sqrt(max((n + 1 - 2 * h + h * (h - 1) / n) / n, 1e-12))
    q = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1))
    if se == 0.0:
        return mean, mean, mean, 0.0 if mean != 0 else 1.0
    stat = correction * mean / se
    p = float(2 * stats.t.sf(abs(stat), df=n - 1))
    half = q * se / correction
    return mean, mean - half, mean + half, p


_FORECAST_LOSS = {"mae": "abs", "skill_persistence": "abs", "rmse": "sq", "mape": "ape"}


def forecast_comparison(
    paired: PairedOutputs,
    metric: str,
    *,
    horizon: int,
    confidence: float = 0.95,
    persistence_mae: float | None = None,
) -> Interval:
    """The improvement of a forecast metric with the Diebold-Mariano interval.

    Per-window losses: mean absolute error (mae, skill_persistence), mean squared error (rmse;
    the interval is carried to rmse units by ``Δrmse = Δmse / (rmse_a + rmse_b)``) or mean
    absolute percentage error (mape) over the horizon. For skill the mae interval is divided by
    the persistence mae (``skill = 1 - mae / mae_persistence``).

    Raises:
        ValueError: a metric with no per-window loss.
    """
    kind = _FORECAST_LOSS.get(metric)
    if kind is None:
        raise ValueError(f"no per-window loss for forecast metric {metric!r}")
    y = np.asarray(paired.y_true, "float64").reshape(len(paired.y_true), -1)
    a = np.asarray(paired.challenger, "float64").reshape(y.shape)
    b = np.asarray(paired.champion, "float64").reshape(y.shape)
    if kind == "abs":
        la, lb = np.abs(a - y).mean(axis=1), np.abs(b - y).mean(axis=1)
    elif kind == "sq":
        la, lb = ((a - y) ** 2).mean(axis=1), ((b - y) ** 2).mean(axis=1)
    else:
        nz = np.abs(y) > 1e-9
        scale = np.where(nz, np.abs(y), np.nan)
        la = 100.0 * np.nanmean(np.abs(a - y) / scale, axis=1)
        lb = 100.0 * np.nanmean(np.abs(b - y) / scale, axis=1)
        keep = np.isfinite(la) & np.isfinite(lb)
        la, lb = la[keep], lb[keep]
    mean, low, high, p = diebold_mariano(lb, la, horizon=horizon, confidence=confidence)
    factor = 1.0
    if kind == "sq":
        factor = 1.0 / max(math.sqrt(la.mean()) + math.sqrt(lb.mean()), _EPS)
    elif metric == "skill_persistence":
        factor = 1.0 / max(persistence_mae or 0.0, _EPS) if persistence_mae else float("nan")
    return Interval(
        mean * factor, low * factor, high * factor, "diebold-mariano", int(la.size), 0, p
    )


# ----- slices ------------------------------------------------------------------------------------


def slice_comparison(
    paired: PairedOutputs,
    metric: str,
    masks: Mapping[str, Sequence[tuple[str, np.ndarray]]],
    *,
    max_regression: float,
) -> list[dict[str, Any]]:
    """Both models' metric per slice value and the challenger's relative change.

    ``relative_change`` is the worsening divided by the champion's value (positive: worse);
    a slice with at least :data:`MIN_SLICE_ROWS` rows regresses when it exceeds
    `max_regression`.
    """
    f = metric_of(metric, paired.task, paired.threshold)
    rows = []
    for column, values in masks.items():
        for value, mask in values:
            n = int(mask.sum())
            if n == 0:
                continue
            y = paired.y_true[mask]
            with np.errstate(all="ignore"):
                new = float(f(y, paired.challenger[mask]))
                old = float(f(y, paired.champion[mask]))
            worse = -_gain(metric, old, new)
            rel = worse / abs(old) if abs(old) > _EPS else (0.0 if worse == 0 else math.inf)
            ok = math.isfinite(new) and math.isfinite(old)
            rows.append(
                {
                    "column": column,
                    "value": value,
                    "rows": n,
                    "champion": old,
                    "challenger": new,
                    "relative_change": rel if ok else None,
                    "regressed": bool(ok and n >= MIN_SLICE_ROWS and rel > max_regression),
                }
            )
    return rows


# ----- the decision ------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return f"{x:+.4g}"


def decide(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    *,
    metric: str,
    min_improvement: float = 0.0,
    interval: Interval | None = None,
    confidence: float = 0.95,
    slices: list[dict[str, Any]] | None = None,
    max_slice_regression: float | None = None,
    **provenance: Any,
) -> GateDecision:
    """Decides whether the challenger replaces the champion.

    With no champion, the challenger is promoted. With a paired `interval` (see
    ``paired_bootstrap`` and ``forecast_comparison``), the verdict is ``promote`` when its lower
    bound beats `min_improvement` (absolute, in the metric's units), ``reject`` when its upper
    bound is below zero or a slice regressed, ``hold`` otherwise. Without one (the two models
    could not score the same rows), the aggregate improvement must exceed `min_improvement`.

    Args:
        provenance: ``test_data_hash``, ``champion_version`` and ``challenger_model``, stored
            with the decision.

    Raises:
        ValueError: `metric` is not among the challenger's metrics.
    """
    if metric not in challenger:
        raise ValueError(
            f"gate metric {metric!r} is not among the evaluation metrics {sorted(challenger)}"
        )
    new = float(challenger[metric])
    common = {"confidence": confidence, **provenance}
    if champion is None or metric not in champion:
        return GateDecision(
            True,
            metric,
            new,
            None,
            min_improvement,
            "no champion yet: the first model becomes champion",
            verdict="promote",
            **common,
        )
    old = float(champion[metric])
    lower = metric in LOWER_IS_BETTER
    direction = "lower" if lower else "higher"
    values = f"challenger {metric}={new:.6g}, champion {metric}={old:.6g} ({direction} is better)"
    if interval is None:
        gain = _gain(metric, old, new)
        promote = gain > min_improvement
        verdict: Verdict = "promote" if promote else "hold"
        word = "beats" if promote else "does not beat"
        reason = (
            f"{verdict}: challenger {metric}={new:.6g} {word} champion {metric}={old:.6g} "
            f"({direction} is better; improvement {gain:+.6g}, required > {min_improvement:g}; "
            "aggregate comparison, the models could not be paired on the same rows)"
        )
        return GateDecision(
            promote,
            metric,
            new,
            old,
            min_improvement,
            reason,
            verdict=verdict,
            improvement=gain,
            method="aggregate",
            **common,
        )
    pct = f"{confidence:.0%}"
    what = (
        f"improvement {_fmt(interval.improvement)} ({pct} interval {_fmt(interval.low)} to "
        f"{_fmt(interval.high)}, {interval.method} on {interval.rows:,} "
        f"{'forecast windows' if interval.method == 'diebold-mariano' else 'test rows'})"
    )
    regressed = [s for s in (slices or []) if s["regressed"]]
    if regressed:
        worst = max(regressed, key=lambda s: s["relative_change"])
        verdict = "reject"
        reason = (
            f"reject: slice {worst['column']}={worst['value']} ({worst['rows']:,} rows) got "
            f"{worst['relative_change']:.1%} worse on {metric} ({worst['champion']:.6g} -> "
            f"{worst['challenger']:.6g}), more than deploy.gate.max_slice_regression="
            f"{max_slice_regression:g}"
            + (f" ({len(regressed)} slices regressed)" if len(regressed) > 1 else "")
            + f"; {values}; {what}"
        )
    elif interval.low > min_improvement:
        verdict = "promote"
        reason = (
            f"promote: {values}; {what}: the lower bound beats the required > {min_improvement:g}"
        )
    elif interval.high < 0:
        verdict = "reject"
        reason = f"reject: the challenger is significantly worse: {values}; {what}"
    else:
        verdict = "hold"
        reason = (
            f"hold: not significant: {values}; {what}: the lower bound does not beat the "
            f"required > {min_improvement:g}, the champion stays"
        )
    return GateDecision(
        verdict == "promote",
        metric,
        new,
        old,
        min_improvement,
        reason,
        verdict=verdict,
        improvement=interval.improvement,
        interval=[interval.low, interval.high],
        method=interval.method,
        rows=interval.rows,
        samples=interval.samples,
        p_value=interval.p_value,
        slices=list(slices or []),
        max_slice_regression=max_slice_regression,
        **common,
    )
