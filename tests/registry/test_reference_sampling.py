"""The drift reference is sampled from the sampled row groups only, not the whole train split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from voltpipe.data.io import row_groups_to_sample, sample_rows

GROUP_ROWS = 1_000


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Three shards of 20 row groups each (60,000 rows), a time-ordered trend in ``x``."""
    folder = tmp_path / "train"
    folder.mkdir()
    rng = np.random.default_rng(1)
    n = 20 * GROUP_ROWS
    for shard in range(3):
        ids = np.arange(shard * n, (shard + 1) * n)
        table = pa.table(
            {
                "row_id": ids,
                "x": ids / 60_000 + rng.normal(0, 0.1, n),
                "site": pa.array(np.where(ids % 3 == 0, "a", "b")),
            }
        )
        pq.write_table(table, folder / f"part-{shard:05d}.parquet", row_group_size=GROUP_ROWS)
    return folder


def test_only_the_sampled_row_groups_are_read(
    dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    original = pq.ParquetFile.read_row_group

    def counting(self: pq.ParquetFile, i: int, *args: object, **kwargs: object) -> pa.Table:
        reads.append(i)
        return original(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    monkeypatch.setattr(pq, "read_table", None)  # a whole-file read would fail loudly
    sample = sample_rows(dataset, 2_000, seed=0)
    assert sample.num_rows == 2_000
    # 4x oversampling: 8 of the 60 groups (8,000 rows) are read, never the whole split.
    assert len(reads) == 8
    planned = row_groups_to_sample(dataset, 2_000, seed=0)
    assert planned is not None and sum(n for _, _, n in planned) == 8 * GROUP_ROWS


def test_the_sample_is_seeded_real_distinct_rows_in_order(dataset: Path) -> None:
    a = sample_rows(dataset, 3_000, seed=5)
    b = sample_rows(dataset, 3_000, seed=5)
    assert a.equals(b)
    assert not a.equals(sample_rows(dataset, 3_000, seed=6))
    ids = a.column("row_id").to_numpy()
    assert len(np.unique(ids)) == 3_000
    assert np.all(np.diff(ids) > 0)  # Dataset order is kept
    whole = pq.read_table(dataset).to_pandas().set_index("row_id")
    picked = a.to_pandas().set_index("row_id")
    assert np.allclose(picked["x"], whole.loc[picked.index, "x"])
    assert (picked["site"] == whole.loc[picked.index, "site"]).all()


def test_the_sample_keeps_the_split_statistics(dataset: Path) -> None:
    whole = pq.read_table(dataset)
    x = whole.column("x").to_numpy()
    sample = sample_rows(dataset, 6_000, seed=0)
    s = sample.column("x").to_numpy()
    # A trend over time: the mean and spread of a 24-group cluster sample stay close.
    assert abs(s.mean() - x.mean()) < 0.1
    assert abs(s.std() - x.std()) < 0.05
    share_a = np.mean(sample.column("site").to_numpy(zero_copy_only=False) == "a")
    assert share_a == pytest.approx(1 / 3, abs=0.03)


def test_a_small_split_is_returned_whole(dataset: Path) -> None:
    assert row_groups_to_sample(dataset, 60_000) is None
    assert sample_rows(dataset, 100_000).num_rows == 60_000
    with pytest.raises(ValueError, match="rows must be positive"):
        sample_rows(dataset, 0)
