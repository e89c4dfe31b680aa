"""The hyperparameter search space: which keys are tunable, in which config section they live,
which keys each model family reads, each family's default space, and the encoding of choices
and best params shared by the local (Optuna) and Vertex AI tuners.

Plain data and small functions, no imports from the rest of voltpipe (``config`` imports this
module to check ``tuning.space`` at config load).

A space maps a key to a list of choices or to ``{min, max, log}`` (ints when both bounds are
ints). Keys are the setting's name (``learning_rate``, ``window``) or, for a family's own
settings block, ``<block>.<setting>`` (``gbdt.num_leaves`` -> ``model.gbdt.num_leaves``).
"""

from __future__ import annotations

import json
from typing import Any

SECTIONS = ("model", "training", "forecasting")

# key -> the config section it belongs to
TUNABLE: dict[str, str] = {
    "hidden_units": "model",
    "dropout": "model",
    "filters": "model",
    "kernel_size": "model",
    "rnn_units": "model",
    "num_heads": "model",
    "key_dim": "model",
    "encoder_layers": "model",
    "latent_dim": "model",
    "family": "model",
    "learning_rate": "training",
    "batch_size": "training",
    "epochs": "training",
    "early_stopping_patience": "training",
    "window": "forecasting",
}
# A dotted key's block -> its section: ``gbdt.num_leaves`` is ``model.gbdt.num_leaves``.
BLOCKS = {"gbdt": "model"}
GBDT_KEYS = (
    "gbdt.learning_rate",
    "gbdt.num_leaves",
    "gbdt.min_child_samples",
    "gbdt.feature_fraction",
    "gbdt.bagging_fraction",
    "gbdt.lambda_l2",
    "gbdt.max_trees",
    "gbdt.early_stopping_rounds",
)
TUNABLE.update(dict.fromkeys(GBDT_KEYS, "model"))

# Keys whose values are integers (Vertex AI returns every number as a float).
INT_KEYS = {
    "batch_size",
    "epochs",
    "early_stopping_patience",
    "window",
    "filters",
    "kernel_size",
    "rnn_units",
    "num_heads",
    "key_dim",
    "encoder_layers",
    "latent_dim",
    "gbdt.num_leaves",
    "gbdt.min_child_samples",
    "gbdt.max_trees",
    "gbdt.early_stopping_rounds",
}

_KERAS_TRAINING = ("learning_rate", "batch_size", "epochs", "early_stopping_patience")
# The keys each family reads ("family" itself is always tunable; "window" for forecasting).
FAMILY_KEYS: dict[str, tuple[str, ...]] = {
    "mlp": ("hidden_units", "dropout", *_KERAS_TRAINING),
    "cnn": (
        "filters",
        "kernel_size",
        "encoder_layers",
        "hidden_units",
        "dropout",
        *_KERAS_TRAINING,
    ),
    "lstm": ("rnn_units", "encoder_layers", "hidden_units", "dropout", *_KERAS_TRAINING),
    "gru": ("rnn_units", "encoder_layers", "hidden_units", "dropout", *_KERAS_TRAINING),
    "transformer": (
        "num_heads",
        "key_dim",
        "encoder_layers",
        "hidden_units",
        "dropout",
        *_KERAS_TRAINING,
    ),
    "autoencoder": ("hidden_units", "dropout", "latent_dim", *_KERAS_TRAINING),
    "gbdt": GBDT_KEYS,
    "linear": (),  # its regularisation strength is chosen on the valid split already
    "statistical": (),
}
# auto fits linear, mlp and gbdt: the keys of any of them.
FAMILY_KEYS["auto"] = tuple(dict.fromkeys([*FAMILY_KEYS["mlp"], *FAMILY_KEYS["gbdt"]]))

_LR = {"min": 3e-4, "max": 1e-2, "log": True}
_DROPOUT = {"min": 0.0, "max": 0.3}
# What ``tuning.enabled: true`` searches when ``tuning.space`` is empty, per family.
DEFAULT_SPACES: dict[str, dict[str, Any]] = {
    "mlp": {
        "hidden_units": [[64, 32], [128, 64], [256, 128], [64]],
        "dropout": _DROPOUT,
        "learning_rate": _LR,
    },
    "cnn": {"filters": [16, 32, 64], "kernel_size": [2, 3, 5], "learning_rate": _LR},
    "lstm": {"rnn_units": [16, 32, 64], "dropout": _DROPOUT, "learning_rate": _LR},
    "gru": {"rnn_units": [16, 32, 64], "dropout": _DROPOUT, "learning_rate": _LR},
    "transformer": {"num_heads": [1, 2, 4], "key_dim": [8, 16, 32], "learning_rate": _LR},
    "autoencoder": {
        "hidden_units": [[32, 16], [64, 32], [128, 64]],
        "latent_dim": [2, 4, 8],
        "learning_rate": _LR,
    },
    # gbdt: early stopping picks the number of trees, so the search is over their shape
    "gbdt": {
        "gbdt.learning_rate": {"min": 0.01, "max": 0.2, "log": True},
        "gbdt.num_leaves": {"min": 7, "max": 127, "log": True},
        "gbdt.min_child_samples": {"min": 3, "max": 100, "log": True},
        "gbdt.feature_fraction": {"min": 0.5, "max": 1.0},
        "gbdt.lambda_l2": {"min": 1e-3, "max": 10.0, "log": True},
    },
    "linear": {},  # nothing to search: the strength is chosen on the valid split (or by CV)
}
# auto (the default for tables): the search picks the family and that family's settings.
DEFAULT_SPACES["auto"] = {
    "family": ["linear", "mlp", "gbdt"],
    **DEFAULT_SPACES["mlp"],
    **DEFAULT_SPACES["gbdt"],
}


def section_of(key: str) -> str | None:
    """The config section of a tunable key (None: not tunable)."""
    if key in TUNABLE:
        return TUNABLE[key]
    block, dot, _ = key.partition(".")
    return BLOCKS.get(block) if dot else None


def valid_keys(task: str, family: str) -> list[str]:
    """The keys a space may hold for `family` on `task`."""
    keys = [*FAMILY_KEYS.get(family, ()), "family"]
    if task == "forecasting" and family not in ("gbdt", "linear", "statistical"):
        keys.append("window")
    return keys


def space_problems(
    task: str, family: str, space: dict[str, Any], families: tuple[str, ...]
) -> list[str]:
    """What is wrong with `space` for `family` (the task's default when unset) on `task`.

    A ``family`` key in the space widens the valid keys to those of every family it lists;
    `families` are the ones that serve the task.
    """
    problems = []
    searched = [family]
    if "family" in space:
        choices = space["family"] if isinstance(space["family"], list) else []
        bad = [c for c in choices if c not in families]
        if not choices or bad:
            problems.append(
                f"tuning.space.family: choose among {', '.join(families)} for task {task!r}"
                + (f", not {', '.join(map(str, bad))}" if bad else " (a list)")
            )
        searched = [c for c in choices if c in families] or searched
    valid = list(dict.fromkeys(k for f in searched for k in valid_keys(task, f)))
    for key in space:
        if key not in valid:
            problems.append(
                f"tuning.space.{key}: family {' / '.join(searched)} has no setting {key!r}; "
                f"valid keys: {', '.join(valid)}"
            )
    return problems


def default_space(family: str) -> dict[str, Any]:
    """The family's default space ({} when it has none)."""
    return json.loads(json.dumps(DEFAULT_SPACES.get(family, {})))  # a copy


# ----- encoding, shared by both backends ----------------------------------------------------------


def encode_choice(value: Any) -> Any:
    """A choice as a scalar Optuna/Vertex accept: lists (e.g. hidden_units) become JSON text."""
    return json.dumps(value) if isinstance(value, list | dict) else value


def decode_choice(key: str, value: Any) -> Any:
    """The inverse of ``encode_choice`` (Vertex returns every categorical as a string), with
    integer keys as ints."""
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    if key in INT_KEYS and isinstance(value, float | str):
        return int(float(value))
    if key not in ("family",) and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def is_int_range(key: str, dom: dict[str, Any]) -> bool:
    return key in INT_KEYS or (isinstance(dom["min"], int) and isinstance(dom["max"], int))


def nest_params(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"learning_rate": .., "window": .., "gbdt.num_leaves": ..}`` -> ``{"training": {..},
    "forecasting": {..}, "model": {"gbdt.num_leaves": ..}}`` (integer keys as ints)."""
    out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in flat.items():
        section = section_of(key)
        if section is None:
            raise KeyError(f"{key!r} is not a tunable key")
        if key in INT_KEYS and isinstance(value, float) and value.is_integer():
            value = int(value)
        out[section][key] = value
    return out


def apply_best_params(
    best: dict[str, Any],
    model_params: dict[str, Any] | None,
    training_params: dict[str, Any] | None,
    task_params: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Merges tuned values over the training parameters (the sections of `best` win).

    `best` is the tune step's best-params JSON (sections ``model``, ``training``,
    ``forecasting``) or a flat ``{key: value}`` of tunable keys. Dotted keys of a block
    (``gbdt.num_leaves``) are folded into the block (``model_params["gbdt"]``).
    """
    if not any(s in best for s in SECTIONS):
        best = nest_params({k: v for k, v in best.items() if section_of(k) is not None})
    mp = _fold_blocks({**(model_params or {})}, best.get("model", {}))
    tp = {**(training_params or {}), **best.get("training", {})}
    task = dict(task_params or {})
    if best.get("forecasting"):
        task["forecasting"] = {**(task.get("forecasting") or {}), **best["forecasting"]}
    return mp, tp, task


def _fold_blocks(params: dict[str, Any], tuned: dict[str, Any]) -> dict[str, Any]:
    for key, value in tuned.items():
        block, dot, name = key.partition(".")
        if dot and block in BLOCKS:
            params[block] = {**(params.get(block) or {}), name: value}
        else:
            params[key] = value
    return params
