"""Concurrent questions through a served target: aggregate tokens/s and speed-up over sequential runs.

For each N (default 1, 4, 8) the same N GSM8K questions run once one after another and once all
at the same time (one thread each, sharing one RemoteGenerator and its connection pool), in one
process; the script prints the aggregate kept tokens per second of both, the speed-up, and
whether every concurrent answer equals its sequential one (greedy decoding).

Without ``--base-url`` it starts ``transformers serve`` on 127.0.0.1 for ``--served`` (an
embedded model name or a folder; needs ``pip install 'transformers[serving]'``) and stops it at
the end. With ``--base-url`` it uses a running server (vLLM, SGLang, ...)::

    python benchmarks/served_concurrency.py --max-new-tokens 24                 # local CPU check
    python benchmarks/served_concurrency.py --continuous-batching               # let the server batch
    python benchmarks/served_concurrency.py --base-url http://gpu:8000/v1 \\
        --model Qwen/Qwen2.5-32B-Instruct --tokenizer /models/Qwen2.5-32B-Instruct --small served

``--small served`` sends the small model's steps to the same server too (all work batched there);
the default keeps the small model local, as in the paper's device + server deployment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from spec_graph import SpeculativeThinker, SpeculativeThinkingConfig
from spec_graph.generators.remote import RemoteGenerator

HERE = Path(__file__).resolve().parent
PAPER_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


def gsm8k_questions(n: int) -> list[str]:
    path = HERE.parent / "spec_graph" / "data" / "gsm8k.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()[:n]]
    return [f"{PAPER_PROMPT} {row['problem']}" for row in rows]


def run_all(thinker: SpeculativeThinker, questions: list[str], workers: int) -> tuple[float, list[Any]]:
    t0 = time.perf_counter()
    if workers == 1:
        results = [thinker.run(q) for q in questions]
    else:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(thinker.run, questions))
    return time.perf_counter() - t0, results


@contextlib.contextmanager
def server_for(args: argparse.Namespace) -> Any:
    if args.base_url:
        yield args.base_url, args.model
        return
    sys.path.insert(0, str(HERE.parent / "tests" / "integration_tests"))
    from serve_fixture import served_model

    from spec_graph.models import ensure_model, is_embedded

    folder = ensure_model(args.served) if is_embedded(args.served) else Path(args.served)
    t0 = time.perf_counter()
    with served_model(folder, continuous_batching=args.continuous_batching) as srv:
        print(f"transformers serve {folder} up in {time.perf_counter() - t0:.1f}s at {srv.base_url}")
        yield srv.base_url, srv.model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="a running OpenAI-compatible server (default: start transformers serve)")
    parser.add_argument("--model", help="served model name (with --base-url; default: the server's only model)")
    parser.add_argument("--tokenizer", help="the served model's tokenizer: embedded name, folder or hub id")
    parser.add_argument("--served", default="smollm2-135m-instruct", help="model to serve when starting a server")
    parser.add_argument("--continuous-batching", action="store_true", help="start transformers serve with it")
    parser.add_argument("--small", default="smollm2-135m-instruct", help="local small model, or 'served'")
    parser.add_argument("--ns", default="1,4,8", help="numbers of concurrent questions")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--preset", default="non_reasoning")
    parser.add_argument("--opening-tokens", type=int, default=16)
    args = parser.parse_args()

    ns = [int(n) for n in args.ns.split(",")]
    questions = gsm8k_questions(max(ns))
    cfg = SpeculativeThinkingConfig.preset(
        args.preset, max_new_tokens=args.max_new_tokens, opening_tokens=args.opening_tokens, temperature=0.0
    )
    with server_for(args) as (base_url, model):
        tokenizer = args.tokenizer if args.base_url else None
        target = RemoteGenerator(model, base_url=base_url, tokenizer=tokenizer, max_concurrency=max(ns))
        small: Any = args.small
        if args.small == "served":
            small = RemoteGenerator(model, base_url=base_url, tokenizer=tokenizer, max_concurrency=max(ns))
        thinker = SpeculativeThinker(small, target, cfg)
        thinker.run(questions[0], max_new_tokens=4)  # warm up: load the local model, open connections
        print(f"\npreset={args.preset} max_new_tokens={args.max_new_tokens} small={args.small} target={model}")
        cols = ("N", 3), ("tokens", 7), ("seq s", 8), ("seq tok/s", 10), ("conc s", 8), ("conc tok/s", 11)
        print(" ".join(f"{c:>{w}}" for c, w in cols) + "  speed-up  same text")
        for n in ns:
            qs = questions[:n]
            seq_wall, seq = run_all(thinker, qs, 1)
            conc_wall, conc = run_all(thinker, qs, n)
            tokens = sum(r.num_output_tokens for r in conc)
            seq_tokens = sum(r.num_output_tokens for r in seq)
            same = all(a.text == b.text for a, b in zip(seq, conc, strict=True))
            print(
                f"{n:>3} {tokens:>7} {seq_wall:>8.2f} {seq_tokens / seq_wall:>10.2f} {conc_wall:>8.2f} "
                f"{tokens / conc_wall:>11.2f} {seq_wall / conc_wall:>8.2f}x  {same}"
            )
        target.close()


if __name__ == "__main__":
    main()
