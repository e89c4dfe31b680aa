"""The monitoring pipeline: extract the current window -> drift -> on drift, retrain (gated).

No `from __future__ import annotations` here: KFP reads the pipeline signature's real types.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from kfp import dsl

from voltpipe.components import drift, extract_window, keep_champion, with_image
from voltpipe.config import VoltpipeConfig
from voltpipe.data.params import normalize_parameters
from voltpipe.data.sql import checked
from voltpipe.pipelines import sized


def monitoring_pipeline(cfg: VoltpipeConfig) -> Callable[..., Any]:
    """Builds the monitoring pipeline for `cfg`; the retraining branch is the training pipeline
    (as a sub-pipeline) with `monitoring.retrain_query_parameters` laid over the query's."""
    from voltpipe.pipelines.training import training_pipeline

    window_op = with_image(extract_window, cfg.image)
    drift_op = with_image(drift, cfg.image)
    keep_op = with_image(keep_champion, cfg.image)
    retrain = (
        training_pipeline(cfg.for_retraining(), retraining=True)
        if cfg.monitoring.retrain_on_drift
        else None
    )
    alerts = cfg.monitoring.alerts
    drift_options = {
        "multivariate": cfg.monitoring.multivariate.model_dump(),
        "performance_estimation": cfg.monitoring.performance_estimation.model_dump(
            exclude_none=True
        ),
        **(
            {"classification_threshold": cfg.evaluation.classification_threshold}
            if cfg.evaluation.classification_threshold is not None
            else {}
        ),
        "pushdown_rows": cfg.monitoring.pushdown_rows,
    }

    class Outputs(NamedTuple):
        details: dsl.Artifact

    @dsl.pipeline(
        name=f"{cfg.name}-monitoring",
        description=f"Watch the {cfg.name} champion for drift and retrain when it drifts.",
    )
    def pipeline(
        warehouse: str = cfg.warehouse_uri,
        current_query: str = checked(cfg.monitoring_sql),
        current_query_parameters: dict = normalize_parameters(
            cfg.monitoring.current_query_parameters
        ),
        registry_uri: str = cfg.registry_uri,
        model_name: str = cfg.name,
        thresholds: dict = cfg.monitoring.thresholds.model_dump(),
        webhook_url: str = alerts.webhook_url or "",
        alert_on_drift: bool = "drift" in alerts.on,
        warehouse_options: dict = cfg.bigquery.model_dump(exclude_none=True),
        drift_options: dict = drift_options,
    ) -> Outputs:
        window = window_op(
            warehouse=warehouse,
            query=current_query,
            query_parameters=current_query_parameters,
            warehouse_options=warehouse_options,
        ).set_display_name("extract-window")
        sized(window, cfg, "extract_window")
        # The champion changes under this step; its inputs alone cannot say whether to reuse it.
        checked = (
            drift_op(
                window=window.outputs["window"],
                registry_uri=registry_uri,
                model_name=model_name,
                thresholds=thresholds,
                webhook_url=webhook_url,
                alert_on_drift=alert_on_drift,
                options=drift_options,
                warehouse=warehouse,
                query=current_query,
                query_parameters=current_query_parameters,
                warehouse_options=warehouse_options,
            )
            .set_display_name("drift")
            .set_caching_options(False)
        )
        sized(checked, cfg, "drift")
        # The retrained model's registration is read from the registry by the runner:
        # kfp.local 2.17 cannot return a branch's artifact through dsl.OneOf, and it resolves a
        # lone dsl.If's condition only when an Else branch is present.
        with dsl.If(checked.outputs["drift_detected"] == True, name="drift-detected"):  # noqa: E712
            if retrain is not None:
                retrain().set_display_name("retrain")
            else:
                kept = keep_op(registry_uri=registry_uri, model_name=model_name)
                sized(kept.set_caching_options(False), cfg, "keep_champion")
        with dsl.Else(name="no-drift"):
            kept = keep_op(registry_uri=registry_uri, model_name=model_name)
            sized(kept.set_caching_options(False), cfg, "keep_champion")
        return Outputs(details=checked.outputs["details"])

    return pipeline
