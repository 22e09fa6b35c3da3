"""Options shared by several subcommands."""

from __future__ import annotations

import argparse

from spec_graph.generators.precision import DTYPES, QUANTIZATIONS


def add_precision_args(parser: argparse.ArgumentParser) -> None:
    """``--dtype`` and ``--quantize``; argparse rejects other values (a one-line error, exit status 2)."""
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="auto",
        help="weights and activations; auto: bfloat16 on a GPU and on a CPU with bf16 instructions, "
        "else float32 (default: auto)",
    )
    parser.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default="none",
        help="int8: int8 weights, about 1.9x faster decoding on a CPU (default: none)",
    )
