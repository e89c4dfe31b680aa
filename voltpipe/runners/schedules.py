"""Schedules: Vertex AI pipeline job schedules and Kubeflow Pipelines recurring runs, one interface.

Every function takes ``target="vertex"`` or ``target="kfp"`` and returns JSON-able dicts:
``{"id", "name", "display_name", "cron", "state" ("active" | "paused"), "target", ...}``.
A cron is the usual 5 fields (minute hour day-of-month month day-of-week); KFP's 6-field form
(seconds first) is made by prefixing ``0``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from voltpipe.config import VoltpipeConfig
from voltpipe.errors import ConfigError, PipelineError

SCHEDULE_TARGETS = ("vertex", "kfp")
_TZ_PREFIX = re.compile(r"^(?:CRON_TZ|TZ)=\S+\s+")
_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")


def validate_cron(cron: str) -> str:
    """Returns `cron` normalised to single spaces after checking it has 5 fields.

    An optional ``TZ=Area/City`` or ``CRON_TZ=Area/City`` prefix is kept (Vertex AI honours it).

    Raises:
        ConfigError: naming the expression and the expected form.
    """
    text = " ".join(cron.split())
    prefix = _TZ_PREFIX.match(text)
    fields = text[prefix.end() :].split() if prefix else text.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise ConfigError(
            f"cron {cron!r}: expected 5 fields 'MINUTE HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK', "
            "e.g. '0 6 * * 1' (Mondays 06:00), optionally prefixed with TZ=Europe/Berlin"
        )
    return text


def kfp_cron(cron: str) -> str:
    """Converts a 5-field cron to KFP's 6-field form (seconds first).

    Raises:
        ConfigError: a bad cron, or a time-zone prefix (KFP schedules in the cluster's zone).
    """
    text = validate_cron(cron)
    if _TZ_PREFIX.match(text):
        raise ConfigError(
            f"cron {cron!r}: Kubeflow Pipelines schedules do not take a TZ= prefix; "
            "write the time in the cluster's time zone"
        )
    return f"0 {text}"


def _check_target(target: str) -> None:
    if target not in SCHEDULE_TARGETS:
        raise ConfigError(
            f"unknown schedule target {target!r}; valid: {', '.join(SCHEDULE_TARGETS)}"
        )


def _short_id(name: str) -> str:
    return name.rsplit("/", 1)[-1]


# ----- Vertex AI ------------------------------------------------------------------------------


def _vertex_dict(schedule: Any) -> dict[str, Any]:
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


def _vertex_call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    from google.api_core import exceptions as gexc

    try:
        return fn(*args, **kwargs)
    except gexc.NotFound as exc:
        raise PipelineError(f"Vertex AI: {what}: not found ({exc.message})") from exc
    except gexc.GoogleAPICallError as exc:
        raise PipelineError(f"Vertex AI refused {what}: {exc.message or exc}") from exc


def _vertex_schedule(cfg: VoltpipeConfig, schedule_id: str) -> Any:
    from google.cloud import aiplatform

    from voltpipe.runners.vertex import init_aiplatform

    if not cfg.vertex.project:
        raise ConfigError("vertex.project is not set: the Google Cloud project of the schedule")
    init_aiplatform(cfg)
    return _vertex_call(
        f"schedule {schedule_id}",
        aiplatform.PipelineJobSchedule.get,
        schedule_id,
        project=cfg.vertex.project,
        location=cfg.vertex.location,
    )


# ----- KFP ------------------------------------------------------------------------------------


def _kfp_dict(rec: Any) -> dict[str, Any]:
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


# ----- the interface ----------------------------------------------------------------------------


def create_schedule(
    cfg: VoltpipeConfig,
    pipeline_name: str,
    template_path: str | Path | None,
    *,
    cron: str,
    target: str,
    display_name: str | None = None,
    parameter_values: dict[str, Any] | None = None,
    cache: bool = True,
    template_uri: str | None = None,
    client_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Schedules a compiled pipeline to run on `cron` on Vertex AI or a KFP cluster.

    Args:
        cfg: the config (`vertex.*` or `kfp.*`).
        pipeline_name: the voltpipe pipeline (``training``).
        template_path: the compiled KFP IR YAML (ignored when `template_uri` is given).
        cron: 5-field cron; on Vertex an optional ``TZ=Area/City`` prefix.
        target: ``vertex`` or ``kfp``.
        display_name: the schedule's name (default ``<name>-<pipeline>``).
        parameter_values: pipeline parameters for every scheduled run.
        cache: reuse cached task outputs in scheduled runs.
        template_uri: a registry template ``HOST/PACKAGE/sha256:...`` (resolve a tag first).
        client_kwargs: `kfp.Client` auth options (KFP only).

    Returns:
        The schedule as a dict (see the module docstring).

    Raises:
        ConfigError: a bad cron, target or config. PipelineError: the service refused.
    """
    _check_target(target)
    display_name = display_name or f"{cfg.name}-{pipeline_name}"
    if target == "vertex":
        from voltpipe.runners.vertex import build_pipeline_job

        cron = validate_cron(cron)
        job = build_pipeline_job(
            cfg,
            pipeline_name,
            template_path,
            cache=cache,
            parameter_values=parameter_values,
            template_uri=template_uri,
        )
        schedule = _vertex_call(
            f"schedule {display_name!r}",
            job.create_schedule,
            cron=cron,
            display_name=display_name,
            service_account=cfg.vertex.service_account,
            network=cfg.vertex.network,
        )
        return _vertex_dict(schedule)

    from voltpipe.runners.kfp import _api_call, ensure_experiment, kfp_client
    from voltpipe.runners.templates import download_template, loadable_template

    six_fields = kfp_cron(cron)
    out_dir = cfg.workdir / "templates"
    if template_uri:
        template = download_template(template_uri, out_dir)
    elif template_path is not None:
        template = loadable_template(template_path, out_dir)
    else:
        raise ConfigError("give a compiled template_path or a template_uri")
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
        enable_caching=cache,
        no_catchup=True,
        enabled=True,
    )
    return _kfp_dict(rec)


def list_schedules(
    cfg: VoltpipeConfig, *, target: str, client_kwargs: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Lists the schedules in `vertex.project`/`vertex.location`, or the recurring runs of
    experiment `kfp.experiment`."""
    _check_target(target)
    if target == "vertex":
        from google.cloud import aiplatform

        from voltpipe.runners.vertex import init_aiplatform

        if not cfg.vertex.project:
            raise ConfigError(
                "vertex.project is not set: the Google Cloud project to list schedules in"
            )
        init_aiplatform(cfg)
        schedules = _vertex_call(
            "listing schedules",
            aiplatform.PipelineJobSchedule.list,
            project=cfg.vertex.project,
            location=cfg.vertex.location,
        )
        return [_vertex_dict(s) for s in schedules]

    from voltpipe.runners.kfp import _api_call, ensure_experiment, kfp_client

    client = kfp_client(cfg, client_kwargs)
    experiment_id = ensure_experiment(client, cfg)
    found: list[dict[str, Any]] = []
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
        found.extend(_kfp_dict(r) for r in page.recurring_runs or [])
        token = page.next_page_token or ""
        if not token:
            return found


def _kfp_action(
    cfg: VoltpipeConfig, schedule_id: str, action: str, client_kwargs: dict[str, Any] | None
) -> dict[str, Any]:
    from voltpipe.runners.kfp import _api_call, kfp_client

    client = kfp_client(cfg, client_kwargs)
    rec = _api_call(f"recurring run {schedule_id}", cfg, client.get_recurring_run, schedule_id)
    if action == "delete":
        _api_call(
            f"deleting recurring run {schedule_id}", cfg, client.delete_recurring_run, schedule_id
        )
        return {**_kfp_dict(rec), "state": "deleted"}
    fn = client.disable_recurring_run if action == "pause" else client.enable_recurring_run
    _api_call(f"{action} of recurring run {schedule_id}", cfg, fn, schedule_id)
    return _kfp_dict(
        _api_call(f"recurring run {schedule_id}", cfg, client.get_recurring_run, schedule_id)
    )


def _vertex_action(cfg: VoltpipeConfig, schedule_id: str, action: str) -> dict[str, Any]:
    schedule = _vertex_schedule(cfg, schedule_id)
    if action == "delete":
        summary = _vertex_dict(schedule)
        _vertex_call(f"deleting schedule {schedule_id}", schedule.delete)
        return {**summary, "state": "deleted"}
    _vertex_call(f"{action} of schedule {schedule_id}", getattr(schedule, action))
    return _vertex_dict(_vertex_schedule(cfg, schedule.resource_name))


def pause_schedule(
    cfg: VoltpipeConfig,
    schedule_id: str,
    *,
    target: str,
    client_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pauses a schedule (Vertex: ``:pause``; KFP: disables the recurring run)."""
    _check_target(target)
    if target == "vertex":
        return _vertex_action(cfg, schedule_id, "pause")
    return _kfp_action(cfg, schedule_id, "pause", client_kwargs)


def resume_schedule(
    cfg: VoltpipeConfig,
    schedule_id: str,
    *,
    target: str,
    client_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Resumes a paused schedule (Vertex: ``:resume``; KFP: enables the recurring run)."""
    _check_target(target)
    if target == "vertex":
        return _vertex_action(cfg, schedule_id, "resume")
    return _kfp_action(cfg, schedule_id, "resume", client_kwargs)


def delete_schedule(
    cfg: VoltpipeConfig,
    schedule_id: str,
    *,
    target: str,
    client_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Deletes a schedule; returns what it was, with ``state: deleted``."""
    _check_target(target)
    if target == "vertex":
        return _vertex_action(cfg, schedule_id, "delete")
    return _kfp_action(cfg, schedule_id, "delete", client_kwargs)
