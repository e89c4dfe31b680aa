"""Config loading, validation messages, overrides and path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_config
from voltpipe.config import load_config
from voltpipe.errors import ConfigError

BASE = """
name: demo
warehouse: duckdb:///data/wh.duckdb
query: SELECT * FROM t WHERE ts < @cutoff
query_parameters: {cutoff: "2025-01-01"}
label: y
task: regression
"""


def test_builtin_demo_config_loads_with_workdir_under_cwd(tmp_path: Path) -> None:
    cfg = load_config(None, cwd=tmp_path)
    assert cfg.name == "wind-power"
    assert cfg.task == "regression" and cfg.label == "power_kw"
    assert cfg.workdir == tmp_path / ".voltpipe"
    assert cfg.uses_embedded_warehouse
    assert cfg.warehouse_uri == f"duckdb:///{tmp_path / '.voltpipe' / 'warehouse.duckdb'}"
    assert "FROM scada.turbine" in cfg.sql
    assert cfg.typed_parameters["cutoff"] == {"type": "TIMESTAMP", "value": "2024-11-01T00:00:00"}


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "q.sql").write_text("SELECT 1 AS y")
    path = write_config(
        tmp_path, BASE.replace("query: SELECT * FROM t WHERE ts < @cutoff", "query_file: q.sql")
    )
    cfg = load_config(path)
    assert cfg.warehouse == f"duckdb:///{tmp_path / 'data' / 'wh.duckdb'}"
    assert cfg.workdir == tmp_path / ".voltpipe"
    assert cfg.sql == "SELECT 1 AS y"


def test_absolute_duckdb_path_is_kept(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, BASE.replace("duckdb:///data/wh.duckdb", "duckdb:////srv/wh.duckdb")
    )
    assert load_config(path).warehouse == "duckdb:////srv/wh.duckdb"


def test_misspelt_key_is_named_with_valid_keys(tmp_path: Path) -> None:
    path = write_config(tmp_path, BASE + "training: {epoch: 3}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "training.epoch: unknown key" in str(err.value)
    assert "epochs" in str(err.value)


def test_top_level_misspelt_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, BASE + "lable: y\n")
    with pytest.raises(ConfigError, match="lable: unknown key"):
        load_config(path)


def test_unknown_task_is_rejected(tmp_path: Path) -> None:
    path = write_config(tmp_path, BASE.replace("task: regression", "task: ranking"))
    with pytest.raises(ConfigError, match="task: unknown task 'ranking'"):
        load_config(path)


def test_bad_value_names_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, BASE + "training: {epochs: 0}\n")
    with pytest.raises(ConfigError, match="training.epochs"):
        load_config(path)


def test_set_overrides_nested_keys_with_yaml_values(tmp_path: Path) -> None:
    path = write_config(tmp_path, BASE)
    cfg = load_config(
        path, ["training.epochs=3", "split.fractions=[0.7, 0.2, 0.1]", "model.hidden_units=[8]"]
    )
    assert cfg.training.epochs == 3
    assert cfg.split.fractions == (0.7, 0.2, 0.1)
    assert cfg.model.hidden_units == [8]


def test_set_unknown_key_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="training.epochz: unknown key"):
        load_config(write_config(tmp_path, BASE), ["training.epochz=3"])


def test_set_without_equals_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(write_config(tmp_path, BASE), ["training.epochs"])


def test_exactly_one_query_source(tmp_path: Path) -> None:
    path = write_config(tmp_path, BASE + "query_file: q.sql\n")
    with pytest.raises(ConfigError, match="exactly one of `query` and `query_file`"):
        load_config(path)


def test_split_needs_column_for_hash(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="split.column"):
        load_config(write_config(tmp_path, BASE + "split: {method: hash}\n"))


def test_fractions_must_sum_to_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="summing to 1"):
        load_config(write_config(tmp_path, BASE + "split: {fractions: [0.5, 0.1, 0.1]}\n"))


def test_bad_query_parameter_type_names_parameter(tmp_path: Path) -> None:
    body = BASE.replace('{cutoff: "2025-01-01"}', "{cutoff: {type: TIMESTAMP, value: not-a-time}}")
    with pytest.raises(ConfigError, match="query_parameters.cutoff"):
        load_config(write_config(tmp_path, body))


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_invalid_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="name"):
        load_config(write_config(tmp_path, BASE.replace("name: demo", "name: Wind_Power")))


# -- hostile YAML (issue 11) ----------------------------------------------------------------------


def _alias_bomb(indent: str, levels: int = 9) -> str:
    lines = [f"{indent}a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"{indent}a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            BASE.replace('query_parameters: {cutoff: "2025-01-01"}\n', "")
            + "query_parameters:\n  cutoff: {type: STRUCT, value: {}}\n  s:\n    type: STRUCT\n"
            "    value:\n" + _alias_bomb("      "),
            r"not valid YAML at line \d+, column \d+: expands to more than 100,000 values",
        ),
        (
            BASE + "validation:\n  schema:\n" + _alias_bomb("    "),
            r"expands to more than 100,000 values",
        ),
        (BASE + "exclude: " + "[" * 50_000 + "]" * 50_000 + "\n", r"nested deeper than 64 levels"),
    ],
)
def test_yaml_bombs_are_refused_quickly_in_one_line(
    tmp_path: Path, body: str, message: str
) -> None:
    import time

    path = write_config(tmp_path, body)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert time.monotonic() - started < 5
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_alias_bomb_in_a_set_override_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, BASE)
    bomb = "{" + ", ".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)
    )
    with pytest.raises(ConfigError, match=r"--set exclude"):
        load_config(path, ["exclude={a0: &a0 [x, x, x, x, x, x, x, x, x, x], " + bomb[1:] + "}"])


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_float64_parameter_is_one_message(tmp_path: Path, value: str) -> None:
    body = BASE.replace(
        'query_parameters: {cutoff: "2025-01-01"}',
        f"query_parameters: {{cutoff: {{type: FLOAT64, value: {value}}}}}",
    )
    with pytest.raises(ConfigError, match=r"query_parameters.cutoff: .* is not a finite number"):
        load_config(write_config(tmp_path, body))
