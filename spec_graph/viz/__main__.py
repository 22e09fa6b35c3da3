"""``python -m spec_graph.viz``: see :func:`spec_graph.viz.cli.main`."""

from spec_graph.viz.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
