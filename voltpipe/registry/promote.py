"""Registering a trained model with its lineage and applying the gate's decision."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from voltpipe.data.io import read_json, write_json_atomic, write_text_atomic
from voltpipe.registry.base import CHAMPION
from voltpipe.registry.factory import open_registry
from voltpipe.tracking import log_run_safely


def model_fingerprint(model_dir: str | Path) -> str:
    """A SHA-256 of the model folder's files (relative names and bytes): the same trained model
    gives the same fingerprint, so a retried or cached run reuses its registered version."""
    root = Path(model_dir)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


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
    """Registers the model as a version and records the gate's decision; moves no alias.

    The ``champion`` alias moves only in deploy, after the smoke test, as a compare-and-swap
    against the champion this evaluation was gated against (``gated_against``). A model
    registered before (same files: `model_fingerprint`) is not registered again. A tracking
    failure is logged, kept for a retry by the next registration, and reported in
    ``tracking``; it never fails the step.

    The registration summary ``{name, version, uri, promote, champion, champion_version,
    previous_champion, gated_against, metrics, decision, mlflow_run_id, tracking}`` is written
    atomically to `out_path` and returned (``champion``: this version is the champion now;
    ``promote``: the gate promoted it, so deploy will try to make it champion).
    """
    from voltpipe.model_dir import read_meta as read_model_meta

    evaluation = read_json(evaluation_path)
    statistics = read_json(statistics_path)
    model_meta = read_model_meta(model_dir)
    registry = open_registry(registry_uri)
    # The alias as the gate saw it: its champion, or the damaged one it set aside.
    gated_against = evaluation.get("champion_version") or evaluation.get("champion_set_aside")
    gated_against = str(gated_against) if gated_against not in (None, "") else None
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
        "model_fingerprint": model_fingerprint(model_dir),
    }
    with tempfile.TemporaryDirectory() as tmp:
        extra = {}
        if reference_path:
            import pyarrow.parquet as pq

            from voltpipe.data.io import sample_rows
            from voltpipe.monitoring.monitor import REFERENCE_FILE

            # Only the sampled row groups are read: memory is the sample, not the train split.
            extra[REFERENCE_FILE] = Path(tmp) / REFERENCE_FILE
            pq.write_table(
                sample_rows(reference_path, reference_rows, seed=0), extra[REFERENCE_FILE]
            )
        version = registry.register(model_name, model_dir, lineage, extra_files=extra)
    promote = bool(evaluation["decision"]["promote"])
    current = registry.get(model_name, CHAMPION)
    if version.metadata.get("decision") == lineage["decision"]:
        _write_model_card(version, lineage, model_meta, evaluation, promote)
    tracking = log_run_safely(
        tracking_uri,
        model_name,
        spool_dir=_tracking_spool(registry_uri, model_name),
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
            "voltpipe.promoted": str(promote).lower(),
            "voltpipe.model_uri": version.uri,
        },
    )
    info = {
        "name": model_name,
        "version": version.version,
        "uri": version.uri,
        "promote": promote,
        "champion": current is not None and current.version == version.version,
        "champion_version": current.version if current else None,
        "previous_champion": gated_against,
        "gated_against": gated_against,
        "metrics": evaluation["metrics"],
        "decision": evaluation["decision"],
        "mlflow_run_id": tracking.run_id,
        "tracking": tracking.to_dict(),
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


def _tracking_spool(registry_uri: str, model_name: str) -> Path | None:
    """Where runs that could not be tracked wait for a retry: beside a local registry."""
    if "://" in registry_uri:
        return None
    return Path(registry_uri) / model_name / "tracking-pending"


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
    """Writes ``model_card.md`` into the version's folder (the alias moves later, in deploy).

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
