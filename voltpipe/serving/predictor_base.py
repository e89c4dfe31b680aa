"""What every predictor is (`BasePredictor`) and reads (a Keras model folder, the registry's
name and version): beside `serving.predictor`, whose `load_predictor` picks a predictor, so that
`serving.forecast` imports it without a cycle. Re-exported by `serving.predictor`."""

from __future__ import annotations

import abc
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from voltpipe.model_dir import MODEL_FILE, REGISTRY_METADATA_FILE
from voltpipe.model_dir import read_meta as read_model_meta

__all__ = ["BasePredictor", "load_keras_model", "registry_info"]


class BasePredictor(abc.ABC):
    """A loaded, warm model answering the server's requests (see `load_predictor`).

    Attributes:
        task: the model's task (``voltpipe_model.json``).
        meta: the model's ``voltpipe_model.json``.
        name, version: from the registry metadata when the folder came from a registry.
    """

    task: str
    meta: dict[str, Any]
    name: str
    version: str | None

    @property
    @abc.abstractmethod
    def engine(self) -> str:
        """What computes the outputs (``tensorflow``, ``numpy+tensorflow``)."""

    @abc.abstractmethod
    def predict(self, instances: list[dict[str, Any]]) -> list[Any]:
        """The response's ``predictions`` for a request's ``instances``.

        Raises:
            RequestError: an instance is malformed (the message names the field).
        """

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """What the model is, and the request and response formats: the server's ``GET /``."""

    @abc.abstractmethod
    def warm_up(self, batch_sizes: Iterable[int]) -> None:
        """Predicts a few batches so the first requests pay no first-call costs."""


def load_keras_model(path: Path) -> tuple[Any, dict[str, Any], str, str | None]:
    """``model.keras`` (safe mode), ``voltpipe_model.json``, and the registry's name and version.

    Raises:
        DataError: the folder is not a voltpipe model.
    """
    import keras

    meta = read_model_meta(path)
    model = keras.models.load_model(path / MODEL_FILE, safe_mode=True, compile=False)
    return (model, meta, *registry_info(path))


def registry_info(path: Path) -> tuple[str, str | None]:
    """The model's name and version from the registry's metadata (else the folder's name)."""
    registry_meta = path / REGISTRY_METADATA_FILE
    info = json.loads(registry_meta.read_text()) if registry_meta.exists() else {}
    return str(info.get("name") or path.name), info.get("version")
