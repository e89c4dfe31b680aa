"""voltpipe's pipelines (installed as ``voltpipe.pipelines``), built from a config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voltpipe.config import VoltpipeConfig

PIPELINES = ("training", "monitoring", "prediction")


def sized(task: Any, cfg: VoltpipeConfig, step: str) -> Any:
    """`task` with the machine ``resources.<step>`` asks for (nothing set: Vertex's default)."""
    from voltpipe.components import with_resources

    return with_resources(task, cfg.resources.for_step(step).model_dump(exclude_none=True))


def build_pipeline(name: str, cfg: VoltpipeConfig) -> Callable[..., Any]:
    """Returns the KFP pipeline `name` with its parameter defaults taken from `cfg`."""
    if name == "training":
        from voltpipe.pipelines.training import training_pipeline

        return training_pipeline(cfg)
    if name == "monitoring":
        from voltpipe.pipelines.monitoring import monitoring_pipeline

        return monitoring_pipeline(cfg)
    if name == "prediction":
        from voltpipe.pipelines.prediction import prediction_pipeline

        return prediction_pipeline(cfg)
    raise ValueError(f"unknown pipeline {name!r}; available: {', '.join(PIPELINES)}")
