"""The checks a run makes before its first step: the query's columns against the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from voltpipe.config import load_config
from voltpipe.errors import DataError
from voltpipe.runners.preflight import check_query

CONFIG = """
name: grid
warehouse: duckdb:///{wh}
query: SELECT load_pu, oil_temp_c, outcome FROM assets.transformers
task: {task}
workdir: {work}
"""


@pytest.mark.parametrize("task", ["clustering", "embedding"])
def test_an_unsupervised_run_without_a_label_passes_the_query_check(
    tmp_path: Path, equipment_warehouse: Path, task: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG.format(wh=equipment_warehouse, task=task, work=tmp_path / "w"))
    schema = check_query(load_config(path))
    assert [c["name"] for c in schema] == ["load_pu", "oil_temp_c", "outcome"]


def test_a_missing_label_column_is_still_named(tmp_path: Path, equipment_warehouse: Path) -> None:
    path = tmp_path / "c.yaml"
    text = CONFIG.format(wh=equipment_warehouse, task="clustering", work=tmp_path / "w")
    path.write_text(text + "label: failed_flag\n")
    with pytest.raises(DataError, match="label column 'failed_flag' is not returned"):
        check_query(load_config(path))
