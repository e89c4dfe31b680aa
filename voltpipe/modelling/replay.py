"""A NumPy replay of a voltpipe Keras model's forward pass, saved beside the model.

A TensorFlow function call costs a few hundred microseconds however small the batch (op
dispatch, executor threads), and importing TensorFlow costs seconds; this tabular MLP's
arithmetic for one row costs a few microseconds. Walking the Keras functional graph once
(`export_replay`, Keras needed) gives a `Replay`: a list of steps and their weights that runs
with NumPy alone. The serving predictor uses it for small online batches; training saves it
next to the model (``voltpipe_replay.npz``) once it agrees with Keras on a probe batch, so
evaluation, drift and the deploy smoke test score row models without importing TensorFlow.

Only the layers of voltpipe's tabular families and anomaly autoencoder are supported; any other
layer raises `UnsupportedModel` and the model stays on TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from voltpipe.modelling.features import FeaturePlan

REPLAY_FILE = "voltpipe_replay.npz"
FORMAT = "voltpipe-replay-v1"

Forward = Callable[[np.ndarray, np.ndarray], np.ndarray]
_Step = Callable[[list[np.ndarray]], np.ndarray]


class UnsupportedModel(Exception):
    """The model holds a layer or setting this engine does not replay."""


@dataclasses.dataclass
class Replay:
    """The forward pass as data: inputs fill slots (numeric columns first, then categorical);
    each step reads slots `args` and writes slot `out`; the output is slot `result`.

    A step is ``{"kind", "args", "out", "params"}``; params hold numbers, strings and lists,
    and ``arrays`` the weights by ``"<step>.<name>"``.
    """

    numeric: list[str]
    categorical: list[str]
    steps: list[dict[str, Any]]
    arrays: dict[str, np.ndarray]
    result: int
    n_slots: int

    def forward(
        self, numeric: list[str] | None = None, categorical: list[str] | None = None
    ) -> Forward:
        """``forward(xn, xc) -> outputs`` in float64: `xn` (n, numeric) numbers, `xc` (n,
        categorical) strings.

        Args:
            numeric, categorical: the feature names of `xn`'s and `xc`'s columns, in order;
                default: the replay's own ``numeric`` and ``categorical``.

        Raises:
            UnsupportedModel: the names are not the replay's features.
        """
        numeric = self.numeric if numeric is None else list(numeric)
        categorical = self.categorical if categorical is None else list(categorical)
        if sorted(numeric) != sorted(self.numeric) or sorted(categorical) != sorted(
            self.categorical
        ):
            raise UnsupportedModel(
                f"the replay takes numeric {self.numeric} and categorical {self.categorical}, "
                f"not {numeric} and {categorical}"
            )
        # The slot each input column fills: numeric slots first, then categorical ones.
        numeric_slots = [self.numeric.index(n) for n in numeric]
        categorical_slots = [len(self.numeric) + self.categorical.index(n) for n in categorical]
        steps = [
            (tuple(s["args"]), int(s["out"]), _make_step(i, s, self.arrays))
            for i, s in enumerate(self.steps)
        ]
        n_slots, result = self.n_slots, self.result

        def forward(xn: np.ndarray, xc: np.ndarray) -> np.ndarray:
            values: list[Any] = [None] * n_slots
            x64 = xn.astype(np.float64)
            for j, slot in enumerate(numeric_slots):
                values[slot] = x64[:, j : j + 1]
            for j, slot in enumerate(categorical_slots):
                values[slot] = xc[:, j]
            for args, out, step in steps:
                values[out] = step([values[a] for a in args])
            return values[result]

        return forward

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Writes ``voltpipe_replay.npz`` into `folder` atomically (temp file, then rename)."""
        plan = {
            "format": FORMAT,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "steps": self.steps,
            "result": self.result,
            "n_slots": self.n_slots,
        }
        target = Path(folder) / REPLAY_FILE
        tmp = target.with_name(f".tmp-{REPLAY_FILE}")
        with open(tmp, "wb") as fh:
            # Any-valued: numpy's stub would match a str-keyed dict of arrays to allow_pickle.
            payload: dict[str, Any] = {"__plan__": np.array(json.dumps(plan)), **self.arrays}
            np.savez(fh, **payload)
        os.replace(tmp, target)
        return target

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Replay | None:
        """The replay saved in `folder`, or None when there is none (or of another format)."""
        path = Path(folder) / REPLAY_FILE
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as data:
            plan = json.loads(str(data["__plan__"]))
            if plan.get("format") != FORMAT:
                return None
            arrays = {k: data[k] for k in data.files if k != "__plan__"}
        return cls(
            numeric=plan["numeric"],
            categorical=plan["categorical"],
            steps=plan["steps"],
            arrays=arrays,
            result=int(plan["result"]),
            n_slots=int(plan["n_slots"]),
        )


def compile_forward(model: Any, numeric: list[str], categorical: list[str]) -> Forward:
    """``forward(xn, xc) -> outputs`` replaying `model` with NumPy (see `export_replay`)."""
    return export_replay(model, numeric, categorical).forward()


def export_replay(model: Any, numeric: list[str], categorical: list[str]) -> Replay:
    """Walks `model`'s functional graph into a `Replay`.

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
    steps: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    for layer in model.operations:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        nodes = layer._inbound_nodes
        if len(nodes) != 1:
            raise UnsupportedModel(f"layer {layer.name} is shared or unused")
        args = [slots[id(t)] for t in nodes[0].input_tensors]
        (out,) = nodes[0].output_tensors
        if type(layer).__name__ == "Dropout":  # the identity at inference: alias, no step
            slots[id(out)] = args[0]
            continue
        slots[id(out)] = len(slots)
        kind, params, weights = _describe(layer)
        for name, value in weights.items():
            arrays[f"{len(steps)}.{name}"] = value
        steps.append({"kind": kind, "args": args, "out": slots[id(out)], "params": params})
    return Replay(
        numeric=list(numeric),
        categorical=list(categorical),
        steps=steps,
        arrays=arrays,
        result=slots[id(model.outputs[0])],
        n_slots=len(slots),
    )


def _describe(layer: Any) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """A layer as (kind, JSON params, weight arrays)."""
    import keras

    kind = type(layer).__name__
    if kind == "Normalization":
        if layer.invert:
            raise UnsupportedModel(f"layer {layer.name}: inverted normalization")
        scale = np.maximum(np.sqrt(_array(layer.variance)), keras.config.epsilon())
        return kind, {}, {"mean": _array(layer.mean), "scale": scale}
    if kind == "StringLookup":
        if (
            layer.invert
            or layer.mask_token is not None
            or layer.num_oov_indices != 1
            or layer.sparse
        ):
            raise UnsupportedModel(
                f"layer {layer.name}: a lookup setting the engine does not replay"
            )
        if layer.output_mode not in ("int", "one_hot"):
            raise UnsupportedModel(f"layer {layer.name}: output mode {layer.output_mode}")
        vocab = [str(v) for v in layer.get_vocabulary()]
        return kind, {"vocabulary": vocab, "output_mode": layer.output_mode}, {}
    if kind == "Embedding":
        return kind, {}, {"table": _array(layer.embeddings)}
    if kind in ("Flatten", "Subtract", "Multiply"):
        return kind, {}, {}
    if kind == "Concatenate":
        if layer.axis not in (-1, 1):
            raise UnsupportedModel(f"layer {layer.name}: concatenation on axis {layer.axis}")
        return kind, {}, {}
    if kind == "Dense":
        kernel = _array(layer.kernel)
        bias = _array(layer.bias) if layer.use_bias else np.zeros(kernel.shape[1])
        activation = layer.activation.__name__
        if activation not in _ACTIVATIONS:
            raise UnsupportedModel(f"layer {layer.name}: activation {activation}")
        return kind, {"activation": activation}, {"kernel": kernel, "bias": bias}
    if kind == "Reshape":
        return kind, {"shape": list(layer.target_shape)}, {}
    if kind == "GlobalAveragePooling1D":
        if layer.data_format != "channels_last" or layer.keepdims:
            raise UnsupportedModel(
                f"layer {layer.name}: a pooling setting the engine does not replay"
            )
        return kind, {}, {}
    if kind == "Rescaling":
        return kind, {"scale": float(layer.scale), "offset": float(layer.offset)}, {}
    if kind == "Activation":
        activation = layer.activation.__name__
        if activation not in _ACTIVATIONS:
            raise UnsupportedModel(f"layer {layer.name}: activation {activation}")
        return kind, {"activation": activation}, {}
    raise UnsupportedModel(f"layer {layer.name} ({kind}) has no NumPy replay")


def _make_step(index: int, step: dict[str, Any], arrays: dict[str, np.ndarray]) -> _Step:
    """The NumPy function of one step (see `_describe` for what each kind holds)."""
    kind, params = step["kind"], step.get("params", {})

    def weight(name: str) -> np.ndarray:
        return arrays[f"{index}.{name}"]

    if kind == "Normalization":
        mean, std = weight("mean"), weight("scale")
        return lambda a: (a[0] - mean) / std
    if kind == "StringLookup":
        vocab = params["vocabulary"]
        index_of = {token: i for i, token in enumerate(vocab) if i >= 1}  # 0: out of vocabulary
        get = index_of.get
        if params["output_mode"] == "int":
            return lambda a: np.array([get(v, 0) for v in a[0]], np.int64).reshape(-1, 1)
        eye = np.eye(len(vocab))
        return lambda a: eye[[get(v, 0) for v in a[0]]]
    if kind == "Embedding":
        table = weight("table")
        return lambda a: table[a[0]]
    if kind == "Flatten":
        return lambda a: a[0].reshape(len(a[0]), -1)
    if kind == "Concatenate":
        return lambda a: np.concatenate(a, axis=-1)
    if kind == "Dense":
        kernel, bias = weight("kernel"), weight("bias")
        activation = _ACTIVATIONS[params["activation"]]
        return lambda a: activation(a[0] @ kernel + bias)
    if kind == "Subtract":  # the autoencoder's residual
        return lambda a: a[0] - a[1]
    if kind == "Multiply":
        return lambda a: np.prod(a, axis=0) if len(a) > 2 else a[0] * a[1]
    if kind == "Reshape":
        shape = tuple(params["shape"])
        return lambda a: a[0].reshape(len(a[0]), *shape)
    if kind == "GlobalAveragePooling1D":
        return lambda a: a[0].mean(axis=1)
    if kind == "Rescaling":
        scale, offset = float(params["scale"]), float(params["offset"])
        return lambda a: a[0] * scale + offset
    if kind == "Activation":  # e.g. the clipping of standardised inputs (hard_tanh)
        act = _ACTIVATIONS[params["activation"]]
        return lambda a: act(a[0])
    raise UnsupportedModel(f"step {index}: unknown kind {kind!r}")


def probe_batch(plan: FeaturePlan, rows: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Inputs to check a replay against the model: values spread over each numeric feature's
    range, every category, the empty string and an unseen one."""
    rng = np.random.default_rng(0)
    xn = np.empty((rows, len(plan.numeric)), np.float32)
    for j, st in enumerate(plan.numeric.values()):
        xn[:, j] = st["mean"] + np.sqrt(st["variance"]) * rng.normal(0, 2, rows)
    xc = np.empty((rows, len(plan.categorical)), object)
    for j, vocab in enumerate(plan.categorical.values()):
        values = [*vocab, "", "\x00unseen"]
        xc[:, j] = [values[i % len(values)] for i in range(rows)]
    return xn, xc


def agrees(got: np.ndarray, expected: np.ndarray) -> bool:
    """Whether a replay's outputs match the model's (float32) within rounding."""
    scale = max(1.0, float(np.abs(expected).max())) if expected.size else 1.0
    return got.shape == expected.shape and bool(
        np.allclose(got, expected, rtol=1e-4, atol=1e-5 * scale)
    )


def _array(value: Any) -> np.ndarray:
    # Variables and tensors both have .numpy(); np.array(variable) warns under NumPy 2.
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value, dtype=np.float64)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "softmax": _softmax,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
    "hard_tanh": lambda x: np.clip(x, -1.0, 1.0),
}
