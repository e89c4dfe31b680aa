"""The local model registry: versions, aliases, atomicity, references."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from voltpipe.registry import open_registry, parse_model_ref
from voltpipe.registry.local import LocalRegistry, RegistryFileError


def _model(tmp_path: Path, content: str = "weights") -> Path:
    d = tmp_path / f"m-{content}"
    d.mkdir()
    (d / "model.keras").write_text(content)
    return d


def test_versions_and_champion_alias(tmp_path: Path) -> None:
    reg = open_registry(str(tmp_path / "reg"))
    assert reg.get("wind") is None
    v1 = reg.register("wind", _model(tmp_path, "a"), {"metrics": {"rmse": 2.0}})
    v2 = reg.register("wind", _model(tmp_path, "b"), {"metrics": {"rmse": 1.0}})
    assert (v1.version, v2.version) == ("1", "2")
    reg.set_alias("wind", "champion", "1")
    champ = reg.get("wind")
    assert champ is not None and champ.version == "1" and champ.aliases == ("champion",)
    assert (Path(champ.uri) / "model.keras").read_text() == "a"
    assert champ.metadata["metrics"] == {"rmse": 2.0} and champ.metadata["version"] == "1"
    assert reg.get("wind", "2").uri == v2.uri
    assert [v.version for v in reg.versions("wind")] == ["1", "2"]


def test_alias_to_missing_version_is_refused(tmp_path: Path) -> None:
    reg = open_registry(str(tmp_path / "reg"))
    reg.register("wind", _model(tmp_path), {})
    with pytest.raises(ValueError, match="no version 9"):
        reg.set_alias("wind", "champion", "9")


def test_failed_copy_leaves_no_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = LocalRegistry(tmp_path / "reg")

    def broken_copy(src, dst, **kwargs):
        Path(dst).mkdir(parents=True)
        (Path(dst) / "half").write_text("x")
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copytree", broken_copy)
    with pytest.raises(RegistryFileError, match="disk full.*no version was added"):
        reg.register("wind", _model(tmp_path), {})
    assert reg.versions("wind") == []
    assert not [p for p in (tmp_path / "reg" / "wind").iterdir() if p.name.startswith(".incoming")]


def test_model_refs(tmp_path: Path) -> None:
    assert parse_model_ref("wind@champion").name == "wind"
    assert parse_model_ref("wind").selector == "champion"
    assert parse_model_ref("wind@3").selector == "3"
    assert parse_model_ref(str(tmp_path)).path == tmp_path


# -- compare-and-swap, damaged files, permissions (issue 11) ---------------------------------------


def _cas_worker(root: str, version: str, out: str) -> None:
    reg = LocalRegistry(Path(root))
    moved = reg.compare_and_set_alias("wind", "champion", version, expected=None)
    Path(out).write_text("won" if moved is None else f"lost to {moved}")


def test_compare_and_set_moves_the_champion_only_from_the_expected_one(tmp_path: Path) -> None:
    reg = LocalRegistry(tmp_path / "reg")
    for content in ("a", "b", "c"):
        reg.register("wind", _model(tmp_path, content), {})
    assert reg.compare_and_set_alias("wind", "champion", "1", expected=None) is None
    # Gated against "no champion", but version 1 is champion now: refused, nothing changes.
    assert reg.compare_and_set_alias("wind", "champion", "2", expected=None) == "1"
    assert reg.get("wind").version == "1"
    assert reg.compare_and_set_alias("wind", "champion", "2", expected="1") is None
    assert reg.get("wind").version == "2"
    assert reg.compare_and_set_alias("wind", "champion", "2", expected="1") is None  # already
    reg.remove_alias("wind", "champion", "3")  # not pointing at 3: kept
    assert reg.get("wind").version == "2"
    reg.remove_alias("wind", "champion", "2")
    assert reg.get("wind") is None


def test_concurrent_promotions_have_exactly_one_winner(tmp_path: Path) -> None:
    import multiprocessing

    reg = LocalRegistry(tmp_path / "reg")
    for i in range(6):
        reg.register("wind", _model(tmp_path, f"m{i}"), {})
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_cas_worker, args=(str(reg.root), str(i + 1), str(tmp_path / f"out{i}")))
        for i in range(6)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    results = [(tmp_path / f"out{i}").read_text() for i in range(6)]
    winners = [str(i + 1) for i, r in enumerate(results) if r == "won"]
    assert len(winners) == 1
    assert reg.get("wind").version == winners[0]
    assert all(r == f"lost to {winners[0]}" for r in results if r != "won")


def test_same_model_registered_twice_is_one_version(tmp_path: Path) -> None:
    from voltpipe.registry.promote import model_fingerprint

    reg = LocalRegistry(tmp_path / "reg")
    model = _model(tmp_path, "a")
    first = reg.register("wind", model, {"model_fingerprint": model_fingerprint(model)})
    again = reg.register("wind", model, {"model_fingerprint": model_fingerprint(model)})
    other = _model(tmp_path, "b")
    new = reg.register("wind", other, {"model_fingerprint": model_fingerprint(other)})
    assert (first.version, again.version, new.version) == ("1", "1", "2")


def test_garbled_aliases_file_is_named_in_one_message(tmp_path: Path) -> None:
    from voltpipe.registry.local import RegistryFileError

    reg = LocalRegistry(tmp_path / "reg")
    reg.register("wind", _model(tmp_path), {})
    reg.set_alias("wind", "champion", "1")
    aliases = tmp_path / "reg" / "wind" / "aliases.json"
    for garbage in ('{"champion": "1"', "[1, 2]", '{"champion": 1}', "\x00\xff"):
        aliases.write_text(garbage)
        with pytest.raises(RegistryFileError, match=r"aliases\.json \(the aliases\).*delete it"):
            reg.get("wind")
        with pytest.raises(RegistryFileError, match="aliases.json"):
            reg.set_alias("wind", "champion", "1")


def test_damaged_or_stray_version_folders(tmp_path: Path) -> None:
    from voltpipe.registry.local import RegistryFileError

    reg = LocalRegistry(tmp_path / "reg")
    reg.register("wind", _model(tmp_path, "a"), {})
    reg.register("wind", _model(tmp_path, "b"), {})
    versions = tmp_path / "reg" / "wind" / "versions"
    (versions / "2" / "metadata.json").write_text('{"name": "wind", "vers')
    (versions / "7").mkdir()  # a stray folder: no metadata at all
    # Listing skips them (one warning each); asking for them names the file and the fix.
    assert [v.version for v in reg.versions("wind")] == ["1"]
    with pytest.raises(RegistryFileError, match=r"versions/2/metadata\.json.*restore the file"):
        reg.get("wind", "2")
    with pytest.raises(RegistryFileError, match=r"versions/7 has no metadata\.json"):
        reg.get("wind", "7")
    # A number is never reused, even a stray one's.
    assert reg.register("wind", _model(tmp_path, "c"), {}).version == "8"


def test_registry_files_are_readable_by_the_group_and_others(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        reg = LocalRegistry(tmp_path / "reg")
        v = reg.register("wind", _model(tmp_path), {})
        reg.set_alias("wind", "champion", "1")
    finally:
        os.umask(old)
    modes = {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in (Path(v.uri), Path(v.uri) / "metadata.json", Path(v.uri) / "model.keras")
    }
    modes["aliases.json"] = stat.S_IMODE((tmp_path / "reg/wind/aliases.json").stat().st_mode)
    assert modes == {
        "1": 0o755,
        "metadata.json": 0o644,
        "model.keras": 0o644,
        "aliases.json": 0o644,
    }


def test_unwritable_registry_folder_is_one_message(tmp_path: Path) -> None:
    import os

    from voltpipe.registry.local import RegistryFileError

    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    root = tmp_path / "reg"
    root.mkdir()
    root.chmod(0o555)
    try:
        with pytest.raises(RegistryFileError, match=r"registry folder .*reg/wind is not writable"):
            LocalRegistry(root).register("wind", _model(tmp_path), {})
    finally:
        root.chmod(0o755)


def _keras_like(folder: Path) -> Path:
    import json
    import zipfile

    folder.mkdir(parents=True)
    (folder / "voltpipe_model.json").write_text(json.dumps({"task": "regression"}))
    with zipfile.ZipFile(folder / "model.keras", "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", b"\0" * 4096)
    return folder


def test_a_damaged_champion_is_set_aside_with_its_reason(tmp_path: Path) -> None:
    from voltpipe.registry.health import usable_champion

    reg = LocalRegistry(tmp_path / "reg")
    reg.register("wind", _keras_like(tmp_path / "m"), {})
    reg.set_alias("wind", "champion", "1")
    healthy = usable_champion(reg, "wind")
    assert healthy.champion is not None and healthy.problem is None
    archive = tmp_path / "reg/wind/versions/1/model.keras"
    archive.write_bytes(archive.read_bytes()[:100])  # truncated
    damaged = usable_champion(reg, "wind")
    assert damaged.champion is None and damaged.set_aside.version == "1"
    assert "is not used as the bar" in damaged.problem and "model.keras" in damaged.problem
    assert damaged.evaluation_fields()["champion_set_aside"] == "1"
    (tmp_path / "reg/wind/versions/1/voltpipe_model.json").write_text("{garbled")
    assert "voltpipe_model.json" in usable_champion(reg, "wind").problem
