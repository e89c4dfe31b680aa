"""Runners: where a pipeline runs (local kfp.local; Vertex AI and Kubeflow in later versions)."""

from __future__ import annotations

from typing import Any

from voltpipe.config import VoltpipeConfig
from voltpipe.errors import ConfigError

TARGETS = ("local", "vertex", "kfp")


def run_pipeline(
    name: str,
    cfg: VoltpipeConfig,
    *,
    target: str = "local",
    cache: bool = True,
    debug: bool = False,
) -> dict[str, Any]:
    """Runs pipeline `name` on `target` and returns the run summary."""
    if target == "local":
        from voltpipe.runners.local import run_local

        return run_local(name, cfg, cache=cache, debug=debug)
    if target in ("vertex", "kfp"):
        raise ConfigError(
            f"--target {target} is not available in this version of voltpipe; use --target local"
        )
    raise ConfigError(f"unknown target {target!r}; valid: {', '.join(TARGETS)}")
