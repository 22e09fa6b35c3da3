"""``python -m spec_graph``."""

from spec_graph.cli import main

raise SystemExit(main())
