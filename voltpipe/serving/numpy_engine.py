"""A NumPy twin of a voltpipe Keras model's forward pass, for small online batches.

A TensorFlow function call costs a few hundred microseconds however small the batch (op
dispatch, executor threads); this tabular MLP's arithmetic for one row costs a few. Walking the
Keras functional graph once at load time and replaying it with NumPy makes single-row latency
close to that of the HTTP stack. Only the layers of voltpipe's tabular families and anomaly
autoencoder are supported; any other layer, and any output that disagrees with the TF function
on a probe batch (see ``Predictor``), leaves the model on TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Forward = Callable[[np.ndarray, np.ndarray], np.ndarray]
_Step = Callable[[list[np.ndarray]], np.ndarray]


class UnsupportedModel(Exception):
    """The model holds a layer or setting this engine does not replay."""


def compile_forward(model: Any, numeric: list[str], categorical: list[str]) -> Forward:
    """Returns ``forward(xn, xc) -> outputs`` replaying `model` with NumPy (float64).

    Args:
        model: a Keras functional model taking a dict of (None, 1) inputs by feature name.
        numeric, categorical: feature names in the column order of `xn` (float32) and `xc` (str).

    Raises:
        UnsupportedModel: a layer, a shared layer or a setting the engine cannot replay.
    """
    import keras

    # Inputs by their InputLayer's name: the feature name (``model.input`` may come back from
    # a saved model as a list rather than a dict).
    inputs = {
        layer.name: layer.output
        for layer in model.operations
        if isinstance(layer, keras.layers.InputLayer)
    }
    if len(model.outputs) != 1:
        raise UnsupportedModel("the model has more than one output")
    slots: dict[int, int] = {}
    for column, name in enumerate([*numeric, *categorical]):
        if name not in inputs:
            raise UnsupportedModel(f"the model has no input {name!r}")
        slots[id(inputs[name])] = column  # numeric columns first, then categorical
    if len(inputs) != len(slots):
        raise UnsupportedModel(
            f"the model takes inputs the feature plan does not name: {sorted(inputs)}"
        )
    steps: list[tuple[tuple[int, ...], int, _Step]] = []
    for layer in model.operations:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        nodes = layer._inbound_nodes
        if len(nodes) != 1:
            raise UnsupportedModel(f"layer {layer.name} is shared or unused")
        args = tuple(slots[id(t)] for t in nodes[0].input_tensors)
        (out,) = nodes[0].output_tensors
        if type(layer).__name__ == "Dropout":  # the identity at inference: alias, no step
            slots[id(out)] = args[0]
            continue
        slots[id(out)] = len(slots)
        steps.append((args, slots[id(out)], _step(layer)))
    result = slots[id(model.outputs[0])]
    n_numeric, n_slots = len(numeric), len(slots)

    def forward(xn: np.ndarray, xc: np.ndarray) -> np.ndarray:
        values: list[Any] = [None] * n_slots
        x64 = xn.astype(np.float64)
        for j in range(n_numeric):
            values[j] = x64[:, j : j + 1]
        for j in range(len(categorical)):
            values[n_numeric + j] = xc[:, j]
        for args, out, step in steps:
            values[out] = step([values[a] for a in args])
        return values[result]

    return forward


def _step(layer: Any) -> _Step:
    import keras

    kind = type(layer).__name__
    if kind == "Normalization":
        if layer.invert:
            raise UnsupportedModel(f"layer {layer.name}: inverted normalization")
        mean = _array(layer.mean)
        scale = np.maximum(np.sqrt(_array(layer.variance)), keras.config.epsilon())
        return lambda a: (a[0] - mean) / scale
    if kind == "StringLookup":
        return _string_lookup(layer)
    if kind == "Embedding":
        table = _array(layer.embeddings)
        return lambda a: table[a[0]]
    if kind == "Flatten":
        return lambda a: a[0].reshape(len(a[0]), -1)
    if kind == "Concatenate":
        if layer.axis not in (-1, 1):
            raise UnsupportedModel(f"layer {layer.name}: concatenation on axis {layer.axis}")
        return lambda a: np.concatenate(a, axis=-1)
    if kind == "Dense":
        kernel = _array(layer.kernel)
        bias = _array(layer.bias) if layer.use_bias else np.zeros(kernel.shape[1])
        activation = _ACTIVATIONS.get(layer.activation.__name__)
        if activation is None:
            raise UnsupportedModel(f"layer {layer.name}: activation {layer.activation.__name__}")
        return lambda a: activation(a[0] @ kernel + bias)
    if kind == "Subtract":  # the autoencoder's residual
        return lambda a: a[0] - a[1]
    if kind == "Multiply":
        return lambda a: np.prod(a, axis=0) if len(a) > 2 else a[0] * a[1]
    if kind == "Reshape":
        shape = tuple(layer.target_shape)
        return lambda a: a[0].reshape(len(a[0]), *shape)
    if kind == "GlobalAveragePooling1D":
        if layer.data_format != "channels_last" or layer.keepdims:
            raise UnsupportedModel(
                f"layer {layer.name}: a pooling setting the engine does not replay"
            )
        return lambda a: a[0].mean(axis=1)
    if kind == "Rescaling":
        scale, offset = float(layer.scale), float(layer.offset)
        return lambda a: a[0] * scale + offset
    raise UnsupportedModel(f"layer {layer.name} ({kind}) has no NumPy replay")


def _array(value: Any) -> np.ndarray:
    # Variables and tensors both have .numpy(); np.array(variable) warns under NumPy 2.
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value, dtype=np.float64)


def _string_lookup(layer: Any) -> _Step:
    if layer.invert or layer.mask_token is not None or layer.num_oov_indices != 1 or layer.sparse:
        raise UnsupportedModel(f"layer {layer.name}: a lookup setting the engine does not replay")
    vocab = [str(v) for v in layer.get_vocabulary()]
    index = {
        token: i for i, token in enumerate(vocab) if i >= 1
    }  # 0 is the out-of-vocabulary bucket
    get = index.get
    if layer.output_mode == "int":
        return lambda a: np.array([get(v, 0) for v in a[0]], np.int64).reshape(-1, 1)
    if layer.output_mode == "one_hot":
        eye = np.eye(len(vocab))
        return lambda a: eye[[get(v, 0) for v in a[0]]]
    raise UnsupportedModel(f"layer {layer.name}: output mode {layer.output_mode}")


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "softmax": _softmax,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
}
