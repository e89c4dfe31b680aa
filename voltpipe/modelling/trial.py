"""Entry point of Vertex AI training and tuning-trial containers.

``python -m voltpipe.modelling.trial --train URI --valid URI --label L --task T --params JSON
[--output-dir URI] [--metric-tag val_loss] [--KEY VALUE | --KEY=VALUE ...]``

Hyperparameters arrive as ``--KEY VALUE`` (how Vertex AI launches a trial, per its tuning guide)
or ``--KEY=VALUE`` (both parsed by argparse) and are applied over ``--params`` (``{features, exclude, model_params, training_params, task_params,
best_params}``; best_params is a tune step's output, applied last as in the train step).
The best validation loss is reported in the format Vertex AI's tuning service reads (the
cloudml-hypertune metrics file). With an output dir (or ``AIP_MODEL_DIR``) the chief saves the
model there. This module is the one place that reads the Vertex environment: TF_CONFIG,
AIP_MODEL_DIR, AIP_CHECKPOINT_DIR, CLOUD_ML_HP_METRIC_FILE, CLOUD_ML_TRIAL_ID.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from voltpipe.config import TUNABLE

DEFAULT_METRIC_FILE = "/tmp/hypertune/output.metrics"


def gcs_fuse_path(uri: str) -> str:
    """``gs://bucket/path`` -> ``/gcs/bucket/path`` (Vertex mounts Cloud Storage there)."""
    return "/gcs/" + uri[len("gs://") :] if uri.startswith("gs://") else uri


def report_metric(
    path: str, trial_id: str, tag: str, value: float, step: int, checkpoint_path: str = ""
) -> None:
    """Writes the trial's metric as cloudml-hypertune does: the file is rewritten with this
    process's reports, one JSON object a line (``checkpoint_path``, the metric tag,
    ``global_step``, ``timestamp``, ``trial``; values as strings); Vertex reads the last line."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    body = {
        "checkpoint_path": checkpoint_path,
        "global_step": str(int(step)),
        tag: str(float(value)),
        "timestamp": time.time(),
        "trial": str(trial_id),
    }
    with open(path, "w") as fh:  # one report a process: the rewritten file holds this line
        fh.write(json.dumps(body, sort_keys=True) + "\n")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Known flags, and the hyperparameters (tunable keys only), ``--KEY VALUE`` or ``--KEY=VALUE``."""
    from voltpipe.modelling.search_space import decode_choice

    parser = argparse.ArgumentParser(prog="python -m voltpipe.modelling.trial", allow_abbrev=False)
    parser.add_argument("--train", required=True)
    parser.add_argument("--valid", required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--params", default="{}")
    parser.add_argument("--output-dir", default="")
    parser.add_argument("--metric-tag", default="val_loss")
    hp = parser.add_argument_group("hyperparameters (a tuning trial's, as --KEY VALUE)")
    for key in sorted(TUNABLE):
        hp.add_argument(f"--{key}", dest=f"hp__{key}", metavar="VALUE", default=None)
    args = parser.parse_args(argv)
    hparams: dict[str, Any] = {}
    for key in TUNABLE:
        value = getattr(args, f"hp__{key}")
        if value is not None:
            hparams[key] = decode_choice(key, value)
    return args, hparams


def main(argv: list[str] | None = None, env: dict[str, str] | None = None) -> int:
    from voltpipe.errors import exit_on_user_error
    from voltpipe.modelling.distribute import (
        check_replicas,
        cluster_size,
        is_chief,
        make_strategy,
        strategy_name,
    )
    from voltpipe.modelling.search_space import apply_best_params
    from voltpipe.modelling.train import train_model

    env = dict(os.environ if env is None else env)
    args, hparams = parse_args(argv)
    params = json.loads(args.params)
    mp, tp, taskp = apply_best_params(
        hparams,
        params.get("model_params"),
        params.get("training_params"),
        params.get("task_params"),
    )
    tf_config = env.get("TF_CONFIG")
    with exit_on_user_error():  # a single-machine family on several replicas: refused
        best_model = (params.get("best_params") or {}).get("model") or {}
        family = best_model.get("family") or (mp or {}).get("family")
        check_replicas(args.task, family, cluster_size(tf_config))
    n_gpus = 0
    if tf_config or env.get("CUDA_VISIBLE_DEVICES", "") not in ("", "-1"):
        import tensorflow as tf

        n_gpus = len(tf.config.list_physical_devices("GPU"))
    # Clustering and embedding fit with scikit-learn/NumPy: no TensorFlow strategy to build.
    unsupervised = args.task in ("clustering", "embedding")
    strategy = None if unsupervised else make_strategy(strategy_name(tf_config, n_gpus))
    out = args.output_dir or env.get("AIP_MODEL_DIR", "")
    scratch = tempfile.mkdtemp(prefix="voltpipe-trial-")
    out_dir = gcs_fuse_path(out) if out and is_chief(tf_config) else str(Path(scratch, "model"))
    checkpoint = env.get("AIP_CHECKPOINT_DIR")
    with exit_on_user_error():
        result = train_model(
            gcs_fuse_path(args.train),
            gcs_fuse_path(args.valid),
            out_dir,
            label=args.label,
            task=args.task,
            features=params.get("features") or None,
            exclude=params.get("exclude") or None,
            model_params=mp,
            training_params=tp,
            task_params=taskp,
            best_params=params.get("best_params") or None,
            backup_dir=gcs_fuse_path(checkpoint) if checkpoint else None,
            strategy=strategy,
        )
    monitor = "val_loss" if "val_loss" in result.history else "loss"
    best = min(result.history[monitor]) if result.history.get(monitor) else 0.0  # no epochs
    report_metric(
        env.get("CLOUD_ML_HP_METRIC_FILE", DEFAULT_METRIC_FILE),
        env.get("CLOUD_ML_TRIAL_ID", "0"),
        args.metric_tag,
        best,
        result.epochs_run,
        checkpoint_path=checkpoint or "",
    )
    print(
        f"voltpipe trial: {args.metric_tag}={best:.6g} after {result.epochs_run} epochs", flush=True
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
