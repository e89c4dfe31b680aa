"""Choosing the tf.distribute strategy from the devices and the cluster (TF_CONFIG).

The entry point reads ``TF_CONFIG`` and counts GPUs, then hands them here; nothing in this
module reads the environment. Under a strategy every input pipeline reads only its share of
the row groups (``distributed_datasets``); the table families refuse several replicas
(``check_replicas``).
"""

from __future__ import annotations

import json
import math
from typing import Any

TABLE_FAMILIES = ("auto", "linear", "gbdt")  # as ``train.TABLE_FAMILIES``: no Keras fit
FEATURE_PATH_FAMILIES = ("auto", "gbdt", "statistical")  # as ``problems.``: forecasting
VALID_BATCH = 2048  # as ``problems.VALID_BATCH``


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


def distributed_datasets(
    strategy: Any, problem: Any, tp: Any, *, n_train: int, n_valid: int, min_steps: int = 1
) -> tuple[Any, Any, int]:
    """The train and valid inputs of `problem` under `strategy`, and the steps of an epoch.

    Inputs go through ``strategy.distribute_datasets_from_function``: every input pipeline
    (one a worker) builds its own dataset from its share of the train row groups
    (``InputContext.input_pipeline_id`` of ``num_input_pipelines``; disjoint, covering all),
    repeated, so that every replica runs the same number of steps however uneven the shares.
    A train element holds ``steps_per_execution`` per-replica batches of ``batch_size /
    replicas`` rows (``multi_step_model`` runs them as that many optimizer steps; only full
    elements: a pass drops its last, partial one). An epoch is one pass of the global batch
    over the train rows (or `min_steps`), in Keras steps of ``steps_per_execution`` each.
    Every pipeline reads the whole valid split (the validation loss is the single-process one),
    in batches that give every replica of the first step the same number of rows (Keras
    averages the first batch across replicas to build the model).
    """
    from voltpipe.modelling.inputs import Shard

    replicas = int(strategy.num_replicas_in_sync)
    spe = int(tp.steps_per_execution)
    per_replica = max(1, math.ceil(tp.batch_size / replicas))

    def train_fn(ctx: Any) -> Any:
        shard = Shard(ctx.input_pipeline_id, ctx.num_input_pipelines)
        ds = problem.dataset("train", tp, shard=shard, batch=per_replica * spe, drop_remainder=True)
        return ds.repeat()

    def valid_fn(ctx: Any) -> Any:
        local = max(1, replicas // ctx.num_input_pipelines)  # replicas this pipeline feeds
        batch = math.ceil(max(tp.batch_size, VALID_BATCH) / replicas)
        return problem.dataset("valid", tp, batch=max(1, min(batch, n_valid // local)))

    train = strategy.distribute_datasets_from_function(train_fn)
    valid = strategy.distribute_datasets_from_function(valid_fn) if problem.has_valid else None
    steps = max(min_steps, math.ceil(n_train / (per_replica * replicas)))
    return train, valid, max(1, math.ceil(steps / spe))


def multi_step_model(core: Any, steps: int) -> Any:
    """`core` wrapped so that one train step runs `steps` optimizer steps, one per slice of
    its batch (``distributed_datasets`` feeds `steps` per-replica batches an element).

    Keras' own ``steps_per_execution`` loops in a ``tf.while_loop`` with a ``tf.cond`` around
    ``strategy.run``, which fails under a MirroredStrategy or MultiWorkerMirroredStrategy
    ("You must feed a value for placeholder tensor", keras-team/keras#19246: the optimizer's
    ``merge_call`` inside a conditional); here the steps are unrolled in one ``strategy.run``.
    The model is compiled with ``steps_per_execution=1``; ``.inner`` is `core`. Used under
    every strategy, also with one step: it builds from the first replica's batch instead of
    Keras' cross-replica average of it, which fails on dict inputs under
    MultiWorkerMirroredStrategy (overrides Keras' private ``_maybe_symbolic_build``; keras is
    pinned below 4).
    """
    import keras
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()  # called in the strategy's scope
    multi_worker = False
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        spec = strategy.cluster_resolver.cluster_spec().as_dict()
        multi_worker = sum(len(spec.get(r, [])) for r in ("chief", "worker")) > 1

    class MultiStep(keras.Model):
        def __init__(self, inner: Any, n: int) -> None:
            super().__init__(name=f"{inner.name}_steps")
            self.inner, self.n = inner, n

        def call(self, x: Any, training: bool = False) -> Any:
            return self.inner(x, training=training)

        def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
            # Keras averages a first batch across the replicas (a MEAN reduce) only to learn
            # its shapes, and MultiWorkerMirroredStrategy's reduce cannot take a nested batch
            # ("Attempt to convert a value ({'x': PerReplica...}) with an unsupported type
            # dict"): the shapes of the first replica's local values are the same.
            if iterator is not None:
                for _, _, it in iterator:
                    data_batch = tf.nest.map_structure(
                        lambda v: (
                            self.distribute_strategy.experimental_local_results(v)[0]
                            if isinstance(v, tf.distribute.DistributedValues)
                            else v
                        ),
                        next(it),
                    )
                    break
            with self.distribute_strategy.scope():
                self._symbolic_build(data_batch=data_batch)

        def train_step(self, data: Any) -> Any:
            x, y, w = keras.utils.unpack_x_y_sample_weight(data)
            size = tf.shape(y)[0] // self.n
            logs = None
            for k in range(self.n):
                part = tf.nest.map_structure(
                    lambda t, k=k: t[k * size : (k + 1) * size],
                    (x, y) if w is None else (x, y, w),
                )
                logs = super().train_step(part)
            return self._per_replica(logs)

        def test_step(self, data: Any) -> Any:
            return self._per_replica(super().test_step(data))

        def _per_replica(self, logs: Any) -> Any:
            # Across workers Keras averages a step's logs with reduce("MEAN", v, axis=0),
            # which needs an axis: the scalars go out as one-element vectors.
            if not multi_worker:
                return logs
            return {k: tf.reshape(v, [1]) for k, v in logs.items()}

    return MultiStep(core, steps)


def check_replicas(task: str, family: str | None, replicas: int) -> None:
    """Refuses a family that trains on one machine when the job has several replicas.

    Those are the table families (gbdt, linear, auto for classification and regression) and
    the forecasting feature path (auto, gbdt, statistical): LightGBM trains across machines
    only with its own network setup (a machine list and open ports between the machines),
    which voltpipe does not configure; the linear and statistical models are single-machine.
    Such a job would only train the same model on every replica.

    Raises:
        ConfigError: `replicas` > 1 for one of those families.
    """
    from voltpipe.config import DEFAULT_FAMILY
    from voltpipe.errors import ConfigError

    family = family or DEFAULT_FAMILY.get(task)
    single = TABLE_FAMILIES if task in ("classification", "regression") else ()
    if task == "forecasting":
        single = FEATURE_PATH_FAMILIES
    if replicas > 1 and family in single:
        raise ConfigError(
            f"training.vertex.replica_count is {replicas}, but model.family {family!r} trains on "
            "one machine (LightGBM's distributed mode needs its own network setup between the "
            "machines, which voltpipe does not configure; the linear and statistical models "
            "are single-machine): set training.vertex.replica_count: 1, or a Keras family "
            "(mlp for classification/regression; cnn, lstm, gru, transformer or mlp for "
            "forecasting) to train on several replicas"
        )
