"""Training under tf.distribute: two worker processes on loopback (MultiWorkerMirroredStrategy
through the trial entry point and TF_CONFIG), and MirroredStrategy on two logical CPUs, with
categorical features and steps_per_execution > 1."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.modelling.test_inputs import fleet, write_groups
from voltpipe.model_dir import HISTORY_FILE, META_FILE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NOISE = 150.0  # kW: a noise floor the fits reach, so that the two losses compare
TRAINING = {
    "epochs": 25,
    "batch_size": 256,
    "learning_rate": 3e-3,
    "steps_per_execution": 4,
    "early_stopping_patience": 25,
    "reduce_lr_patience": 2,
    "max_seconds": None,
    "seed": 3,
}
PARAMS = {
    "model_params": {"family": "mlp", "hidden_units": [32, 16], "dropout": 0.0},
    "training_params": TRAINING,
}


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(
        CUDA_VISIBLE_DEVICES="-1",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=str(ROOT),
        OMP_NUM_THREADS="1",
        TF_NUM_INTRAOP_THREADS="1",
        TF_NUM_INTEROP_THREADS="1",
    )
    env.update(extra)
    return env


def _trial_cmd(splits: dict[str, Path], out: Path) -> list[str]:
    return [
        sys.executable, "-m", "voltpipe.modelling.trial",
        f"--train={splits['train']}", f"--valid={splits['valid']}",
        "--label=power_kw", "--task=regression",
        f"--params={json.dumps(PARAMS)}", f"--output-dir={out}",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fleet")
    return {
        "train": write_groups(root / "train", fleet(6_000, 0, NOISE), files=3, group_rows=500),
        "valid": write_groups(root / "valid", fleet(1_500, 1, NOISE), files=1, group_rows=500),
    }


def _best_val_loss(model_dir: Path) -> float:
    history = json.loads((model_dir / HISTORY_FILE).read_text())
    return min(history["val_loss"])


def test_two_workers_read_disjoint_shards_and_match_one_process(
    splits: dict[str, Path], tmp_path: Path
) -> None:
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, logs = [], []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        log = tmp_path / f"worker-{index}.log"
        logs.append(log)
        env = _env(
            TF_CONFIG=tf_config, CLOUD_ML_HP_METRIC_FILE=str(tmp_path / f"metric-{index}.txt")
        )
        with open(log, "w") as fh:
            procs.append(
                subprocess.Popen(
                    _trial_cmd(splits, tmp_path / "model"),
                    env=env,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            )
    single_env = _env(CLOUD_ML_HP_METRIC_FILE=str(tmp_path / "metric-single.txt"))
    single = subprocess.run(
        _trial_cmd(splits, tmp_path / "single"), env=single_env, capture_output=True,
        text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    codes = [p.wait(timeout=600) for p in procs]
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], texts
    assert single.returncode == 0, single.stdout + single.stderr

    # each worker read its own row groups of the train split: disjoint, covering all 12
    read = []
    for index, text in enumerate(texts):
        m = re.search(rf"input pipeline {index} of 2 reads train row groups \[([\d, ]*)\]", text)
        assert m, text
        read.append({int(g) for g in m.group(1).split(",")})
    assert not read[0] & read[1]
    assert read[0] | read[1] == set(range(12))
    assert all("(3000 of 6000 rows" in t for t in texts)

    # the chief (worker 0) wrote the model; its quality matches the single process'
    assert (tmp_path / "model" / META_FILE).exists()
    meta = json.loads((tmp_path / "model" / META_FILE).read_text())
    assert meta["family"] == "mlp" and meta["rows"]["train"] == 6_000
    two, one = _best_val_loss(tmp_path / "model"), _best_val_loss(tmp_path / "single")
    # Two replicas average the gradients of two half batches, the single process takes one
    # batch of the same global size; the rows come in another order, so the fit lands in
    # another minimum. Seeds 3 and 4 of the single process differ by 2.9 % on this table
    # (0.1020 vs 0.0991), so 5 % (not 2 %) is the tolerance that does not flake.
    assert abs(two - one) <= 0.05 * one, (two, one)


MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from voltpipe.data.io import read_table
from voltpipe.modelling.train import fit_tables
train, valid = read_table(sys.argv[1]), read_table(sys.argv[2])
params = json.loads(sys.argv[3])
devices = [d.name for d in tf.config.list_logical_devices("CPU")]
out = {}
for name, strategy in (("mirrored", tf.distribute.MirroredStrategy(devices)), ("single", None)):
    fitted, _ = fit_tables(train, valid, label="power_kw", task="regression",
        model_params=params["model_params"], training_params=params["training_params"],
        strategy=strategy, verbose=0)
    out[name] = min(fitted.history["val_loss"])
    if strategy is not None:
        out["replicas"] = strategy.num_replicas_in_sync
print("RESULT " + json.dumps(out))
"""


def test_mirrored_strategy_on_two_devices_with_categories(splits: dict[str, Path]) -> None:
    run = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(splits["train"]), str(splits["valid"]),
         json.dumps(PARAMS)],
        env=_env(), capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(run.stdout.split("RESULT ", 1)[1])
    assert result["replicas"] == 2
    assert abs(result["mirrored"] - result["single"]) <= 0.05 * result["single"], result
