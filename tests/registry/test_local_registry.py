"""The local model registry: versions, aliases, atomicity, references."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from voltpipe.registry import open_registry, parse_model_ref
from voltpipe.registry.local import LocalRegistry


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
    with pytest.raises(OSError):
        reg.register("wind", _model(tmp_path), {})
    assert reg.versions("wind") == []
    assert not [p for p in (tmp_path / "reg" / "wind").iterdir() if p.name.startswith(".incoming")]


def test_model_refs(tmp_path: Path) -> None:
    assert parse_model_ref("wind@champion").name == "wind"
    assert parse_model_ref("wind").selector == "champion"
    assert parse_model_ref("wind@3").selector == "3"
    assert parse_model_ref(str(tmp_path)).path == tmp_path
