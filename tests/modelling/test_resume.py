"""Kill-and-resume: a training run killed after epoch 2 resumes at epoch 3 from its backup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.modelling.synthetic import tabular_table, write_split

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# The test's own callback kills the process right after epoch 2 has been backed up, as a
# preempted machine would; nothing in voltpipe knows about it.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import keras
    from voltpipe.modelling.train import train_model

    class Preempt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if os.environ.get("KILL_AFTER_EPOCH") == str(epoch + 1):
                os._exit(17)

    tr, va, out = sys.argv[1:4]
    result = train_model(
        tr, va, out, label="target", task="regression", exclude=["label"],
        model_params={"family": "mlp", "hidden_units": [8]},
        training_params={"epochs": 5, "batch_size": 256, "early_stopping_patience": 10,
                         "steps_per_execution": 1},
        callbacks=[Preempt()],
    )
    print("RESULT", json.dumps({"initial_epoch": result.initial_epoch,
                                "history": len(result.history["loss"]),
                                "epochs_run": result.epochs_run}))
    """
)


def _run(args: list[str], kill: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(Path.cwd())}
    env.pop("KILL_AFTER_EPOCH", None)
    if kill:
        env["KILL_AFTER_EPOCH"] = kill
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_killed_training_resumes_after_its_last_epoch(tmp_path: Path) -> None:
    tr = write_split(tmp_path / "tr", tabular_table(800, 2, 1))
    va = write_split(tmp_path / "va", tabular_table(200, 2, 2))
    out = tmp_path / "model"
    args = [str(tr), str(va), str(out)]

    first = _run(args, kill="2")
    assert first.returncode == 17, first.stderr[-2000:]
    backup = Path(f"{out}.backup")
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 2
    assert not (out / "model.keras").exists()

    second = _run(args, kill=None)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resuming training after epoch 2" in second.stdout
    assert "Epoch 3/5" in second.stdout and "Epoch 1/5" not in second.stdout
    result = json.loads(second.stdout.split("RESULT ", 1)[1])
    # the full history: two epochs from the killed run, three from the resumed one
    assert result == {"initial_epoch": 2, "history": 5, "epochs_run": 5}
    assert not backup.exists()  # removed once training finished
    meta = json.loads((out / "voltpipe_model.json").read_text())
    assert meta["resumed_after_epoch"] == 2
