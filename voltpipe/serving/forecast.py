"""Serving a forecasting model: each instance is one series' recent history; the prediction is
the forecast of the `horizon` steps after its last row, from its last `window` rows.

The history is prepared by ``modelling.predict.last_windows`` (``forecasting.series_table``
inside, as in training and ``predict_raw``), so a served forecast equals
``LoadedModel.forecast_last`` on the same rows. A Keras network runs as one concrete TF function
over the stacked windows of a request; a gbdt, statistical or auto model (``forecasting.members``
in its meta) forecasts through ``forecast_features`` in NumPy and LightGBM, and TensorFlow is
never imported.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from voltpipe.errors import DataError
from voltpipe.modelling.predict import LastWindows, context_rows, format_times, last_windows
from voltpipe.modelling.train import read_model_meta
from voltpipe.serving.predictor_base import BasePredictor, load_keras_model, registry_info
from voltpipe.serving.validation import History, HistorySpec, RequestError, parse_history

FORECAST_WARMUP_BATCH_SIZES = (1, 2, 8)


class ForecastPredictor(BasePredictor):
    """Forecasts from JSON-like instances ``{"history": ..., GROUP_COLUMN: value?}``.

    Attributes:
        spec: the columns, window and horizon a request's history must match.
    """

    def __init__(
        self,
        model: Any,
        meta: dict[str, Any],
        *,
        name: str,
        version: str | None = None,
        forecaster: Any = None,
    ) -> None:
        self.meta = meta
        self.task = str(meta["task"])
        if self.task != "forecasting":
            raise DataError(f"task {self.task}: ForecastPredictor serves forecasting models")
        self.spec = HistorySpec.from_meta(meta)
        self.channels = list(meta["forecasting"].get("channels") or [])
        self.name = name
        self.version = version
        self._forecaster = forecaster
        self.context = context_rows(meta["forecasting"])
        if forecaster is not None:
            return
        import tensorflow as tf

        self._tf = tf
        self._model = model
        width = len(self.channels) or int(model.inputs[0].shape[-1])
        signature = [tf.TensorSpec((None, self.spec.window, width), tf.float32, name="window")]
        self._fn = tf.function(
            lambda x: model(x, training=False), input_signature=signature
        ).get_concrete_function()

    @property
    def engine(self) -> str:
        return "tensorflow" if self._forecaster is None else self._forecaster.engine

    @classmethod
    def from_dir(
        cls,
        model_dir: str | os.PathLike[str],
        *,
        warmup_batch_sizes: Iterable[int] = FORECAST_WARMUP_BATCH_SIZES,
    ) -> ForecastPredictor:
        """Loads ``model.keras`` (safe mode) and ``voltpipe_model.json`` and warms up.

        Raises:
            DataError: the folder is not a voltpipe forecasting model.
        """
        path = Path(model_dir)
        meta = read_model_meta(path)
        if meta.get("forecasting", {}).get("members"):
            from voltpipe.modelling.forecast_auto import load_forecaster

            name, version = registry_info(path)
            predictor = cls(
                None, meta, name=name, version=version, forecaster=load_forecaster(path, meta)
            )
        else:
            model, meta, name, version = load_keras_model(path)
            predictor = cls(model, meta, name=name, version=version)
        predictor.warm_up(warmup_batch_sizes)
        return predictor

    def warm_up(self, batch_sizes: Iterable[int] = FORECAST_WARMUP_BATCH_SIZES) -> None:
        instance = self.example_instance()
        for size in batch_sizes:
            for _ in range(3):
                self.predict([instance] * size)

    def example_instance(self) -> dict[str, Any]:
        """A valid instance (see `example_history`)."""
        return example_history(self.meta)

    def predict(self, instances: list[dict[str, Any]]) -> list[Any]:
        """``{"forecast": [horizon numbers], "times": [horizon times] | null}`` per instance.

        Raises:
            RequestError: 400 naming the field of a malformed history (see
                ``validation.parse_history``), a gap or a duplicate time in its last window.
        """
        histories = [parse_history(inst, i, self.spec) for i, inst in enumerate(instances)]
        windows = [self._window(h, i) for i, h in enumerate(histories)]
        if self._forecaster is not None:
            out = np.concatenate(
                [self._forecaster.forecast(w.series, w.origins, w.steps) for w in windows]
            ).astype(np.float64)
        else:
            x = (
                np.concatenate([w.values for w in windows])
                if len(windows) > 1
                else windows[0].values
            )
            out = self.predict_windows(x).astype(np.float64)
        horizon = self.spec.horizon
        return [
            {"forecast": row, "times": _times(w, h.time_kind, horizon)}
            for row, w, h in zip(out.tolist(), windows, histories, strict=True)
        ]

    def predict_windows(self, values: np.ndarray) -> np.ndarray:
        """(n, horizon) forecasts for (n, window, channels) prepared windows."""
        return self._fn(self._tf.constant(values, self._tf.float32)).numpy()

    def _window(self, history: History, i: int) -> LastWindows:
        try:
            return last_windows(history.table, self.meta)
        except DataError as exc:
            message = str(exc).removeprefix("the history ")
            raise RequestError(400, f"instances[{i}].history {message}") from None

    def describe(self) -> dict[str, Any]:
        spec = self.spec
        time_type = (
            "string: an ISO 8601 time (e.g. 2024-05-01T13:00:00Z)"
            if spec.calendar
            else "string (ISO 8601 time) or number"
        )
        row = {spec.time_column: time_type, **{c: "number" for c in spec.values}}
        instance: dict[str, Any] = {"history": [row]}
        if spec.group_column:
            instance[spec.group_column] = "string (optional): the series' name"
        return {
            "model": self.name,
            "version": self.version,
            "task": self.task,
            "label": spec.label,
            "time_column": spec.time_column,
            "group_column": spec.group_column,
            "covariates": list(spec.covariates),
            "window": spec.window,
            "context": self.context,
            "horizon": spec.horizon,
            "calendar": spec.calendar,
            "request": {
                "instances": [instance],
                "notes": (
                    f"one series per instance, at least {self.context} rows in any order; the "
                    "forecast starts after the last row and uses the last "
                    f"{self.context}, which must be evenly spaced (no gap, no duplicate time); "
                    "no null or NaN values; history may also be an object of columns "
                    f'{{"{spec.time_column}": [...], "{spec.label}": [...]}}; times with an '
                    "offset are read as UTC"
                ),
            },
            "response": {
                "predictions": [
                    {
                        "forecast": f"list of {spec.horizon} numbers: {spec.label} at the next "
                        f"{spec.horizon} steps",
                        "times": f"list of {spec.horizon} times of those steps (the last time "
                        "plus the history's step, as sent), or null for a one-row window",
                    }
                ]
            },
        }


def example_history(meta: dict[str, Any]) -> dict[str, Any]:
    """A valid instance for a forecasting model: `context` (else `window`) evenly spaced rows at
    the training means (hourly from 2024-01-01 for calendar models, steps 0, 1, ... otherwise)."""
    spec = HistorySpec.from_meta(meta)
    rows = context_rows(meta["forecasting"])
    stats = meta["features"]["numeric"]
    row = {spec.label: float((meta.get("label_stats") or {}).get("mean") or 0.0)}
    row |= {c: float(stats[c]["mean"]) if c in stats else 0.0 for c in spec.covariates}
    start = dt.datetime(2024, 1, 1)
    times: list[Any] = (
        [(start + dt.timedelta(hours=k)).isoformat() for k in range(rows)]
        if spec.calendar
        else list(range(rows))
    )
    return {"history": [{spec.time_column: t, **row} for t in times]}


def _times(window: LastWindows, kind: str, horizon: int) -> list[Any] | None:
    times = window.forecast_times(horizon)
    if times is None:
        return None
    row = times[0]
    if kind == "number":
        return row.tolist()
    if kind == "date" and np.array_equal(row, row.astype("datetime64[D]")):
        row = row.astype("datetime64[D]")
    text = format_times(row)
    return [t + "Z" for t in text] if kind == "utc" else text
