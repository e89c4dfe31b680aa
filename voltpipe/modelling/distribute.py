"""Choosing the tf.distribute strategy from the devices and the cluster (TF_CONFIG).

The entry point reads ``TF_CONFIG`` and counts GPUs, then hands them here; nothing in this
module reads the environment.
"""

from __future__ import annotations

import json
from typing import Any


def cluster_size(tf_config: str | None) -> int:
    """Machines in the TF_CONFIG cluster (chief + workers); 1 without one."""
    if not tf_config:
        return 1
    try:
        cluster = json.loads(tf_config).get("cluster", {})
    except ValueError:
        return 1
    return sum(len(cluster.get(role, [])) for role in ("chief", "master", "worker"))


def is_chief(tf_config: str | None) -> bool:
    """Whether this machine writes the model (the chief, or the only machine)."""
    if cluster_size(tf_config) <= 1:
        return True
    task = json.loads(tf_config or "{}").get("task", {})
    return task.get("type") in ("chief", "master") or (
        task.get("type") == "worker"
        and task.get("index") == 0
        and "chief" not in json.loads(tf_config or "{}").get("cluster", {})
    )


def strategy_name(tf_config: str | None, n_gpus: int) -> str:
    """``multi_worker`` for a cluster of several machines, ``mirrored`` for several GPUs on one,
    else ``default``."""
    if cluster_size(tf_config) > 1:
        return "multi_worker"
    if n_gpus > 1:
        return "mirrored"
    return "default"


def make_strategy(name: str) -> Any:
    """The strategy for `name` (None for ``default``: Keras' default strategy)."""
    import tensorflow as tf

    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return None
