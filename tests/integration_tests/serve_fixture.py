"""Start and stop a real ``transformers serve`` on 127.0.0.1 for the served-model tests.

Not a conftest: tests import :func:`served_model` and wrap it in their own fixture. The server
serves one model folder (``FORCE_MODEL``), on the CPU, in float32, on a free port; greedy
decoding comes from each request's ``temperature: 0``. Needs ``transformers[serving]``
(fastapi, uvicorn, openai).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

SERVING_MODULES = ("fastapi", "uvicorn", "openai")


def serving_missing() -> str | None:
    """Why ``transformers serve`` cannot run here, or ``None``."""
    missing = [m for m in SERVING_MODULES if importlib.util.find_spec(m) is None]
    return f"transformers serve needs {', '.join(missing)}: pip install 'transformers[serving]'" if missing else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("transformers")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("transformers")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())"]


@dataclass
class Served:
    """A running server: its base URL, the model name it answers to, and its process."""

    base_url: str
    model: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, n: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-n:]
        return ""

    def kill(self) -> None:
        """Kill the server at once (SIGKILL to its process group), as a crash would."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """Stop the server politely, then for sure."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def served_model(
    model_dir: str | Path,
    *,
    continuous_batching: bool = False,
    startup_timeout: float = 240.0,
    threads: int | None = None,
) -> Iterator[Served]:
    """Run ``transformers serve MODEL_DIR`` on a free local port until the block ends."""
    port = free_port()
    model = str(model_dir)
    cmd = [
        *_cli(),
        "serve",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--log-level",
        "warning",
        "--continuous-batching" if continuous_batching else "--no-continuous-batching",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "PYTHONUNBUFFERED": "1"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    log = Path(tempfile.mkstemp(prefix="spec-graph-serve-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    served = Served(f"http://127.0.0.1:{port}/v1", model, proc, log)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                msg = f"transformers serve exited with {proc.returncode}:\n{served.log_tail()}"
                raise RuntimeError(msg)
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                msg = f"transformers serve did not answer within {startup_timeout:.0f}s:\n{served.log_tail()}"
                raise RuntimeError(msg)
            time.sleep(0.5)
        yield served
    finally:
        served.stop()
        with contextlib.suppress(OSError):
            log.unlink()
