"""Train: a Keras model with its preprocessing inside, early-stopped on the valid split."""

from typing import Optional

from kfp import dsl

from voltpipe.config import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def train(
    train_data: dsl.Input[dsl.Dataset],
    valid_data: dsl.Input[dsl.Dataset],
    label: str,
    task: str,
    model: dsl.Output[dsl.Model],
    metrics: dsl.Output[dsl.Metrics],
    curves: dsl.Output[dsl.HTML],
    features: list = [],  # noqa: B006 - KFP parameter defaults must be literals
    exclude: list = [],  # noqa: B006
    model_params: dict = {},  # noqa: B006
    training_params: dict = {},  # noqa: B006
    task_params: dict = {},  # noqa: B006
    best_params: Optional[dsl.Input[dsl.Artifact]] = None,  # noqa: UP045 - KFP reads Optional
    vertex: dict = {},  # noqa: B006
    image: str = "",
):
    """Trains the configured model family and writes the Model (.keras + metadata),
    training metrics and a training-curve plot.

    `task_params` holds ``{time_column, forecasting, anomaly}``; `best_params` is the tune
    step's output, applied over the parameters. The per-epoch backup that lets a retried step
    resume goes to Vertex's AIP_CHECKPOINT_DIR when set, else next to the model.

    With ``training_params.backend == "vertex"`` the same trainer runs as a Vertex AI CustomJob
    sized by ``training_params.vertex`` (`vertex`: the config's vertex section; `image`: the
    job's container) and writes into this step's Model artifact.
    """
    import json
    import os

    from voltpipe.errors import exit_on_user_error
    from voltpipe.modelling.train import train_model
    from voltpipe.modelling.trial import gcs_fuse_path
    from voltpipe.reports import history_html

    tuned = None
    if best_params is not None:
        with open(best_params.path) as fh:
            tuned = json.load(fh)
    settings = dict(
        label=label,
        task=task,
        features=list(features) or None,
        exclude=list(exclude),
        model_params=dict(model_params),
        training_params=dict(training_params),
        task_params=dict(task_params),
        best_params=tuned,
    )
    with exit_on_user_error():
        if training_params.get("backend") == "vertex":
            from voltpipe.modelling.vertex_jobs import train_on_vertex

            result = train_on_vertex(
                vertex=dict(vertex),
                image=image,
                train_uri=train_data.uri,
                valid_uri=valid_data.uri,
                model_uri=model.uri,
                model_path=model.path,
                display_name=f"{task}-train",
                **settings,
            )
        else:
            result = train_model(
                train_data.path,
                valid_data.path,
                model.path,
                backup_dir=gcs_fuse_path(os.environ.get("AIP_CHECKPOINT_DIR", "")) or None,
                **settings,
            )
    model.metadata.update(
        {
            "task": task,
            "label": label,
            "framework": {"gbdt": "lightgbm", "linear": "numpy", "blend": "blend"}.get(
                result.meta["family"],
                "scikit-learn"
                if task in ("clustering", "embedding") and result.meta["family"] != "autoencoder"
                else "keras",
            ),
            "family": result.meta["family"],
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "stopped_by": result.stopped_by,  # early_stopping | epoch_cap | time_budget
            "training_warnings": result.warnings,
        }
    )
    for key, values in result.history.items():
        if len(values) >= result.best_epoch > 0:
            metrics.log_metric(f"final_{key}", round(values[result.best_epoch - 1], 6))
    metrics.log_metric("epochs_run", result.epochs_run)
    metrics.log_metric("best_epoch", result.best_epoch)
    metrics.log_metric("best_epoch_is_last", float(result.best_epoch == result.epochs_run))
    metrics.log_metric("train_seconds", round(result.seconds, 2))
    # The file makes the metrics readable without the run (and lets kfp.local's cache see them).
    with open(metrics.path, "w") as fh:
        json.dump(metrics.metadata, fh, indent=2)
    with open(curves.path, "w") as fh:
        fh.write(history_html(result.history, title=f"{task} training curves"))
