"""Loading a saved voltpipe model and predicting on an Arrow table."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from voltpipe.modelling import forecasting as fc
from voltpipe.modelling.features import model_inputs
from voltpipe.modelling.train import MODEL_FILE, feature_plan, read_model_meta


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
    model: Any
    meta: dict[str, Any]

    @property
    def task(self) -> str:
        return str(self.meta["task"])

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
        starts = fc.checked_starts(
            st,
            window=f["window"],
            horizon=f["horizon"],
            split="scored",
            group_column=f["group_column"],
        )
        return ForecastWindows(st, starts, f["window"], f["horizon"])

    def predict_raw(self, table: pa.Table, batch_size: int = 8192) -> np.ndarray:
        """Model outputs, as ``voltpipe_model.json``'s "output" states.

        - regression: (n,) values in the label's units;
        - classification: (n, classes) probabilities;
        - forecasting: (n_windows, horizon) label forecasts for the windows of
          ``forecast_windows(table)`` (ordered by group then time);
        - anomaly: (n,) reconstruction errors (anomalous above ``meta["anomaly"]["threshold"]``).
        """
        from voltpipe.modelling.inputs import row_dataset, window_dataset

        if self.task == "forecasting":
            w = self.forecast_windows(table)
            ds = window_dataset(
                w.series.values,
                None,
                w.starts,
                window=w.window,
                horizon=w.horizon,
                batch=batch_size,
                shuffle=False,
            )
            return self.model.predict(ds, verbose=0).astype("float32")
        x = model_inputs(table, feature_plan(self.meta))
        out = self.model.predict(row_dataset(x, None, batch=batch_size, shuffle=False), verbose=0)
        return out.reshape(-1) if self.task in ("regression", "anomaly") else out

    def is_anomaly(self, table: pa.Table) -> np.ndarray:
        """Rows whose reconstruction error exceeds the stored threshold (anomaly models)."""
        return self.predict_raw(table) > float(self.meta["anomaly"]["threshold"])


def load_model(model_dir: str | os.PathLike[str]) -> LoadedModel:
    """Loads ``model.keras`` (safe mode) and its metadata from a model folder."""
    import keras

    meta = read_model_meta(model_dir)
    model = keras.models.load_model(Path(model_dir) / MODEL_FILE, safe_mode=True, compile=False)
    return LoadedModel(model=model, meta=meta)
