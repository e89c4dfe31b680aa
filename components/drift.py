"""Drift: the champion's reference sample against a current window; a report and a verdict."""

from typing import NamedTuple

from kfp import dsl

from voltpipe.config import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def drift(
    window: dsl.Input[dsl.Dataset],
    registry_uri: str,
    model_name: str,
    metrics: dsl.Output[dsl.Metrics],
    details: dsl.Output[dsl.Artifact],
    report: dsl.Output[dsl.HTML],
    thresholds: dict = {},  # noqa: B006 - KFP parameter defaults must be literals
    webhook_url: str = "",
    alert_on_drift: bool = True,
    options: dict = {},  # noqa: B006 - monitoring.multivariate, .performance_estimation, ...
    warehouse: str = "",
    query: str = "",
    query_parameters: dict = {},  # noqa: B006
    warehouse_options: dict = {},  # noqa: B006
) -> NamedTuple("DriftOutputs", [("drift_detected", bool), ("drifted_features", list)]):
    """Compares the champion's stored reference sample with `window` (PSI and KS for numbers,
    Jensen-Shannon and chi-square for categories, the champion's prediction drift, and
    performance decay when the window has labels), beside the multivariate tests and the
    champion's estimated performance (CBPE/DLE, no labels needed) per `options`. Posts an alert
    to `webhook_url` on drift. Given the window's `warehouse` and `query`, a window above
    ``options["pushdown_rows"]`` rows gets its histograms computed in the warehouse."""
    from collections import namedtuple

    from voltpipe.data.io import write_json_atomic, write_text_atomic
    from voltpipe.data.params import normalize_parameters
    from voltpipe.errors import DataError, exit_on_user_error
    from voltpipe.monitoring import notify, structured_log_line
    from voltpipe.monitoring.monitor import WindowSource, detect_drift
    from voltpipe.registry import open_registry

    with exit_on_user_error():
        champion = open_registry(registry_uri).get(model_name)
        if champion is None:
            raise DataError(
                f"model {model_name!r} has no champion to monitor: run the training pipeline first"
            )
        result = detect_drift(
            window.path,
            champion.uri.replace("gs://", "/gcs/", 1),
            thresholds=dict(thresholds),
            options=dict(options),
            source=WindowSource(
                warehouse,
                query,
                normalize_parameters(dict(query_parameters)),
                dict(warehouse_options),
            )
            if warehouse and query
            else None,
        )
    summary = result.to_dict()
    for name, feature in result.drift.features.items():
        for stat in ("psi", "ks_statistic", "js_distance"):
            value = getattr(feature, stat, None)
            if value is not None:
                metrics.log_metric(f"{name}.{stat}", round(float(value), 6))
    metrics.log_metric("drifted_features", len(result.drift.drifted_features))
    if result.multivariate is not None:
        for test, value in result.multivariate.tests.items():
            metrics.log_metric(f"multivariate.{test}", round(float(value.statistic), 6))
    if result.estimate is not None:
        metrics.log_metric(
            f"estimated.{result.estimate.metric}", round(result.estimate.estimate, 6)
        )
    write_json_atomic(metrics.path, dict(metrics.metadata))
    write_json_atomic(details.path, summary | {"champion_version": champion.version})
    write_text_atomic(report.path, result.html)
    drifted = list(result.drift.drifted_features)
    verdict = (
        f"drift detected in {', '.join(drifted) or 'model performance'}"
        f" ({', '.join(result.triggers)})"
        if result.drift_detected
        else "no drift"
    )
    if result.estimate is not None:
        e = result.estimate
        verdict += f"; estimated {e.metric} {e.estimate:.4g} [{e.low:.4g}, {e.high:.4g}]"
    print(f"voltpipe: {verdict} (champion {model_name} v{champion.version})")
    if result.drift_detected and alert_on_drift:
        event = {
            "model": model_name,
            "champion_version": champion.version,
            "drifted_features": drifted,
        }
        structured_log_line("drift_detected", event)
        notify(webhook_url or None, event="drift_detected", summary=event)
    return namedtuple("DriftOutputs", ["drift_detected", "drifted_features"])(
        result.drift_detected, drifted
    )
