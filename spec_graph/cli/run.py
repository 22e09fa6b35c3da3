"""``spec-graph run``: answer one question with speculative thinking, streaming the text."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from spec_graph.cli._options import add_precision_args
from spec_graph.models import DEFAULT_PAIR, PAIRS

EPILOG = """examples:
  spec-graph run "Tom has 3 boxes of 12 pencils and gives away 7. How many are left?"
  spec-graph run --pair tiny "What is 2 + 2?"          # SmolLM2-135M -> Qwen-0.5B: fast
  spec-graph run --preset reasoning --max-new-tokens 512 "What is 17 * 23?"
  spec-graph run --small ./my-1.5b --target ./my-14b --temperature 0.6 --seed 0 "..."
  spec-graph run --json "What is 2 + 2?" > result.json
  spec-graph run --quantize int8 "What is 17 * 23?"   # int8 weights: faster on a CPU
"""

PAIR_DEFAULTS: dict[str, tuple[str, str | None]] = {
    "qwen": ("reasoning", "uncertainty:0.5"),
    "tiny": ("non_reasoning", None),
}
"""``(preset, policy)`` each embedded pair runs with unless ``--preset`` or ``--policy`` say
otherwise: the best measured setting (docs/results: MultiArith on the Qwen pair; the keyword rule
of the preset where the policy is None)."""

PAPER_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the subcommand."""
    p = sub.add_parser(
        "run",
        help="answer a question, streaming the text (target's stretches marked)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("question", help="the question (the paper's step-by-step prompt is prepended)")
    p.add_argument(
        "--pair",
        choices=sorted(PAIRS),
        default=DEFAULT_PAIR,
        help="embedded model pair: qwen (Qwen2.5-Coder 0.5B -> 1.5B, same tokenizer; the default) or tiny "
        "(SmolLM2-135M -> Qwen2.5-Coder-0.5B: fast, for quick tries)",
    )
    p.add_argument("--small", default=None, help="small model: embedded name, folder or hub id (overrides --pair)")
    p.add_argument("--target", default=None, help="target model: embedded name, folder or hub id (overrides --pair)")
    p.add_argument(
        "--preset",
        default=None,
        help="preset name (reasoning, non_reasoning) or a YAML config file, the reference code's included "
        "(default: the pair's best measured setting: "
        + "; ".join(
            f"{k}: {p}" + (f" with --policy {pol}" if pol else "") for k, (p, pol) in sorted(PAIR_DEFAULTS.items())
        )
        + ")",
    )
    p.add_argument(
        "--policy",
        type=_policy,
        default=None,
        help="trigger policy instead of the preset's keyword rule: keyword, uncertainty:<p>, entropy:<nats>, "
        "verify:<p>[:<gate>] (the target checks each step), step-entropy:<nats>, loop, regex:<pattern>, "
        "never (the small model alone), always (the target alone, drafted by the small model), "
        "or several joined by '+' (e.g. loop+verify:0.3)",
    )
    p.add_argument("--max-new-tokens", type=_positive_int, default=256, help="generated-token budget (default 256)")
    p.add_argument("--temperature", type=_temperature, default=0.0, help="0 = greedy (default 0)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: CUDA when present)")
    add_precision_args(p)
    p.add_argument("--no-prompt", action="store_true", help="send the question without the step-by-step prompt")
    p.add_argument("--no-color", action="store_true", help="mark the target's text with [brackets]")
    p.add_argument("--json", action="store_true", help="print the full result as JSON instead of streaming")
    p.set_defaults(func=run)


def _policy(value: str) -> str:
    """Check a policy's short name (argparse turns the error into one line and exit status 2)."""
    from spec_graph.policy_config import parse_policy

    try:
        parse_policy(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(_one_line(exc)) from None
    return value


def _one_line(exc: Exception) -> str:
    """A validation error in one line: pydantic's first error as ``field: message``."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    return str(exc).splitlines()[0]


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        msg = f"expected a whole number >= 1, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


def _temperature(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number <= 100:
        msg = f"expected a temperature between 0 (greedy) and 100, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


class _Printer:
    """Streams text pieces; the target's stretches coloured on a terminal, bracketed otherwise."""

    def __init__(self, color: bool) -> None:
        self.color = color
        self.in_target = False

    def __call__(self, event: dict[str, Any]) -> None:
        if event["type"] != "text":
            return
        target = event["author"] != "small"
        if self.color:
            style = "\x1b[1;36m" if event["author"] == "target" else "\x1b[2;33m" if target else ""
            sys.stdout.write(f"{style}{event['text']}\x1b[0m" if style else event["text"])
        else:
            if target != self.in_target:
                sys.stdout.write("[" if target else "]")
            sys.stdout.write(event["text"])
        self.in_target = target
        sys.stdout.flush()

    def close(self) -> None:
        if self.in_target and not self.color:
            sys.stdout.write("]")
        sys.stdout.write("\n")
        sys.stdout.flush()


def _stats_table(result: Any, names: tuple[str, str]) -> Any:
    from rich.table import Table

    table = Table(title="speculative thinking", show_header=True, header_style="bold")
    for col in ("model", "kept tokens", "written", "prefilled", "seconds", "tok/s"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for role, name in zip(("small", "target"), names, strict=True):
        secs = result.model_seconds.get(role, 0.0)
        written = result.generated_tokens.get(role, 0)
        table.add_row(
            f"{role}: {name}",
            str(result.output_tokens.get(role, 0)),
            str(written),
            str(result.prefill_tokens.get(role, 0)),
            f"{secs:.1f}",
            f"{written / secs:.1f}" if secs else "-",
        )
    kinds: dict[str, int] = {}
    for item in result.interventions:
        kinds[item["category"]] = kinds.get(item["category"], 0) + 1
    table.caption = (
        f"{result.num_output_tokens} tokens in {result.wall_seconds:.1f} s ({result.tokens_per_second:.1f} tok/s), "
        f"target share {result.target_share:.0%}, finish: {result.finish_reason}; interventions: "
        + (", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none")
    )
    if result.draft_tokens.get("drafted"):
        drafted, accepted = result.draft_tokens["drafted"], result.draft_tokens.get("accepted", 0)
        table.caption += f"; the small model drafted {drafted} tokens for the target, {accepted} kept"
    return table


def run(args: argparse.Namespace) -> int:
    """Run the question and print the streamed answer and the stats table."""
    from rich.console import Console

    from spec_graph.config import resolve_config
    from spec_graph.generators.hf import HFGenerator
    from spec_graph.policy_config import parse_policy
    from spec_graph.thinker import SpeculativeThinker

    overrides: dict[str, Any] = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature}
    if args.seed is not None:
        overrides["seed"] = args.seed
    preset, policy = PAIR_DEFAULTS[args.pair]
    if args.preset is not None:  # the user's preset, with its own policy unless --policy is given
        preset, policy = args.preset, None
    if args.policy is not None:
        policy = args.policy
    if policy is not None:
        overrides["policy"] = parse_policy(policy)
    try:
        config = resolve_config(preset, **overrides)
    except (ValueError, OSError) as exc:  # an unknown preset, a missing or bad YAML file
        print(f"spec-graph run: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    small_name, target_name = args.small or PAIRS[args.pair][0], args.target or PAIRS[args.pair][1]
    load = {"device": args.device, "dtype": args.dtype, "quantization": args.quantize}
    small = HFGenerator(small_name, **load)
    target = HFGenerator(target_name, **load)
    err = Console(stderr=True)
    with err.status("loading models (the first run fetches and converts them)..."):
        _ = small.model, target.model
    question = args.question if args.no_prompt else f"{PAPER_PROMPT} {args.question}"
    thinker = SpeculativeThinker(small, target, config)
    if args.json:
        result = thinker.run(question)
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    printer = _Printer(color=sys.stdout.isatty() and not args.no_color)
    try:
        result = thinker.run(question, on_event=printer)
    finally:
        printer.close()
    err.print(_stats_table(result, (small_name, target_name)))
    return 0
