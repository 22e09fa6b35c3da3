"""Build the example notebooks from their plain scripts (the scripts are the source).

Each ``examples/<name>.py`` is written in the "percent" format: ``# %%`` starts a code cell,
``# %% [markdown]`` a Markdown cell whose lines are comments; whatever comes before the first
marker (the module docstring) stays out of the notebook. A unit test checks that every
notebook's cells equal its script's.

    python examples/build_notebooks.py              # write the notebooks, without outputs
    python examples/build_notebooks.py --execute    # and run them, keeping the outputs
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
NOTEBOOKS = ("quickstart", "agent_workflow", "agent_tools", "evaluation")
_MARKER = re.compile(r"^# %%(?P<md> \[markdown\])?.*$")


def script_cells(path: Path) -> list[tuple[str, str]]:
    """The (cell type, source) pairs of a percent-format script."""
    cells: list[tuple[str, list[str]]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _MARKER.match(line)
        if m:
            cells.append(("markdown" if m.group("md") else "code", []))
        elif cells:
            kind, lines = cells[-1]
            if kind == "markdown":
                line = line[2:] if line.startswith("# ") else line.lstrip("#")
            lines.append(line)
    return [(kind, "\n".join(lines).strip("\n")) for kind, lines in cells]


def notebook_cells(path: Path) -> list[tuple[str, str]]:
    """The (cell type, source) pairs of a notebook."""
    nb = nbformat.read(path, as_version=4)
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def build(name: str, *, execute: bool = False, timeout: int = 600) -> Path:
    """Write ``examples/<name>.ipynb`` from ``examples/<name>.py`` (and run it if asked)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, source in script_cells(HERE / f"{name}.py"):
        new = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(new(source))
    for i, cell in enumerate(nb.cells):  # stable ids: rebuilding gives the same file
        cell.id = f"{name}-{i}"
    if execute:
        from nbclient import NotebookClient

        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(HERE)}},
            coalesce_streams=True,  # one output per stream and cell, not one per streamed token
        )
        client.execute()
        for cell in nb.cells:  # keep what the code shows, not loading bars and warnings
            if cell.cell_type == "code":
                cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    out = HERE / f"{name}.ipynb"
    nbformat.write(nb, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", action="store_true", help="run the notebooks and keep their outputs")
    parser.add_argument("names", nargs="*", default=list(NOTEBOOKS), help="notebooks to build (default: all)")
    args = parser.parse_args()
    for name in args.names:
        print("wrote", build(name, execute=args.execute))


if __name__ == "__main__":
    main()
