"""Validate: per-column statistics, an inferred schema, and checks that fail on unusable data."""

from kfp import dsl

from voltpipe.config import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def validate(
    train: dsl.Input[dsl.Dataset],
    valid: dsl.Input[dsl.Dataset],
    test: dsl.Input[dsl.Dataset],
    label: str,
    task: str,
    statistics: dsl.Output[dsl.Artifact],
    schema: dsl.Output[dsl.Artifact],
    report: dsl.Output[dsl.Markdown],
    features: list = [],  # noqa: B006 - KFP parameter defaults must be literals
    expected_schema: dict = {},  # noqa: B006
    registry_uri: str = "",
    model_name: str = "",
    task_params: dict = {},  # noqa: B006
):
    """Computes statistics per split, validates them, and writes a readable report.

    Fails (listing every problem) on an empty split, a missing, all-null or constant label,
    a single class, missing or all-null features, NaN/inf values, or schema violations
    against `expected_schema`, or else the schema stored with the champion of `model_name`
    in `registry_uri` (when both are given). For forecasting (`task_params`: `time_column` and
    `forecasting`, as train gets them), also on a split too short for `forecasting.window` and
    `horizon` (see ``data.validation.check_forecast_splits``), before any training.
    """
    from voltpipe.data.io import write_json_atomic, write_text_atomic
    from voltpipe.data.validation import compute_statistics, infer_schema, render_report
    from voltpipe.data.validation import validate as check
    from voltpipe.errors import exit_on_user_error

    with exit_on_user_error():
        if not expected_schema and registry_uri and model_name:
            from voltpipe.registry import open_registry

            champion = open_registry(registry_uri).get(model_name)
            if champion is not None and champion.metadata.get("schema"):
                expected_schema = champion.metadata["schema"]
                print(
                    f"voltpipe: validating against the schema of {model_name} v{champion.version}"
                )
        stats = {
            name: compute_statistics(art.path)
            for name, art in (("train", train), ("valid", valid), ("test", test))
        }
        result = check(
            stats,
            label=label,
            task=task,
            features=list(features) or None,
            expected_schema=dict(expected_schema) or None,
        )
        if task == "forecasting":
            from voltpipe.data.validation import validate_forecast_splits

            paths = {"train": train.path, "valid": valid.path, "test": test.path}
            checked = validate_forecast_splits(paths, stats, task_params)
            result.errors.extend(checked.errors)
            result.warnings.extend(checked.warnings)
        write_text_atomic(report.path, render_report(stats, result, label))
        write_json_atomic(statistics.path, stats)
        write_json_atomic(schema.path, infer_schema(stats["train"]))
        for message in result.warnings:
            print(f"voltpipe: warning: {message}")
        statistics.metadata.update(
            {
                "rows": {k: v["rows"] for k, v in stats.items()},
                "errors": result.errors,
                "warnings": result.warnings,
            }
        )
        result.raise_if_failed()
