"""Vertex AI backends of tuning and training: a HyperparameterTuningJob whose trials run
``python -m voltpipe.modelling.trial`` in the project's image, the best trial fetched back as
best params, and training as a CustomJob sized by ``training.vertex``.

google-cloud-aiplatform is imported here only, inside the functions.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from voltpipe.config import TrainingVertexConfig, TuningConfig
from voltpipe.errors import ConfigError, DataError
from voltpipe.modelling.search_space import (
    decode_choice,
    encode_choice,
    is_int_range,
    nest_params,
)

if TYPE_CHECKING:
    from voltpipe.modelling.train import TrainResult

TRIAL_COMMAND = ["python", "-m", "voltpipe.modelling.trial"]
METRIC = "val_loss"


def init_vertex(vertex: dict[str, Any]) -> Any:
    """Initialises and returns the aiplatform SDK for the config's ``vertex`` section (a dict).

    An ``http://`` api_endpoint (a local test server) uses anonymous credentials and REST.
    """
    from google.cloud import aiplatform

    kwargs: dict[str, Any] = {"project": vertex.get("project"), "location": vertex.get("location")}
    if vertex.get("staging_bucket"):
        kwargs["staging_bucket"] = vertex["staging_bucket"]
    endpoint = vertex.get("api_endpoint")
    if endpoint:
        kwargs["api_endpoint"] = endpoint
        if endpoint.startswith("http://"):
            from google.auth.credentials import AnonymousCredentials

            kwargs["credentials"] = AnonymousCredentials()
            kwargs["api_transport"] = "rest"
    aiplatform.init(**kwargs)
    return aiplatform


def parameter_specs(space: dict[str, Any]) -> dict[str, Any]:
    """The search space as aiplatform parameter specs (the same space Optuna searches).

    Ranges become Double/Integer specs (log scale with ``log: true``); lists of numbers
    Discrete specs; other lists (e.g. hidden_units) Categorical specs of their JSON text.
    """
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    specs: dict[str, Any] = {}
    for key, dom in space.items():
        if isinstance(dom, dict):
            scale = "log" if dom.get("log") else "linear"
            if is_int_range(key, dom):
                specs[key] = hpt.IntegerParameterSpec(
                    min=int(dom["min"]), max=int(dom["max"]), scale=scale
                )
            else:
                specs[key] = hpt.DoubleParameterSpec(
                    min=float(dom["min"]), max=float(dom["max"]), scale=scale
                )
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in dom):
            specs[key] = hpt.DiscreteParameterSpec(
                values=sorted(float(v) for v in set(dom)), scale="linear"
            )
        else:
            specs[key] = hpt.CategoricalParameterSpec(values=[str(encode_choice(v)) for v in dom])
    return specs


def worker_pool_specs(
    image: str, machine: TrainingVertexConfig | dict[str, Any], args: list[str]
) -> list[dict[str, Any]]:
    """One chief pool, plus a worker pool when ``replica_count`` > 1 (multi-worker training)."""
    m = machine if isinstance(machine, TrainingVertexConfig) else TrainingVertexConfig(**machine)
    machine_spec: dict[str, Any] = {"machine_type": m.machine_type}
    if m.accelerator_type and m.accelerator_count:
        machine_spec["accelerator_type"] = m.accelerator_type
        machine_spec["accelerator_count"] = m.accelerator_count
    container = {"image_uri": image, "command": TRIAL_COMMAND, "args": args}
    pools = [{"machine_spec": machine_spec, "replica_count": 1, "container_spec": container}]
    if m.replica_count > 1:
        pools.append(
            {
                "machine_spec": dict(machine_spec),
                "replica_count": m.replica_count - 1,
                "container_spec": container,
            }
        )
    return pools


def trainer_args(
    *,
    train_uri: str,
    valid_uri: str,
    label: str,
    task: str,
    params: dict[str, Any],
    output_dir: str = "",
) -> list[str]:
    """Arguments of ``voltpipe.modelling.trial`` (params: features, exclude, model_params,
    training_params, task_params)."""
    args = [
        f"--train={train_uri}",
        f"--valid={valid_uri}",
        f"--label={label}",
        f"--task={task}",
        f"--params={json.dumps(params, sort_keys=True)}",
        f"--metric-tag={METRIC}",
    ]
    if output_dir:
        args.append(f"--output-dir={output_dir}")
    return args


def submit_tuning_job(
    *,
    vertex: dict[str, Any],
    image: str,
    machine: TrainingVertexConfig | dict[str, Any],
    train_uri: str,
    valid_uri: str,
    label: str,
    task: str,
    params: dict[str, Any],
    tuning: TuningConfig | dict[str, Any],
    display_name: str,
    sync: bool = True,
) -> Any:
    """Creates (and with `sync` waits for) a HyperparameterTuningJob over ``tuning.space``; its
    trials (and it) carry `vertex.encryption_key` (CMEK) and run on `vertex.network` when set.

    ``bayesian`` uses Vertex's default (Bayesian optimisation), ``random`` its random search;
    Vertex has no Hyperband, so ``hyperband`` runs as ``bayesian`` there.
    """
    cfg = tuning if isinstance(tuning, TuningConfig) else TuningConfig(**tuning)
    if not cfg.space:
        raise DataError("tuning.space is empty: give at least one key to search")
    aiplatform = init_vertex(vertex)
    trial_job = aiplatform.CustomJob(
        display_name=f"{display_name}-trial",
        worker_pool_specs=worker_pool_specs(
            image,
            machine,
            trainer_args(
                train_uri=train_uri, valid_uri=valid_uri, label=label, task=task, params=params
            ),
        ),
        staging_bucket=vertex.get("staging_bucket"),
        encryption_spec_key_name=vertex.get("encryption_key") or None,
    )
    job = aiplatform.HyperparameterTuningJob(
        display_name=display_name,
        custom_job=trial_job,
        metric_spec={METRIC: "minimize"},
        parameter_spec=parameter_specs(cfg.space),
        max_trial_count=cfg.max_trials,
        parallel_trial_count=cfg.parallel_trials,
        search_algorithm="random" if cfg.algorithm == "random" else None,
        labels=vertex.get("labels") or None,
        encryption_spec_key_name=vertex.get("encryption_key") or None,
    )
    _run(job, vertex, sync, "tuning job")
    return job


def _value(v: Any) -> Any:
    return v if not hasattr(v, "string_value") else (v.string_value or v.number_value)


def best_trial_params(job: Any, *, metric: str = METRIC, goal: str = "minimize") -> dict[str, Any]:
    """The best finished trial of a HyperparameterTuningJob as voltpipe best params.

    Args:
        job: an ``aiplatform.HyperparameterTuningJob`` or its resource name.
        metric: the metric id the trials report.
        goal: ``minimize`` or ``maximize``.

    Returns:
        ``{"model", "training", "forecasting", "metric", "value", "trial", "backend"}`` as the
        local tuner writes it (categorical values decoded, e.g. hidden_units back to a list).

    Raises:
        DataError: no trial succeeded with a final value of `metric`.
    """
    if isinstance(job, str):
        from google.cloud import aiplatform

        job = aiplatform.HyperparameterTuningJob.get(job)
    scored = []
    for trial in job.trials:
        state = getattr(trial.state, "name", str(trial.state))
        if state != "SUCCEEDED" or not trial.final_measurement:
            continue
        values = [m.value for m in trial.final_measurement.metrics if m.metric_id == metric]
        if values:
            scored.append((float(values[0]), trial))
    if not scored:
        raise DataError(
            f"the tuning job {job.resource_name} has no succeeded trial reporting {metric!r}"
        )
    value, best = (min if goal == "minimize" else max)(scored, key=lambda s: s[0])
    flat = {p.parameter_id: decode_choice(p.parameter_id, _value(p.value)) for p in best.parameters}
    return {
        **nest_params(flat),
        "metric": metric,
        "value": value,
        "trial": best.id,
        "backend": "vertex",
        "job": job.resource_name,
    }


def vertex_trials_table(job: Any, *, metric: str = METRIC) -> list[dict[str, Any]]:
    """Every trial of a tuning job as rows (trial, state, value, parameters) for the report."""
    rows = []
    for trial in job.trials:
        values = [
            m.value
            for m in (trial.final_measurement.metrics if trial.final_measurement else [])
            if m.metric_id == metric
        ]
        rows.append(
            {
                "trial": trial.id,
                "state": getattr(trial.state, "name", str(trial.state)),
                "value": float(values[0]) if values else float("nan"),
                **{p.parameter_id: _value(p.value) for p in trial.parameters},
            }
        )
    return rows


def run_custom_training_job(
    *,
    vertex: dict[str, Any],
    image: str,
    machine: TrainingVertexConfig | dict[str, Any],
    train_uri: str,
    valid_uri: str,
    label: str,
    task: str,
    params: dict[str, Any],
    base_output_dir: str,
    display_name: str,
    output_dir: str = "",
    sync: bool = True,
) -> Any:
    """Runs training as a Vertex AI CustomJob; the chief saves the model to `output_dir`, by
    default ``<base_output_dir>/model`` (Vertex's AIP_MODEL_DIR). Several replicas train with
    MultiWorkerMirroredStrategy, several GPUs on one machine with MirroredStrategy (chosen
    in the trainer from TF_CONFIG and the devices)."""
    aiplatform = init_vertex(vertex)
    job = aiplatform.CustomJob(
        display_name=display_name,
        worker_pool_specs=worker_pool_specs(
            image,
            machine,
            trainer_args(
                train_uri=train_uri,
                valid_uri=valid_uri,
                label=label,
                task=task,
                params=params,
                output_dir=output_dir,
            ),
        ),
        staging_bucket=vertex.get("staging_bucket"),
        base_output_dir=base_output_dir,
        labels=vertex.get("labels") or None,
        encryption_spec_key_name=vertex.get("encryption_key") or None,
    )
    _run(job, vertex, sync, "training job")
    return job


def trainer_message(message: str) -> str:
    """The trainer's own message in a failed job's error.

    Vertex AI reports a failed replica as ``The replica workerpool0-0 exited with a non-zero
    status of 1. Termination reason: Error.`` followed by the tail of the container's log (and a
    link to the logs); a voltpipe trainer's one-line error is the log line with the error marker.
    Without such a line, the message is returned as it is.
    """
    from voltpipe.errors import ERROR_MARKER

    marked = [ln for ln in message.splitlines() if ERROR_MARKER in ln]
    if marked:
        return marked[-1].split(ERROR_MARKER, 1)[1].strip()
    return message.strip()


def _run(job: Any, vertex: dict[str, Any], sync: bool, what: str) -> None:
    """Runs `job` (as `vertex.service_account`, on `vertex.network` when set); with `sync`, a
    job that ends FAILED raises.

    Raises:
        DataError: the job failed, with the trainer's own message when the job's error has one
            (see `trainer_message`), else the job's error message.
    """
    run_kwargs: dict[str, Any] = {"sync": sync}
    if vertex.get("service_account"):
        run_kwargs["service_account"] = vertex["service_account"]
    if vertex.get("network"):
        run_kwargs["network"] = vertex["network"]
    from google.api_core import exceptions as gexc

    try:
        job.run(**run_kwargs)
    except gexc.GoogleAPICallError as exc:  # refused at creation (policy, labels, spec)
        raise DataError(f"Vertex AI refused the {what}: {exc.message or exc}") from None
    except RuntimeError as exc:  # the SDK's "Job failed with: ..." once the job ends FAILED
        error = job.error
        message = error.message if error is not None and error.message else str(exc)
        raise DataError(
            f"the Vertex AI {what} {job.resource_name} failed: {trainer_message(message)}"
        ) from None


def train_on_vertex(
    *,
    vertex: dict[str, Any],
    image: str,
    train_uri: str,
    valid_uri: str,
    model_uri: str,
    model_path: str,
    label: str,
    task: str,
    features: list[str] | None = None,
    exclude: list[str] | None = None,
    model_params: dict[str, Any] | None = None,
    training_params: dict[str, Any] | None = None,
    task_params: dict[str, Any] | None = None,
    best_params: dict[str, Any] | None = None,
    display_name: str = "voltpipe-train",
) -> TrainResult:
    """The train step with ``training.backend: vertex``: the same trainer, run as a CustomJob.

    The job's chief writes the model straight into the step's Model artifact (`model_uri`,
    read back here through `model_path`, its Cloud Storage FUSE path); the per-epoch backup
    lives in ``<model_uri>-job/checkpoints`` (AIP_CHECKPOINT_DIR), so a retried step resumes
    where the killed job stopped. Machines come from ``training.vertex``.

    Raises:
        ConfigError: no ``vertex.project`` or image, or a split or the model is not on Cloud
            Storage (kfp.local keeps artifacts on this machine, out of the job's reach).
        DataError: the job failed (with the trainer's own message).
    """
    from voltpipe.config import TrainingConfig
    from voltpipe.modelling.train import read_train_result

    if not vertex.get("project") or not image:
        raise ConfigError("training.backend 'vertex' needs vertex.project and the config's image")
    for name, uri in (("train_data", train_uri), ("valid_data", valid_uri), ("model", model_uri)):
        if not uri.startswith("gs://"):
            raise ConfigError(
                f"training.backend 'vertex': the {name} artifact is at {uri!r}, which a Vertex AI "
                "CustomJob cannot read; run the pipeline with --target vertex (a gs:// "
                "pipeline_root) or use training.backend 'local'"
            )
    tp = dict(training_params or {})
    machine = TrainingConfig(**tp).vertex
    from voltpipe.modelling.distribute import check_replicas

    family = ((best_params or {}).get("model") or {}).get("family") or (model_params or {}).get(
        "family"
    )
    check_replicas(task, family, machine.replica_count)  # before a job is submitted
    started = time.perf_counter()
    params = {
        "features": features,
        "exclude": exclude,
        "model_params": model_params or {},
        "training_params": tp,
        "task_params": task_params or {},
        "best_params": best_params or {},
    }
    run_custom_training_job(
        vertex=vertex,
        image=image,
        machine=machine,
        train_uri=train_uri,
        valid_uri=valid_uri,
        label=label,
        task=task,
        params=params,
        base_output_dir=f"{model_uri.rstrip('/')}-job",
        output_dir=model_uri,
        display_name=display_name,
    )
    return read_train_result(model_path, time.perf_counter() - started)
