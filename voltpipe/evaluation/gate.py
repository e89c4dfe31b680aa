"""The champion/challenger decision: the challenger must beat the champion on the same data."""

from __future__ import annotations

import dataclasses
from typing import Any

from voltpipe.config import LOWER_IS_BETTER


@dataclasses.dataclass(frozen=True)
class GateDecision:
    promote: bool
    metric: str
    challenger: float
    champion: float | None
    min_improvement: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def decide(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    *,
    metric: str,
    min_improvement: float = 0.0,
) -> GateDecision:
    """Decides whether the challenger replaces the champion.

    With no champion, the challenger is promoted. Otherwise it must improve `metric` by more
    than `min_improvement` (absolute, in the metric's units): lower for error metrics
    (rmse, mae, log_loss, mape), higher for the others.
    """
    if metric not in challenger:
        raise ValueError(
            f"gate metric {metric!r} is not among the evaluation metrics {sorted(challenger)}"
        )
    new = float(challenger[metric])
    if champion is None or metric not in champion:
        return GateDecision(
            True,
            metric,
            new,
            None,
            min_improvement,
            "no champion yet: the first model becomes champion",
        )
    old = float(champion[metric])
    lower = metric in LOWER_IS_BETTER
    gain = (old - new) if lower else (new - old)
    direction = "lower" if lower else "higher"
    promote = gain > min_improvement
    verdict = "beats" if promote else "does not beat"
    reason = (
        f"challenger {metric}={new:.6g} {verdict} champion {metric}={old:.6g} "
        f"({direction} is better; improvement {gain:+.6g}, required > {min_improvement:g})"
    )
    return GateDecision(promote, metric, new, old, min_improvement, reason)
