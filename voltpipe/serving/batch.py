"""Batch prediction: score a query's rows with a registered model and write them to a table.

Rows stream from the warehouse as Arrow record batches (DuckDB: ``fetch_record_batch``;
BigQuery: the extraction path's parquet shards), are predicted in large batches with the fast
``Predictor.predict_table`` and written chunk by chunk through ``Warehouse.open_writer`` (a
staging table, then one transaction (DuckDB) or one copy job (BigQuery)), so the step holds one
batch at a time and the rows still land all or nothing. No per-row Python anywhere: features,
predictions and the constant columns are built in NumPy/Arrow.

A forecasting model's query returns each series' recent history instead; the output is every
series' next `horizon` steps (``LoadedModel.forecast_last``, as the server forecasts).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from voltpipe.errors import DataError

DEFAULT_BATCH_ROWS = 262_144
OUTPUT_COLUMNS = ("prediction", "predicted_class", "model_name", "model_version", "predicted_at")
PROBABILITY_PREFIX = "probability_"
BATCH_TASKS = ("regression", "classification", "clustering", "embedding", "forecasting")
FORECAST_COLUMNS = ("step", "prediction", "model_name", "model_version", "predicted_at")
# What a model of another task offers instead, in process (see voltpipe.modelling.predict).
_IN_PROCESS = {"anomaly": "predict_raw"}


def resolve_model(registry_uri: str, model_name: str, selector: str = "champion") -> Any:
    """The registry's version of `model_name` for an alias (``champion``) or a version number.

    Raises:
        DataError: the model has no such alias or version (no champion: run training first).
    """
    from voltpipe.registry import open_registry

    registry = open_registry(registry_uri)
    version = registry.get(model_name, str(selector))
    if version is not None:
        return version
    if str(selector) == "champion":
        raise DataError(
            f"model {model_name!r} has no champion in {registry_uri}: "
            "run training first (`voltpipe run training`)"
        )
    known = [v.version for v in registry.versions(model_name)]
    raise DataError(
        f"model {model_name!r} has no version or alias {selector!r} "
        f"(versions: {', '.join(known) or 'none; run training first'})"
    )


def _column_name(label: str) -> str:
    """A warehouse-safe column name for a class label (BigQuery: letters, digits, _)."""
    return re.sub(r"\W", "_", str(label))


def probability_columns(classes: list[str]) -> list[str]:
    """``probability_<class>`` per class, made unique when two labels clean to the same name."""
    names: list[str] = []
    for label in classes:
        name = PROBABILITY_PREFIX + _column_name(label)
        while name in names:
            name += "_"
        names.append(name)
    return names


def passthrough_columns(schema: pa.Schema, predictor: Any) -> list[str]:
    """The query columns copied to the output: every column but the numeric features.

    Non-features (keys such as ``ts``) and categorical features (identifiers such as
    ``turbine_id``) are kept, so each prediction can be joined back and grouped.

    Raises:
        DataError: a model feature is missing from the query, or a column would clash with an
            output column.
    """
    names = schema.names
    missing = [f for f in predictor.plan.names if f not in names]
    if missing:
        raise DataError(
            f"the scoring query lacks the model's feature column(s) {', '.join(missing)} "
            f"(query columns: {', '.join(names)})"
        )
    keep = [c for c in names if c not in predictor.plan.numeric]
    reserved = set(OUTPUT_COLUMNS) | set(probability_columns(predictor.classes or []))
    clash = [c for c in keep if c in reserved]
    if clash:
        raise DataError(
            f"the scoring query's column(s) {', '.join(clash)} clash with the prediction "
            "output columns; rename them in the query"
        )
    return keep


def _prediction_columns(predictor: Any, outputs: np.ndarray) -> dict[str, pa.Array]:
    if predictor.task == "regression":
        return {"prediction": pa.array(outputs.astype("float64", copy=False).reshape(-1))}
    classes = list(predictor.classes or [])
    proba = outputs.astype("float64", copy=False)
    best = proba.argmax(axis=1)
    columns = {
        "prediction": pa.array(proba[np.arange(len(proba)), best]),
        "predicted_class": pa.array(classes, pa.string()).take(pa.array(best)),
    }
    for k, name in enumerate(probability_columns(classes)):
        columns[name] = pa.array(proba[:, k])
    return columns


def score_batch(
    predictor: Any, batch: pa.RecordBatch | pa.Table, keep: list[str], batch_rows: int
) -> pa.Table:
    """The pass-through columns of `batch` with its prediction columns (no constant columns)."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    if predictor.task in ("clustering", "embedding"):  # cluster/distance_j or pc1..pcN
        unsupervised, keys = predictor.output_columns(table)
        if keys is not None:  # profiles: one row per group and period, keyed
            return pa.table({**{n: keys.column(n) for n in keys.column_names}, **unsupervised})
        return pa.table({**{name: table.column(name) for name in keep}, **unsupervised})
    outputs = predictor.predict_table(table, batch_rows=batch_rows)
    columns = {name: table.column(name) for name in keep}
    columns.update(_prediction_columns(predictor, outputs))
    return pa.table(columns)


def _batches(
    warehouse: str,
    sql: str,
    parameters: dict[str, dict[str, Any]],
    batch_rows: int,
    warehouse_options: dict[str, Any] | None,
    wh: Any = None,
) -> Generator[pa.RecordBatch, None, None]:
    """The query's rows as record batches; the first one (possibly empty) carries the schema.

    `wh`: the warehouse object to read through (one with a writer open reads inside it).
    """
    from voltpipe.data.warehouse import open_warehouse

    wh = wh if wh is not None else open_warehouse(warehouse, warehouse_options)
    if hasattr(wh, "iter_batches"):  # DuckDB: stream straight from the query
        yield from wh.iter_batches(sql, parameters, batch_rows)
        return
    # BigQuery: the extraction path (Storage Read API -> parquet shards), read back in batches.
    import pyarrow.parquet as pq

    from voltpipe.data.extract import extract_window
    from voltpipe.data.io import parquet_files

    with tempfile.TemporaryDirectory(prefix="voltpipe-score-") as tmp:
        extract_window(warehouse, sql, parameters, Path(tmp) / "rows", warehouse_options)
        files = parquet_files(Path(tmp) / "rows")
        yield pa.RecordBatch.from_pylist([], schema=pq.read_schema(files[0]))
        for f in files:
            yield from pq.ParquetFile(f).iter_batches(batch_size=batch_rows)


def _constant(value: Any, type_: pa.DataType, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, type_), n)


def predict_batch(
    warehouse: str,
    sql: str,
    parameters: dict[str, dict[str, Any]],
    model_dir: str | os.PathLike[str],
    destination: str,
    *,
    mode: str = "append",
    batch_size: int = DEFAULT_BATCH_ROWS,
    warehouse_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Scores every row of `sql` with the model in `model_dir` and writes them to `destination`.

    A forecasting model forecasts each series of the query's rows instead (see
    ``forecast_rows``). Otherwise the output holds the query's pass-through columns (see ``passthrough_columns``), then
    ``prediction`` (regression: the value; classification: the probability of
    ``predicted_class``), for classification ``predicted_class`` and ``probability_<class>``
    per class, and ``model_name``, ``model_version`` and ``predicted_at`` (one UTC time per run).
    The write streams one scored batch at a time into a staging table and stays all or
    nothing: one transaction (DuckDB) or one copy job (BigQuery) moves the rows in.

    Args:
        warehouse: ``duckdb:///PATH`` or ``bigquery://PROJECT``.
        sql: BigQuery Standard SQL with ``@named`` parameters selecting the rows to score.
        parameters: ``{name: {"type": T, "value": v}}``.
        model_dir: a voltpipe model folder (a registry version's ``uri``).
        destination: ``DATASET.TABLE`` (DuckDB: ``SCHEMA.TABLE``).
        mode: ``append`` or ``replace``.
        batch_size: rows per read and predict batch.
        warehouse_options: backend settings (the config's ``bigquery:`` section).

    Returns:
        ``{rows, destination, mode, model: {name, version, uri}, predicted_at, columns,
        seconds, predict_seconds, rows_per_second, chunks, largest_chunk_rows}`` (``chunks``:
        the batches written; ``largest_chunk_rows``: the most rows held at once).

    Raises:
        DataError: missing features, an empty result, an unusable query or model, or a
            destination that cannot be written.
        ConfigError: a bad destination name or mode.
    """
    from voltpipe.data.warehouse import WRITE_MODES, open_warehouse, table_parts
    from voltpipe.errors import ConfigError
    from voltpipe.model_dir import read_meta as read_model_meta
    from voltpipe.serving.predictor import Predictor, resolve_model_dir

    if mode not in WRITE_MODES:
        raise ConfigError(f"prediction.write_mode {mode!r}: expected append or replace")
    table_parts(destination)  # fail on a bad name before any work
    if batch_size < 1:
        raise ConfigError(f"prediction.batch_size must be >= 1, got {batch_size}")
    started = time.perf_counter()
    local_dir = resolve_model_dir(model_dir)
    task = read_model_meta(local_dir)["task"]
    if task not in BATCH_TASKS:  # before loading: the model would not even load as rows
        raise DataError(
            f"task {task}: batch prediction scores {', '.join(BATCH_TASKS[:-1])} and "
            f"{BATCH_TASKS[-1]} models, "
            f"not {task} (use LoadedModel.{_IN_PROCESS.get(task, 'predict_raw')} in Python, "
            "or the prediction server)"
        )
    if task == "forecasting":
        return _forecast_batch(
            warehouse,
            sql,
            parameters,
            local_dir,
            destination,
            model_uri=str(model_dir),
            mode=mode,
            batch_size=batch_size,
            warehouse_options=warehouse_options,
            started=started,
        )
    predictor: Any
    if task in ("clustering", "embedding"):
        from voltpipe.serving.unsupervised import UnsupervisedPredictor

        predictor = UnsupervisedPredictor.from_dir(local_dir, warmup_batch_sizes=())
    else:
        predictor = Predictor.from_dir(local_dir, warmup_batch_sizes=())
    # Profiles span batches (a period's readings): they are built from the whole result.
    whole = task == "clustering" and predictor.takes_profiles
    predicted_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    constants = {
        "model_name": (predictor.name, pa.string()),
        "model_version": (str(predictor.version or ""), pa.string()),
        "predicted_at": (predicted_at, pa.timestamp("us", tz="UTC")),
    }
    columns: list[str] = []
    predict_seconds = 0.0
    wh = open_warehouse(warehouse, warehouse_options)
    # One batch is held at a time: scored, then written into the open (uncommitted) write.
    with wh.open_writer(destination, mode=mode) as sink:
        batches = _batches(warehouse, sql, parameters, batch_size, warehouse_options, wh)
        raw: list[pa.RecordBatch] = []  # profiles only: their periods span batches

        def write(rows: pa.RecordBatch | pa.Table) -> None:
            nonlocal predict_seconds, columns
            tick = time.perf_counter()
            scored = score_batch(predictor, rows, keep, batch_size)
            for name, (value, type_) in constants.items():
                scored = scored.append_column(name, _constant(value, type_, scored.num_rows))
            predict_seconds += time.perf_counter() - tick
            columns = scored.column_names
            sink.write(scored)

        try:
            first = next(batches)
            keep = [] if whole else passthrough_columns(first.schema, predictor)
            for batch in batches:
                if not batch.num_rows:
                    continue
                if whole:
                    raw.append(batch)
                else:
                    write(batch)
        finally:
            batches.close()
        if raw:
            write(pa.Table.from_batches(raw))
        if sink.rows == 0:  # raised inside the block: nothing is written
            raise _no_rows(parameters)
    seconds = time.perf_counter() - started
    return {
        "rows": int(sink.rows),
        "destination": destination,
        "mode": mode,
        "model": {
            "name": predictor.name,
            "version": predictor.version,
            "uri": str(model_dir),
        },
        "predicted_at": predicted_at.isoformat(),
        "columns": columns,
        "seconds": round(seconds, 3),
        "predict_seconds": round(predict_seconds, 3),
        "rows_per_second": round(sink.rows / seconds) if seconds > 0 else None,
        "chunks": sink.chunks,
        "largest_chunk_rows": sink.largest_chunk,
    }


def _no_rows(parameters: dict[str, dict[str, Any]]) -> DataError:
    shown = ", ".join(f"@{k}={v['value']!r}" for k, v in parameters.items()) or "none"
    return DataError(f"the scoring query returned no rows (parameters: {shown})")


def _as_column_type(values: pa.Array, type_: pa.DataType) -> pa.Array:
    """`values` cast to the query column's type where that keeps them (a DATE stays a DATE, a
    zoned TIMESTAMP keeps its zone, a numeric group key stays a number), else as they are."""
    if values.type == type_:
        return values
    try:
        return values.cast(type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return values


def forecast_rows(loaded: Any, history: pa.Table) -> pa.Table:
    """The next `horizon` steps of every series in `history` as a long table.

    One row per series and step: the group column (when the model has one), the time column
    (the series' last time plus ``step`` times its spacing; null for a one-row window), ``step``
    (1..horizon) and ``prediction``, in the label's units. The group and time columns keep
    the query's types: DATE, DATETIME and TIMESTAMP (with its zone) alike.

    Raises:
        DataError: a missing or bad column, a series shorter than the model's context, or a
            gap or duplicate time in a series' last rows (the message names the series).
    """
    f = loaded.meta["forecasting"]
    group, time = f.get("group_column"), str(f["time_column"])
    try:
        result = loaded.forecast_last(history)
    except DataError as exc:
        raise DataError(f"the scoring query's rows: {exc}") from None
    n, horizon = result.forecast.shape
    columns: dict[str, pa.Array] = {}
    if group and group in history.column_names:
        keys = pa.array(np.repeat(result.groups, horizon).tolist(), pa.string())
        columns[group] = _as_column_type(keys, history.schema.field(group).type)
    time_type = history.schema.field(time).type
    times = result.times
    columns[time] = (
        _as_column_type(pa.array(times.reshape(-1)), time_type)
        if times is not None
        else pa.nulls(n * horizon, time_type)
    )
    columns["step"] = pa.array(np.tile(np.arange(1, horizon + 1, dtype="int32"), n))
    columns["prediction"] = pa.array(result.forecast.astype("float64").reshape(-1))
    return pa.table(columns)


def _forecast_batch(
    warehouse: str,
    sql: str,
    parameters: dict[str, dict[str, Any]],
    local_dir: Path,
    destination: str,
    *,
    model_uri: str,
    mode: str,
    batch_size: int,
    warehouse_options: dict[str, Any] | None,
    started: float,
) -> dict[str, Any]:
    """``predict_batch`` for a forecasting model: every series' next `horizon` steps."""
    from voltpipe.data.warehouse import open_warehouse
    from voltpipe.modelling.predict import load_model
    from voltpipe.serving.predictor import registry_info

    loaded = load_model(local_dir)
    name, version = registry_info(local_dir)
    predicted_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    batches = _batches(warehouse, sql, parameters, batch_size, warehouse_options)
    try:
        history = pa.Table.from_batches(list(batches))
    finally:
        batches.close()  # releases the read connection before the write opens one
    if history.num_rows == 0:
        raise _no_rows(parameters)
    reserved = [c for c in FORECAST_COLUMNS if c in history.column_names]
    f = loaded.meta["forecasting"]
    keys = {f["time_column"], f.get("group_column")}
    clash = [c for c in reserved if c not in keys]
    if clash:
        raise DataError(
            f"the scoring query's column(s) {', '.join(clash)} clash with the forecast output "
            "columns; rename them in the query"
        )
    scored = forecast_rows(loaded, history)
    rows = scored.num_rows
    scored = scored.append_column("model_name", _constant(name, pa.string(), rows))
    scored = scored.append_column("model_version", _constant(str(version or ""), pa.string(), rows))
    scored = scored.append_column(
        "predicted_at", _constant(predicted_at, pa.timestamp("us", tz="UTC"), rows)
    )
    predict_seconds = time.perf_counter() - started
    written = open_warehouse(warehouse, warehouse_options).write_table(
        scored, destination, mode=mode
    )
    seconds = time.perf_counter() - started
    horizon = int(f["horizon"])
    return {
        "rows": int(written),
        "series": rows // horizon,
        "horizon": horizon,
        "history_rows": history.num_rows,
        "destination": destination,
        "mode": mode,
        "model": {"name": name, "version": version, "uri": model_uri},
        "predicted_at": predicted_at.isoformat(),
        "columns": scored.column_names,
        "seconds": round(seconds, 3),
        "predict_seconds": round(predict_seconds, 3),
        "rows_per_second": round(rows / seconds) if seconds > 0 else None,
    }
