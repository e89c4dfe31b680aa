"""The Vertex AI runner: submit a compiled pipeline as a Vertex AI PipelineJob and follow it.

google-cloud-aiplatform is imported inside the functions. An ``http://`` `vertex.api_endpoint`
(a local test server) is called over REST with anonymous credentials; otherwise the SDK uses
Application Default Credentials and its default endpoint for `vertex.location`.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
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
    validate_cron,
)
from voltpipe.runners.templates import local_template

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
    if template_uri and _AR_URL.match(template_uri):
        return template_uri
    return str(local_template(template_path, template_uri, cfg.workdir / "templates"))


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
            enable_caching=compiled_caching(cache),
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


def _read_job(job: aiplatform.PipelineJob) -> RunState:
    state = _state_name(job.state)  # each read GETs the job
    error = job.gca_resource.error if state in FAILED_STATES else None
    return RunState(state, error.message if error and error.message else "")


def wait_for_job(
    job: aiplatform.PipelineJob, *, poll_seconds: float = 10.0, timeout_seconds: float | None = None
) -> str:
    """Polls the job until it reaches a terminal state and returns that state's name.

    Raises:
        PipelineError: the job failed or was cancelled (naming the state and its error), or
            `timeout_seconds` passed first.
    """
    return follow_run(
        lambda: _read_job(job),
        what=f"Vertex AI pipeline job {job.resource_name}",
        url=console_url(job.resource_name),
        terminal_states=TERMINAL_STATES,
        failed_states=FAILED_STATES,
        poll_seconds=poll_seconds,
        timeout_seconds=timeout_seconds,
    )


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


# ----- schedules ------------------------------------------------------------------------------


def _short_id(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _schedule_dict(schedule: Any) -> Summary:
    res = schedule.gca_resource
    state = getattr(res.state, "name", str(res.state))
    next_run = res.next_run_time
    return {
        "id": _short_id(res.name),
        "name": res.name,
        "display_name": res.display_name,
        "cron": res.cron,
        "state": {"ACTIVE": "active", "PAUSED": "paused"}.get(state, state.lower()),
        "target": "vertex",
        "started_runs": int(res.started_run_count or 0),
        "next_run_time": next_run.isoformat() if next_run else None,
        "pipeline_job": res.create_pipeline_job_request.pipeline_job.display_name or None,
    }


def _call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    from google.api_core import exceptions as gexc

    try:
        return fn(*args, **kwargs)
    except gexc.NotFound as exc:
        raise PipelineError(f"Vertex AI: {what}: not found ({exc.message})") from exc
    except gexc.GoogleAPICallError as exc:
        raise PipelineError(f"Vertex AI refused {what}: {exc.message or exc}") from exc


def _init_for(cfg: VoltpipeConfig, purpose: str) -> None:
    if not cfg.vertex.project:
        raise ConfigError(f"vertex.project is not set: the Google Cloud project {purpose}")
    init_aiplatform(cfg)


def _get_schedule(cfg: VoltpipeConfig, schedule_id: str) -> Any:
    from google.cloud import aiplatform

    _init_for(cfg, "of the schedule")
    return _call(
        f"schedule {schedule_id}",
        aiplatform.PipelineJobSchedule.get,
        schedule_id,
        project=cfg.vertex.project,
        location=cfg.vertex.location,
    )


def _schedule_action(cfg: VoltpipeConfig, schedule_id: str, action: str) -> Summary:
    schedule = _get_schedule(cfg, schedule_id)
    if action == "delete":
        summary = _schedule_dict(schedule)
        _call(f"deleting schedule {schedule_id}", schedule.delete)
        return {**summary, "state": "deleted"}
    _call(f"{action} of schedule {schedule_id}", getattr(schedule, action))
    return _schedule_dict(_get_schedule(cfg, schedule.resource_name))


# ----- the runner -----------------------------------------------------------------------------


class VertexRunner(CloudRunner):
    """Vertex AI Pipelines: PipelineJobs and PipelineJobSchedules through google-cloud-aiplatform."""

    target = "vertex"

    def cloud_config(self, cfg: VoltpipeConfig) -> VoltpipeConfig:
        """On Vertex AI the model registry (and deployment) is Vertex's own."""
        if cfg.deploy.target == "local":
            print(
                "voltpipe: on Vertex AI the model registry and deployment are Vertex's "
                "(deploy.target: vertex)"
            )
            cfg = cfg.model_copy(
                update={"deploy": cfg.deploy.model_copy(update={"target": "vertex"})}
            )
        return super().cloud_config(cfg)

    def check_config(self, cfg: VoltpipeConfig) -> None:
        check_vertex_config(cfg)

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
        return submit_vertex(
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
        """Follows pipeline job `run_id` (its id or resource name)."""
        from google.cloud import aiplatform

        _init_for(cfg, "of the pipeline job")
        job = _call(
            f"pipeline job {run_id}",
            aiplatform.PipelineJob.get,
            run_id,
            project=cfg.vertex.project,
            location=cfg.vertex.location,
        )
        return _call(
            f"pipeline job {run_id}",
            wait_for_job,
            job,
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
        cron = validate_cron(cron)
        job = build_pipeline_job(
            cfg,
            pipeline_name,
            template_path,
            cache=cache,
            parameter_values=parameter_values,
            template_uri=template_uri,
        )
        schedule = _call(
            f"schedule {display_name!r}",
            job.create_schedule,
            cron=cron,
            display_name=display_name,
            service_account=cfg.vertex.service_account,
            network=cfg.vertex.network,
        )
        return _schedule_dict(schedule)

    def list_schedules(
        self, cfg: VoltpipeConfig, *, client_kwargs: dict[str, Any] | None = None
    ) -> list[Summary]:
        from google.cloud import aiplatform

        _init_for(cfg, "to list schedules in")
        schedules = _call(
            "listing schedules",
            aiplatform.PipelineJobSchedule.list,
            project=cfg.vertex.project,
            location=cfg.vertex.location,
        )
        return [_schedule_dict(s) for s in schedules]

    def pause_schedule(
        self, cfg: VoltpipeConfig, schedule_id: str, *, client_kwargs: dict[str, Any] | None = None
    ) -> Summary:
        return _schedule_action(cfg, schedule_id, "pause")

    def resume_schedule(
        self, cfg: VoltpipeConfig, schedule_id: str, *, client_kwargs: dict[str, Any] | None = None
    ) -> Summary:
        return _schedule_action(cfg, schedule_id, "resume")

    def delete_schedule(
        self, cfg: VoltpipeConfig, schedule_id: str, *, client_kwargs: dict[str, Any] | None = None
    ) -> Summary:
        return _schedule_action(cfg, schedule_id, "delete")
