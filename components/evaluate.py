"""Evaluate: test metrics, slices and plots, and the champion/challenger gate on the same test data."""

from typing import NamedTuple, Optional

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
    classification_metrics: dsl.Output[dsl.ClassificationMetrics],
    plots: dsl.Output[dsl.HTML],
    min_improvement: float = 0.0,
    slice_columns: Optional[list] = None,  # noqa: UP045 (KFP cannot read `X | None`)
    classification_threshold: Optional[float] = None,  # noqa: UP045
    gate: dict = {},  # noqa: B006 - deploy.gate (confidence, bootstrap_samples, slices, ...)
    tracking_uri: str = "",
    valid_data: Optional[dsl.Input[dsl.Dataset]] = None,  # noqa: UP045
) -> NamedTuple("EvaluateOutputs", [("promote", bool)]):
    """Scores the challenger and the current champion on the test split and applies the gate.

    `metrics` holds the headline metrics; `evaluation` the full result (precision/recall,
    confusion matrix, ROC, slice metrics per `slice_columns` value, the decision: verdict,
    interval, per-slice comparison, test data hash, champion version);
    `classification_metrics` the confusion matrix and ROC curve (classification only); `plots`
    the ROC/confusion matrix or the residual plots. Forecasters take the past of their first
    test forecasts from `valid_data` (the valid split), so every test row is scored.
    """
    from collections import namedtuple

    from voltpipe.data.io import write_json_atomic, write_text_atomic
    from voltpipe.errors import exit_on_user_error
    from voltpipe.evaluation.evaluate import decision_report_markdown, evaluate_challenger
    from voltpipe.registry import open_registry
    from voltpipe.registry.health import usable_champion
    from voltpipe.tracking import log_comparison

    with exit_on_user_error():
        # A champion that cannot be served is no bar (it is reported, and may be replaced).
        check = usable_champion(open_registry(registry_uri), model_name) if registry_uri else None
        champion = check.champion if check else None
        if check and check.problem:
            print(f"voltpipe: {check.problem}")
        result = evaluate_challenger(
            model.path,
            test_data.path,
            # On Vertex a registered version lives in gs://, mounted at /gcs/ in the step.
            champion_dir=champion.uri.replace("gs://", "/gcs/", 1) if champion else None,
            champion_version=champion.version if champion else None,
            metric=gate_metric,
            min_improvement=min_improvement,
            slice_columns=slice_columns or [],
            classification_threshold=classification_threshold,
            gate=dict(gate),
            valid_path=valid_data.path if valid_data is not None else None,
        )
    for key, value in result.metrics.items():
        metrics.log_metric(key, value)
    write_json_atomic(metrics.path, result.metrics)  # readable without the run; cacheable
    write_json_atomic(
        evaluation.path, {**result.to_dict(), **(check.evaluation_fields() if check else {})}
    )
    write_text_atomic(decision_report.path, decision_report_markdown(result))
    cm = result.details.get("confusion_matrix")
    curves = {}
    if cm is not None:
        classification_metrics.log_confusion_matrix(cm["categories"], cm["matrix"])
        roc = result.details["roc"]
        classification_metrics.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
        curves = {"confusion_matrix": cm, "roc": roc}
    # Always written: kfp.local treats a missing output file as a cache miss.
    write_json_atomic(classification_metrics.path, curves)
    write_text_atomic(
        plots.path, result.plots_html or "<!doctype html><p>no plots for this task</p>"
    )
    evaluation.metadata.update(
        {
            "promote": result.decision.promote,
            "verdict": result.decision.verdict,
            "reason": result.decision.reason,
        }
    )
    log_comparison(tracking_uri, model_name, result.decision.to_dict())
    print(f"voltpipe: {result.decision.reason}")
    return namedtuple("EvaluateOutputs", ["promote"])(result.decision.promote)
