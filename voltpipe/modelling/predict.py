"""Loading a saved voltpipe model and predicting on an Arrow table."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from voltpipe.modelling.features import model_inputs
from voltpipe.modelling.train import MODEL_FILE, feature_plan, read_model_meta


@dataclasses.dataclass
class LoadedModel:
    model: Any
    meta: dict[str, Any]

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    def predict_raw(self, table: pa.Table, batch_size: int = 8192) -> np.ndarray:
        """Model outputs: (n,) values for regression, (n, classes) probabilities otherwise."""
        import tensorflow as tf

        x = model_inputs(table, feature_plan(self.meta))
        batches = tf.data.Dataset.from_tensor_slices(x).batch(batch_size)
        out = self.model.predict(batches, verbose=0)
        return out.reshape(-1) if self.task == "regression" else out


def load_model(model_dir: str | os.PathLike[str]) -> LoadedModel:
    """Loads ``model.keras`` (safe mode) and its metadata from a model folder."""
    import keras

    meta = read_model_meta(model_dir)
    model = keras.models.load_model(Path(model_dir) / MODEL_FILE, safe_mode=True, compile=False)
    return LoadedModel(model=model, meta=meta)
