"""Schedules: Vertex AI pipeline job schedules and Kubeflow Pipelines recurring runs, one interface.

Every function takes ``target="vertex"`` or ``target="kfp"`` and returns JSON-able dicts:
``{"id", "name", "display_name", "cron", "state" ("active" | "paused"), "target", ...}``.
A cron is the usual 5 fields (minute hour day-of-month month day-of-week); KFP's 6-field form
(seconds first) is made by prefixing ``0``. Each target's `Runner` does the work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voltpipe.config import VoltpipeConfig
from voltpipe.errors import ConfigError
from voltpipe.runners import get_runner
from voltpipe.runners.base import Runner, kfp_cron, validate_cron

__all__ = [
    "SCHEDULE_TARGETS",
    "create_schedule",
    "delete_schedule",
    "kfp_cron",
    "list_schedules",
    "pause_schedule",
    "resume_schedule",
    "validate_cron",
]

SCHEDULE_TARGETS = ("vertex", "kfp")


def _runner(target: str) -> Runner:
    if target not in SCHEDULE_TARGETS:
        raise ConfigError(
            f"unknown schedule target {target!r}; valid: {', '.join(SCHEDULE_TARGETS)}"
        )
    return get_runner(target)


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
    return _runner(target).create_schedule(
        cfg,
        pipeline_name,
        template_path,
        cron=cron,
        display_name=display_name or f"{cfg.name}-{pipeline_name}",
        parameter_values=parameter_values,
        cache=cache,
        template_uri=template_uri,
        client_kwargs=client_kwargs,
    )


def list_schedules(
    cfg: VoltpipeConfig, *, target: str, client_kwargs: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Lists the schedules in `vertex.project`/`vertex.location`, or the recurring runs of
    experiment `kfp.experiment`."""
    return _runner(target).list_schedules(cfg, client_kwargs=client_kwargs)


def pause_schedule(
    cfg: VoltpipeConfig,
    schedule_id: str,
    *,
    target: str,
    client_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pauses a schedule (Vertex: ``:pause``; KFP: disables the recurring run)."""
    return _runner(target).pause_schedule(cfg, schedule_id, client_kwargs=client_kwargs)


def resume_schedule(
    cfg: VoltpipeConfig,
    schedule_id: str,
    *,
    target: str,
    client_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Resumes a paused schedule (Vertex: ``:resume``; KFP: enables the recurring run)."""
    return _runner(target).resume_schedule(cfg, schedule_id, client_kwargs=client_kwargs)


def delete_schedule(
    cfg: VoltpipeConfig,
    schedule_id: str,
    *,
    target: str,
    client_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Deletes a schedule; returns what it was, with ``state: deleted``."""
    return _runner(target).delete_schedule(cfg, schedule_id, client_kwargs=client_kwargs)
