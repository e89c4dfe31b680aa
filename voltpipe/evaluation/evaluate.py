"""Scoring a challenger and the current champion on the same test data."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from voltpipe.data.io import read_table
from voltpipe.errors import DataError
from voltpipe.evaluation.gate import GateDecision, decide
from voltpipe.evaluation.metrics import classification_metrics, regression_metrics


@dataclasses.dataclass
class EvaluationResult:
    metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    champion_version: str | None
    decision: GateDecision
    test_rows: int

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["decision"] = self.decision.to_dict()
        return d


def score_model(
    model_dir: str | os.PathLike[str], test_path: str | os.PathLike[str]
) -> tuple[dict[str, float], int]:
    """Returns the test metrics of a saved model (by its task) and the number of test rows."""
    from voltpipe.modelling.predict import load_model
    from voltpipe.modelling.train import encode_labels

    loaded = load_model(model_dir)
    table = read_table(test_path)
    if table.num_rows == 0:
        raise DataError("the test split is empty")
    label = loaded.meta["label"]
    y, _ = encode_labels(table, label, loaded.task, loaded.meta.get("classes"))
    out = loaded.predict_raw(table)
    if loaded.task == "classification":
        return classification_metrics(y, out), table.num_rows
    return regression_metrics(y, out), table.num_rows


def evaluate_challenger(
    model_dir: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    *,
    champion_dir: str | os.PathLike[str] | None,
    champion_version: str | None,
    metric: str,
    min_improvement: float = 0.0,
) -> EvaluationResult:
    """Scores the challenger and (if any) the champion on the same test split, then decides.

    A champion that can no longer score this data (e.g. a changed schema) is reported and the
    challenger is judged on its own.
    """
    metrics, rows = score_model(model_dir, test_path)
    champion_metrics = None
    if champion_dir is not None:
        try:
            champion_metrics, _ = score_model(champion_dir, test_path)
        except DataError as exc:
            print(
                f"voltpipe: the champion cannot score this test data ({exc}); judging the challenger alone"
            )
    decision = decide(metrics, champion_metrics, metric=metric, min_improvement=min_improvement)
    return EvaluationResult(
        metrics, champion_metrics, champion_version if champion_metrics else None, decision, rows
    )
