"""The search space: default spaces per family, keys checked per family at config load,
dotted keys of a family's settings block, and integers kept as integers."""

from __future__ import annotations

import pytest

from voltpipe.config import MODEL_FAMILIES, ModelConfig, TuningConfig, load_config
from voltpipe.errors import ConfigError
from voltpipe.modelling.search_space import (
    DEFAULT_SPACES,
    FAMILY_KEYS,
    apply_best_params,
    decode_choice,
    nest_params,
    space_problems,
    valid_keys,
)


@pytest.mark.parametrize("family", sorted(f for f, space in DEFAULT_SPACES.items() if space))
def test_every_default_space_is_valid_for_its_family(family: str) -> None:
    space = DEFAULT_SPACES[family]
    TuningConfig(space=space)  # ranges and choices pass the space's own checks
    tasks = [t for t, families in MODEL_FAMILIES.items() if family in families]
    if family == "auto":  # forecasting's auto trains a forecaster: its space is that family's
        tasks = ["classification", "regression"]
    assert tasks, f"no task serves family {family}"
    for task in tasks:
        assert space_problems(task, family, space, MODEL_FAMILIES[task]) == [], (task, family)


def test_tuning_enabled_alone_loads_and_has_a_space() -> None:
    for family in ("auto", "mlp", "gbdt"):
        cfg = load_config(None, ["tuning.enabled=true", f"model.family={family}"])
        assert cfg.tuning.space == {} and DEFAULT_SPACES[family]
    # auto's default searches the family too, among those auto would pick from
    assert set(DEFAULT_SPACES["auto"]["family"]) <= set(MODEL_FAMILIES["regression"])


def test_a_key_the_family_does_not_have_is_refused_at_config_load() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, ["model.family=mlp", "tuning={enabled: true, space: {filters: [8]}}"])
    message = str(err.value)
    assert "tuning.space.filters" in message and "family mlp" in message
    assert "valid keys: " in message and "hidden_units" in message
    with pytest.raises(ConfigError, match="tuning.space.family: choose among"):
        load_config(None, ["tuning.space={family: [cnn]}"])
    # A GBDT setting is valid for gbdt, and for mlp once the space searches the family too.
    load_config(None, ["model.family=gbdt", "tuning.space={gbdt.num_leaves: [15, 31]}"])
    load_config(
        None,
        ["model.family=mlp", "tuning.space={family: [mlp, gbdt], gbdt.num_leaves: [15, 31]}"],
    )
    assert "window" in valid_keys("forecasting", "cnn") and "window" not in valid_keys(
        "regression", "mlp"
    )
    assert set(FAMILY_KEYS["auto"]) >= set(FAMILY_KEYS["mlp"]) | set(FAMILY_KEYS["gbdt"])


def test_integers_stay_integers() -> None:
    nested = nest_params(
        {"batch_size": 64.0, "epochs": 30.0, "gbdt.num_leaves": 31.0, "learning_rate": 0.01}
    )
    assert nested["training"] == {"batch_size": 64, "epochs": 30, "learning_rate": 0.01}
    assert type(nested["training"]["batch_size"]) is int
    assert (
        nested["model"] == {"gbdt.num_leaves": 31}
        and type(nested["model"]["gbdt.num_leaves"]) is int
    )
    assert decode_choice("early_stopping_patience", "12.0") == 12
    assert decode_choice("dropout", "0.25") == 0.25
    assert decode_choice("hidden_units", "[64, 32]") == [64, 32]


def test_dotted_keys_fold_into_their_block() -> None:
    mp, tp, _ = apply_best_params(
        {"model": {"gbdt.num_leaves": 15, "dropout": 0.1}, "training": {"epochs": 40}},
        {"family": "gbdt", "gbdt": {"learning_rate": 0.1}},
        {"seed": 1},
        None,
    )
    assert mp == {
        "family": "gbdt",
        "gbdt": {"learning_rate": 0.1, "num_leaves": 15},
        "dropout": 0.1,
    }
    assert tp == {"seed": 1, "epochs": 40}
    assert ModelConfig(**mp).gbdt.num_leaves == 15
    flat, _, _ = apply_best_params({"gbdt.lambda_l2": 1.0}, None, None, None)
    assert flat == {"gbdt": {"lambda_l2": 1.0}}
