"""Evaluate: test metrics, and the champion/challenger gate on the same test data."""

from typing import NamedTuple

from kfp import dsl

from voltpipe.config import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def evaluate(
    model: dsl.Input[dsl.Model],
    test_data: dsl.Input[dsl.Dataset],
    registry_uri: str,
    model_name: str,
    gate_metric: str,
    metrics: dsl.Output[dsl.Metrics],
    evaluation: dsl.Output[dsl.Artifact],
    decision_report: dsl.Output[dsl.Markdown],
    min_improvement: float = 0.0,
) -> NamedTuple("EvaluateOutputs", [("promote", bool)]):
    """Scores the challenger and the current champion on the test split and applies the gate."""
    from collections import namedtuple

    from voltpipe.data.io import write_json_atomic, write_text_atomic
    from voltpipe.errors import exit_on_user_error
    from voltpipe.evaluation.evaluate import evaluate_challenger
    from voltpipe.registry import open_registry
    from voltpipe.reports import decision_markdown

    with exit_on_user_error():
        champion = open_registry(registry_uri).get(model_name) if registry_uri else None
        result = evaluate_challenger(
            model.path,
            test_data.path,
            # On Vertex a registered version lives in gs://, mounted at /gcs/ in the step.
            champion_dir=champion.uri.replace("gs://", "/gcs/", 1) if champion else None,
            champion_version=champion.version if champion else None,
            metric=gate_metric,
            min_improvement=min_improvement,
        )
    for key, value in result.metrics.items():
        metrics.log_metric(key, value)
    write_json_atomic(metrics.path, result.metrics)  # readable without the run; cacheable
    write_json_atomic(evaluation.path, result.to_dict())
    write_text_atomic(decision_report.path, decision_markdown(result))
    evaluation.metadata.update(
        {"promote": result.decision.promote, "reason": result.decision.reason}
    )
    print(f"voltpipe: {result.decision.reason}")
    return namedtuple("EvaluateOutputs", ["promote"])(result.decision.promote)
