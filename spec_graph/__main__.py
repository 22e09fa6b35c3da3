"""``python -m spec_graph``."""

from spec_graph.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
