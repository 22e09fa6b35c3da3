"""Pictures: the state graph (Mermaid text, PNG) and the trace of one run (HTML, PNG).

The graph picture is generated from the compiled graph, never drawn by hand:

```bash
python -m spec_graph.viz --update-docs   # rewrite the Mermaid blocks of README.md and docs/, and docs/images/graph.png
python -m spec_graph.viz --check         # exit 1 when any of them differs from the code's graph
```

The trace of a run shows who wrote what: the target's stretches highlighted, injected text
marked, and a numbered marker wherever the target stepped in (hover it for the category, the
small model's probe and the target's text):

```python
from spec_graph.viz import render_trace, save_trace

result = thinker.run("What is 17 * 23?", max_new_tokens=128)
save_trace(result, "trace.html")      # or .png / .svg / .pdf (needs matplotlib)
html = render_trace(result)           # the same HTML as a string
```

Modules: :mod:`~spec_graph.viz.mermaid` (the graph and the docs that embed it),
:mod:`~spec_graph.viz.trace` (a run as HTML), :mod:`~spec_graph.viz.figure` (a run as an image),
:mod:`~spec_graph.viz.cli` (the command line).
"""

from spec_graph.viz.cli import main
from spec_graph.viz.figure import save_trace, trace_figure
from spec_graph.viz.mermaid import (
    DOC_FILES,
    GRAPH_END,
    GRAPH_PNG,
    GRAPH_START,
    check_docs,
    graph_mermaid,
    graph_png,
    mermaid_block,
    png_graph_digest,
    update_docs,
)
from spec_graph.viz.trace import render_trace

__all__ = [
    "DOC_FILES",
    "GRAPH_END",
    "GRAPH_PNG",
    "GRAPH_START",
    "check_docs",
    "graph_mermaid",
    "graph_png",
    "main",
    "mermaid_block",
    "png_graph_digest",
    "render_trace",
    "save_trace",
    "trace_figure",
    "update_docs",
]
