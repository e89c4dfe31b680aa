"""voltpipe's reusable KFP components (installed as ``voltpipe.components``).

Each component is a thin lightweight-Python wrapper over a plain function in the ``voltpipe``
core. Import them into your own pipelines; ``with_image`` points one at your project's image.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kfp.dsl.base_component import BaseComponent
from kfp.dsl.pipeline_task import PipelineTask

from voltpipe.components.batch_predict import batch_predict
from voltpipe.components.deploy import deploy
from voltpipe.components.drift import drift
from voltpipe.components.evaluate import evaluate
from voltpipe.components.extract import extract
from voltpipe.components.extract_window import extract_window
from voltpipe.components.keep_champion import keep_champion
from voltpipe.components.register import register
from voltpipe.components.train import train
from voltpipe.components.tune import tune
from voltpipe.components.validate import validate

__all__ = [
    "CATALOGUE",
    "batch_predict",
    "deploy",
    "drift",
    "evaluate",
    "extract",
    "extract_window",
    "keep_champion",
    "register",
    "train",
    "tune",
    "validate",
    "with_image",
    "with_resources",
]

CATALOGUE: dict[str, BaseComponent] = {
    "extract": extract,
    "validate": validate,
    "tune": tune,
    "train": train,
    "evaluate": evaluate,
    "register": register,
    "deploy": deploy,
    "extract_window": extract_window,
    "drift": drift,
    "keep_champion": keep_champion,
    "batch_predict": batch_predict,
}


def with_image(component: BaseComponent, image: str) -> BaseComponent:
    """Returns a copy of `component` whose container runs `image` (the config's ``image:``)."""
    clone = copy.deepcopy(component)
    container = clone.component_spec.implementation.container
    if container is None:
        raise ValueError(f"component {component.name!r} has no container to set an image on")
    container.image = image
    return clone


def with_resources(task: PipelineTask, resources: Mapping[str, Any]) -> PipelineTask:
    """Sets a task's machine (``{cpu, memory, accelerator_type, accelerator_count}``, each
    optional) in the pipeline spec; Vertex picks the machine that fits. Unset: Vertex's default.
    """
    if resources.get("cpu") is not None:
        task.set_cpu_limit(str(resources["cpu"]))
    if resources.get("memory") is not None:
        task.set_memory_limit(str(resources["memory"]))
    if resources.get("accelerator_type") is not None:
        task.set_accelerator_type(str(resources["accelerator_type"]))
        task.set_accelerator_limit(int(resources.get("accelerator_count") or 1))
    return task
