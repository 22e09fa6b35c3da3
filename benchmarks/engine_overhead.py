"""Engine overhead: wall time of speculative thinking against the ideal, measured in one run.

The ideal is what the tokens would cost if each model only decoded them, one forward pass each:
``tokens written by the small model x its per-token time + the same for the target``, with the
per-token times measured here by plain greedy ``generate`` of each model alone on the same prompts.
Everything else -- catching up on the other model's text, cropping, tokenizing, the graph --
is overhead. Goal: wall / ideal <= 1.10.

    python benchmarks/engine_overhead.py                   # default pair, 3 GSM8K prompts
    python benchmarks/engine_overhead.py --prompts 5 --max-new-tokens 256 --presets reasoning
    python benchmarks/engine_overhead.py --presets "" --policies uncertainty:0.5   # a trigger policy
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from spec_graph import SpeculativeThinker, SpeculativeThinkingConfig, resolve_config
from spec_graph.generators.hf import HFGenerator
from spec_graph.models import TINY_SMALL_MODEL, TINY_TARGET_MODEL

PAPER_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
HERE = Path(__file__).resolve().parent


def gsm8k_questions(n: int) -> list[str]:
    for path in (
        HERE.parent / "spec_graph" / "data" / "gsm8k.jsonl",
        HERE.parent.parent / "shared" / "data" / "gsm8k.jsonl",
    ):
        if path.exists():
            rows = [json.loads(line) for line in path.read_text().splitlines()[:n]]
            return [f"{PAPER_PROMPT} {row['problem']}" for row in rows]
    raise FileNotFoundError("gsm8k.jsonl not found")


def timed_generate(gen: HFGenerator, question: str, n: int) -> tuple[float, int]:
    ids = torch.tensor([gen.encode(gen.render_prompt([{"role": "user", "content": question}]))], device=gen.device)
    t0 = time.perf_counter()
    out = gen.model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
    if gen.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out.shape[1] - ids.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", default=TINY_SMALL_MODEL)
    parser.add_argument("--target", default=TINY_TARGET_MODEL)
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--presets", default="non_reasoning,reasoning")
    parser.add_argument("--policies", default="", help="trigger policies on the default config, e.g. uncertainty:0.5")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    small, target = HFGenerator(args.small, device=args.device), HFGenerator(args.target, device=args.device)
    questions = gsm8k_questions(args.prompts)
    print(
        f"small={args.small} target={args.target} device={small.device} "
        f"prompts={len(questions)} budget={args.max_new_tokens}"
    )

    # Each model alone with plain greedy `generate` on the same prompts, in this same run:
    # its seconds per token (prompt prefill included) price the tokens of the ideal.
    alone, per_token = {}, {}
    for role, gen in (("small", small), ("target", target)):
        timed_generate(gen, questions[0], 4)  # warm-up
        secs = toks = 0
        for q in questions:
            s, n = timed_generate(gen, q, args.max_new_tokens)
            secs, toks = secs + s, toks + n
        alone[role], per_token[role] = toks / secs, secs / toks
        print(
            f"{role} alone: {toks} tokens in {secs:.1f} s = {alone[role]:.2f} tok/s ({1000 * secs / toks:.1f} ms/token)"
        )
    t_small, t_target = per_token["small"], per_token["target"]

    runs = [(p, SpeculativeThinkingConfig.preset(p)) for p in args.presets.split(",") if p]
    runs += [(p, SpeculativeThinkingConfig(policy=p)) for p in args.policies.split(",") if p]
    for preset, base in runs:
        cfg = resolve_config(base, max_new_tokens=args.max_new_tokens, temperature=0.0)
        thinker = SpeculativeThinker(small, target, cfg)
        wall = ideal = kept = 0.0
        written = {"small": 0, "target": 0}
        prefill = {"small": 0, "target": 0}
        interventions = 0
        for q in questions:
            result = thinker.run(q)
            wall += result.wall_seconds
            kept += result.num_output_tokens
            interventions += len(result.interventions)
            for role in written:
                written[role] += result.generated_tokens.get(role, 0)
                prefill[role] += result.prefill_tokens.get(role, 0)
        ideal = written["small"] * t_small + written["target"] * t_target
        print(
            f"[{preset}] tokens written: small {written['small']}, target {written['target']} "
            f"(kept {int(kept)}, prefilled small {prefill['small']} / target {prefill['target']}, "
            f"{interventions} interventions)"
        )
        print(
            f"[{preset}] wall {wall:.1f} s, ideal {ideal:.1f} s, wall/ideal = {wall / ideal:.3f}; "
            f"{kept / wall:.2f} tok/s (small alone {alone['small']:.2f}, target alone {alone['target']:.2f}; "
            f"x{(kept / wall) / alone['target']:.2f} of target alone)"
        )


if __name__ == "__main__":
    main()
