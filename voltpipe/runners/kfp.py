"""The Kubeflow Pipelines runner: submit a compiled pipeline to a KFP cluster with `kfp.Client`."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voltpipe.config import VoltpipeConfig
from voltpipe.errors import ConfigError, PipelineError
from voltpipe.runners.base import (
    CloudRunner,
    RunState,
    Summary,
    compiled_caching,
    follow_run,
    kfp_cron,
)
from voltpipe.runners.templates import load_template, local_template
from voltpipe.runners.vertex import require_remote_warehouse

if TYPE_CHECKING:
    import kfp

TERMINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")
FAILED_STATES = ("FAILED", "CANCELED")


def check_kfp_config(cfg: VoltpipeConfig) -> None:
    """Checks the config keys a KFP run needs.

    Raises:
        ConfigError: naming the missing key or the local warehouse.
    """
    if not cfg.kfp.host:
        raise ConfigError(
            "kfp.host is not set: the KFP API URL, e.g. --set kfp.host=https://kubeflow.example.com/pipeline"
        )
    if not cfg.kfp.host.startswith(("http://", "https://")):
        raise ConfigError(f"kfp.host {cfg.kfp.host!r} must start with http:// or https://")
    require_remote_warehouse(cfg, "Kubeflow Pipelines")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # kfp.Client prints "Experiment details: URL" lines and warns about its API version; the
    # summary carries the URLs instead.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def kfp_client(cfg: VoltpipeConfig, client_kwargs: dict[str, Any] | None = None) -> kfp.Client:
    """A `kfp.Client` for `cfg.kfp`; `client_kwargs` passes its auth options through
    (``existing_token``, ``cookies``, ``credentials``, ``client_id``, ``ssl_ca_cert`` ...).

    The cluster's mode comes from its healthz (``multi_user``): a multi-user cluster scopes
    experiments and runs to a namespace (`kfp.namespace`, the user's profile namespace) and
    refuses requests without one; a single-user cluster refuses any namespace, so none is sent.
    """
    import kfp

    check_kfp_config(cfg)
    kwargs = dict(client_kwargs or {})
    for reserved in ("host", "namespace"):
        if reserved in kwargs:
            raise ConfigError(f"client_kwargs: set {reserved} with kfp.{reserved} in the config")
    with _quiet():
        try:
            client = kfp.Client(host=cfg.kfp.host, namespace=cfg.kfp.namespace, **kwargs)
            multi_user = bool(client.get_kfp_healthz().multi_user)
        except Exception as exc:
            raise PipelineError(
                f"cannot connect to Kubeflow Pipelines at {cfg.kfp.host}: {exc}"
            ) from exc
    client.set_user_namespace(cfg.kfp.namespace if multi_user else "")
    return client


def _api_call(what: str, cfg: VoltpipeConfig, fn: Any, *args: Any, **kwargs: Any) -> Any:
    from kfp_server_api.exceptions import ApiException

    try:
        with _quiet():
            return fn(*args, **kwargs)
    except ApiException as exc:
        raise PipelineError(
            f"Kubeflow Pipelines at {cfg.kfp.host} refused {what}: "
            f"HTTP {exc.status} {exc.reason}: {(exc.body or '')[:300]}"
        ) from exc


def ensure_experiment(client: kfp.Client, cfg: VoltpipeConfig) -> str:
    """Gets or creates experiment `cfg.kfp.experiment` and returns its id."""
    experiment = _api_call(
        f"experiment {cfg.kfp.experiment!r}", cfg, client.create_experiment, name=cfg.kfp.experiment
    )
    return str(experiment.experiment_id)


def upload_pipeline_version(
    client: kfp.Client, cfg: VoltpipeConfig, template: Path, *, display_name: str, version_name: str
) -> tuple[str, str]:
    """Uploads `template` as pipeline `display_name` (first time) or as its new version.

    Returns:
        ``(pipeline_id, version_id)``.
    """
    pipeline_id = _api_call("the pipeline lookup", cfg, client.get_pipeline_id, display_name)
    if pipeline_id is None:
        pipeline = _api_call(
            "the pipeline upload",
            cfg,
            client.upload_pipeline,
            str(template),
            pipeline_name=display_name,
            description=f"voltpipe {display_name}",
        )
        pipeline_id = pipeline.pipeline_id
        versions = _api_call("the version listing", cfg, client.list_pipeline_versions, pipeline_id)
        version_id = versions.pipeline_versions[0].pipeline_version_id
    else:
        version = _api_call(
            "the version upload",
            cfg,
            client.upload_pipeline_version,
            str(template),
            pipeline_version_name=version_name,
            pipeline_id=pipeline_id,
        )
        version_id = version.pipeline_version_id
    return str(pipeline_id), str(version_id)


def _read_run(client: kfp.Client, cfg: VoltpipeConfig, run_id: str) -> RunState:
    run = _api_call(f"reading run {run_id}", cfg, client.get_run, run_id)
    state = str(run.state or "PENDING")
    error = run.error.message if state in FAILED_STATES and run.error is not None else ""
    return RunState(state, error or "")


def wait_for_run(
    client: kfp.Client,
    cfg: VoltpipeConfig,
    run_id: str,
    *,
    poll_seconds: float = 10.0,
    timeout_seconds: float | None = None,
) -> str:
    """Polls a run until it ends and returns its state.

    Raises:
        PipelineError: the run failed or was cancelled, or `timeout_seconds` passed first.
    """
    return follow_run(
        lambda: _read_run(client, cfg, run_id),
        what=f"KFP run {run_id}",
        url=run_url(cfg, run_id),
        terminal_states=TERMINAL_STATES,
        failed_states=FAILED_STATES,
        poll_seconds=poll_seconds,
        timeout_seconds=timeout_seconds,
    )


def run_url(cfg: VoltpipeConfig, run_id: str) -> str:
    return f"{(cfg.kfp.host or '').rstrip('/')}/#/runs/details/{run_id}"


def submit_kfp(
    cfg: VoltpipeConfig,
    pipeline_name: str,
    template_path: str | Path | None,
    *,
    cache: bool,
    wait: bool,
    parameter_values: dict[str, Any] | None = None,
    client_kwargs: dict[str, Any] | None = None,
    upload: bool = False,
    version_name: str | None = None,
    template_uri: str | None = None,
    poll_seconds: float = 10.0,
    timeout_seconds: float | None = None,
) -> dict[str, Any]:
    """Submits a compiled pipeline to a Kubeflow Pipelines cluster and optionally waits for it.

    The run is created from the package (so `cache` applies to every task) in experiment
    `kfp.experiment`, created when missing. With `upload`, the template is also registered as
    the cluster pipeline ``<pipelineInfo.name>`` (or a new version of it, `version_name`).

    Args:
        cfg: the config; `kfp.*` says which cluster, namespace and experiment.
        pipeline_name: the voltpipe pipeline (``training``).
        template_path: the compiled KFP IR YAML (ignored when `template_uri` is given).
        cache: reuse cached task outputs.
        wait: follow the run until it ends; a failed run raises.
        parameter_values: pipeline parameters overriding the template's defaults.
        client_kwargs: `kfp.Client` auth options (``existing_token``, ``cookies``, ``credentials`` ...).
        upload: also upload the pipeline (and a version) to the cluster.
        version_name: the uploaded version's name (default: a timestamp).
        template_uri: a registry template ``HOST/PACKAGE/sha256:...`` to download and run.
        poll_seconds: interval between state reads when waiting.
        timeout_seconds: stop waiting after this long (raises).

    Returns:
        The run summary: ``pipeline``, ``status``, ``target``, ``run_id``, ``run_name``, ``state``,
        ``experiment_id``, ``run_url``, ``pipeline_id``, ``version_id``, ``workdir``, ``seconds``.

    Raises:
        ConfigError: a missing `kfp.host`, a local warehouse, unknown parameters.
        PipelineError: the cluster refused a call, or the run failed while waiting.
    """
    started = time.perf_counter()
    check_kfp_config(cfg)
    template = local_template(template_path, template_uri, cfg.workdir / "templates")
    spec = load_template(template)
    known = set(spec["root"].get("inputDefinitions", {}).get("parameters", {}))
    unknown = sorted(set(parameter_values or {}) - known)
    if unknown:
        raise ConfigError(
            f"unknown pipeline parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
        )

    client = kfp_client(cfg, client_kwargs)
    experiment_id = ensure_experiment(client, cfg)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    display = spec["pipelineInfo"]["name"]
    pipeline_id = version_id = None
    if upload:
        pipeline_id, version_id = upload_pipeline_version(
            client,
            cfg,
            template,
            display_name=display,
            version_name=version_name or f"{display}-{stamp}",
        )
    run_name = f"{cfg.name}-{pipeline_name}-{stamp}"
    result = _api_call(
        "the run",
        cfg,
        client.create_run_from_pipeline_package,
        str(template),
        arguments=dict(parameter_values or {}),
        run_name=run_name,
        experiment_id=experiment_id,
        enable_caching=compiled_caching(cache),
    )
    run_id = str(result.run_id)
    state = (
        wait_for_run(
            client, cfg, run_id, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds
        )
        if wait
        else "PENDING"
    )
    return {
        "pipeline": pipeline_name,
        "status": "succeeded" if wait else "submitted",
        "target": "kfp",
        "run_id": run_id,
        "run_name": run_name,
        "state": state,
        "experiment_id": experiment_id,
        "run_url": run_url(cfg, run_id),
        "pipeline_id": pipeline_id,
        "version_id": version_id,
        "template": template_uri or str(template_path),
        "workdir": str(cfg.workdir),
        "seconds": round(time.perf_counter() - started, 2),
    }


# ----- recurring runs (schedules) -------------------------------------------------------------


def _schedule_dict(rec: Any) -> Summary:
    cron = rec.trigger.cron_schedule.cron if rec.trigger and rec.trigger.cron_schedule else None
    status = str(rec.status or rec.mode or "")
    return {
        "id": rec.recurring_run_id,
        "name": rec.recurring_run_id,
        "display_name": rec.display_name,
        "cron": cron[2:] if cron and cron.startswith("0 ") else cron,
        "kfp_cron": cron,
        "state": "active" if status in ("ENABLED", "ENABLE") else "paused",
        "target": "kfp",
        "experiment_id": rec.experiment_id,
    }


def _schedule_action(
    cfg: VoltpipeConfig, schedule_id: str, action: str, client_kwargs: dict[str, Any] | None
) -> Summary:
    client = kfp_client(cfg, client_kwargs)
    rec = _api_call(f"recurring run {schedule_id}", cfg, client.get_recurring_run, schedule_id)
    if action == "delete":
        _api_call(
            f"deleting recurring run {schedule_id}", cfg, client.delete_recurring_run, schedule_id
        )
        return {**_schedule_dict(rec), "state": "deleted"}
    fn = client.disable_recurring_run if action == "pause" else client.enable_recurring_run
    _api_call(f"{action} of recurring run {schedule_id}", cfg, fn, schedule_id)
    return _schedule_dict(
        _api_call(f"recurring run {schedule_id}", cfg, client.get_recurring_run, schedule_id)
    )


# ----- the runner -----------------------------------------------------------------------------


class KfpRunner(CloudRunner):
    """A Kubeflow Pipelines cluster: runs and recurring runs through `kfp.Client`."""

    target = "kfp"

    def check_config(self, cfg: VoltpipeConfig) -> None:
        # kfp.host is checked when the run is submitted (`check_kfp_config`).
        require_remote_warehouse(cfg, "Kubeflow")

    def submit(
        self,
        cfg: VoltpipeConfig,
        pipeline_name: str,
        template_path: str | Path | None,
        *,
        cache: bool,
        wait: bool,
        parameter_values: dict[str, Any] | None = None,
        template_uri: str | None = None,
        poll_seconds: float = 10.0,
        timeout_seconds: float | None = None,
    ) -> Summary:
        return submit_kfp(
            cfg,
            pipeline_name,
            template_path,
            cache=cache,
            wait=wait,
            parameter_values=parameter_values,
            template_uri=template_uri,
            poll_seconds=poll_seconds,
            timeout_seconds=timeout_seconds,
        )

    def wait(
        self,
        cfg: VoltpipeConfig,
        run_id: str,
        *,
        poll_seconds: float = 10.0,
        timeout_seconds: float | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> str:
        return wait_for_run(
            kfp_client(cfg, client_kwargs),
            cfg,
            run_id,
            poll_seconds=poll_seconds,
            timeout_seconds=timeout_seconds,
        )

    def create_schedule(
        self,
        cfg: VoltpipeConfig,
        pipeline_name: str,
        template_path: str | Path | None,
        *,
        cron: str,
        display_name: str,
        parameter_values: dict[str, Any] | None = None,
        cache: bool = True,
        template_uri: str | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> Summary:
        six_fields = kfp_cron(cron)
        template = local_template(template_path, template_uri, cfg.workdir / "templates")
        client = kfp_client(cfg, client_kwargs)
        experiment_id = ensure_experiment(client, cfg)
        rec = _api_call(
            f"recurring run {display_name!r}",
            cfg,
            client.create_recurring_run,
            experiment_id=experiment_id,
            job_name=display_name,
            cron_expression=six_fields,
            pipeline_package_path=str(template),
            params=dict(parameter_values or {}),
            enable_caching=compiled_caching(cache),
            no_catchup=True,
            enabled=True,
        )
        return _schedule_dict(rec)

    def list_schedules(
        self, cfg: VoltpipeConfig, *, client_kwargs: dict[str, Any] | None = None
    ) -> list[Summary]:
        client = kfp_client(cfg, client_kwargs)
        experiment_id = ensure_experiment(client, cfg)
        found: list[Summary] = []
        token = ""
        while True:
            page = _api_call(
                "listing recurring runs",
                cfg,
                client.list_recurring_runs,
                page_token=token,
                page_size=100,
                experiment_id=experiment_id,
            )
            found.extend(_schedule_dict(r) for r in page.recurring_runs or [])
            token = page.next_page_token or ""
            if not token:
                return found

    def pause_schedule(
        self, cfg: VoltpipeConfig, schedule_id: str, *, client_kwargs: dict[str, Any] | None = None
    ) -> Summary:
        return _schedule_action(cfg, schedule_id, "pause", client_kwargs)

    def resume_schedule(
        self, cfg: VoltpipeConfig, schedule_id: str, *, client_kwargs: dict[str, Any] | None = None
    ) -> Summary:
        return _schedule_action(cfg, schedule_id, "resume", client_kwargs)

    def delete_schedule(
        self, cfg: VoltpipeConfig, schedule_id: str, *, client_kwargs: dict[str, Any] | None = None
    ) -> Summary:
        return _schedule_action(cfg, schedule_id, "delete", client_kwargs)
