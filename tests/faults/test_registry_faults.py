"""Faults around registration: broken tracking, full disk, kill -9; the champion never moves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.faults.conftest import registration_inputs
from voltpipe.registry.local import LocalRegistry, RegistryFileError
from voltpipe.registry.promote import register_and_promote
from voltpipe.tracking import log_run_safely


def _registry_with_champion(root: Path, tmp_path: Path) -> LocalRegistry:
    reg = LocalRegistry(root)
    first = registration_inputs(tmp_path / "first")
    info = register_and_promote(registry_uri=str(root), tracking_uri="", **first)
    reg.set_alias("wind", "champion", info["version"])
    return reg


def test_broken_tracking_store_is_not_fatal_and_moves_no_champion(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    reg = _registry_with_champion(root, tmp_path)
    broken = tmp_path / "mlflow.db"
    broken.write_bytes(b"this is not an sqlite database" * 100)
    info = register_and_promote(
        registry_uri=str(root),
        tracking_uri=f"sqlite:///{broken}",
        **registration_inputs(tmp_path / "second", champion="1"),
    )
    assert info["version"] == "2" and info["promote"] is True
    assert info["tracking"]["logged"] is False and info["tracking"]["pending"] == 1
    assert "DatabaseError" in info["tracking"]["error"] or "database" in info["tracking"]["error"]
    assert info["mlflow_run_id"] is None
    # The gate promoted version 2, but only deploy (after its smoke test) moves the champion.
    assert reg.get("wind").version == "1"
    assert info["champion"] is False and info["gated_against"] == "1"


def test_a_pending_tracked_run_is_logged_by_the_next_registration(tmp_path: Path) -> None:
    import mlflow

    root = tmp_path / "registry"
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"garbage" * 100)
    register_and_promote(
        registry_uri=str(root),
        tracking_uri=f"sqlite:///{broken}",
        **registration_inputs(tmp_path / "a"),
    )
    good = f"sqlite:///{tmp_path / 'mlflow.db'}"
    info = register_and_promote(
        registry_uri=str(root), tracking_uri=good, **registration_inputs(tmp_path / "b")
    )
    assert info["tracking"] == {
        "logged": True,
        "run_id": info["mlflow_run_id"],
        "error": None,
        "pending": 0,
        "retried": 1,
    }
    runs = mlflow.MlflowClient(tracking_uri=good).search_runs(
        [mlflow.MlflowClient(tracking_uri=good).get_experiment_by_name("wind").experiment_id]
    )
    assert sorted(r.data.tags["voltpipe.model_version"] for r in runs) == ["1", "2"]


def test_unreachable_tracking_server_gives_up_quickly_without_leaking_credentials(
    tmp_path: Path,
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    result = log_run_safely(
        f"http://alice:s3cr3t-pass@127.0.0.1:{port}",
        "wind",
        spool_dir=tmp_path / "pending",
        run_name="r",
        params={},
        metrics={"rmse": 1.0},
        tags={},
    )
    assert time.monotonic() - started < 60
    assert result.logged is False and result.pending == 1
    assert "s3cr3t-pass" not in (result.error or "") and "alice" not in (result.error or "")


def test_full_disk_during_register_adds_no_version_and_keeps_the_champion(
    tmp_path: Path, tiny_disk: Path
) -> None:
    root = tiny_disk / "registry"
    reg = _registry_with_champion(root, tmp_path)
    big = registration_inputs(tmp_path / "big", champion="1")
    (Path(big["model_dir"]) / "weights.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    with pytest.raises(RegistryFileError, match="No space left on device.*champion is unchanged"):
        register_and_promote(registry_uri=str(root), tracking_uri="", **big)
    assert [v.version for v in reg.versions("wind")] == ["1"]
    assert reg.get("wind").version == "1"
    assert not list((root / "wind").glob(".incoming-*"))


def test_full_disk_during_the_alias_move_keeps_the_old_alias(
    tmp_path: Path, tiny_disk: Path
) -> None:
    root = tiny_disk / "registry"
    reg = _registry_with_champion(root, tmp_path)
    register_and_promote(
        registry_uri=str(root), tracking_uri="", **registration_inputs(tmp_path / "b")
    )
    filler = tiny_disk / "filler"
    with open(filler, "wb") as fh, pytest.raises(OSError):
        while True:
            fh.write(b"\0" * 65536)
    with pytest.raises(RegistryFileError, match=r"aliases\.json failed.*unchanged"):
        reg.compare_and_set_alias("wind", "champion", "2", expected="1")
    filler.unlink()
    assert reg.get("wind").version == "1"


_KILLABLE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from voltpipe.registry.local import LocalRegistry

    src = Path(sys.argv[2])
    LocalRegistry(Path(sys.argv[1])).register("wind", src, {"model_fingerprint": "x"})
    """
)


def test_kill_9_during_register_leaves_no_half_version_and_no_alias(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    reg = _registry_with_champion(root, tmp_path)
    src = tmp_path / "many"
    src.mkdir()
    for i in range(3000):
        (src / f"part-{i:05d}.bin").write_bytes(os.urandom(2048))
    killed_mid_copy = 0
    for delay in (0.0, 0.05, 0.2):
        proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(root), str(src)])
        deadline = time.monotonic() + 60
        while not list((root / "wind").glob(".incoming-*/model/*")) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(delay)
        killed_mid_copy += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        versions = [v.version for v in reg.versions("wind")]
        # Whole or absent; the champion never moves.
        assert all(len(list((root / "wind/versions" / v).iterdir())) > 1 for v in versions)
        assert all((root / "wind/versions" / v / "metadata.json").exists() for v in versions)
        assert reg.get("wind").version == "1"
    assert killed_mid_copy >= 1
    # A later registration is not confused by the leftovers of the killed ones.
    info = register_and_promote(
        registry_uri=str(root), tracking_uri="", **registration_inputs(tmp_path / "after")
    )
    assert reg.get("wind", info["version"]) is not None and reg.get("wind").version == "1"


def test_read_only_or_full_work_dir_is_one_message(tmp_path: Path, tiny_disk: Path) -> None:
    from typer.testing import CliRunner

    from voltpipe.cli import app
    from voltpipe.runners.local import _capture_steps

    # Full: the run log stops with one line, the run goes on.
    log = tiny_disk / "logs" / "run.log"
    (tiny_disk / "filler").write_bytes(b"\0" * (2 * 1024 * 1024 - 8192))
    with _capture_steps(log, debug=False) as steps:
        for _ in range(2000):
            print("voltpipe: " + "x" * 200)
    assert steps.log_error is not None and steps.log_error.errno == 28
    (tiny_disk / "filler").unlink()
    # Read-only: the CLI names the work dir, no traceback.
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    result = CliRunner().invoke(
        app, ["run", "training", "--set", f"workdir={tiny_disk / 'work'}"], catch_exceptions=False
    )
    assert result.exit_code == 1
    assert (
        f"the work dir {tiny_disk / 'work'} is not usable (Read-only file system" in result.output
    )
    assert "Traceback" not in result.output


@pytest.mark.slow
@pytest.mark.parametrize(
    "garbage",
    [
        ("aliases.json", '{"champion": "1"'),
        ("versions/1/metadata.json", "{not json"),
    ],
)
def test_a_garbled_registry_file_is_one_line_in_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, garbage: tuple[str, str]
) -> None:
    from typer.testing import CliRunner

    from voltpipe.cli import app

    monkeypatch.chdir(tmp_path)
    model = tmp_path / ".voltpipe" / "registry" / "wind-power"
    (model / "versions" / "1").mkdir(parents=True)
    (model / "versions" / "1" / "metadata.json").write_text('{"version": "1"}')
    (model / "aliases.json").write_text('{"champion": "1"}')
    relative, text = garbage
    (model / relative).write_text(text)
    for args in (
        ["run", "training"],
        ["run", "monitoring"],
        ["run", "prediction"],
        ["serve", "--model", "wind-power", "--port", "1"],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert "Traceback" not in result.output and "JSONDecodeError" not in result.output
        assert f"registry file {model / relative}" in " ".join(result.output.split()), (
            args,
            result.output,
        )
