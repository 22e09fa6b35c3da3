"""The ``spec-graph`` command line: one subcommand per module, heavy imports inside each."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from spec_graph._version import __version__


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with its subcommands."""
    from spec_graph.cli import graph, run
    from spec_graph.cli._options import OneLineParser

    parser = OneLineParser(
        prog="spec-graph",
        description="Speculative Thinking: a small model reasons, a large one steps in at the hard steps.",
    )
    parser.add_argument("--version", action="version", version=f"spec-graph {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)  # subcommands' parsers are OneLineParsers too
    run.add_parser(sub)
    graph.add_parser(sub)
    try:
        from spec_graph.cli import evaluate
    except ImportError:  # the evaluation extras are not installed
        pass
    else:
        evaluate.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``spec-graph``."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()
        return 0
