"""Deprecated config keys: still accepted (a config is a promise), with a warning that says so."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tests.conftest import write_config
from voltpipe.config import ModelConfig, load_config

BASE = """
name: demo
warehouse: duckdb:///data/wh.duckdb
query: SELECT * FROM t
label: y
task: regression
"""


def test_embedding_max_categories_loads_with_a_warning_that_it_has_no_effect(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, BASE, "model: {family: mlp, embedding_max_categories: 16}\n")
    with pytest.warns(FutureWarning, match=r"model\.embedding_max_categories .*no effect"):
        cfg = load_config(path)
    assert cfg.model.family == "mlp"
    assert "embedding_max_categories" not in cfg.model.model_dump()


def test_embedding_max_categories_from_a_set_override_warns_too(tmp_path: Path) -> None:
    path = write_config(tmp_path, BASE)
    with pytest.warns(FutureWarning, match="embedding_max_categories"):
        load_config(path, ["model.embedding_max_categories=8"])


def test_a_config_without_it_loads_silently_and_dumps_revalidate_silently(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, BASE, "model: {family: mlp}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        cfg = load_config(path)
        # components re-validate the dumped model params: no warning there either
        ModelConfig.model_validate(cfg.model.model_dump())
