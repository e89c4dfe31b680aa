"""Deploying a registered version locally: smoke-test it, then point ``champion`` at it.

A server started with ``voltpipe serve --model NAME@champion`` and `registry_source` follows the
alias (hot reload, see `voltpipe.serving.server.ModelReloader`), so moving the alias is the
deployment; a version that fails its smoke test never gets (or keeps) the alias. The smoke test
goes through the server's own predictor and request checks, for every task.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voltpipe.deploy.expected import ANY_CHAMPION
from voltpipe.errors import ConfigError, DataError
from voltpipe.registry.base import CHAMPION
from voltpipe.registry.factory import open_registry
from voltpipe.registry.local import LocalRegistry
from voltpipe.serving.server import ModelSource

if TYPE_CHECKING:
    import pyarrow as pa

    from voltpipe.serving.validation import HistorySpec

log = logging.getLogger("voltpipe.deploy")

REFERENCE_FILE = "reference_sample.parquet"  # as voltpipe.monitoring.monitor stores it
SMOKE_ROWS = 5


def sample_instances(model_dir: str | Path, n: int = SMOKE_ROWS) -> list[dict[str, Any]]:
    """Up to `n` JSON-able request instances for the model in `model_dir`, as the server takes them.

    Row models (regression, classification, anomaly): complete rows of the version's stored
    reference sample (features only) when present, else one row built from the feature plan
    (numeric means, first category). Forecasting: per series of the reference sample, its
    latest run of `context` (the model's history length, at least `window`) evenly spaced rows as ``{"history": [...], group: name}``, else one
    synthetic history at the training means.

    Raises:
        DataError: the folder is not a voltpipe model.
    """
    from voltpipe.model_dir import read_meta as read_model_meta

    path = Path(model_dir)
    meta = read_model_meta(path)
    reference = path / REFERENCE_FILE
    if meta["task"] == "forecasting":
        return _history_instances(meta, reference, n)
    if (meta.get("clustering") or {}).get("profile"):  # a profile model takes {"profile": [...]}
        from voltpipe.serving.unsupervised import UnsupervisedPredictor

        return [UnsupervisedPredictor.from_dir(path, warmup_batch_sizes=()).example_instance()]
    features = meta["features"]
    numeric, categorical = dict(features["numeric"]), dict(features["categorical"])
    names = [*numeric, *categorical]
    if reference.exists():
        import pyarrow.parquet as pq

        table = pq.read_table(reference)
        if all(n in table.column_names for n in names):
            rows = [
                r
                for r in table.select(names).slice(0, 50 * n).to_pylist()
                if all(v is not None for v in r.values())
            ]
            if rows:
                return [_jsonable(r) for r in rows[:n]]
    row: dict[str, Any] = {k: float(st["mean"]) for k, st in numeric.items()}
    row |= {k: (vocab[0] if vocab else "") for k, vocab in categorical.items()}
    return [row]


def _history_instances(meta: dict[str, Any], reference: Path, n: int) -> list[dict[str, Any]]:
    from voltpipe.serving.forecast import example_history
    from voltpipe.serving.validation import HistorySpec

    spec = HistorySpec.from_meta(meta)
    if reference.exists():
        import pyarrow.parquet as pq

        instances = _reference_histories(pq.read_table(reference), spec, n)
        if instances:
            return instances
    return [example_history(meta)]


def _reference_histories(table: pa.Table, spec: HistorySpec, n: int) -> list[dict[str, Any]]:
    """Up to `n` series' latest runs of `spec.history_rows` evenly spaced, complete rows.

    The reference sample is a random sample of the training rows when the data was large, so
    a series may have gaps: the run is searched for, not assumed.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    group = spec.group_column if spec.group_column in table.column_names else None
    names = [spec.time_column, *spec.values]
    if not all(c in table.column_names for c in names):
        return []
    table = table.select([*names, *([group] if group else [])]).drop_null()
    for name in spec.values:
        if pa.types.is_floating(table.schema.field(name).type):
            table = table.filter(pc.is_finite(table.column(name)))
    keys = [(spec.time_column, "ascending")]
    if group is not None:
        keys.insert(0, (group, "ascending"))
    table = table.sort_by(keys)
    values = pc.unique(table.column(group)).to_pylist() if group is not None else [None]
    instances: list[dict[str, Any]] = []
    for value in values:
        series = table if group is None else table.filter(pc.equal(table.column(group), value))
        need = spec.history_rows  # the model's context: a shorter history is a 400
        end = _latest_even_run(series.column(spec.time_column).to_numpy(), need)
        if end is None:
            continue
        rows = series.slice(end - need + 1, need).select(names).to_pylist()
        instance: dict[str, Any] = {"history": rows}
        if group is not None:
            instance[group] = value
        instances.append(_jsonable(instance))
        if len(instances) == n:
            break
    return instances


def _latest_even_run(times: Any, window: int) -> int | None:
    """The last row of the latest `window` consecutive rows whose steps are equal and positive."""
    import numpy as np

    if len(times) < window:
        return None
    if window == 1:
        return len(times) - 1
    d = np.diff(times)
    positive = d > np.zeros_like(d[:1])
    k = np.arange(len(d))
    continues = positive & np.r_[False, positive[:-1] & (d[1:] == d[:-1])]
    run = np.where(positive, k - np.maximum.accumulate(np.where(continues, 0, k)) + 1, 0)
    ends = np.flatnonzero(run >= window - 1)
    return int(ends[-1]) + 1 if len(ends) else None


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(row, default=_json_default))


def _json_default(value: Any) -> Any:
    # Times as ISO 8601 (the server's time format); other objects as text.
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def smoke_test(model_dir: str | Path, instances: list[dict[str, Any]]) -> list[Any]:
    """Loads the model as the server does and predicts `instances`; returns the predictions.

    Every task goes through the server's predictor (`load_predictor`) and request checks. A row
    model with a replay saved at training is checked on that replay and its ``model.keras``
    archive checked whole, and a gbdt or linear model's file against the checksum in its
    metadata (``model_dir.check_model_files``), so this step needs no TensorFlow.

    Raises:
        DataError: it does not load, fails to predict, or predicts a wrong count or non-finite
            values.
    """
    from voltpipe.model_dir import check_model_files
    from voltpipe.serving.predictor import load_predictor

    try:
        check_model_files(model_dir)
        predictor = load_predictor(model_dir, engine="numpy", warmup_batch_sizes=(1,))
        predictions = predictor.predict(instances)
    except Exception as exc:
        raise DataError(f"{type(exc).__name__}: {exc}") from exc
    if len(predictions) != len(instances):
        raise DataError(f"{len(predictions)} predictions for {len(instances)} instances")
    for p in predictions:
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in _numbers(p)):
            raise DataError(f"non-finite prediction {p!r}")
    return predictions


def _numbers(prediction: Any) -> list[Any]:
    """The numbers of one prediction, whatever the task's response format."""
    if not isinstance(prediction, dict):
        return [prediction]  # regression
    if "distances" in prediction:  # clustering
        return [*prediction["distances"], *prediction.get("probabilities", [])]
    if "components" in prediction:  # embedding
        return list(prediction["components"]) or [math.nan]
    if "probabilities" in prediction:
        return list(prediction["probabilities"].values())
    if "forecast" in prediction:
        return list(prediction["forecast"]) or [math.nan]
    return [prediction["score"], prediction["threshold"]]  # anomaly


def champion_moved_message(name: str, version: str, expected: Any, now: str) -> str:
    """Why a promoted version did not become champion: another run moved the alias first."""
    before = f"version {expected}" if expected else "no champion"
    after = f"version {now}" if now else "no champion"
    return (
        f"{name} version {version} was gated against {before}, but the champion is now {after} "
        f"(another run moved it): version {version} was not promoted; run training again to "
        f"gate it against {after}"
    )


def deploy_local(
    registry_uri: str,
    model_name: str,
    version: str,
    *,
    previous_version: str | None = None,
    smoke_instances: list[dict[str, Any]] | None = None,
    expected_champion: Any = ANY_CHAMPION,
) -> dict[str, Any]:
    """Smoke-tests `version`, then makes it the ``champion`` (what a hot-reloading server serves).

    The alias moves once, after the smoke test passed, as a compare-and-swap under the
    registry lock: with `expected_champion` given (the champion the gate compared with, None
    for none), it moves only if the champion is still that one; otherwise nothing changes and
    the summary says ``moved: false`` and why. A version that fails its smoke test never gets
    the alias; if it already holds it (an older run moved it before its smoke test), it is
    moved back to `previous_version` (default: the champion before this call), or removed.

    Returns:
        ``{target, name, version, champion, previous_champion, moved, champion_moved, reason,
        smoke_rows, predictions}``.

    Raises:
        ConfigError: no such version in the registry.
        DataError: the smoke test failed (the previous champion keeps serving).
    """
    registry = open_registry(registry_uri)
    found = registry.get(model_name, version)
    if found is None:
        raise ConfigError(f"model {model_name!r} has no version {version!r} in {registry_uri}")
    try:
        current = registry.get(model_name, CHAMPION)
    except DataError as exc:
        if expected_champion is not ANY_CHAMPION:
            raise
        log.warning("the champion alias is unreadable: %s", exc)
        current = None
    if previous_version is None and current is not None and current.version != version:
        previous_version = current.version
    instances = smoke_instances or sample_instances(found.uri)
    try:
        predictions = smoke_test(found.uri, instances)
    except DataError as exc:
        if current is not None and current.version == version:
            if previous_version:
                registry.set_alias(model_name, CHAMPION, previous_version)
            else:
                registry.remove_alias(model_name, CHAMPION, version)
        keeps = (
            f"the previous champion (version {previous_version}) keeps serving"
            if previous_version
            else "there is no previous champion to serve"
        )
        raise DataError(
            f"model {model_name} version {version} failed its smoke test, so it was not "
            f"deployed; {keeps}: {exc}"
        ) from exc
    summary = {
        "target": "local",
        "name": model_name,
        "version": version,
        "smoke_rows": len(instances),
        "predictions": predictions[:3],
    }
    if expected_champion is ANY_CHAMPION:
        registry.set_alias(model_name, CHAMPION, version)
        moved_to = None
    else:
        moved_to = registry.compare_and_set_alias(
            model_name, CHAMPION, version, expected=expected_champion
        )
    if moved_to is not None:
        reason = champion_moved_message(model_name, version, expected_champion, moved_to)
        log.warning("%s", reason)
        return summary | {
            "champion": moved_to or None,
            "previous_champion": moved_to or None,
            "moved": False,
            "champion_moved": True,
            "reason": reason,
        }
    log.info("model %s version %s is the champion", model_name, version)
    already = current is not None and current.version == version
    return summary | {
        "champion": version,
        "previous_champion": previous_version,
        "moved": not already,
        "champion_moved": False,
        "reason": f"version {version} passed its smoke test and is the champion",
    }


def registry_source(
    registry_uri: str, model_name: str, selector: str = CHAMPION, *, interval_seconds: float = 2.0
) -> ModelSource:
    """The `ModelSource` for ``serve(..., source=...)``: the version `selector` names in a local
    registry, watched through the registry's ``aliases.json``.

    Raises:
        ConfigError: the registry is not a local folder.
    """
    registry = open_registry(registry_uri)
    if not isinstance(registry, LocalRegistry):
        raise ConfigError(
            f"hot reload follows a local registry folder; {registry_uri!r} is not one"
        )

    def resolve() -> str:
        found = registry.get(model_name, selector)
        if found is None:
            raise ConfigError(f"model {model_name!r} has no version {selector!r}")
        return found.uri

    watch = None if selector.isdigit() else registry.root / model_name / "aliases.json"
    return ModelSource(resolve=resolve, watch=watch, interval_seconds=interval_seconds)
