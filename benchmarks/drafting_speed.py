"""Lossless speculative decoding inside the engine, against the target alone and transformers.

One interleaved run (every prompt goes through every system before the next prompt), greedy,
on MultiArith questions with the paper's prompt:

- ``target``: the target alone, token by token (the engine's session loop);
- ``target:draft``: the ``always`` policy with ``target_drafting="auto"``: the whole answer is
  the target's, written by draft-and-verify with the small model drafting;
- ``specdec``: transformers' assisted generation (``model.generate(assistant_model=...)``);
- ``generate:target``: plain ``model.generate`` of the target (transformers' own loop).

It prints tokens/s, the ratio to the target alone, the acceptance rate, and how many texts are
identical to the target's.

    python benchmarks/drafting_speed.py                       # Qwen 0.5B -> 1.5B, 5 prompts, 128 tokens
    python benchmarks/drafting_speed.py --dtype float32 --prompts 10 --out drafting.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from spec_graph import SpeculativeThinker
from spec_graph.eval.datasets import load_dataset
from spec_graph.eval.systems import HFGenerateSystem, SampleOptions
from spec_graph.generators.base import GenerateRequest
from spec_graph.generators.hf import HFGenerator

PAPER_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
SYSTEMS = ("target", "target:draft", "specdec", "generate:target")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--target", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--dataset", default="multiarith")
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--dtype", default=None, help="model dtype (default: the library's choice)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    small = HFGenerator(args.small, device="cpu", dtype=args.dtype)
    target = HFGenerator(args.target, device="cpu", dtype=args.dtype)
    _ = small.model, target.model
    problems = load_dataset(args.dataset, limit=args.prompts, offset=args.offset)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    cfg = {"policy": "always", "temperature": 0.0, "max_new_tokens": args.max_new_tokens}
    drafting = SpeculativeThinker(small, target, {**cfg, "target_drafting": "auto"})
    assisted = HFGenerateSystem("specdec", target, small)
    plain = HFGenerateSystem("generate:target", target)
    options = SampleOptions(max_new_tokens=args.max_new_tokens, temperature=0.0)

    def run(system: str, messages: list[dict[str, str]]) -> tuple[str, int, dict[str, int]]:
        if system == "target":
            session = target.start(messages)
            try:
                seg = session.generate([], GenerateRequest(max_tokens=args.max_new_tokens, stop_at_trigger=False))
            finally:
                session.close()
            return seg.text, seg.num_tokens, {}
        if system == "target:draft":
            result = drafting.run(messages)
            return result.text, result.num_output_tokens, result.draft_tokens
        gen = (assisted if system == "specdec" else plain).generate(messages, options)
        return gen.text, gen.num_output_tokens, {}

    warm = [{"role": "user", "content": "Say hi."}]
    for system in systems:  # warm-up: first-call allocations out of the timings
        run(system, warm)
    totals: dict[str, dict[str, float]] = {
        s: {"seconds": 0.0, "tokens": 0, "drafted": 0, "accepted": 0} for s in systems
    }
    texts: dict[str, list[str]] = {s: [] for s in systems}
    for i, problem in enumerate(problems):
        messages = [{"role": "user", "content": f"{PAPER_PROMPT} {problem.problem}"}]
        order = systems if i % 2 == 0 else systems[::-1]  # alternate the order: no system always goes first
        for system in order:
            t0 = time.perf_counter()
            text, tokens, drafts = run(system, messages)
            secs = time.perf_counter() - t0
            row = totals[system]
            row["seconds"] += secs
            row["tokens"] += tokens
            row["drafted"] += drafts.get("drafted", 0)
            row["accepted"] += drafts.get("accepted", 0)
            texts[system].append(text)
            print(f"  {problem.id} {system:16s} {tokens:4d} tok {secs:6.1f} s {tokens / secs:5.2f} tok/s", flush=True)

    base = totals["target"]["tokens"] / totals["target"]["seconds"] if "target" in totals else None
    report: dict[str, Any] = {
        "small": args.small,
        "target": args.target,
        "dtype": str(target.model.dtype),
        "threads": torch.get_num_threads(),
        "prompts": len(problems),
        "max_new_tokens": args.max_new_tokens,
        "systems": {},
    }
    print(f"\n{args.small} -> {args.target}, {report['dtype']}, {report['threads']} threads, {len(problems)} prompts")
    print(f"{'system':16s} {'tok/s':>7s} {'x target':>9s} {'accepted':>9s} {'same text':>10s}")
    for system in systems:
        row = totals[system]
        tps = row["tokens"] / row["seconds"]
        same = sum(a == b for a, b in zip(texts[system], texts.get("target", []), strict=False))
        acc = row["accepted"] / row["drafted"] if row["drafted"] else None
        ratio = tps / base if base else None
        report["systems"][system] = {
            **row,
            "tokens_per_second": tps,
            "ratio_to_target": ratio,
            "acceptance": acc,
            "identical_to_target": same,
        }
        print(
            f"{system:16s} {tps:7.2f} {ratio or 0:8.2f}x {'' if acc is None else f'{acc:8.0%}':>9s} "
            f"{same:>4d}/{len(problems)}"
        )
    if args.out:
        report["command"] = "python benchmarks/drafting_speed.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"
        )
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
