"""``spec-graph run``: answer one question with speculative thinking, streaming the text."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from spec_graph.cli._options import (
    add_config_args,
    add_precision_args,
    add_sampling_args,
    config_overrides,
    device,
    field_type,
    key_value,
    model_name,
    policy,
    preset,
)
from spec_graph.models import DEFAULT_PAIR, PAIRS

EPILOG = """examples:
  spec-graph run "Tom has 3 boxes of 12 pencils and gives away 7. How many are left?"
  spec-graph run --pair tiny "What is 2 + 2?"          # SmolLM2-135M -> Qwen-0.5B: fast
  spec-graph run --preset reasoning --max-new-tokens 512 "What is 17 * 23?"
  spec-graph run --policy verify:0.3 "What is 17 * 23?"  # the target checks every step
  spec-graph run --policy uncertainty:0.5 --policy-arg stretch_tokens=16 "What is 17 * 23?"
  spec-graph run --preset non_reasoning --policy keyword --probe-tokens 12 --verify-tokens 60 "..."
  spec-graph run --set keyword_matching=inflected --set negative_threshold=5 "..."
  spec-graph run --small ./my-1.5b --target ./my-14b --temperature 0.6 --seed 0 "..."
  spec-graph run --json "What is 2 + 2?" > result.json
  spec-graph run --quantize int8 "What is 17 * 23?"   # int8 weights: faster on a CPU

every bad value is one line naming the option and the valid values, exit status 2, before any
model loads.
"""

PAIR_DEFAULTS: dict[str, tuple[str, str | None]] = {
    "qwen": ("reasoning", "uncertainty:0.5"),
    "tiny": ("non_reasoning", None),
}
"""``(preset, policy)`` each embedded pair runs with unless ``--preset`` or ``--policy`` say
otherwise: the best measured setting (docs/results: MultiArith on the Qwen pair; the keyword rule
of the preset where the policy is None)."""

PAPER_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."

_policy = policy  # the check's former name here (tests/unit_tests/test_step_policies.py imports it)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the subcommand."""
    from spec_graph.config import SpeculativeThinkingConfig
    from spec_graph.policies import POLICIES

    p = sub.add_parser(
        "run",
        help="answer a question, streaming the text (target's stretches marked)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("question", help="the question (the paper's step-by-step prompt is prepended)")
    models = p.add_argument_group("models")
    models.add_argument(
        "--pair",
        choices=sorted(PAIRS),
        default=DEFAULT_PAIR,
        help="embedded model pair: qwen (Qwen2.5-Coder 0.5B -> 1.5B, same tokenizer; the default) or tiny "
        "(SmolLM2-135M -> Qwen2.5-Coder-0.5B: fast, for quick tries)",
    )
    models.add_argument(
        "--small",
        type=model_name,
        default=None,
        metavar="M",
        help="small model: embedded name, folder or hub id (overrides --pair)",
    )
    models.add_argument(
        "--target",
        type=model_name,
        default=None,
        metavar="M",
        help="target model: embedded name, folder or hub id (overrides --pair)",
    )
    models.add_argument(
        "--device",
        type=device,
        default=None,
        metavar="D",
        help="cpu, cuda, cuda:<n>, mps, xpu (default: CUDA when present)",
    )
    add_precision_args(models)
    algo = p.add_argument_group("algorithm")
    algo.add_argument(
        "--preset",
        type=preset,
        default=None,
        help="preset name (reasoning, non_reasoning) or a YAML config file, the reference code's included "
        "(default: the pair's best measured setting: "
        + "; ".join(
            f"{k}: {p}" + (f" with --policy {pol}" if pol else "") for k, (p, pol) in sorted(PAIR_DEFAULTS.items())
        )
        + ")",
    )
    algo.add_argument(
        "--policy",
        type=policy,
        default=None,
        help="trigger policy instead of the preset's: "
        + POLICIES.usage()
        + ". "
        + "; ".join(f"{e.name}: {e.summary}" for e in POLICIES),
    )
    algo.add_argument(
        "--policy-arg",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the policy, repeatable (e.g. stretch_tokens=16, scope=probe, gate=0.5, step_tokens=40); "
        "see docs/policies.md for each policy's settings",
    )
    add_config_args(algo)
    gen = p.add_argument_group("generation")
    gen.add_argument(
        "--max-new-tokens",
        type=field_type(SpeculativeThinkingConfig, "max_new_tokens"),
        default=256,
        metavar="N",
        help="generated-token budget (default: 256)",
    )
    add_sampling_args(gen, from_config=True)
    out = p.add_argument_group("output")
    out.add_argument("--no-prompt", action="store_true", help="send the question without the step-by-step prompt")
    out.add_argument("--no-color", action="store_true", help="mark the target's text with [brackets]")
    out.add_argument("--json", action="store_true", help="print the full result as JSON instead of streaming")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> Any:
    """The run's :class:`~spec_graph.config.SpeculativeThinkingConfig` from parsed arguments.

    The pair's preset and policy unless ``--preset``/``--policy`` are given; then ``--set``, the
    config flags, the sampling flags (``--max-new-tokens`` 256 and ``--temperature`` 0 unless
    given; ``--top-p``, ``--top-k``, ``--seed`` only when given), and ``--policy-arg`` on the
    resulting policy.

    Raises:
        ConfigError: a bad value or combination (one line naming the field).
        ValueError: a ``--policy-arg`` the policy does not have (one line).
    """
    from pydantic import ValidationError

    from spec_graph.config import resolve_config
    from spec_graph.config_errors import one_line
    from spec_graph.policies import POLICIES

    overrides = config_overrides(args)
    overrides.update(max_new_tokens=args.max_new_tokens, temperature=args.temperature)  # the CLI's: 256, greedy
    overrides.update({k: getattr(args, k) for k in ("top_p", "top_k", "seed") if getattr(args, k) is not None})
    chosen, policy_name = PAIR_DEFAULTS[args.pair]
    if args.preset is not None:  # the user's preset, with its own policy unless --policy is given
        chosen, policy_name = args.preset, None
    if args.policy is not None:
        policy_name = args.policy
    if policy_name is not None and ("policy" not in overrides or args.policy is not None):
        overrides["policy"] = policy_name
    config = resolve_config(chosen, **overrides)
    if args.policy_arg:
        try:
            settings = POLICIES.with_params(config.policy, dict(args.policy_arg))
        except ValidationError as exc:
            fields = [f for f in type(config.policy).model_fields if f != "kind"]
            msg = f"argument --policy-arg: the {config.policy.kind} policy: {one_line(exc, fields=fields)}"
            raise ValueError(msg) from None
        config = resolve_config(config, policy=settings)
    return config


def _check_device(name: str | None) -> None:
    """Raise ValueError when ``name`` asks for an accelerator torch does not see."""
    if name is None or name == "cpu":
        return
    import torch

    kind = name.split(":", 1)[0]
    backend = {"cuda": torch.cuda, "xpu": getattr(torch, "xpu", None), "mps": getattr(torch.backends, "mps", None)}[
        kind
    ]
    if backend is None or not backend.is_available():
        msg = f"argument --device: {kind} is not available on this machine; use cpu"
        raise ValueError(msg)
    count = getattr(backend, "device_count", lambda: 1)()
    if ":" in name and int(name.split(":", 1)[1]) >= count:
        msg = f"argument --device: {name} does not exist; this machine has {count} {kind} device(s), 0 to {count - 1}"
        raise ValueError(msg)


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

    from spec_graph.config_errors import one_line
    from spec_graph.generators.hf import HFGenerator
    from spec_graph.thinker import SpeculativeThinker

    try:  # every value is checked before any model loads
        config = build_config(args)
        _check_device(args.device)
    except (ValueError, OSError) as exc:  # a bad value or combination, a bad YAML file
        print(f"spec-graph run: error: {one_line(exc, fields=config_fields())}", file=sys.stderr)
        return 2
    small_name, target_name = args.small or PAIRS[args.pair][0], args.target or PAIRS[args.pair][1]
    load = {"device": args.device, "dtype": args.dtype, "quantization": args.quantize}
    err = Console(stderr=True)
    try:
        small = HFGenerator(small_name, **load)
        target = HFGenerator(target_name, **load)
        with err.status("loading models (the first run fetches and converts them)..."):
            _ = small.model, target.model
    except (OSError, ValueError, RuntimeError) as exc:  # e.g. a hub id that cannot be fetched here
        print(f"spec-graph run: error: cannot load the models: {one_line(exc)}", file=sys.stderr)
        return 1
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


def config_fields() -> tuple[str, ...]:
    """The config's field names (suggested for a misspelt ``--set`` field)."""
    from spec_graph.config import SpeculativeThinkingConfig

    return tuple(SpeculativeThinkingConfig.model_fields)
