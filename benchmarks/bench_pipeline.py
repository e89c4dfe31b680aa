"""The demo training pipeline under kfp.local vs the same work in one plain Python process.

Figures (goals from the Foundation issue):
- pipeline wall time / in-process wall time  (goal <= 1.3): the price of running each step as
  its own process, as Vertex does;
- fully cached re-run / first run             (goal <= 0.1).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks import Row


def _in_process(cfg, root: Path) -> float:
    """The pipeline's steps called one after another as plain functions."""
    from voltpipe.data.extract import extract_splits
    from voltpipe.data.io import write_json_atomic
    from voltpipe.data.validation import compute_statistics, infer_schema, validate
    from voltpipe.evaluation.evaluate import evaluate_challenger
    from voltpipe.modelling.train import train_model
    from voltpipe.registry import open_registry
    from voltpipe.registry.promote import register_and_promote
    from voltpipe.runners.preflight import check_query, ensure_embedded_warehouse

    started = time.perf_counter()
    ensure_embedded_warehouse(cfg)
    check_query(cfg)
    dirs = {s: root / s for s in ("train", "valid", "test")}
    extract_splits(
        cfg.warehouse_uri,
        cfg.sql,
        cfg.typed_parameters,
        cfg.split.model_dump(exclude_none=True),
        dirs,
    )
    stats = {s: compute_statistics(d) for s, d in dirs.items()}
    validate(stats, label=cfg.label, task=cfg.task, features=cfg.features).raise_if_failed()
    write_json_atomic(root / "statistics.json", stats)
    write_json_atomic(root / "schema.json", infer_schema(stats["train"]))
    train_model(
        dirs["train"],
        dirs["valid"],
        root / "model",
        label=cfg.label,
        task=cfg.task,
        features=cfg.features,
        exclude=cfg.exclude,
        model_params=cfg.model.model_dump(exclude_none=True),
        training_params=cfg.training.model_dump(exclude_none=True),
    )
    champion = open_registry(cfg.registry_uri).get(cfg.name)
    result = evaluate_challenger(
        root / "model",
        dirs["test"],
        champion_dir=champion.uri if champion else None,
        champion_version=champion.version if champion else None,
        metric=cfg.gate_metric,
        min_improvement=cfg.deploy.gate.min_improvement,
    )
    write_json_atomic(root / "evaluation.json", result.to_dict())
    info = register_and_promote(
        model_dir=str(root / "model"),
        evaluation_path=str(root / "evaluation.json"),
        statistics_path=str(root / "statistics.json"),
        schema_path=str(root / "schema.json"),
        registry_uri=cfg.registry_uri,
        model_name=cfg.name,
        query=cfg.sql,
        query_parameters=cfg.typed_parameters,
        tracking_uri=cfg.tracking_uri,
        out_path=str(root / "registration.json"),
        reference_path=str(dirs["train"]),
    )
    if info["champion"]:  # the pipeline's deploy step: smoke-test the new champion
        from voltpipe.deploy.local import sample_instances, smoke_test

        smoke_test(info["uri"], sample_instances(info["uri"]))
    return time.perf_counter() - started


def run(quick: bool = False) -> list[Row]:
    from voltpipe.config import load_config
    from voltpipe.runners.local import run_local

    overrides = ["training.epochs=3"] if quick else []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        # Both runs start from a seeded warehouse and an empty registry, in separate work dirs.
        cfg_a = load_config(None, [*overrides, f"workdir={base / 'a'}"])
        cfg_b = load_config(None, [*overrides, f"workdir={base / 'b'}"])
        from voltpipe.runners.preflight import ensure_embedded_warehouse

        ensure_embedded_warehouse(cfg_a)
        ensure_embedded_warehouse(cfg_b)
        plain = _in_process(cfg_b, base / "plain")
        started = time.perf_counter()
        run_local("training", cfg_a, cache=True)
        first = time.perf_counter() - started
        started = time.perf_counter()
        run_local("training", cfg_a, cache=True)
        cached = time.perf_counter() - started
    return [
        Row(
            "pipeline",
            "demo training: kfp.local vs one process",
            first,
            "s",
            plain,
            "same steps in one Python process",
            "ratio <= 1.3",
        ),
        Row(
            "pipeline",
            "demo training: cached re-run vs first run",
            cached,
            "s",
            first,
            "first run",
            "ratio <= 0.1",
        ),
    ]
