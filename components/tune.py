"""Tune: search the config's hyperparameter space (Optuna locally, or a Vertex AI tuning job)."""

from kfp import dsl

from voltpipe.config import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def tune(
    train_data: dsl.Input[dsl.Dataset],
    valid_data: dsl.Input[dsl.Dataset],
    label: str,
    task: str,
    best_params: dsl.Output[dsl.Artifact],
    trials: dsl.Output[dsl.Artifact],
    report: dsl.Output[dsl.Markdown],
    metrics: dsl.Output[dsl.Metrics],
    tuning: dict = {},  # noqa: B006 - KFP parameter defaults must be literals
    features: list = [],  # noqa: B006
    exclude: list = [],  # noqa: B006
    model_params: dict = {},  # noqa: B006
    training_params: dict = {},  # noqa: B006
    task_params: dict = {},  # noqa: B006
    tracking_uri: str = "",
    vertex: dict = {},  # noqa: B006
    image: str = "",
    run_name: str = "tuning",
):
    """Searches `tuning.space` and writes the best hyperparameters (JSON, read by `train`'s
    `best_params`), the trials table (folder: trials.csv, trials.json) and a Markdown report."""
    import json

    from voltpipe.errors import exit_on_user_error
    from voltpipe.modelling.tuning import search, trials_markdown, write_trials

    with exit_on_user_error():
        result = search(
            train_data.path,
            valid_data.path,
            label=label,
            task=task,
            tuning=dict(tuning),
            features=list(features) or None,
            exclude=list(exclude),
            model_params=dict(model_params),
            training_params=dict(training_params),
            task_params=dict(task_params),
            tracking_uri=tracking_uri,
            run_name=run_name,
            train_uri=train_data.uri,
            valid_uri=valid_data.uri,
            vertex=dict(vertex),
            image=image,
        )
    with open(best_params.path, "w") as fh:
        json.dump(result.best_params, fh, indent=2)
    best_params.metadata.update(
        {"metric": result.metric, "value": result.best_value, "trial": result.best_params["trial"]}
    )
    write_trials(result.trials, trials.path)
    trials.metadata.update({"trials": len(result.trials), "pruned": result.n_pruned})
    with open(report.path, "w") as fh:
        fh.write(trials_markdown(result.trials, result.best_params))
    metrics.log_metric(f"best_{result.metric}", round(result.best_value, 6))
    metrics.log_metric("trials", len(result.trials))
    metrics.log_metric("pruned_trials", result.n_pruned)
    metrics.log_metric("epochs_trained", result.total_epochs)
    with open(metrics.path, "w") as fh:
        json.dump(metrics.metadata, fh, indent=2)
