"""CPU decoding speed of each dtype and int8 setting, with its effect on greedy text, in one interleaved run.

For each model, every setting answers the same MultiArith questions (the paper's prompt, the
model's chat template) with plain greedy decoding through the library's KV-cache seam. Settings
take turns prompt by prompt (round-robin), so a change in the machine's load hits them all alike.
Printed per model and setting: decode tok/s, its ratio to fp32, the prefill of a 93-token prompt
in decode steps, and how many greedy answers are identical to fp32's (and for how many tokens
they agree on average).

    python benchmarks/cpu_speed.py                                  # 0.5B and 1.5B, 5 prompts, 64 tokens
    python benchmarks/cpu_speed.py --models qwen2.5-coder-0.5b-instruct --threads 1,2
    python benchmarks/cpu_speed.py --settings fp32,int8,int8+compile --tokens 32 --out cpu.json

Settings (``--settings``; a model is held once per setting, so memory grows with the list):
    fp32, bf16, fp16           dtype only
    int8                       dtype bf16 + quantization="int8" (int8 weights, PyTorch's CPU kernel)
    int8-fp32                  dtype fp32 + quantization="int8" (the matmuls still take bf16 inputs)
    ao-int8-dynamic            torchao Int8DynamicActivationInt8WeightConfig on the fp32 model
    ao-int8-weight             torchao Int8WeightOnlyConfig on the bf16 model (eager: slow, see docs)
    <setting>+compile          the same with torch.compile on the forward (compiles during warm-up)
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from spec_graph.eval.datasets import load_dataset
from spec_graph.eval.runner import PAPER_PROMPT
from spec_graph.generators import hf, hf_cache, hf_loading, precision

DEFAULT_MODELS = "qwen2.5-coder-0.5b-instruct,qwen2.5-coder-1.5b-instruct"
DEFAULT_SETTINGS = "fp32,bf16,int8,ao-int8-dynamic"
PREFILL_TOKENS = 93


@dataclass(frozen=True)
class Setting:
    """How one model is loaded: a dtype, a public quantization or a benchmark-only torchao scheme."""

    dtype: str
    quantization: str = "none"
    scheme: str | None = None
    compile: bool = False


BASE_SETTINGS = {
    "fp32": Setting("float32"),
    "bf16": Setting("bfloat16"),
    "fp16": Setting("float16"),
    "int8": Setting("bfloat16", "int8"),
    "int8-fp32": Setting("float32", "int8"),
    "ao-int8-dynamic": Setting("float32", scheme="int8-torchao-dynamic"),
    "ao-int8-weight": Setting("bfloat16", scheme="int8-torchao-weight"),
}


def parse_setting(name: str) -> Setting:
    base, plus, extra = name.partition("+")
    if base not in BASE_SETTINGS or (plus and extra != "compile"):
        raise SystemExit(f"unknown setting {name!r}: choose from {', '.join(BASE_SETTINGS)}, each optionally +compile")
    s = BASE_SETTINGS[base]
    return Setting(s.dtype, s.quantization, s.scheme, compile=bool(plus))


@dataclass
class Measured:
    """Per-round numbers of one (model, setting, threads)."""

    decode_s: list[float] = field(default_factory=list)
    decode_tokens: list[int] = field(default_factory=list)
    prefill_s: list[float] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    outputs: list[list[int]] = field(default_factory=list)


def load(model: str, setting: Setting) -> Any:
    """The model as a user gets it: load_pretrained (dtype, quantization); torchao schemes on a private copy."""
    if setting.scheme is None and not setting.compile:
        lm, _ = hf.load_pretrained(model, device="cpu", dtype=setting.dtype, quantization=setting.quantization)
        return lm
    from transformers import AutoModelForCausalLM

    from spec_graph.models import resolve_model_path

    path = resolve_model_path(model, progress=False)
    dtype = precision.resolve_dtype(setting.dtype, "cpu")
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True).eval()
    if setting.scheme is not None:
        precision.apply_scheme(lm, setting.scheme)
    precision.quantize(lm, setting.quantization, "cpu")
    if setting.compile:
        lm.forward = torch.compile(lm.forward, dynamic=True)
    return lm


def weight_bytes(lm: Any) -> int:
    """Bytes of parameters and buffers (int8 weights count 1 byte each)."""
    total = 0
    for t in [*lm.parameters(), *lm.buffers()]:
        parts = [getattr(t, n) for n in ("qdata", "scale") if hasattr(t, "qdata")] or [t]  # torchao tensors
        total += sum(p.numel() * p.element_size() for p in parts)
    return total


def greedy(lm: Any, prompt: list[int], tokens: int, eos: set[int]) -> tuple[float, float, list[int]]:
    """Prefill seconds, decode seconds (after the first token) and the generated ids."""
    cache = hf_cache.new_cache()
    out: list[int] = []
    with torch.inference_mode():
        t0 = time.perf_counter()
        logits = hf_cache.forward_last_logits(lm, torch.tensor([prompt]), cache)
        t1 = time.perf_counter()
        out.append(int(logits.argmax(-1)))
        while len(out) < tokens and out[-1] not in eos:
            logits = hf_cache.forward_last_logits(lm, torch.tensor([[out[-1]]]), cache)
            out.append(int(logits.argmax(-1)))
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1, out


def common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def run_model(model: str, names: list[str], threads: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    console_print(f"[bold]{model}[/]: loading {', '.join(names)}")
    loaded: dict[str, Any] = {}
    for name in sorted(names, key=lambda n: parse_setting(n).scheme is None):  # private copies first: lower peak
        t0 = time.perf_counter()
        loaded[name] = load(model, parse_setting(name))
        gb = weight_bytes(loaded[name]) / 1e9
        console_print(f"  {name}: loaded in {time.perf_counter() - t0:.1f} s, {gb:.2f} GB")
    from transformers import AutoTokenizer

    from spec_graph.models import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path(model, progress=False))
    eos_ids = getattr(next(iter(loaded.values())).generation_config, "eos_token_id", None) or []
    eos = {int(tok.eos_token_id), *([eos_ids] if isinstance(eos_ids, int) else eos_ids)}
    problems = load_dataset("multiarith", limit=args.prompts)
    prompts = [
        list(
            tok.apply_chat_template(
                [{"role": "user", "content": f"{PAPER_PROMPT} {p.problem}"}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
            )
        )
        for p in problems
    ]
    runs = [(name, t) for name in names for t in threads]
    results = {run: Measured() for run in runs}
    for name, t in runs:  # warm-up: first-call costs (oneDNN primitives, compilation) stay out of the numbers
        torch.set_num_threads(t)
        t0 = time.perf_counter()
        greedy(loaded[name], prompts[0], 4, eos)
        if parse_setting(name).compile:
            console_print(f"  {name} x{t}: warm-up (compilation) {time.perf_counter() - t0:.1f} s")
    for i, prompt in enumerate(prompts):  # one round = every setting on one prompt
        for offset in range(len(runs)):
            name, t = runs[(offset + i) % len(runs)]  # rotate the order too, so none always goes first
            torch.set_num_threads(t)
            prefill, decode, out = greedy(loaded[name], prompt, args.tokens, eos)
            m = results[(name, t)]
            m.prefill_s.append(prefill)
            m.decode_s.append(decode)
            m.decode_tokens.append(len(out) - 1)
            m.prompt_tokens.append(len(prompt))
            m.outputs.append(out)
        console_print(f"  round {i + 1}/{len(prompts)} done")
    rows = []
    ref_name = "fp32" if "fp32" in names else names[0]
    ref = results[(ref_name, threads[0])]
    ref_rate = sum(ref.decode_tokens) / sum(ref.decode_s)
    for (name, t), m in results.items():
        rate = sum(m.decode_tokens) / sum(m.decode_s)
        step = sum(m.decode_s) / sum(m.decode_tokens)
        per_token = [p / n for p, n in zip(m.prefill_s, m.prompt_tokens, strict=True)]
        prefill_steps = statistics.mean(per_token) * PREFILL_TOKENS / step
        same = [a == b for a, b in zip(m.outputs, ref.outputs, strict=True)]
        prefix = [common_prefix(a, b) for a, b in zip(m.outputs, ref.outputs, strict=True)]
        rows.append(
            {
                "model": model,
                "setting": name,
                "threads": t,
                "load": asdict(parse_setting(name)),
                "weights_gb": weight_bytes(loaded[name]) / 1e9,
                "tok_s": rate,
                "ratio": rate / ref_rate,
                "prefill_decode_steps": prefill_steps,
                "prompt_tokens": statistics.mean(m.prompt_tokens),
                "identical": sum(same),
                "prompts": len(same),
                "mean_common_prefix": statistics.mean(prefix),
                "reference": f"{ref_name} x{threads[0]}",
                "raw": asdict(m),
            }
        )
    loaded.clear()
    hf_loading._LOADED.clear()  # the benchmark's own process: free this model's copies before the next model
    gc.collect()
    return rows


def console_print(msg: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(msg)


def table(rows: list[dict[str, Any]], tokens: int) -> Any:
    from rich.table import Table

    t = Table(title=f"CPU decoding, greedy, {tokens} new tokens, interleaved rounds", header_style="bold")
    for col in ("model", "setting", "threads", "weights GB", "tok/s", "× ref", "prefill (decode steps / 93 tok)",
                "identical to ref", "mean agreeing tokens"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("model", "setting") else "right")
    for r in rows:
        t.add_row(
            r["model"],
            r["setting"],
            str(r["threads"]),
            f"{r['weights_gb']:.2f}",
            f"{r['tok_s']:.2f}",
            f"{r['ratio']:.2f}",
            f"{r['prefill_decode_steps']:.1f}",
            f"{r['identical']}/{r['prompts']}",
            f"{r['mean_common_prefix']:.0f}",
        )
    t.caption = "ref = fp32 on the first --threads value; prefill scaled to a 93-token prompt"
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated (default: %(default)s)")
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help="comma-separated (default: %(default)s)")
    parser.add_argument("--prompts", type=int, default=5, help="MultiArith questions = rounds (default: 5)")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per answer (default: 64)")
    parser.add_argument("--threads", default=str(torch.get_num_threads()), help="comma-separated torch threads")
    parser.add_argument("--out", default=None, help="write the rows (with per-round numbers) as JSON here")
    args = parser.parse_args()
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    for name in names:
        parse_setting(name)
    threads = [int(t) for t in args.threads.split(",")]
    rows: list[dict[str, Any]] = []
    for model in (m.strip() for m in args.models.split(",") if m.strip()):
        rows += run_model(model, names, threads, args)
    from rich.console import Console

    Console(width=150).print(table(rows, args.tokens))
    if args.out:
        meta = {"torch": torch.__version__, "cpu_bf16": precision.cpu_has_native_bf16(), "args": vars(args)}
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
