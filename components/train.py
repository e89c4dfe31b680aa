"""Train: a Keras model with its preprocessing inside, early-stopped on the valid split."""

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
):
    """Trains the configured model family and writes the Model (.keras + metadata),
    training metrics and a training-curve plot."""
    import json

    from voltpipe.errors import exit_on_user_error
    from voltpipe.modelling.train import train_model
    from voltpipe.reports import history_html

    with exit_on_user_error():
        result = train_model(
            train_data.path,
            valid_data.path,
            model.path,
            label=label,
            task=task,
            features=list(features) or None,
            exclude=list(exclude),
            model_params=dict(model_params),
            training_params=dict(training_params),
        )
    model.metadata.update(
        {
            "task": task,
            "label": label,
            "framework": "keras",
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
        }
    )
    for key, values in result.history.items():
        metrics.log_metric(f"final_{key}", round(values[result.best_epoch - 1], 6))
    metrics.log_metric("epochs_run", result.epochs_run)
    metrics.log_metric("train_seconds", round(result.seconds, 2))
    # The file makes the metrics readable without the run (and lets kfp.local's cache see them).
    with open(metrics.path, "w") as fh:
        json.dump(metrics.metadata, fh, indent=2)
    with open(curves.path, "w") as fh:
        fh.write(history_html(result.history, title=f"{task} training curves"))
