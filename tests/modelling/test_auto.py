"""Family auto: the candidates' scores, the choice, and the family/task checks at config load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import write_config
from voltpipe.config import DEFAULT_FAMILY, load_config
from voltpipe.errors import ConfigError
from voltpipe.model_dir import read_meta
from voltpipe.modelling.auto import BLEND_Z, CANDIDATES, CV_FOLDS, SMALL_TABLE
from voltpipe.modelling.train import fit_tables

QUICK_MLP = {"epochs": 4, "batch_size": 256}  # keeps the mlp candidate cheap


def _table(kind: str, n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(0, 1, n), rng.normal(0, 1, n)
    if kind == "linear":  # a plane: the linear model is exact
        y = 3 * x1 - 2 * x2 + rng.normal(0, 0.05, n)
    else:  # steps: trees are exact, a plane is not
        y = 4.0 * (x1 > 0.3) - 3.0 * (x2 > -0.5) * (x1 < 1.0) + rng.normal(0, 0.05, n)
    return pa.table({"x1": x1, "x2": x2, "y": y})


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "winner"), [("linear", "linear"), ("steps", "gbdt")])
def test_auto_keeps_the_family_that_clearly_wins(kind: str, winner: str) -> None:
    fitted, problem = fit_tables(
        _table(kind, 2500, 1),
        _table(kind, 600, 2),
        label="y",
        task="regression",
        training_params=QUICK_MLP,
        verbose=0,
    )
    meta = fitted.meta
    assert meta["family"] == winner and problem.family == winner
    assert meta["auto"]["chosen_by"] == "valid split"
    cands = {c["family"]: c for c in meta["candidates"] if c["family"] != "blend"}
    assert set(cands) == set(CANDIDATES)
    assert [c["members"] for c in meta["candidates"] if c["family"] == "blend"] == [
        sorted(CANDIDATES, key=lambda f: cands[f]["score"])[:2],
        sorted(CANDIDATES, key=lambda f: cands[f]["score"]),
    ]
    assert all(c["metric"] == "rmse" and c["fit_seconds"] > 0 for c in cands.values())
    assert [c["family"] for c in meta["candidates"] if c["chosen"]] == [winner]
    best = cands[winner]["score"]
    assert all(best < 0.5 * c["score"] for f, c in cands.items() if f != winner)
    assert all(c["score"] > best for c in meta["candidates"] if c["family"] == "blend")
    assert best < 0.2  # close to the noise (0.05)


@pytest.mark.slow
def test_a_small_table_is_judged_by_cross_validation_and_saved_as_the_winner(
    tmp_path: Path,
) -> None:
    from tests.modelling.synthetic import write_split
    from voltpipe.modelling.predict import load_model
    from voltpipe.modelling.train import train_model

    write_split(tmp_path / "train", _table("linear", 300, 1))
    write_split(tmp_path / "valid", _table("linear", 40, 2))
    result = train_model(
        tmp_path / "train",
        tmp_path / "valid",
        tmp_path / "model",
        label="y",
        task="regression",
        training_params=QUICK_MLP,
    )
    meta = read_meta(tmp_path / "model")
    assert SMALL_TABLE > 300 and f"{CV_FOLDS}-fold CV" in meta["auto"]["chosen_by"]
    assert all(c["folds"] == CV_FOLDS for c in meta["candidates"])
    assert meta["family"] == result.meta["family"] == "linear"
    assert meta["format"] == "voltpipe-linear-v1"
    assert meta["model_params"]["family"] == "linear"
    pred = load_model(tmp_path / "model").predict_raw(_table("linear", 100, 3))
    assert np.all(np.isfinite(pred))


def test_auto_is_the_default_for_tables() -> None:
    assert DEFAULT_FAMILY["regression"] == DEFAULT_FAMILY["classification"] == "auto"


@pytest.mark.parametrize(
    ("task", "family", "message"),
    [
        (
            "anomaly",
            "gbdt",
            "model.family: 'gbdt' does not serve task 'anomaly'; valid for anomaly: autoencoder",
        ),
        ("regression", "cnn", "valid for regression: auto, linear, mlp, gbdt"),
        (
            "classification",
            "xgboost",
            "unknown model family 'xgboost'; valid: auto, linear, mlp, gbdt",
        ),
    ],
)
def test_a_family_the_task_does_not_have_fails_at_config_load(
    tmp_path: Path, task: str, family: str, message: str
) -> None:
    path = write_config(
        tmp_path, f"query: SELECT 1\nlabel: y\ntask: {task}\nmodel: {{family: {family}}}\n"
    )
    with pytest.raises(ConfigError, match="model.family") as err:
        load_config(path)
    assert message in str(err.value)


def test_gbdt_keys_load_and_tuned_flat_keys_fold_into_the_section(tmp_path: Path) -> None:
    from voltpipe.config import ModelConfig

    path = write_config(
        tmp_path,
        "query: SELECT 1\nlabel: y\ntask: regression\n"
        "model: {family: gbdt, gbdt: {num_leaves: 15, learning_rate: 0.1}}\n",
    )
    cfg = load_config(path)
    assert (cfg.model.gbdt.num_leaves, cfg.model.gbdt.learning_rate) == (15, 0.1)
    mp = ModelConfig(**{"family": "gbdt", "gbdt.num_leaves": 7, "gbdt": {"max_trees": 9}})
    assert (mp.gbdt.num_leaves, mp.gbdt.max_trees) == (7, 9)
    with pytest.raises(ConfigError, match="num_leavs"):
        load_config(path, ["model.gbdt.num_leavs=3"])


def _sum_table(n: int, seed: int) -> pa.Table:
    """A plane plus a step: the linear model misses the step, trees approximate the plane by
    steps; their mean beats both."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(0, 1, n), rng.normal(0, 1, n)
    y = 4 * x1 + 2.5 * (x2 > 0) + rng.normal(0, 0.3, n)
    return pa.table({"x1": x1, "x2": x2, "y": y})


@pytest.mark.slow
def test_the_blend_is_kept_when_it_wins_and_its_folder_predicts_its_members_mean(
    tmp_path: Path,
) -> None:
    from tests.modelling.synthetic import write_split
    from voltpipe.model_dir import check_model_files, load_row_scorer
    from voltpipe.modelling.predict import load_model
    from voltpipe.modelling.train import train_model

    write_split(tmp_path / "train", _sum_table(400, 1))
    write_split(tmp_path / "valid", _sum_table(80, 2))
    result = train_model(
        tmp_path / "train",
        tmp_path / "valid",
        tmp_path / "model",
        label="y",
        task="regression",
        training_params=QUICK_MLP,
    )
    meta = read_meta(tmp_path / "model")
    chosen = [c for c in meta["candidates"] if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["family"] == "blend"
    singles = [c["score"] for c in meta["candidates"] if c["family"] != "blend"]
    assert chosen[0]["score"] < 0.9 * min(singles)
    assert chosen[0]["eligible"] and chosen[0]["gain_z"] >= BLEND_Z
    assert meta["family"] == result.meta["family"] == "blend"
    assert meta["format"] == "voltpipe-blend-v1" and meta["model_params"]["family"] == "auto"
    assert meta["auto"]["members"] == chosen[0]["members"] == meta["members"]
    check_model_files(tmp_path / "model")

    test = _sum_table(200, 3)
    scorer = load_row_scorer(tmp_path / "model")
    members = sorted((tmp_path / "model").glob("member-*"))
    assert [read_meta(m)["family"] for m in members] == meta["members"]
    numeric = list(meta["model_file"]["numeric"])
    xn = np.column_stack([test.column(c).to_numpy() for c in numeric]).astype(np.float32)
    xc = np.empty((len(xn), 0), object)
    got = scorer.forward(numeric, [])(xn, xc)
    each = [load_row_scorer(m).forward(numeric, [])(xn, xc) for m in members]
    assert got.shape == (200, 1)
    np.testing.assert_allclose(got, np.mean(each, axis=0), rtol=1e-9, atol=1e-12)
    assert not np.allclose(each[0], each[1], atol=1e-3)  # two different members
    pred = load_model(tmp_path / "model").predict_raw(test)
    np.testing.assert_allclose(np.asarray(pred).reshape(-1), got.reshape(-1), rtol=1e-6)
    rmse = float(np.sqrt(np.mean((got.reshape(-1) - test.column("y").to_numpy()) ** 2)))
    assert rmse < 0.75  # CV: linear 0.80, gbdt 0.83, their blend 0.65


@pytest.fixture(scope="module")
def linear_mlp_blend(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved blend of a linear model and an mlp (its replay) for a 3-class table."""
    from voltpipe.model_dir import write_meta
    from voltpipe.modelling.blend import BlendModel, Member
    from voltpipe.modelling.train import verified_replay

    def table(n: int, seed: int) -> pa.Table:
        rng = np.random.default_rng(seed)
        x1, x2 = rng.normal(0, 1, n), rng.normal(0, 1, n)
        y = np.where(x1 + rng.normal(0, 0.5, n) > 0.5, "hi", np.where(x2 > 0, "mid", "lo"))
        return pa.table({"x1": x1, "x2": x2, "y": y})

    fits = {
        family: fit_tables(
            table(300, 1),
            table(80, 2),
            label="y",
            task="classification",
            model_params={"family": family},
            training_params=QUICK_MLP,
            verbose=0,
        )[0]
        for family in ("linear", "mlp")
    }
    replay = verified_replay(fits["mlp"].model, fits["mlp"].meta)
    assert replay is not None
    members = [
        Member("linear", fits["linear"].model, fits["linear"].model, fits["linear"].meta, {}),
        Member("mlp", fits["mlp"].model, replay, fits["mlp"].meta, fits["mlp"].history),
    ]
    folder = tmp_path_factory.mktemp("blend") / "model"
    folder.mkdir()
    meta = {**fits["linear"].meta, "family": "blend", "format": "voltpipe-blend-v1"}
    meta["model_file"] = BlendModel(members, ["x1", "x2"], []).save(folder)
    write_meta(folder, meta)
    return folder


def test_a_blend_folder_averages_its_members_probabilities_without_tensorflow(
    linear_mlp_blend: Path,
) -> None:
    import subprocess
    import sys

    from voltpipe.model_dir import load_row_scorer

    members = sorted(linear_mlp_blend.glob("member-*"))
    assert [m.name for m in members] == ["member-0-linear", "member-1-mlp"]
    assert (members[1] / "model.keras").exists() and (members[1] / "voltpipe_replay.npz").exists()
    rng = np.random.default_rng(5)
    xn = rng.normal(0, 1, (50, 2)).astype(np.float32)
    xc = np.empty((50, 0), object)
    got = load_row_scorer(linear_mlp_blend).forward(["x2", "x1"], [])(xn[:, ::-1], xc)
    each = [load_row_scorer(m).forward(["x1", "x2"], [])(xn, xc) for m in members]
    assert got.shape == (50, 3)
    np.testing.assert_allclose(got, (each[0] + each[1]) / 2, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
    code = (
        "import sys, numpy as np\n"
        "from voltpipe.model_dir import load_row_scorer, check_model_files\n"
        f"check_model_files({str(linear_mlp_blend)!r})\n"
        f"f = load_row_scorer({str(linear_mlp_blend)!r}).forward()\n"
        "f(np.zeros((3, 2), np.float32), np.empty((3, 0), object))\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate the linear member's weights", "member-0-linear/voltpipe_linear.json"),
        ("edit the mlp member's metadata", "member-1-mlp/voltpipe_model.json does not match"),
        ("remove the mlp member's replay", "has no NumPy scorer"),
        ("delete the linear member", "member-0-linear/voltpipe_model.json is missing"),
        ("edit the blend file", "voltpipe_blend.json is corrupted"),
    ],
)
def test_a_damaged_blend_member_is_refused(
    linear_mlp_blend: Path, tmp_path: Path, damage: str, message: str
) -> None:
    import shutil

    from voltpipe.errors import DataError
    from voltpipe.model_dir import check_model_files, load_row_scorer

    folder = tmp_path / "model"
    shutil.copytree(linear_mlp_blend, folder)
    if damage.startswith("truncate"):
        path = folder / "member-0-linear" / "voltpipe_linear.json"
        path.write_bytes(path.read_bytes()[:-20])
    elif damage.startswith("edit the mlp"):
        path = folder / "member-1-mlp" / "voltpipe_model.json"
        path.write_text(path.read_text().replace('"mlp"', '"linear"', 1))
    elif damage.startswith("remove"):
        (folder / "member-1-mlp" / "voltpipe_replay.npz").unlink()
    elif damage.startswith("delete"):
        shutil.rmtree(folder / "member-0-linear")
    else:
        path = folder / "voltpipe_blend.json"
        path.write_text(path.read_text().replace("member-1-mlp", "member-1-mlq"))
    with pytest.raises(DataError, match=message.replace(".", r"\.")):
        load_row_scorer(folder)
    if not damage.startswith("remove"):  # the Keras archive is intact: only scoring needs it
        with pytest.raises(DataError, match=message.replace(".", r"\.")):
            check_model_files(folder)


def test_a_blend_is_eligible_only_when_its_gain_beats_the_noise() -> None:
    from voltpipe.modelling.auto import _blend_candidates

    rng = np.random.default_rng(0)
    y = rng.normal(0, 1, 400)
    ys = [y[:200], y[200:]]

    def run(err_a: np.ndarray, err_b: np.ndarray) -> dict[str, object]:
        outs = {
            "linear": [(y + err_a)[:200, None], (y + err_a)[200:, None]],
            "gbdt": [(y + err_b)[:200, None], (y + err_b)[200:, None]],
        }
        scored = [
            {"family": f, "score": float(np.sqrt(np.mean(e**2)))}
            for f, e in (("linear", err_a), ("gbdt", err_b))
        ]
        (blend,) = _blend_candidates("regression", "rmse", scored, outs, ys)
        return blend

    independent = run(rng.normal(0, 1, 400), rng.normal(0, 1, 400))  # the mean halves the MSE
    assert sorted(independent["members"]) == ["gbdt", "linear"]
    assert independent["eligible"] and independent["gain_z"] > 5
    assert independent["score"] == pytest.approx(1 / np.sqrt(2), rel=0.15)
    shared = rng.normal(0, 1, 400)  # the same errors but for a little noise: no real gain
    close = run(shared, shared + rng.normal(0, 0.05, 400))
    assert not close["eligible"] and close["gain_z"] < BLEND_Z


def test_the_model_does_not_depend_on_the_order_the_warehouse_returned_the_rows_in() -> None:
    from voltpipe.modelling.auto import _outputs
    from voltpipe.modelling.features import model_inputs

    # A valid split under 200 rows: the linear strength is chosen by k-fold CV over the rows,
    # whose folds follow the row order unless the rows are put in a canonical order first
    # (without it the two fits' predictions differ by up to 0.08). The GBDT's dependence (its
    # bins come from a 200,000-row sample drawn by row position) needs a bigger table.
    train, valid = _table("steps", 300, 1), _table("steps", 60, 2)
    shuffled = train.take(np.random.default_rng(3).permutation(train.num_rows))
    x = _table("steps", 50, 4)
    preds, metas = [], []
    for rows in (train, shuffled):
        fitted, problem = fit_tables(
            rows, valid, label="y", task="regression", model_params={"family": "linear"}, verbose=0
        )
        preds.append(_outputs(fitted, problem, model_inputs(x, problem.plan)))
        metas.append(fitted.meta)
    np.testing.assert_array_equal(preds[0], preds[1])
    assert metas[0].get("strength") == metas[1].get("strength")
    assert metas[0]["best_epoch"] == metas[1]["best_epoch"]
