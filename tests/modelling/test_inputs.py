"""Compact and streaming training input: the layout, the parquet split, the streaming shuffle,
and the same training in memory and streamed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from voltpipe.errors import ConfigError, DataError
from voltpipe.modelling.distribute import check_replicas
from voltpipe.modelling.features import compact_inputs, model_inputs, plan_features
from voltpipe.modelling.inputs import (
    STREAM_MEMORY_FRACTION,
    ParquetSplit,
    Shard,
    TableSplit,
    load_rows,
    memory_batches,
    resolve_input_mode,
    stream_batches,
)


def fleet(n: int, seed: int = 0, noise: float = 5.0) -> pa.Table:
    """A small fleet table: 11 numeric columns, 2 categorical (turbine, status), power (with
    Gaussian noise of sd `noise` kW)."""
    rng = np.random.default_rng(seed)
    wind = rng.gamma(4.0, 2.0, n)
    cols: dict[str, object] = {"wind_speed_ms": wind}
    for i in range(10):
        cols[f"sensor_{i}"] = rng.normal(0, 1, n) + 0.1 * i * wind
    turbine = rng.integers(0, 40, n)
    cols["turbine_id"] = pa.array([f"T{t:03d}" for t in turbine])
    status = rng.choice(["ok", "derated", "icing"], n, p=[0.8, 0.15, 0.05])
    cols["status"] = pa.array(status)
    power = (
        np.clip(wind, 0, 12) ** 2 * 10
        + 20 * (turbine % 5)
        - 80 * (status == "derated")
        + 5 * cols["sensor_3"]  # type: ignore[operator]
        + rng.normal(0, noise, n)
    )
    cols["power_kw"] = power
    return pa.table(cols)


def write_groups(folder: Path, table: pa.Table, files: int = 2, group_rows: int = 500) -> Path:
    """`table` as `files` parquet shards of `group_rows`-row row groups (as extract writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, table.num_rows, files + 1).astype(int)
    for i in range(files):
        part = table.slice(bounds[i], bounds[i + 1] - bounds[i])
        pq.write_table(part, folder / f"part-{i:05d}.parquet", row_group_size=group_rows)
    return folder


def test_compact_inputs_code_categories_by_vocabulary() -> None:
    train = pa.table(
        {"x": [1.5, 2.0, 3.0], "c": ["b", None, "a"], "flag": [True, False, True], "y": [1, 2, 3]}
    )
    plan = plan_features(train, label="y")
    other = pa.table(
        {"x": [4.0, 5.0], "c": ["z", "a"], "flag": [False, True], "y": [0, 0]}
    )  # "z" was never seen
    rows = compact_inputs(other, plan)
    assert rows.numeric.dtype == np.float32 and rows.codes.dtype == np.int32
    np.testing.assert_array_equal(rows.numeric[:, 0], [4.0, 5.0])
    vocab = plan.categorical["c"]
    assert vocab == ["a", "b"]
    np.testing.assert_array_equal(rows.codes[:, 0], [-1, 0])
    np.testing.assert_array_equal(rows.codes[:, 1], [0, 1])  # "false", "true"
    raw = model_inputs(other, plan)
    np.testing.assert_array_equal(rows.numeric[:, [0]], raw["x"])


def test_compact_inputs_name_the_bad_column() -> None:
    plan = plan_features(pa.table({"x": [1.0, 2.0], "y": [0.0, 1.0]}), label="y")
    with pytest.raises(DataError, match="'x' holds null, NaN"):
        compact_inputs(pa.table({"x": [1.0, float("nan")], "y": [0.0, 1.0]}), plan)
    with pytest.raises(DataError, match="'x' is missing"):
        compact_inputs(pa.table({"z": [1.0], "y": [0.0]}), plan)


def test_parquet_split_reads_columns_and_row_groups(tmp_path: Path) -> None:
    table = fleet(2_300)
    split = ParquetSplit(write_groups(tmp_path / "train", table, files=2, group_rows=400))
    assert split.num_rows == table.num_rows
    assert [n for *_, n in split.groups] == [400, 400, 350, 400, 400, 350]
    assert split.column("power_kw").equals(table.column("power_kw"))
    streamed, whole = plan_features(split, label="power_kw"), plan_features(table, label="power_kw")
    assert streamed.categorical == whole.categorical and list(streamed.numeric) == list(
        whole.numeric
    )
    for name, stats in whole.numeric.items():  # row group by row group: the same up to rounding
        assert streamed.numeric[name] == pytest.approx(stats, rel=1e-12)
    got = pa.concat_tables(split.read_group(k, ["status"]) for k in range(len(split.groups)))
    assert got.column("status").equals(table.column("status"))


def test_shards_are_disjoint_and_cover_every_row_group() -> None:
    shards = [Shard(i, 3).groups(10) for i in range(3)]
    assert sorted(g for s in shards for g in s) == list(range(10))
    assert shards[0] == [0, 3, 6, 9]


def _rows(batch: tuple[np.ndarray, ...]) -> set[tuple[float, ...]]:
    return {tuple(r) for r in batch[0].tolist()}


def test_stream_batches_read_every_row_once_a_pass_in_a_new_order(tmp_path: Path) -> None:
    table = fleet(3_000)
    split = ParquetSplit(write_groups(tmp_path / "t", table, files=3, group_rows=250))
    plan = plan_features(split, label="power_kw")
    cols = [*plan.names, "power_kw"]

    def convert(t: pa.Table) -> tuple[np.ndarray, ...]:
        x = compact_inputs(t, plan)
        return x.numeric, x.codes

    gen = stream_batches(
        split, list(range(len(split.groups))), convert, cols,
        batch=64, shuffle=True, seed=1, buffer=1_000,
    )  # fmt: skip
    passes = [list(gen()) for _ in range(2)]
    everything = compact_inputs(table, plan).numeric
    for batches in passes:
        sizes = [len(b[0]) for b in batches]
        assert sizes[:-1] == [64] * (len(sizes) - 1) and sum(sizes) == table.num_rows
        got = np.concatenate([b[0] for b in batches])
        # every row once: the same multiset of rows as the table
        np.testing.assert_array_equal(
            got[np.lexsort(got.T[::-1])], everything[np.lexsort(everything.T[::-1])]
        )
    first = [np.concatenate([b[0] for b in p])[:, 0] for p in passes]
    assert not np.array_equal(first[0], first[1])  # reshuffled every pass
    # mixed across row groups: the first batch holds rows of several groups
    group_of = np.repeat(np.arange(len(split.groups)), [n for *_, n in split.groups])
    index = {tuple(r): g for r, g in zip(everything.tolist(), group_of, strict=True)}
    assert len({index[r] for r in _rows(passes[0][0])}) >= 3
    # not shuffled: the rows in file order, same as in memory
    plain = stream_batches(
        split, list(range(len(split.groups))), convert, cols, batch=64, shuffle=False, seed=1,
        buffer=1_000,
    )  # fmt: skip
    loaded = load_rows(split, list(range(len(split.groups))), convert, cols)
    mem = memory_batches(loaded, batch=64, shuffle=False, seed=1)
    for a, b in zip(plain(), mem(), strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_input_mode_auto_streams_above_a_fraction_of_memory() -> None:
    memory = 8 * 2**30
    limit = int(STREAM_MEMORY_FRACTION * memory / 60)
    assert resolve_input_mode("auto", limit - 10, 60, memory) == "memory"
    assert resolve_input_mode("auto", limit + 10, 60, memory) == "stream"
    assert resolve_input_mode("stream", 10, 60, memory) == "stream"
    assert resolve_input_mode("memory", 10**12, 60, memory) == "memory"


def test_table_split_has_the_parquet_interface() -> None:
    table = fleet(1_000)
    split = TableSplit(table, group_rows=300)
    assert [n for *_, n in split.groups] == [300, 300, 300, 100]
    assert split.read_group(3, ["status"]).column(0).equals(table.column("status").slice(900))


def test_single_machine_families_refuse_several_replicas() -> None:
    with pytest.raises(ConfigError, match="replica_count is 2, but model.family 'gbdt'"):
        check_replicas("regression", "gbdt", 2)
    with pytest.raises(ConfigError, match="'auto'"):
        check_replicas("classification", None, 3)
    with pytest.raises(ConfigError, match="'statistical'"):
        check_replicas("forecasting", "statistical", 2)
    check_replicas("regression", "mlp", 2)
    check_replicas("anomaly", None, 2)
    check_replicas("regression", "gbdt", 1)


@pytest.fixture(scope="module")
def fleet_splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fleet-inputs")
    return {
        "train": write_groups(root / "train", fleet(4_000, seed=0), files=2, group_rows=500),
        "valid": write_groups(root / "valid", fleet(1_000, seed=1), files=1, group_rows=500),
    }


def _problem(splits: dict[str, Path], mode: str, task: str = "regression") -> object:
    from voltpipe.config import ModelConfig, TrainingConfig
    from voltpipe.modelling.problems import TaskParams, make_problem

    tp = TrainingConfig(batch_size=128, input=mode, shuffle_buffer=1_500)
    problem = make_problem(
        ParquetSplit(splits["train"]), ParquetSplit(splits["valid"]),
        label="power_kw", task=task, features=None, exclude=None,
        mp=ModelConfig(family="mlp" if task == "regression" else "autoencoder"),
        tp=tp, params=TaskParams(),
    )  # fmt: skip
    return problem, tp


@pytest.mark.slow
def test_memory_and_stream_inputs_train_the_same_model(fleet_splits: dict[str, Path]) -> None:
    import keras

    from voltpipe.config import ModelConfig
    from voltpipe.data.io import read_table
    from voltpipe.modelling.inputs import row_dataset
    from voltpipe.modelling.train import enable_determinism

    # not shuffled: both inputs give the same batches, so one seed trains the same model
    valid = read_table(fleet_splits["valid"])
    preds = {}
    for mode in ("memory", "stream"):
        problem, tp = _problem(fleet_splits, mode)
        assert problem.input_mode == mode
        enable_determinism(0)
        core = problem.build(ModelConfig(family="mlp", hidden_units=[16], dropout=0.0))
        core.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        core.fit(problem.dataset("train", tp, shuffle=False), epochs=2, verbose=0, shuffle=False)
        serving = problem.finish(core)  # takes raw strings, as served
        x = model_inputs(valid, problem.plan)
        preds[mode] = serving.predict(row_dataset(x, None, batch=512, shuffle=False), verbose=0)
    np.testing.assert_allclose(preds["memory"], preds["stream"], rtol=1e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["regression", "anomaly"])
def test_train_model_streamed_matches_in_memory(
    fleet_splits: dict[str, Path], tmp_path: Path, task: str
) -> None:
    from voltpipe.modelling.train import train_model

    results = {}
    for mode in ("memory", "stream"):
        results[mode] = train_model(
            fleet_splits["train"], fleet_splits["valid"], tmp_path / mode,
            label="power_kw" if task == "regression" else "fault", task=task,
            model_params={"family": "mlp" if task == "regression" else "autoencoder",
                          "hidden_units": [32, 16], "dropout": 0.0},
            training_params={"input": mode, "epochs": 15, "batch_size": 128,
                             "shuffle_buffer": 1_500, "max_seconds": None},
        )  # fmt: skip
    memory, stream = (min(results[m].history["val_loss"]) for m in ("memory", "stream"))
    # shuffled differently (a permutation in memory, row groups and a buffer streamed): the
    # same model up to the noise of the row order, a few per cent of the loss
    assert abs(stream - memory) <= 0.1 * memory, (memory, stream)
    assert results["stream"].meta["rows"] == results["memory"].meta["rows"]
    if task == "anomaly":
        thresholds = [results[m].meta["anomaly"]["threshold"] for m in ("memory", "stream")]
        assert thresholds[1] == pytest.approx(thresholds[0], rel=0.25)
