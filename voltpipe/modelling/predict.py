"""Loading a saved voltpipe model and predicting on an Arrow table."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from voltpipe.errors import DataError
from voltpipe.model_dir import FILE_FAMILIES, MODEL_FILE, RowScorer, load_row_scorer, read_meta
from voltpipe.modelling import forecasting as fc
from voltpipe.modelling.features import FeaturePlan, model_inputs

read_model_meta = read_meta  # the old name, still importable from here


def feature_plan(meta: dict[str, Any]) -> FeaturePlan:
    return FeaturePlan.from_dict(meta["features"])


@dataclasses.dataclass
class ForecastWindows:
    """The windows of a table a forecaster scores, with their true targets where known."""

    series: fc.SeriesTable
    starts: np.ndarray
    window: int
    horizon: int

    @property
    def y_true(self) -> np.ndarray:
        """(n_windows, horizon): the label over each window's horizon."""
        return fc.targets(self.series, self.starts, self.window, self.horizon)

    @property
    def groups(self) -> np.ndarray:
        return self.series.groups[self.starts]

    @property
    def first_forecast_times(self) -> np.ndarray:
        """The time of each window's first forecast step."""
        return self.series.times[self.starts + self.window]


@dataclasses.dataclass
class LoadedModel:
    """A saved model and its metadata.

    Row models (regression, classification, anomaly) of family gbdt or linear, and Keras row
    models whose folder holds a replay (``voltpipe_replay.npz``, saved and checked at
    training), predict with their `RowScorer` (``model_dir.load_row_scorer``), without
    TensorFlow; `model` is None until something asks for the Keras model (`keras_model`).
    """

    model: Any
    meta: dict[str, Any]
    replay: RowScorer | None = None
    model_dir: Path | None = None
    forecaster: Any = None  # gbdt / statistical / auto forecasting models (no Keras)

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    @property
    def keras_model(self) -> Any:
        """The Keras model, loaded (safe mode) on first use when a replay was loaded instead."""
        if self.model is None:
            family = self.meta.get("family")
            if family in FILE_FAMILIES:
                raise DataError(f"a {family} model has no Keras model; it scores with NumPy")
            import keras

            if self.model_dir is None:
                raise DataError("this LoadedModel has neither a Keras model nor its folder")
            self.model = keras.models.load_model(
                self.model_dir / MODEL_FILE, safe_mode=True, compile=False
            )
        return self.model

    def forecast_windows(self, table: pa.Table) -> ForecastWindows:
        """The scored windows of `table` (see ``predict_raw``) for a forecasting model.

        Raises:
            DataError: a column is missing or bad, or no series is long enough for a window.
        """
        f = self.meta["forecasting"]
        st = fc.series_table(
            table,
            label=self.meta["label"],
            time_column=f["time_column"],
            group_column=f["group_column"],
            covariates=list(f["covariates"]),
            calendar=bool(f["calendar"]),
        )
        context = context_rows(f)
        starts = fc.checked_starts(
            st,
            window=context,
            horizon=f["horizon"],
            split="scored",
            group_column=f["group_column"],
        )
        return ForecastWindows(st, starts, context, f["horizon"])

    def predict_raw(self, table: pa.Table, batch_size: int = 8192) -> np.ndarray:
        """Model outputs, as ``voltpipe_model.json``'s "output" states.

        - regression: (n,) values in the label's units;
        - classification: (n, classes) probabilities;
        - forecasting: (n_windows, horizon) label forecasts for the windows of
          ``forecast_windows(table)`` (ordered by group then time);
        - anomaly: (n,) reconstruction errors (anomalous above ``meta["anomaly"]["threshold"]``).
        """
        from voltpipe.modelling.inputs import row_dataset, window_dataset

        if self.task in ("clustering", "embedding"):  # (n, k) distances / (n, m) components
            return np.asarray(self.model.predict_raw(table))
        if self.task == "forecasting":
            w = self.forecast_windows(table)
            if self.forecaster is not None:
                return self.forecaster.forecast(w.series, w.starts + w.window)
            ds = window_dataset(
                w.series.values,
                None,
                w.starts,
                window=w.window,
                horizon=w.horizon,
                batch=batch_size,
                shuffle=False,
            )
            return self.keras_model.predict(ds, verbose=0).astype("float32")
        plan = feature_plan(self.meta)
        if self.replay is not None:
            forward = self.replay.forward(list(plan.numeric), list(plan.categorical))
            parts = []
            for start in range(0, max(table.num_rows, 1), batch_size):
                chunk = table.slice(start, batch_size)
                x, n = model_inputs(chunk, plan), chunk.num_rows
                xn = np.hstack([x[k] for k in plan.numeric]) if plan.numeric else np.empty((n, 0))
                xc = (
                    np.hstack([x[k] for k in plan.categorical])
                    if plan.categorical
                    else np.empty((n, 0), object)
                )
                parts.append(forward(xn, xc).astype("float32"))
            out = np.concatenate(parts)
        else:
            x = model_inputs(table, plan)
            out = self.keras_model.predict(
                row_dataset(x, None, batch=batch_size, shuffle=False), verbose=0
            )
        return out.reshape(-1) if self.task in ("regression", "anomaly") else out

    def is_anomaly(self, table: pa.Table) -> np.ndarray:
        """Rows whose reconstruction error exceeds the stored threshold (anomaly models)."""
        return self.predict_raw(table) > float(self.meta["anomaly"]["threshold"])

    def forecast_last(self, table: pa.Table, batch_size: int = 8192) -> LastForecast:
        """Forecasts the `horizon` steps after the end of each series in `table` (forecasting).

        Unlike ``predict_raw``, which scores every window that has a known future, this scores
        one window per series: its last `window` rows, as a server answering "what comes next"
        does (``voltpipe.serving`` calls the same ``last_windows``). Rows are sorted by time;
        a table without the model's group column is one series.

        Raises:
            DataError: a column is missing or bad, a series has fewer than `window` rows, or a
                series' last `window` rows are not evenly spaced in time (a gap or a duplicate).
        """
        if self.task != "forecasting":
            raise DataError(f"forecast_last needs a forecasting model; this one is {self.task}")
        w = last_windows(table, self.meta)
        if self.forecaster is not None:
            return LastForecast(self.forecaster.forecast(w.series, w.origins, w.steps), w)
        out = self.keras_model.predict(w.values, batch_size=batch_size, verbose=0)
        return LastForecast(np.asarray(out, dtype="float32"), w)


@dataclasses.dataclass
class LastWindows:
    """The last window of each series of a table: a forecaster's input for "what comes next".

    Attributes:
        values: (n_series, window, channels) float32, the model's input.
        groups: (n_series,) each series' group value (str; "" without a group column).
        last_times: (n_series,) the time of each series' last row.
        steps: (n_series,) each series' time step (the spacing of its last window), or None
            when the window has a single row and the step cannot be inferred.
    """

    values: np.ndarray
    groups: np.ndarray
    last_times: np.ndarray
    steps: np.ndarray | None
    series: fc.SeriesTable | None = None  # the sorted history, for the feature path
    origins: np.ndarray | None = None  # (n_series,) the row after each series' last one

    def forecast_times(self, horizon: int) -> np.ndarray | None:
        """(n_series, horizon): the times of the forecast steps, or None without a step."""
        if self.steps is None:
            return None
        k = np.arange(1, horizon + 1)
        return self.last_times[:, None] + self.steps[:, None] * k


@dataclasses.dataclass
class LastForecast:
    """``LoadedModel.forecast_last``'s result: one forecast per series.

    Attributes:
        forecast: (n_series, horizon) float32 label forecasts, in the label's units.
        windows: the inputs (groups, last times, steps) the forecasts were made from.
    """

    forecast: np.ndarray
    windows: LastWindows

    @property
    def groups(self) -> np.ndarray:
        return self.windows.groups

    @property
    def times(self) -> np.ndarray | None:
        """(n_series, horizon) times of the forecast steps, or None without a step."""
        return self.windows.forecast_times(self.forecast.shape[1])

    def to_table(self, *, group_column: str = "group", time_column: str = "time") -> pa.Table:
        """A long table: one row per series and step (group, step 1..horizon, time, forecast).

        `time` is null when the step cannot be inferred (a one-row window).
        """
        n, horizon = self.forecast.shape
        times = self.times
        return pa.table(
            {
                group_column: pa.array(np.repeat(self.groups, horizon).tolist(), pa.string()),
                "step": pa.array(np.tile(np.arange(1, horizon + 1), n), pa.int32()),
                time_column: (
                    pa.array(times.reshape(-1))
                    if times is not None
                    else pa.nulls(n * horizon, pa.array(self.windows.last_times).type)
                ),
                "forecast": pa.array(self.forecast.reshape(-1)),
            }
        )


def last_windows(table: pa.Table, meta: dict[str, Any]) -> LastWindows:
    """The last `window` rows of each series in `table`, prepared as training prepared windows.

    The channels come from ``forecasting.series_table`` (the code ``predict_raw`` and training
    use), so a forecast from these windows equals ``predict_raw``'s for the same rows. A table
    without the model's group column is one series. Only the last window's rows need to be
    evenly spaced: older rows are not inputs.

    Args:
        table: the recent history: the time column, the label and the covariates (other
            columns are ignored).
        meta: the model's ``voltpipe_model.json`` (task forecasting).

    Raises:
        DataError: a column is missing or bad, a series has fewer than `window` rows, or a
            series' last window holds a duplicate time or a gap (uneven spacing).
    """
    f = meta["forecasting"]
    window = context_rows(f)
    group_column = f["group_column"] if f["group_column"] in table.column_names else None
    st = fc.series_table(
        table,
        label=meta["label"],
        time_column=f["time_column"],
        group_column=group_column,
        covariates=list(f["covariates"]),
        calendar=bool(f["calendar"]),
    )
    n = len(st.target)
    if n == 0:
        raise DataError(f"the history is empty; the model needs {window} rows {_rows_key(f)}")
    ends = np.r_[np.flatnonzero(np.diff(st.series_id)), n - 1]
    lengths = np.diff(np.r_[-1, ends])
    short = np.flatnonzero(lengths < window)
    if len(short):
        k = short[0]
        raise DataError(
            f"{_series_name(st.groups[ends[k]], group_column)}has {lengths[k]} row(s); the model "
            f"forecasts from the last {window} {_rows_key(f)}: send at least {window}"
        )
    rows = ends[:, None] - window + 1 + np.arange(window)
    times = st.times[rows]
    steps = None
    if window > 1:
        diffs = np.diff(times, axis=1)
        steps = diffs[:, -1]
        uneven = (diffs == np.zeros_like(diffs[:1, :1])) | (diffs != steps[:, None])
        bad = np.flatnonzero(uneven.any(axis=1))
        if len(bad):
            k = bad[0]
            raise DataError(
                _spacing_error(times[k], st.groups[ends[k]], group_column, window, _rows_key(f))
            )
    inputs = rows[:, window - int(f["window"]) :]  # a Keras model's window: the last rows
    return LastWindows(st.values[inputs], st.groups[ends], st.times[ends], steps, st, ends + 1)


def context_rows(forecasting: dict[str, Any]) -> int:
    """Past rows one forecast needs (``forecasting.context``; ``window`` for older models)."""
    return int(forecasting.get("context") or forecasting["window"])


def _rows_key(forecasting: dict[str, Any]) -> str:
    if context_rows(forecasting) == int(forecasting["window"]):
        return "(forecasting.window)"
    return "(the model's context: forecasting.window and its seasons)"


def format_time(value: Any) -> str:
    """A time column value as text: ISO 8601 for numpy datetimes (seconds unless finer needed)."""
    if isinstance(value, np.datetime64):
        return format_times(np.asarray([value]))[0]
    return str(value.item() if isinstance(value, np.generic) else value)


def format_times(values: np.ndarray) -> list[str]:
    """numpy datetimes as ISO 8601 text, in one unit: days for dates, else seconds unless a
    value needs a finer one."""
    unit = np.datetime_data(values.dtype)[0]
    if unit in ("Y", "M", "W", "D"):
        return np.datetime_as_string(values, unit="D").tolist()
    for finer in ("s", "ms", "us"):
        if np.array_equal(values, values.astype(f"datetime64[{finer}]")):
            return np.datetime_as_string(values, unit=finer).tolist()
    return np.datetime_as_string(values).tolist()


def format_step(value: Any) -> str:
    """A time step as text: ``15min``, ``1h``, ``1d 6h`` for durations, else the number."""
    if not isinstance(value, np.timedelta64):
        return str(value.item() if isinstance(value, np.generic) else value)
    seconds = float(value / np.timedelta64(1, "s"))
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if abs(seconds) >= size:
            whole = int(seconds // size)
            parts.append(f"{whole}{unit}")
            seconds -= whole * size
    if seconds or not parts:
        parts.append(f"{seconds:g}s")
    return " ".join(parts)


def _series_name(group: Any, group_column: str | None) -> str:
    return f"series {group_column}={group!r} " if group_column else "the history "


def _spacing_error(
    times: np.ndarray,
    group: Any,
    group_column: str | None,
    window: int,
    key: str = "(forecasting.window)",
) -> str:
    where = _series_name(group, group_column)
    diffs = np.diff(times)
    dup = np.flatnonzero(diffs == np.zeros_like(diffs[:1]))
    if len(dup):
        return f"{where}holds time {format_time(times[dup[0]])} twice; send one row per time step"
    values, counts = np.unique(diffs, return_counts=True)
    step = values[counts.argmax()]
    j = int(np.flatnonzero(diffs != step)[0])
    return (
        f"{where}is not evenly spaced over its last {window} rows {key}: "
        f"{format_time(times[j])} is followed by {format_time(times[j + 1])}, a step of "
        f"{format_step(diffs[j])} where the others are {format_step(step)}; fill the gap first"
    )


def load_model(model_dir: str | os.PathLike[str], *, engine: str = "auto") -> LoadedModel:
    """Loads a model folder: its metadata, and ``model.keras`` (safe mode) or its replay.

    Args:
        engine: ``auto``: a row model's saved NumPy replay when there is one (no TensorFlow
            import), else Keras; ``keras``: always Keras (gbdt and linear models always
            score without it).
    """
    path = Path(model_dir)
    meta = read_meta(path)
    if meta.get("task") in ("clustering", "embedding"):  # JSON models, NumPy scoring
        from voltpipe.modelling.unsupervised import UnsupervisedModel

        return LoadedModel(model=UnsupervisedModel.load(path, meta), meta=meta, model_dir=path)
    if meta.get("task") == "forecasting" and meta["forecasting"].get("members"):
        from voltpipe.modelling.forecast_auto import load_forecaster

        return LoadedModel(
            model=None, meta=meta, model_dir=path, forecaster=load_forecaster(path, meta)
        )
    if meta.get("task") != "forecasting" and (
        engine == "auto" or meta.get("family") in FILE_FAMILIES
    ):
        scorer = load_row_scorer(path, meta)  # gbdt, linear, or a Keras model's replay
        if scorer is not None:
            return LoadedModel(model=None, meta=meta, replay=scorer, model_dir=path)
    import keras

    model = keras.models.load_model(path / MODEL_FILE, safe_mode=True, compile=False)
    return LoadedModel(model=model, meta=meta, model_dir=path)
