"""The training pipeline: extract -> validate -> train -> evaluate -> register.

No `from __future__ import annotations` here: KFP reads the pipeline signature's real types.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from kfp import dsl

from voltpipe.components import (
    deploy,
    evaluate,
    extract,
    keep_champion,
    register,
    train,
    tune,
    validate,
    with_image,
)
from voltpipe.config import VoltpipeConfig
from voltpipe.data.sql import checked
from voltpipe.pipelines import sized


def training_pipeline(cfg: VoltpipeConfig, *, retraining: bool = False) -> Callable[..., Any]:
    """Builds the training pipeline for `cfg`; every config value is a parameter default.

    Evaluate, register and deploy are never cached (the gate reads the champion; register and
    deploy write the registry). With `retraining` (the monitoring pipeline's branch), train is
    not cached either: drift was found, so a retrain must really happen.
    """
    ops = {
        c.name: with_image(c, cfg.image)
        for c in (extract, validate, tune, train, evaluate, register, deploy, keep_champion)
    }
    task_params = {
        "time_column": cfg.time_column,
        "forecasting": cfg.forecasting.model_dump(exclude_none=True),
        "anomaly": cfg.anomaly.model_dump(exclude_none=True),
        "clustering": cfg.clustering.model_dump(mode="json", exclude_none=True),
        "embedding": cfg.embedding.model_dump(exclude_none=True),
    }
    task_params = {k: v for k, v in task_params.items() if v is not None}
    # Evaluation options are compiled in as constants (KFP constants cannot be None).
    evaluation_options = cfg.evaluation.model_dump(exclude_none=True)
    deploy_params = cfg.deploy.model_dump(exclude={"gate"}, exclude_none=True)
    vertex_params = {
        k: v
        for k, v in {
            "project": cfg.vertex.project,
            "location": cfg.vertex.location,
            "api_endpoint": cfg.vertex.api_endpoint,
            "labels": cfg.vertex.labels,
        }.items()
        if v is not None
    }
    bigquery = cfg.bigquery.model_dump(exclude_none=True)
    split = cfg.split.model_dump(exclude_none=True)
    split["fractions"] = list(split["fractions"])

    class Outputs(NamedTuple):
        metrics: dsl.Metrics
        evaluation: dsl.Artifact
        registration: dsl.Artifact

    @dsl.pipeline(
        name=f"{cfg.name}-training", description=f"Train, gate and register the {cfg.name} model."
    )
    def pipeline(
        warehouse: str = cfg.warehouse_uri,
        query: str = checked(cfg.sql),
        query_parameters: dict = cfg.typed_parameters,
        label: str = cfg.label,
        task: str = cfg.task,
        split: dict = split,
        features: list = cfg.features or [],
        exclude: list = cfg.exclude,
        model_params: dict = cfg.model.model_dump(exclude_none=True),
        training_params: dict = cfg.training.model_dump(exclude_none=True),
        registry_uri: str = cfg.registry_uri,
        model_name: str = cfg.name,
        gate_metric: str = cfg.gate_metric,
        min_improvement: float = cfg.deploy.gate.min_improvement,
        tracking_uri: str = cfg.tracking_uri,
        warehouse_options: dict = bigquery,
        reference_rows: int = cfg.monitoring.reference_sample_rows,
        expected_schema: dict = cfg.validation.schema_ or {},
        champion_schema_registry: str = cfg.registry_uri
        if cfg.validation.compare_with_champion
        else "",
        task_params: dict = task_params,
        tuning: dict = cfg.tuning.model_dump(exclude_none=True),
        deploy_target: str = cfg.deploy.target,
        deploy_params: dict = deploy_params,
        vertex_params: dict = vertex_params,
    ) -> Outputs:
        data = ops["extract"](
            warehouse=warehouse,
            query=query,
            query_parameters=query_parameters,
            split=split,
            warehouse_options=warehouse_options,
        ).set_display_name("extract")
        sized(data, cfg, "extract")
        checked = ops["validate"](
            train=data.outputs["train"],
            valid=data.outputs["valid"],
            test=data.outputs["test"],
            label=label,
            task=task,
            features=features,
            expected_schema=expected_schema,
            registry_uri=champion_schema_registry,
            model_name=model_name,
            task_params=task_params,
        ).set_display_name("validate")
        sized(checked, cfg, "validate")
        # Tuning is decided when the pipeline is built: its best hyperparameters feed train.
        tuned_params = {}
        if cfg.tuning.enabled:
            tuned = (
                ops["tune"](
                    train_data=data.outputs["train"],
                    valid_data=data.outputs["valid"],
                    label=label,
                    task=task,
                    tuning=tuning,
                    features=features,
                    exclude=exclude,
                    model_params=model_params,
                    training_params=training_params,
                    task_params=task_params,
                    tracking_uri=tracking_uri,
                    vertex=cfg.vertex.model_dump(exclude_none=True),
                    image=cfg.image,
                    run_name=f"{cfg.name}-tuning",
                )
                .set_display_name("tune")
                .after(checked)
            )
            sized(tuned, cfg, "tune")
            tuned_params["best_params"] = tuned.outputs["best_params"]
        trained = (
            ops["train"](
                train_data=data.outputs["train"],
                valid_data=data.outputs["valid"],
                label=label,
                task=task,
                features=features,
                exclude=exclude,
                model_params=model_params,
                training_params=training_params,
                task_params=task_params,
                vertex=cfg.vertex.model_dump(exclude_none=True),
                image=cfg.image,
                **tuned_params,
            )
            .set_display_name("train")
            .after(checked)
        )
        sized(trained, cfg, "train")
        if retraining:
            trained.set_caching_options(False)
        evaluated = ops["evaluate"](
            model=trained.outputs["model"],
            test_data=data.outputs["test"],
            valid_data=data.outputs["valid"],
            registry_uri=registry_uri,
            model_name=model_name,
            gate_metric=gate_metric,
            min_improvement=min_improvement,
            gate=cfg.deploy.gate.model_dump(exclude={"metric", "min_improvement"}),
            tracking_uri=tracking_uri,
            **evaluation_options,
        ).set_display_name("evaluate")
        sized(evaluated, cfg, "evaluate")
        # Never cached: the gate compares with the champion as it is now, which its inputs
        # do not show (a cached verdict would be against an older champion).
        evaluated.set_caching_options(False)
        registered = ops["register"](
            model=trained.outputs["model"],
            evaluation=evaluated.outputs["evaluation"],
            statistics=checked.outputs["statistics"],
            schema=checked.outputs["schema"],
            registry_uri=registry_uri,
            model_name=model_name,
            query=query,
            query_parameters=query_parameters,
            tracking_uri=tracking_uri,
            train_data=data.outputs["train"],
            reference_rows=reference_rows,
        ).set_display_name("register")
        sized(registered, cfg, "register")
        # Steps with side effects are never served from cache (a cached register or deploy
        # would replay an old registration against a registry that has moved on).
        registered.set_caching_options(False)
        # A model that fails the gate is never deployed. (The Else branch is also what lets
        # kfp.local 2.17 resolve the condition: a lone dsl.If is skipped there.)
        with dsl.If(evaluated.outputs["promote"] == True, name="promoted"):  # noqa: E712
            # The only place the champion alias moves: after the smoke test, compare-and-swap.
            deployed = (
                ops["deploy"](
                    registration=registered.outputs["registration"],
                    registry_uri=registry_uri,
                    model_name=model_name,
                    target=deploy_target,
                    deploy_params=deploy_params,
                    vertex_params=vertex_params,
                )
                .set_display_name("deploy")
                .set_caching_options(False)
            )
            sized(deployed, cfg, "deploy")
        with dsl.Else(name="not-promoted"):
            kept = ops["keep-champion"](registry_uri=registry_uri, model_name=model_name)
            kept.set_display_name("keep-champion").set_caching_options(False)
            sized(kept, cfg, "keep_champion")
        return Outputs(
            metrics=evaluated.outputs["metrics"],
            evaluation=evaluated.outputs["evaluation"],
            registration=registered.outputs["registration"],
        )

    return pipeline
