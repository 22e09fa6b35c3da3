"""``spec-graph graph``: print the state graph as Mermaid (or ASCII)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the subcommand."""
    p = sub.add_parser("graph", help="print the state graph (Mermaid text)", description=__doc__)
    p.add_argument("--ascii", action="store_true", help="draw with characters (needs grandalf)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the drawing."""
    from spec_graph.graph import build_graph

    drawable = build_graph().get_graph()
    print(drawable.draw_ascii() if args.ascii else drawable.draw_mermaid())
    return 0
