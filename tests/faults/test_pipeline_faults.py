"""Whole training runs under faults: kill -9 at a step, a moved or deleted registry under a
cached re-run, and two runs on one work dir at once. The champion only ever moves to a
version that passed its smoke test, and every summary describes the registry as it is."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from voltpipe.config import load_config
from voltpipe.registry import open_registry
from voltpipe.runners.local import run_local

pytestmark = [pytest.mark.slow, pytest.mark.integration]
VOLTPIPE = str(Path(sys.executable).parent / "voltpipe")


def _start(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [VOLTPIPE, "run", "training", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the steps are child processes: kill them all
        text=True,
    )


def _kill_when_logged(proc: subprocess.Popen, logs: Path, marker: str, timeout: float = 600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(marker in f.read_text(errors="replace") for f in logs.glob("*.log")):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {marker!r}: {proc.stdout.read()}")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"{marker!r} never logged")


def test_kill_9_at_each_step_never_leaves_an_untested_champion(wind_config: Path) -> None:
    cfg = load_config(wind_config)
    logs = cfg.workdir / "logs"
    for marker in ("voltpipe: extracted", "Epoch 1/", "voltpipe: registered"):
        for f in logs.glob("*.log"):
            f.unlink()
        _kill_when_logged(_start(wind_config), logs, marker)
        registry = open_registry(cfg.registry_uri)
        assert registry.get(cfg.name) is None, f"killed after {marker!r}"
        versions = registry.versions(cfg.name)
        assert [v.version for v in versions] in ([], ["1"])
    # The retry reuses the registered version (no v2, v3...) and promotes it once, last.
    summary = run_local("training", cfg, cache=True)
    registry = open_registry(cfg.registry_uri)
    assert [v.version for v in registry.versions(cfg.name)] == ["1"]
    champion = summary["champion"]
    assert {
        k: champion[k] for k in ("promoted", "version", "previous_version", "gate_promoted")
    } == {
        "promoted": True,
        "version": "1",
        "previous_version": None,
        "gate_promoted": True,
    }
    assert champion["gate"]["verdict"] == "promote"  # the first model
    assert registry.get(cfg.name).version == "1"


def test_cached_reruns_describe_the_registry_as_it_is(wind_config: Path) -> None:
    cfg = load_config(wind_config)
    first = run_local("training", cfg, cache=True)
    assert first["champion"]["promoted"] is True
    registry = open_registry(cfg.registry_uri)
    # Another run makes a version 2 champion (here: the same files under another fingerprint).
    v1 = registry.get(cfg.name, "1")
    v2 = registry.register(cfg.name, v1.uri, {**v1.metadata, "model_fingerprint": "another"})
    registry.set_alias(cfg.name, "champion", v2.version)
    cached = run_local("training", cfg, cache=True)
    assert cached["champion"]["promoted"] is False
    assert cached["champion"]["version"] == "2" == registry.get(cfg.name).version
    assert cached["champion"]["previous_version"] == "2"

    # The registry is deleted: a cached re-run registers and promotes again, for real.
    shutil.rmtree(Path(cfg.registry_uri))
    again = run_local("training", cfg, cache=True)
    registry = open_registry(cfg.registry_uri)
    champion = registry.get(cfg.name)
    assert champion is not None and champion.version == again["champion"]["version"] == "1"
    assert again["champion"]["promoted"] is True and again["model"]["uri"] == champion.uri


def test_two_runs_at_once_on_one_work_dir(wind_config: Path, tmp_path: Path) -> None:
    cfg = load_config(wind_config)
    outs = [tmp_path / f"summary-{i}.json" for i in (1, 2)]
    procs = [
        _start(wind_config, "--no-cache", "--set", f"training.seed={i}", "--summary-json", str(o))
        for i, o in zip((1, 2), outs, strict=True)
    ]
    for p in procs:
        output = p.communicate(timeout=900)[0]
        assert p.returncode == 0, output
    a, b = (json.loads(o.read_text()) for o in outs)
    # Each run has its own id and log.
    assert a["run_id"] != b["run_id"] and a["log"] != b["log"]
    assert {a["model"]["version"], b["model"]["version"]} == {"1", "2"}
    champion = open_registry(cfg.registry_uri).get(cfg.name).version
    registrations = {
        s["model"]["version"]: json.loads(
            (cfg.workdir / "pipeline-root" / s["run_id"] / "register" / "registration").read_text()
        )
        for s in (a, b)
    }
    claimed = [s for s in (a, b) if s["champion"]["promoted"]]
    assert claimed, "the first model on an empty registry is promoted"
    for s in (a, b):
        assert s["champion"]["promoted"] is (s["model"]["version"] == champion) or (
            # promoted, then replaced by the other run, which was gated against it
            registrations[champion]["gated_against"] == s["model"]["version"]
        )
        if not s["champion"]["promoted"] and s["champion"]["gate_promoted"]:
            assert "another run moved it" in s["champion"]["reason"]
    if len(claimed) == 2:  # in sequence: the later one beat the earlier one at the gate
        assert registrations[champion]["gated_against"] in {"1", "2"} - {champion}


def test_a_truncated_champion_is_reported_and_replaced_by_a_healthy_challenger(
    wind_config: Path,
) -> None:
    cfg = load_config(wind_config)
    first = run_local("training", cfg, cache=True)
    archive = Path(first["model"]["uri"]) / "model.keras"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    # The same training again: the bar is gone, so the healthy model takes over as version 2.
    again = run_local("training", load_config(wind_config, ["training.seed=5"]), cache=True)
    registry = open_registry(cfg.registry_uri)
    assert again["model"]["version"] == "2" and registry.get(cfg.name).version == "2"
    assert again["champion"]["promoted"] is True and again["champion"]["previous_version"] == "1"
    log = Path(again["log"]).read_text()
    assert "cannot be served and is not used as the bar" in log and "model.keras" in log


def test_a_step_killed_from_outside_is_named_with_its_likely_cause(wind_config: Path) -> None:
    """What the out-of-memory killer does: SIGKILL the train step's process."""
    import threading

    from voltpipe.errors import PipelineError

    cfg = load_config(wind_config)
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not killed:
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if (
                    "python" in cmd.split("\0")[0]  # the step itself, not its shell
                    and "function_to_execute\0train" in cmd
                    and str(cfg.workdir) in cmd
                ):
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    # The step's exit code names the signal (kfp.local keeps only "FAILURE").
    with pytest.raises(
        PipelineError, match=r"step 'train' was killed by SIGKILL \(out of memory\?\)"
    ) as err:
        run_local("training", cfg, cache=False)
    thread.join(5)
    assert killed and "rows" in str(err.value) and "MB of parquet" in str(err.value)
    assert open_registry(cfg.registry_uri).get(cfg.name) is None
