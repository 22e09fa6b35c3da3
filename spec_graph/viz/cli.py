"""``python -m spec_graph.viz``: print, check or update the graph pictures in the docs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from spec_graph.viz.mermaid import check_docs, graph_mermaid, graph_png, update_docs

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m spec_graph.viz``: print, check or update the graph pictures in the docs."""
    parser = argparse.ArgumentParser(
        prog="python -m spec_graph.viz", description="The state graph's pictures in the docs."
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--update-docs", action="store_true", help="rewrite the Mermaid blocks and the PNG")
    what.add_argument("--check", action="store_true", help="exit 1 when the docs' graph differs from the code's")
    what.add_argument("--png", metavar="FILE", help="draw the graph to FILE (needs pygraphviz)")
    parser.add_argument("--root", default=".", help="the repository root (default: the current folder)")
    parser.add_argument("--no-png", action="store_true", help="leave docs/images/graph.png alone")
    args = parser.parse_args(argv)
    if args.update_docs:
        for path in update_docs(args.root, png=not args.no_png):
            print(f"updated {path}")
        return 0
    if args.check:
        problems = check_docs(args.root, png=not args.no_png)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run: python -m spec_graph.viz --update-docs", file=sys.stderr)
        return 1 if problems else 0
    if args.png:
        Path(args.png).write_bytes(graph_png())
        print(f"wrote {args.png}")
        return 0
    print(graph_mermaid(), end="")
    return 0
