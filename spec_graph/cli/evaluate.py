r"""``spec-graph eval``: compare the small model, the target, speculative thinking and speculative decoding.

Wire it into an argparse CLI with :func:`add_parser` (which sets ``func=run``); :func:`main`
runs it on its own (``python -m spec_graph.cli.evaluate``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from spec_graph.cli._options import config_overrides

__all__ = ["add_parser", "build_parser", "config_from_args", "main", "run"]

DESCRIPTION = (
    "Answer a math set with each system, grade the answers (math-verify on the last \\boxed{}, else the last "
    "number), and write per-answer records (records.jsonl, resumable), results.json, results.md and plots."
)
EPILOG = r"""
systems:
  small                 the small model alone
  target                the target model alone
  spec:<preset|yaml>    speculative thinking (presets: reasoning, non_reasoning)
  spec:<policy>         speculative thinking with a trigger policy: uncertainty:<p> (the small model
                        stops below top-1 probability p and the target writes 8 tokens),
                        entropy:<nats>, verify:<p>[:<gate>], step-entropy:<nats>, loop[:<n>],
                        regex:<pattern>, never (= small), always (= target), or several joined
                        by '+' (e.g. spec:loop+verify:0.3)
  target:draft          the target alone, drafted by the small model (lossless speculative decoding)
  specdec               token-level speculative decoding (transformers assisted generation,
                        small model as assistant; universal assisted generation across tokenizers)
  generate:small|target plain transformers model.generate of one model

datasets: math500, aime24, amc23, gsm8k, multiarith, svamp, or any JSONL with problem/answer

examples:
  # the default pair on the first 10 MultiArith problems, every system, greedy, 256 new tokens
  spec-graph eval --dataset multiarith --limit 10 --out runs/multiarith-10

  # one process per system (they share nothing), then one table
  spec-graph eval --systems small --out runs/a & spec-graph eval --systems target --out runs/b & wait
  spec-graph eval --merge runs/a,runs/b --out runs/both

  # the same command again resumes where an interrupted run stopped
  spec-graph eval --dataset multiarith --limit 10 --out runs/multiarith-10

  # small alone against speculative thinking with your own config, 4 sampled answers each
  spec-graph eval --dataset gsm8k --limit 50 --systems small,spec:my_config.yaml \
      --temperature 0.6 --samples 4 --seed 1 --out runs/gsm8k-sampled

  # int8 weights for every system (about 1.9x faster decoding on a CPU)
  spec-graph eval --dataset multiarith --limit 10 --quantize int8 --out runs/multiarith-10-int8

  # another pair and your own data and prompt
  spec-graph eval --dataset my_set.jsonl --small ./my-small --target ./my-target \
      --prompt-template "Solve: {problem}\nAnswer in \\boxed{}." --out runs/mine
"""


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the ``eval`` options to ``parser`` (a new one when None).

    Names (systems, dataset, models) and sampling values are checked while parsing; counts by
    :class:`~spec_graph.eval.harness.EvalConfig` (both: one line, exit status 2).
    """
    from spec_graph.cli._options import (
        OneLineParser,
        add_config_args,
        add_precision_args,
        add_sampling_args,
        model_name,
    )
    from spec_graph.eval.harness import DEFAULT_SYSTEMS
    from spec_graph.eval.runner import PAPER_PROMPT
    from spec_graph.models import DEFAULT_PAIR, PAIRS

    p = parser or OneLineParser(
        prog="spec-graph eval",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dataset", type=_dataset, default="multiarith", help="packaged set name or JSONL path (default: %(default)s)"
    )
    p.add_argument("--limit", type=int, default=None, help="evaluate at most N problems (default: all)")
    p.add_argument("--offset", type=int, default=0, help="skip the first N problems (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="run seed; each answer's seed derives from it (default: 0)")
    p.add_argument(
        "--systems",
        type=_systems,
        default=",".join(DEFAULT_SYSTEMS),
        help="comma-separated systems to compare (default: %(default)s); see below",
    )
    p.add_argument(
        "--pair",
        choices=sorted(PAIRS),
        default=DEFAULT_PAIR,
        help="embedded pair: "
        + ", ".join(f"{k} ({s} -> {t})" for k, (s, t) in sorted(PAIRS.items()))
        + " (default: %(default)s)",
    )
    p.add_argument(
        "--small", type=model_name, default=None, help="small model: embedded name or folder (overrides --pair)"
    )
    p.add_argument(
        "--target", type=model_name, default=None, help="target model: embedded name or folder (overrides --pair)"
    )
    add_precision_args(p)
    p.add_argument("--max-new-tokens", type=int, default=256, help="budget of output tokens per answer (default: 256)")
    add_sampling_args(p, seed=False)
    p.add_argument("--samples", type=int, default=1, help="answers per problem (default: 1)")
    add_config_args(p, prefix="spec: systems: ", default="the system's config")
    p.add_argument(
        "--prompt-template",
        default=PAPER_PROMPT,
        help="user turn; {problem} is replaced by the problem (default: the paper's prompt)",
    )
    p.add_argument("--out", default=None, help="output folder (default: runs/eval-<dataset>); a rerun resumes there")
    p.add_argument(
        "--interleave",
        action="store_true",
        help="answer each problem with every system before the next one (fairer speeds when the machine's load varies)",
    )
    p.add_argument("--overwrite", action="store_true", help="delete the folder's records and start afresh")
    p.add_argument(
        "--merge",
        default=None,
        metavar="DIR[,DIR...]",
        help="instead of running: merge these finished run folders (same settings; one process per "
        "system and/or per --offset/--limit slice) into --out and write one report",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG/SVG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _systems(text: str) -> str:
    """Check every system's name (and a ``spec:`` system's preset, file or policy) while parsing."""
    from spec_graph.eval.systems import check_system

    for name in (s.strip() for s in text.split(",")):
        if name:
            try:
                check_system(name)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _dataset(text: str) -> str:
    """A packaged set's name or an existing file."""
    from pathlib import Path

    from spec_graph.eval.datasets import DATASETS

    if text in DATASETS or Path(text).expanduser().is_file():
        return text
    msg = f"unknown dataset {text!r}; use {', '.join(sorted(DATASETS))} or a JSONL file with problem/answer"
    raise argparse.ArgumentTypeError(msg)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``eval`` on an ``argparse`` sub-parsers object; the parser's ``func`` is :func:`run`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "eval",
        help="evaluate small, target, speculative thinking and speculative decoding on a math set",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build_parser(parser)
    parser.set_defaults(func=run)
    return parser


def config_from_args(args: argparse.Namespace, argv: Sequence[str] | None = None) -> Any:
    """An :class:`~spec_graph.eval.harness.EvalConfig` from parsed arguments (validated)."""
    from pathlib import Path

    from spec_graph.eval.harness import EvalConfig
    from spec_graph.models import PAIRS

    systems = tuple(s.strip() for s in args.systems.split(",") if s.strip())
    out = args.out or str(Path("runs") / f"eval-{Path(args.dataset).stem}")
    command = "spec-graph eval " + shlex.join(argv) if argv is not None else _command(args)
    return EvalConfig(
        dataset=args.dataset,
        systems=systems,
        small=args.small or PAIRS[args.pair][0],
        target=args.target or PAIRS[args.pair][1],
        dtype=args.dtype,
        quantization=args.quantize,
        limit=args.limit,
        offset=args.offset,
        samples=args.samples,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        prompt_template=args.prompt_template,
        spec_overrides=config_overrides(args),
        out=out,
        progress=not args.no_progress,
        plots=not args.no_plots,
        overwrite=args.overwrite,
        interleave=args.interleave,
        extra={"command": command},
    )


def _command(args: argparse.Namespace) -> str:
    """The full command line equivalent to ``args`` (every option spelled out)."""
    parts = ["spec-graph", "eval"]
    for dest in ("dataset", "limit", "offset", "seed", "systems", "pair", "small", "target", "dtype", "quantize",
                 "max_new_tokens", "temperature", "top_p", "top_k", "samples", "prompt_template", "out"):  # fmt: skip
        value = getattr(args, dest, None)
        if value is not None:
            parts += ["--" + dest.replace("_", "-"), str(value)]
    for field, value in config_overrides(args).items():
        parts += ["--set", f"{field}={value}"]
    if getattr(args, "interleave", False):
        parts.append("--interleave")
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    """Run the evaluation; print a summary line and the Markdown table. Returns the exit code."""
    from spec_graph.eval.harness import evaluate
    from spec_graph.eval.report import to_markdown

    try:
        if args.merge:
            from spec_graph.eval.harness import merge_runs

            if not args.out:
                print("spec-graph eval: error: --merge needs --out", file=sys.stderr)
                return 2
            sources = [s.strip() for s in args.merge.split(",") if s.strip()]
            results = merge_runs(sources, args.out, plots=not args.no_plots)
            print(f"merged {len(sources)} runs into {args.out}")
        else:
            results = evaluate(config_from_args(args, getattr(args, "argv", None)))
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"spec-graph eval: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nspec-graph eval: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    rows = results["systems"]
    best = max(rows, key=lambda r: r["accuracy"]) if rows else None
    summary = f"{results['meta']['dataset']}: {results['meta']['problems']} problems, {len(rows)} systems"
    if best:
        summary += f"; best accuracy {best['accuracy']:.1%} ({best['system']})"
    print(summary + f"; results in {results['out']}")
    print()
    print(to_markdown(rows), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and :func:`run`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
