"""Registering a trained model with its lineage and applying the gate's decision."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from voltpipe.data.io import read_json, write_json_atomic, write_text_atomic
from voltpipe.registry.base import CHAMPION, open_registry
from voltpipe.tracking import log_run


def register_and_promote(
    *,
    model_dir: str,
    evaluation_path: str,
    statistics_path: str,
    schema_path: str,
    registry_uri: str,
    model_name: str,
    query: str,
    query_parameters: dict[str, Any],
    tracking_uri: str,
    out_path: str,
    reference_path: str | None = None,
    reference_rows: int = 100_000,
) -> dict[str, Any]:
    """Registers a new version; moves ``champion`` to it only if the evaluation promoted it.

    The registration summary ``{name, version, uri, champion, previous_champion, metrics,
    decision}`` is written atomically to `out_path` and returned. The alias moves last, so a
    failure before it leaves the previous champion in place. A seeded sample of
    `reference_path` (the training split) is stored with the version as the drift reference.
    """
    from voltpipe.model_dir import read_meta as read_model_meta

    evaluation = read_json(evaluation_path)
    statistics = read_json(statistics_path)
    model_meta = read_model_meta(model_dir)
    registry = open_registry(registry_uri)
    previous = registry.get(model_name, CHAMPION)
    lineage = {
        "query": query,
        "query_parameters": query_parameters,
        "data_statistics": statistics,
        "schema": read_json(schema_path),
        "metrics": {"test": evaluation["metrics"]},
        "decision": evaluation["decision"],
        "task": model_meta["task"],
        "label": model_meta["label"],
        "model_params": model_meta.get("model_params"),
        "training_params": model_meta.get("training_params"),
        "source_model_uri": model_dir,
    }
    with tempfile.TemporaryDirectory() as tmp:
        extra = {}
        if reference_path:
            import pyarrow.parquet as pq

            from voltpipe.data.io import read_table
            from voltpipe.monitoring.drift import reference_sample
            from voltpipe.monitoring.monitor import REFERENCE_FILE

            extra[REFERENCE_FILE] = Path(tmp) / REFERENCE_FILE
            pq.write_table(
                reference_sample(read_table(reference_path), reference_rows, seed=0),
                extra[REFERENCE_FILE],
            )
        version = registry.register(model_name, model_dir, lineage, extra_files=extra)
    promote = bool(evaluation["decision"]["promote"])
    _write_model_card(version, lineage, model_meta, evaluation, promote)
    if promote:
        registry.set_alias(model_name, CHAMPION, version.version)
    run_id = log_run(
        tracking_uri,
        model_name,
        run_name=f"{model_name}-v{version.version}",
        params={
            "task": model_meta["task"],
            "label": model_meta["label"],
            **_flat("model", model_meta.get("model_params") or {}),
            **{f"training.{k}": v for k, v in (model_meta.get("training_params") or {}).items()},
            "query": query,
            "query_parameters": query_parameters,
        },
        metrics={
            **{f"test_{k}": v for k, v in evaluation["metrics"].items()},
            **_candidate_metrics(model_meta.get("candidates")),
        },
        tags={
            "voltpipe.model_name": model_name,
            "voltpipe.model_version": version.version,
            "voltpipe.champion": str(promote).lower(),
            "voltpipe.model_uri": version.uri,
        },
    )
    info = {
        "name": model_name,
        "version": version.version,
        "uri": version.uri,
        "champion": promote,
        "champion_version": version.version
        if promote
        else (previous.version if previous else None),
        "previous_champion": previous.version if previous else None,
        "metrics": evaluation["metrics"],
        "decision": evaluation["decision"],
        "mlflow_run_id": run_id,
        "family": model_meta.get("family"),
        "candidates": model_meta.get("candidates"),
        "training": {
            "epochs_run": model_meta.get("epochs_run"),
            "best_epoch": model_meta.get("best_epoch"),
            "stopped_by": model_meta.get("stopped_by"),
            "warnings": list(model_meta.get("training_warnings") or []),
        },
    }
    write_json_atomic(out_path, info)
    return info


def _flat(prefix: str, params: dict[str, Any]) -> dict[str, Any]:
    """``{"gbdt": {"num_leaves": 31}}`` -> ``{"model.gbdt.num_leaves": 31}`` (MLflow params)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out |= _flat(f"{prefix}.{key}", value)
        else:
            out[f"{prefix}.{key}"] = value
    return out


def _candidate_metrics(candidates: list[dict[str, Any]] | None) -> dict[str, float]:
    """``auto``'s candidates as MLflow metrics: validation score and fit time per family."""
    out: dict[str, float] = {}
    for c in candidates or []:
        if c.get("score") is not None:
            name = c.get("name") or c["family"]  # a blend: blend_<members>
            out[f"candidate_{name}_valid_{c['metric']}"] = float(c["score"])
            out[f"candidate_{name}_fit_seconds"] = float(c.get("fit_seconds", 0.0))
    return out


def _write_model_card(
    version: Any,
    lineage: dict[str, Any],
    model_meta: dict[str, Any],
    evaluation: dict[str, Any],
    champion: bool,
) -> None:
    """Writes ``model_card.md`` into the version's folder (before the alias moves).

    The card names its own version number, which the registry assigns on registration, so it
    is added to the fresh version rather than copied in with it. Only local folders get one
    here; a remote registry backend writes its own.
    """
    from voltpipe.registry.model_card import MODEL_CARD_FILE, model_card_markdown

    folder = Path(version.uri)
    if not folder.is_dir():
        return
    card = model_card_markdown(
        name=version.name,
        version=version.version,
        lineage=lineage,
        model_meta=model_meta,
        evaluation=evaluation,
        champion=champion,
    )
    write_text_atomic(folder / MODEL_CARD_FILE, card)
