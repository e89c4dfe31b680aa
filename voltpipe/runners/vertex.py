"""The Vertex AI runner: submit a compiled pipeline as a Vertex AI PipelineJob and follow it.

google-cloud-aiplatform is imported inside the functions. An ``http://`` `vertex.api_endpoint`
(a local test server) is called over REST with anonymous credentials; otherwise the SDK uses
Application Default Credentials and its default endpoint for `vertex.location`.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voltpipe.config import VoltpipeConfig
from voltpipe.errors import ConfigError, PipelineError
from voltpipe.runners.templates import download_template, loadable_template

if TYPE_CHECKING:
    from google.cloud import aiplatform

_AR_URL = re.compile(r"^https://[\w-]+-kfp\.pkg\.dev/", re.IGNORECASE)
SUCCEEDED = "PIPELINE_STATE_SUCCEEDED"
FAILED_STATES = ("PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED")
TERMINAL_STATES = (SUCCEEDED, *FAILED_STATES)


def require_remote_warehouse(cfg: VoltpipeConfig, where: str) -> None:
    """Refuses a local DuckDB warehouse for a run on `where` (a cloud or cluster target).

    Raises:
        ConfigError: naming the file and the alternative.
    """
    if cfg.warehouse_uri.startswith("duckdb:///"):
        raise ConfigError(
            f"warehouse: a {where} pipeline cannot read your laptop's file {cfg.warehouse_uri}; "
            "use bigquery://PROJECT (set `warehouse:` in the config or --set warehouse=bigquery://PROJECT)"
        )


def check_vertex_config(cfg: VoltpipeConfig) -> None:
    """Checks the config keys a Vertex AI run needs.

    Raises:
        ConfigError: naming the missing or invalid key.
    """
    v = cfg.vertex
    if not v.project:
        raise ConfigError(
            "vertex.project is not set: the Google Cloud project to run in, "
            "e.g. --set vertex.project=my-project"
        )
    if not v.pipeline_root:
        raise ConfigError(
            "vertex.pipeline_root is not set: a gs://BUCKET/PATH for the pipeline's artifacts"
        )
    if not v.pipeline_root.startswith("gs://") or len(v.pipeline_root) <= len("gs://"):
        raise ConfigError(
            f"vertex.pipeline_root {v.pipeline_root!r} must be a gs://BUCKET/PATH Cloud Storage URI"
        )
    if v.encryption_key and not re.fullmatch(
        r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+", v.encryption_key
    ):
        raise ConfigError(
            f"vertex.encryption_key {v.encryption_key!r}: expected "
            "projects/P/locations/L/keyRings/R/cryptoKeys/K"
        )
    require_remote_warehouse(cfg, "Vertex AI")


def init_aiplatform(cfg: VoltpipeConfig) -> None:
    """Initialises the aiplatform SDK for `cfg.vertex` (project, location, endpoint, credentials)."""
    from google.cloud import aiplatform

    v = cfg.vertex
    kwargs: dict[str, Any] = {"project": v.project, "location": v.location}
    if v.staging_bucket:
        kwargs["staging_bucket"] = v.staging_bucket
    if v.api_endpoint:
        kwargs["api_endpoint"] = v.api_endpoint
        if v.api_endpoint.startswith("http://"):
            from google.auth.credentials import AnonymousCredentials

            # A plain-HTTP endpoint is a local test server: REST keeps the scheme, gRPC cannot.
            kwargs["credentials"] = AnonymousCredentials()
            kwargs["api_transport"] = "rest"
    aiplatform.init(**kwargs)


def _labels(cfg: VoltpipeConfig, pipeline_name: str) -> dict[str, str]:
    return {"voltpipe-pipeline": pipeline_name, **cfg.vertex.labels}


def resolve_template_path(
    cfg: VoltpipeConfig, template_path: str | Path | None, template_uri: str | None
) -> str:
    """What to hand `PipelineJob(template_path=...)`: an Artifact Registry URI as is (the SDK
    fetches it and records it as the job's template), anything else as a loadable local file."""
    out_dir = cfg.workdir / "templates"
    if template_uri:
        if _AR_URL.match(template_uri):
            return template_uri
        return str(download_template(template_uri, out_dir))
    if template_path is None:
        raise ConfigError("give a compiled template_path or a template_uri")
    return str(loadable_template(template_path, out_dir))


def build_pipeline_job(
    cfg: VoltpipeConfig,
    pipeline_name: str,
    template_path: str | Path | None,
    *,
    cache: bool,
    parameter_values: dict[str, Any] | None = None,
    template_uri: str | None = None,
    job_id: str | None = None,
) -> aiplatform.PipelineJob:
    """Checks the config, initialises the SDK and builds (does not submit) the PipelineJob."""
    from google.cloud import aiplatform

    check_vertex_config(cfg)
    init_aiplatform(cfg)
    path = resolve_template_path(cfg, template_path, template_uri)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    job_id = (
        job_id or re.sub(r"[^a-z0-9-]+", "-", f"{cfg.name}-{pipeline_name}-{stamp}".lower())[:128]
    )
    v = cfg.vertex
    try:
        return aiplatform.PipelineJob(
            display_name=job_id,
            template_path=path,
            job_id=job_id,
            pipeline_root=v.pipeline_root,
            parameter_values=parameter_values or {},
            enable_caching=cache,
            encryption_spec_key_name=v.encryption_key,
            labels=_labels(cfg, pipeline_name),
            project=v.project,
            location=v.location,
        )
    except ValueError as exc:  # unknown parameter, bad label, bad job id
        raise ConfigError(f"Vertex AI pipeline job for {pipeline_name!r}: {exc}") from exc


def console_url(job_name: str) -> str:
    """The Cloud console page of a pipeline job resource name."""
    m = re.fullmatch(r"projects/([^/]+)/locations/([^/]+)/pipelineJobs/([^/]+)", job_name)
    if not m:
        return ""
    project, location, job_id = m.groups()
    return (
        f"https://console.cloud.google.com/vertex-ai/locations/{location}/pipelines/runs/{job_id}"
        f"?project={project}"
    )


def _state_name(state: Any) -> str:
    return getattr(state, "name", str(state))


def wait_for_job(
    job: aiplatform.PipelineJob, *, poll_seconds: float = 10.0, timeout_seconds: float | None = None
) -> str:
    """Polls the job until it reaches a terminal state and returns that state's name.

    Raises:
        PipelineError: the job failed or was cancelled (naming the state and its error), or
            `timeout_seconds` passed first.
    """
    started = time.monotonic()
    while True:
        state = _state_name(job.state)  # each read GETs the job
        if state in TERMINAL_STATES:
            break
        if timeout_seconds is not None and time.monotonic() - started > timeout_seconds:
            raise PipelineError(
                f"Vertex AI pipeline job {job.resource_name} is still {state} after "
                f"{timeout_seconds:.0f} s; follow it at {console_url(job.resource_name)}"
            )
        time.sleep(poll_seconds)
    if state in FAILED_STATES:
        error = job.gca_resource.error
        detail = f": {error.message}" if error and error.message else ""
        raise PipelineError(
            f"Vertex AI pipeline job {job.resource_name} ended in state {state}{detail} "
            f"(see {console_url(job.resource_name)})"
        )
    return state


def submit_vertex(
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
) -> dict[str, Any]:
    """Submits a compiled pipeline to Vertex AI Pipelines and optionally waits for it.

    Args:
        cfg: the config; `vertex.*` says where and as whom the job runs.
        pipeline_name: the voltpipe pipeline (``training``), for labels and the job id.
        template_path: the compiled KFP IR YAML (ignored when `template_uri` is given).
        cache: reuse cached task outputs (`enable_caching` for every task).
        wait: follow the job until it ends; a failed job raises.
        parameter_values: pipeline parameters overriding the template's defaults.
        template_uri: a registry template ``HOST/PACKAGE/sha256:...`` (see `resolve_template`).
        poll_seconds: interval between state reads when waiting.
        timeout_seconds: stop waiting after this long (raises).

    Returns:
        The run summary: ``pipeline``, ``status`` (``submitted`` or ``succeeded``), ``target``,
        ``run_id``, ``job_name``, ``console_url``, ``state``, ``template``, ``workdir``, ``seconds``.

    Raises:
        ConfigError: a missing or invalid `vertex.*` key or a local warehouse.
        PipelineError: Vertex AI refused the job, or the job failed while waiting.
    """
    from google.api_core import exceptions as gexc

    started = time.perf_counter()
    job = build_pipeline_job(
        cfg,
        pipeline_name,
        template_path,
        cache=cache,
        parameter_values=parameter_values,
        template_uri=template_uri,
    )
    v = cfg.vertex
    try:
        job.submit(service_account=v.service_account, network=v.network, experiment=v.experiment)
        state = (
            wait_for_job(job, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds)
            if wait
            else _state_name(job.gca_resource.state)
        )
    except gexc.GoogleAPICallError as exc:
        raise PipelineError(
            f"Vertex AI refused pipeline job {job.job_id}: {exc.message or exc}"
        ) from exc
    except RuntimeError as exc:  # experiment association errors from the SDK
        raise PipelineError(f"Vertex AI pipeline job {job.job_id}: {exc}") from exc
    return {
        "pipeline": pipeline_name,
        "status": "succeeded" if wait else "submitted",
        "target": "vertex",
        "run_id": job.job_id,
        "job_name": job.resource_name,
        "console_url": console_url(job.resource_name),
        "state": state,
        "template": template_uri or str(template_path),
        "experiment": v.experiment,
        "workdir": str(cfg.workdir),
        "seconds": round(time.perf_counter() - started, 2),
    }
